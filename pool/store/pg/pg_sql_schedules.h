/*
 * pg_sql_schedules.h — the statements about recurring schedules (pg_sql_schedules.c)
 * and the decoding of their rows, for pg_schedules.c and pg_schedule_requests.c.
 */
#ifndef PYJOBD_PG_SQL_SCHEDULES_H
#define PYJOBD_PG_SQL_SCHEDULES_H

#include "pg_sql.h"
#include "pyjobd/store.h"

#include <stddef.h>

extern const struct pg_stmt pg_sql_schedule_lead;        /* $1 schema, $2, $3 keepalive s */
extern const struct pg_stmt pg_sql_schedule_read;        /* $1 jobs?, $2 ids|NULL, $3 owner */
extern const struct pg_stmt pg_sql_schedule_create_lock; /* $1 schema */
extern const struct pg_stmt pg_sql_schedule_create;      /* $1..$8 row, $9, $10 limits */
extern const struct pg_stmt pg_sql_schedule_delete;      /* $1 id, $2 owner|NULL */
extern const struct pg_stmt pg_sql_schedule_tick;        /* $1..$18, see pg_sql_schedules.c */

/* The rows of pg_sql_schedule_read (binary results) into *out (calloc'd; their strings
 * and bytes malloc'd: store_schedules_free). Rows no version wrote are left out.
 * 0 or -ENOMEM. */
int pg_schedule_rows(const PGresult *r, struct store_schedule **out, size_t *n);

#endif
