/*
 * pg_sql_keys.c — the PostgreSQL store's statements about Idempotency-Keys (pg_sql.h;
 * their table is in pg_schema.c).
 */
#include "pg_sql.h"

#include <stddef.h>

const struct pg_stmt *const pg_key_statements[] = {
    NULL,
};
