/*
 * pg_sql_schedules.c — the PostgreSQL store's statements about recurring schedules
 * (pg_sql.h; their table is in pg_schema.c).
 */
#include "pg_sql.h"

#include <stddef.h>

const struct pg_stmt *const pg_schedule_statements[] = {
    NULL,
};
