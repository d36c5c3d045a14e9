/*
 * pg_sql_schedules.c — the PostgreSQL store's statements about recurring schedules
 * (pg_sql.h; their table is in pg_schema.c, the rounds that send them in
 * pg_schedules.c and pg_schedule_requests.c).
 *
 * Rows come back in binary format (for the job's bytes), so every other column is
 * read as text: PG_SCHEDULE_COLS, in the order pgs__sched_rows decodes them.
 */
#include "pg_sql_schedules.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define COLS                                                                                       \
    "id, owner, CASE WHEN $1::bool THEN job END, cron, every::text, timezone,"                     \
    " run_once::int::text, created_us::text, last_tick_us::text, runs::text, last_job"

/* The leader's lock: a session lock, held until released or the connection ends (the
 * node's process with it). The same statement bounds how long the server takes to see
 * a vanished client (and so to free the lock): TCP keepalives of about the lease. */
const struct pg_stmt pg_sql_schedule_lead = {
    "pyjobd_schedule_lead",
    "SELECT pg_try_advisory_lock(hashtext('pyjobd schedules leader ' || $1)),"
    " set_config('tcp_keepalives_idle', $2, false),"
    " set_config('tcp_keepalives_interval', $3, false),"
    " set_config('tcp_keepalives_count', '3', false)"};

/* $1 with their jobs, $2 '{id,...}' or NULL (all), $3 owner or NULL (anyone's). */
const struct pg_stmt pg_sql_schedule_read = {
    "pyjobd_schedule_read", "SELECT " COLS " FROM schedules"
                            " WHERE ($2::text[] IS NULL OR id = ANY($2::text[]))"
                            " AND ($3::text IS NULL OR owner = $3::text) ORDER BY created_us, id"};

/* Creations one at a time (per schema), so that the limits hold: $1 the schema. */
const struct pg_stmt pg_sql_schedule_create_lock = {
    "pyjobd_schedule_create_lock",
    "SELECT pg_advisory_xact_lock(hashtext('pyjobd schedules created ' || $1))"};

/* $1..$8 the row, $9 most of one owner, $10 most in all → inserted, owner's, all. */
const struct pg_stmt pg_sql_schedule_create = {
    "pyjobd_schedule_create",
    "WITH c AS (SELECT count(*) FILTER (WHERE owner = $2) AS mine, count(*) AS total"
    " FROM schedules),"
    " i AS (INSERT INTO schedules (id, owner, job, cron, every, timezone, run_once, created_us)"
    " SELECT $1, $2, $3::bytea, $4, $5::float8, $6, $7::bool, $8::int8 FROM c"
    " WHERE c.mine < $9::int8 AND c.total < $10::int8 RETURNING id)"
    " SELECT (SELECT count(*) FROM i), c.mine, c.total FROM c"};

/* $1 id, $2 owner or NULL. */
const struct pg_stmt pg_sql_schedule_delete = {
    "pyjobd_schedule_delete",
    "DELETE FROM schedules WHERE id = $1 AND ($2::text IS NULL OR owner = $2::text) RETURNING id"};

/* A tick, all or nothing: the schedule's row locked if it exists and has not fired
 * this tick; then the job (unless one has its id: fired before) and its payload, the
 * schedule's progress, and a NOTIFY for the nodes that claim. $1 schedule, $2 tick,
 * $3..$12 the job as pg_sql_insert has it, $13..$17 its payload, $18 the channel,
 * $19..$24 its retry policy (on, not_on, initial, factor, max, pg_retry_flags).
 * → locked, inserted, runs, last_job, the schedule exists, notified. */
const struct pg_stmt pg_sql_schedule_tick = {
    "pyjobd_schedule_tick",
    "WITH sc AS (SELECT id FROM schedules WHERE id = $1 AND last_tick_us < $2::int8"
    " FOR UPDATE),"
    " j AS (INSERT INTO jobs (id, owner, status, node, created_us, timeout, max_retries,"
    " retry_on_timeout, result_json_fmt, metadata, priority, soft_timeout, schedule,"
    " retry_on, retry_not_on, retry_initial, retry_factor, retry_max, retry_flags)"
    " SELECT $3, $4, 0, NULL, $5::int8, $6::float8, $7::int, $8::bool, $9::bool, $10,"
    " $11::int2, $12::float8, sc.id, $19, $20, $21::float8, $22::float8, $23::float8, $24::int"
    " FROM sc ON CONFLICT (id) DO NOTHING RETURNING id),"
    " p AS (INSERT INTO payloads (id, callable, args, kwargs, json_args, json_kwargs)"
    " SELECT id, $13::bytea, $14::bytea, $15::bytea, $16::bytea, $17::bytea FROM j),"
    " u AS (UPDATE schedules s SET last_tick_us = $2::int8,"
    " runs = s.runs + (SELECT count(*) FROM j), last_job = coalesce((SELECT id FROM j),"
    " s.last_job) FROM sc WHERE s.id = sc.id RETURNING s.runs, s.last_job),"
    " n AS (SELECT pg_notify($18, '') FROM j)"
    " SELECT (SELECT count(*) FROM sc), (SELECT count(*) FROM j), (SELECT runs FROM u),"
    " (SELECT last_job FROM u), (SELECT count(*) FROM schedules WHERE id = $1),"
    " (SELECT count(*) FROM n)"};

const struct pg_stmt *const pg_schedule_statements[] = {
    &pg_sql_schedule_lead,
    &pg_sql_schedule_read,
    &pg_sql_schedule_create_lock,
    &pg_sql_schedule_create,
    &pg_sql_schedule_delete,
    &pg_sql_schedule_tick,
    NULL,
};

/* --- rows -------------------------------------------------------------------------------- */

static char *dup_col(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t len = (size_t)PQgetlength(r, row, col);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, PQgetvalue(r, row, col), len);
        s[len] = 0;
    }
    return s;
}

static long long int_col(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int pg_schedule_rows(const PGresult *r, struct store_schedule **out, size_t *n)
{
    int rows = r ? PQntuples(r) : 0;
    *n = 0;
    *out = calloc(rows ? (size_t)rows : 1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    if (rows && PQnfields(r) < 11)
        return 0;
    for (int i = 0; i < rows; i++) {
        struct store_schedule *sc = &(*out)[*n];
        const char *id = PQgetvalue(r, i, 0), *owner = PQgetvalue(r, i, 1);
        if (!job_id_is_valid(id) || strlen(owner) >= sizeof(sc->owner) || PQgetisnull(r, i, 5))
            continue;
        memcpy(sc->id, id, JOB_ID_LEN + 1);
        memcpy(sc->owner, owner, strlen(owner) + 1);
        if (!PQgetisnull(r, i, 2)) {
            sc->job_len = (size_t)PQgetlength(r, i, 2);
            uint8_t *job = malloc(sc->job_len ? sc->job_len : 1);
            if (job)
                memcpy(job, PQgetvalue(r, i, 2), sc->job_len);
            sc->job = job;
        }
        sc->cron = dup_col(r, i, 3);
        sc->every = PQgetisnull(r, i, 4) ? 0 : strtod(PQgetvalue(r, i, 4), NULL);
        sc->timezone = dup_col(r, i, 5);
        sc->run_once = int_col(r, i, 6) != 0;
        sc->created_us = int_col(r, i, 7);
        sc->last_tick_us = int_col(r, i, 8);
        sc->runs = (uint64_t)int_col(r, i, 9);
        if (!PQgetisnull(r, i, 10) && job_id_is_valid(PQgetvalue(r, i, 10)))
            memcpy(sc->last_job, PQgetvalue(r, i, 10), JOB_ID_LEN + 1);
        ++*n;
        if ((!PQgetisnull(r, i, 2) && !sc->job) || (!PQgetisnull(r, i, 3) && !sc->cron) ||
            !sc->timezone) {
            store_schedules_free(*out, *n);
            *out = NULL;
            *n = 0;
            return -ENOMEM;
        }
    }
    return 0;
}
