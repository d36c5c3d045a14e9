/*
 * pg_sql.c — pyjobd's PostgreSQL schema and statements, and the decoding of their
 * binary result rows (pg_sql.h).
 */
#include "pg_sql.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pg_setup_sql(PGconn *conn, const char *schema, const char *const channels[3])
{
    const char *chan_queued = channels[0], *chan_done = channels[1], *chan_cancel = channels[2];
    char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
    char *lit = PQescapeLiteral(conn, schema, strlen(schema));
    char *q = PQescapeIdentifier(conn, chan_queued, strlen(chan_queued));
    char *d = PQescapeIdentifier(conn, chan_done, strlen(chan_done));
    char *c = PQescapeIdentifier(conn, chan_cancel, strlen(chan_cancel));
    char *sql = NULL;
    if (ident && lit && q && d && c &&
        asprintf(&sql,
                 "SET client_min_messages = warning;"
                 /* The claim's generic plan would otherwise be JIT-compiled: 520 ms
                  * instead of 1.8 ms per claim (measured, 100,000 queued jobs). */
                 "SET jit = off;"
                 "BEGIN;"
                 /* Nodes starting together: one creates or migrates, the others wait. */
                 "SELECT pg_advisory_xact_lock(hashtext('pyjobd schema ' || %s));"
                 /* Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE
                  * privilege on the database even when the schema exists. */
                 "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
                 " THEN EXECUTE 'CREATE SCHEMA ' || quote_ident(%s); END IF; END $$;"
                 "SET search_path TO %s;"
                 "CREATE TABLE IF NOT EXISTS meta (version int NOT NULL);"
                 "DO $$ BEGIN IF (SELECT max(version) FROM meta) > %d THEN RAISE EXCEPTION "
                 "'the tables in schema %% were written by a newer pyjobd (schema version %%; this "
                 "one knows %d): upgrade this node, or use another --pg-schema', %s, "
                 "(SELECT max(version) FROM meta); END IF; END $$;"
                 "CREATE TABLE IF NOT EXISTS nodes ("
                 " id text PRIMARY KEY, lease_ms int NOT NULL,"
                 " started_at timestamptz NOT NULL DEFAULT now(),"
                 " heartbeat_at timestamptz NOT NULL DEFAULT now());"
                 "CREATE TABLE IF NOT EXISTS jobs ("
                 " id text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,"
                 " owner text NOT NULL, status smallint NOT NULL, node text,"
                 " has_waiter boolean NOT NULL DEFAULT false, created_us bigint NOT NULL,"
                 " started_us bigint NOT NULL DEFAULT 0, finished_us bigint NOT NULL DEFAULT 0,"
                 " timeout float8 NOT NULL, attempts int NOT NULL DEFAULT 0,"
                 " worker_pid int NOT NULL DEFAULT 0, max_retries int NOT NULL,"
                 " retry_on_timeout boolean NOT NULL, result_json_fmt boolean NOT NULL,"
                 " metadata text, err_type smallint NOT NULL DEFAULT 0, err_message text,"
                 " err_exc_type text, err_exit_code int NOT NULL DEFAULT -1,"
                 " err_signal int NOT NULL DEFAULT 0, err_max_rss bigint NOT NULL DEFAULT -1,"
                 " priority smallint NOT NULL DEFAULT 0, soft_timeout float8 NOT NULL DEFAULT 0);"
                 /* From version 1, in place: the columns (a constant default rewrites
                  * nothing) and the claim's index by priority instead of by age. Only
                  * then: ALTER TABLE locks the table even when the columns exist. */
                 "DO $$ BEGIN IF coalesce((SELECT max(version) FROM meta), 0) < 2 THEN"
                 " ALTER TABLE jobs ADD COLUMN IF NOT EXISTS priority smallint NOT NULL"
                 " DEFAULT 0, ADD COLUMN IF NOT EXISTS soft_timeout float8 NOT NULL DEFAULT 0;"
                 " DROP INDEX IF EXISTS jobs_claimable_owner; END IF; END $$;"
                 /* Queued unclaimed rows by age (their count, an index-only scan). */
                 "CREATE INDEX IF NOT EXISTS jobs_claimable ON jobs (seq)"
                 " WHERE status = 0 AND node IS NULL;"
                 /* The claim: the tenants with queued jobs (a loose scan of its first
                  * column), and each one's jobs in the order it takes them. */
                 "CREATE INDEX IF NOT EXISTS jobs_claimable_prio ON jobs (owner, priority DESC,"
                 " seq) WHERE status = 0 AND node IS NULL;"
                 "CREATE INDEX IF NOT EXISTS jobs_running_owner ON jobs (owner) WHERE status = 1;"
                 "CREATE INDEX IF NOT EXISTS jobs_by_node ON jobs (node) WHERE status IN (0, 1);"
                 "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_us) WHERE status >= 2;"
                 "CREATE TABLE IF NOT EXISTS payloads ("
                 " id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, callable bytea NOT NULL,"
                 " args bytea, kwargs bytea, json_args bytea, json_kwargs bytea);"
                 "CREATE TABLE IF NOT EXISTS results ("
                 " id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, result bytea,"
                 " result_json bytea, err_exception bytea, err_traceback text);"
                 "UPDATE meta SET version = %d WHERE version < %d;"
                 "INSERT INTO meta (version) SELECT %d WHERE NOT EXISTS (SELECT 1 FROM meta);"
                 "COMMIT;"
                 "SET search_path TO %s;"
                 "LISTEN %s; LISTEN %s; LISTEN %s;",
                 lit, lit, lit, ident, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, lit, PG_SCHEMA_VERSION,
                 PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, ident, q, d, c) < 0)
        sql = NULL;
    /* Every statement prepared once per connection, after search_path is set. */
    for (int i = 0; sql && pg_statements[i]; i++) {
        char *more = NULL;
        if (asprintf(&more, "%sPREPARE %s AS %s;", sql, pg_statements[i]->name,
                     pg_statements[i]->sql) < 0)
            more = NULL;
        free(sql);
        sql = more;
    }
    PQfreemem(ident);
    PQfreemem(lit);
    PQfreemem(q);
    PQfreemem(d);
    PQfreemem(c);
    return sql;
}

#define VIEW PG_VIEW_COLS

const struct pg_stmt pg_sql_insert = {
    "pyjobd_insert",
    "WITH j AS (INSERT INTO jobs (id, owner, status, node, created_us, timeout, max_retries,"
    " retry_on_timeout, result_json_fmt, metadata, priority, soft_timeout)"
    " VALUES ($1, $2, 0, $3, $4::int8, $5::float8, $6::int, $7::bool, $8::bool, $9, $15::int2,"
    " $16::float8)"
    " ON CONFLICT (id) DO NOTHING RETURNING id)"
    " INSERT INTO payloads (id, callable, args, kwargs, json_args, json_kwargs)"
    " SELECT id, $10::bytea, $11::bytea, $12::bytea, $13::bytea, $14::bytea FROM j"};

const struct pg_stmt pg_sql_update = {
    "pyjobd_update",
    "UPDATE jobs SET status = $2::int2, attempts = $3::int, started_us = $4::int8,"
    " worker_pid = $5::int WHERE id = $1 AND node = $6 AND status IN (0, 1) RETURNING id"};

const struct pg_stmt pg_sql_finish = {
    "pyjobd_finish",
    "WITH u AS (UPDATE jobs SET status = $2::int2, attempts = $3::int, started_us = $4::int8,"
    " finished_us = $5::int8, worker_pid = $6::int, err_type = $7::int2, err_message = $8,"
    " err_exc_type = $9, err_exit_code = $10::int, err_signal = $11::int,"
    " err_max_rss = $12::int8"
    " WHERE id = $1 AND node = $13 AND attempts = $3::int AND status IN (0, 1) RETURNING id),"
    " ins AS (INSERT INTO results (id, result, result_json, err_exception, err_traceback)"
    " SELECT id, $14::bytea, $15::bytea, $16::bytea, $17 FROM u ON CONFLICT (id) DO NOTHING)"
    " SELECT id FROM u"};

const struct pg_stmt pg_sql_delete = {"pyjobd_delete", "DELETE FROM jobs WHERE id = $1"};

/* Tenants take turns across nodes: the tenants with queued jobs are found by a loose
 * index scan (one probe per tenant, whatever the queue's length); each offers its
 * first $1 jobs, highest priority first, then oldest (jobs_claimable_prio, read in
 * its order: no sort of the queue); they are taken fewest-running-tenant first (the
 * jobs a tenant already runs on any node, plus its rank among its own), then oldest
 * first: a priority orders one tenant's jobs, never one tenant before another. They
 * come back in each tenant's order. The picked ids go to the UPDATE as an array: a
 * join with the CTE is planned, in the generic plan of the prepared statement (LIMIT
 * $1 unknown), as a hash join over a scan of the whole table. */
const struct pg_stmt pg_sql_claim = {
    "pyjobd_claim",
    "WITH RECURSIVE owners AS ("
    " (SELECT owner FROM jobs WHERE status = 0 AND node IS NULL ORDER BY owner LIMIT 1)"
    " UNION ALL SELECT (SELECT j.owner FROM jobs j WHERE j.status = 0 AND j.node IS NULL"
    " AND j.owner > o.owner ORDER BY j.owner LIMIT 1) FROM owners o WHERE o.owner IS NOT NULL),"
    " offered AS MATERIALIZED (SELECT q.id, q.seq, q.priority, o.owner,"
    " (SELECT count(*) FROM jobs r WHERE r.owner = o.owner AND r.status = 1) AS running"
    " FROM owners o CROSS JOIN LATERAL (SELECT id, seq, priority FROM jobs WHERE status = 0"
    " AND node IS NULL AND owner = o.owner ORDER BY priority DESC, seq LIMIT $1::int"
    " FOR UPDATE SKIP LOCKED) q WHERE o.owner IS NOT NULL),"
    " picked AS MATERIALIZED (SELECT id FROM offered ORDER BY running + row_number() OVER"
    " (PARTITION BY owner ORDER BY priority DESC, seq), seq LIMIT $1::int),"
    " c AS (UPDATE jobs SET node = $2 WHERE id = ANY (ARRAY(SELECT id FROM picked))"
    " RETURNING jobs.*)"
    " SELECT " VIEW ", " PG_PAYLOAD_COLS " FROM c j JOIN payloads p ON p.id = j.id"
    " ORDER BY j.priority DESC, j.seq"};

const struct pg_stmt pg_sql_adopt = {"pyjobd_adopt",
                                     "SELECT " VIEW ", " PG_PAYLOAD_COLS
                                     " FROM jobs j JOIN payloads p ON p.id = j.id"
                                     " WHERE j.node = $1 AND j.status = 0 ORDER BY j.seq"};

const struct pg_stmt pg_sql_fetch = {
    "pyjobd_fetch", "SELECT " VIEW ", " PG_RESULT_COLS
                    " FROM jobs j LEFT JOIN results r ON r.id = j.id WHERE j.id = $1"};

const struct pg_stmt pg_sql_fetch_many = {"pyjobd_fetch_many",
                                          "SELECT " VIEW ", " PG_RESULT_COLS
                                          " FROM jobs j LEFT JOIN results r ON r.id = j.id"
                                          " WHERE j.id = ANY($1::text[])"};

const struct pg_stmt pg_sql_fetch_done = {"pyjobd_fetch_done",
                                          "SELECT " VIEW ", " PG_RESULT_COLS
                                          " FROM jobs j LEFT JOIN results r ON r.id = j.id"
                                          " WHERE j.id = ANY($1::text[]) AND j.status >= 2"};

const struct pg_stmt pg_sql_list = {
    "pyjobd_list",
    "SELECT " VIEW " FROM jobs j WHERE ($1::int < 0 OR j.status = $1::int)"
    " AND ($2::text IS NULL OR j.owner = $2::text) AND ($3::int8 = 0 OR j.seq < $3::int8)"
    " ORDER BY j.seq DESC LIMIT $4::int"};

const struct pg_stmt pg_sql_cancel = {
    "pyjobd_cancel",
    "UPDATE jobs SET status = 4, finished_us = $2::int8, err_type = 6, err_message = $3"
    " WHERE id = $1 AND status = 0 AND node IS NULL RETURNING id"};

const struct pg_stmt pg_sql_forget = {
    "pyjobd_forget", "DELETE FROM jobs WHERE id = $1 AND status >= 2 RETURNING id"};

const struct pg_stmt pg_sql_status = {"pyjobd_status",
                                      "SELECT status, node FROM jobs WHERE id = $1"};

const struct pg_stmt pg_sql_watch = {
    "pyjobd_watch", "UPDATE jobs SET has_waiter = true WHERE id = ANY($1::text[]) AND status < 2"
                    " AND NOT has_waiter"};

const struct pg_stmt pg_sql_register = {
    "pyjobd_register", "INSERT INTO nodes (id, lease_ms) VALUES ($1, $2::int) ON CONFLICT (id)"
                       " DO UPDATE SET heartbeat_at = now(), lease_ms = EXCLUDED.lease_ms"};

const struct pg_stmt pg_sql_heartbeat = {
    "pyjobd_heartbeat", "UPDATE nodes SET heartbeat_at = now() WHERE id = $1 RETURNING id"};

/* A node whose heartbeat is older than its lease is dead: its claimed jobs go back to
 * the queue; its running ones too while they have retries left, else they fail. */
#define LOST "j.status = 1 AND j.attempts > j.max_retries"
const struct pg_stmt pg_sql_reap = {
    "pyjobd_reap",
    "WITH dead AS (DELETE FROM nodes WHERE heartbeat_at < now() - lease_ms * interval '1 ms'"
    " AND id <> $4 RETURNING id),"
    " lost AS (UPDATE jobs j SET node = NULL, worker_pid = 0,"
    " status = CASE WHEN " LOST " THEN 3 ELSE 0 END,"
    " finished_us = CASE WHEN " LOST " THEN $1::int8 ELSE 0 END,"
    " started_us = CASE WHEN " LOST " THEN j.started_us ELSE 0 END,"
    " err_type = CASE WHEN " LOST " THEN 9 ELSE j.err_type END,"
    " err_message = CASE WHEN " LOST " THEN format('The node %s running this job (attempt %s)"
    " stopped renewing its lease and was presumed dead; the job has no retries left"
    " (max_retries %s). Submit it again, or submit with max_retries >= 1 to have it re-run"
    " on another node.', j.node, j.attempts, j.max_retries) ELSE j.err_message END"
    " FROM dead WHERE j.node = dead.id AND j.status IN (0, 1)"
    " RETURNING j.id, j.status),"
    /* Wake the other nodes for the re-queued jobs, and the waiters of the failed ones
     * (unreferenced CTEs would not run: the SELECT below counts them). */
    " nq AS (SELECT pg_notify($2, '') FROM lost WHERE status = 0 HAVING count(*) > 0),"
    " nd AS (SELECT pg_notify($3, '') FROM lost WHERE status = 3 HAVING count(*) > 0)"
    " SELECT (SELECT string_agg(id, ' ') FROM dead), count(*) FILTER (WHERE status = 0),"
    " count(*) FILTER (WHERE status = 3), (SELECT count(*) FROM nq) + (SELECT count(*) FROM nd)"
    " FROM lost"};

const struct pg_stmt pg_sql_release = {
    "pyjobd_release",
    "WITH r AS (UPDATE jobs SET node = NULL WHERE node = $1 AND status = 0 RETURNING id),"
    " d AS (DELETE FROM nodes WHERE id = $1) SELECT count(*) FROM r"};

const struct pg_stmt pg_sql_retention = {
    "pyjobd_retention",
    "WITH d AS (DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status >= 2"
    " AND finished_us < $1::int8 ORDER BY finished_us LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d"};

const struct pg_stmt pg_sql_notify = {"pyjobd_notify", "SELECT pg_notify($1, $2)"};

/* An index-only scan of jobs_claimable. */
const struct pg_stmt pg_sql_count_queued = {
    "pyjobd_count_queued", "SELECT count(*) FROM jobs WHERE status = 0 AND node IS NULL"};

const struct pg_stmt pg_sql_notify_waited = {
    "pyjobd_notify_waited",
    "SELECT pg_notify($1, string_agg(id, ',')) FROM jobs WHERE id = ANY($2::text[])"
    " AND has_waiter HAVING count(*) > 0"};

/* --- binary rows ---------------------------------------------------------------------- */

static int64_t get_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0; /* network order, two's complement */
    if (len == 1)
        return p[0];
    for (int i = 0; i < len && i < 8; i++)
        v = (v << 8) | p[i];
    if (len == 2)
        return (int16_t)(uint16_t)v;
    if (len == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

static double get_f64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t bits;
    memcpy(&bits, PQgetvalue(r, row, col), 8);
    bits = be64toh(bits);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

static int get_str(const PGresult *r, int row, int col, char **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return 0;
    *out = strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
    return *out ? 0 : -ENOMEM;
}

static void get_fixed(const PGresult *r, int row, int col, char *out, size_t size)
{
    size_t len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    if (len >= size)
        len = size - 1;
    memcpy(out, PQgetvalue(r, row, col), len);
    out[len] = 0;
}

static int get_blob(const PGresult *r, int row, int col, struct blob **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return 0;
    *out = blob_new_copy(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
    return *out ? 0 : -ENOMEM;
}

static struct timespec us_ts(int64_t us)
{
    return (struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
}

int pg_row_view(const PGresult *r, int row, int with_results, struct job_view *v, uint64_t *seq)
{
    memset(v, 0, sizeof(*v));
    if (PQnfields(r) < PG_VIEW_NCOLS + (with_results ? 4 : 0) ||
        PQgetlength(r, row, 0) != JOB_ID_LEN)
        return -EPROTO;
    get_fixed(r, row, 0, v->id, sizeof(v->id));
    int64_t st = get_int(r, row, 1);
    v->status = st >= JOB_QUEUED && st <= JOB_CANCELLED ? (enum job_status)st : JOB_FAILED;
    get_fixed(r, row, 2, v->owner, sizeof(v->owner));
    get_fixed(r, row, 3, v->node, sizeof(v->node));
    v->created_at = us_ts(get_int(r, row, 4));
    v->started_at = us_ts(get_int(r, row, 5));
    v->finished_at = us_ts(get_int(r, row, 6));
    v->timeout = get_f64(r, row, 7);
    v->attempts = (unsigned)get_int(r, row, 8);
    v->worker_pid = (pid_t)get_int(r, row, 9);
    v->max_retries = (unsigned)get_int(r, row, 10);
    int64_t et = get_int(r, row, 12);
    v->error.type =
        et >= JOB_ERR_NONE && et <= JOB_ERR_MAX ? (enum job_error_type)et : JOB_ERR_EXCEPTION;
    v->error.exit_code = (int)get_int(r, row, 15);
    v->error.signal = (int)get_int(r, row, 16);
    v->error.max_rss_bytes = get_int(r, row, 17);
    if (seq)
        *seq = (uint64_t)get_int(r, row, 18);
    v->priority = (int)get_int(r, row, 19);
    v->soft_timeout = get_f64(r, row, 20);
    int rc = get_str(r, row, 11, &v->metadata);
    rc = rc ? rc : get_str(r, row, 13, &v->error.message);
    rc = rc ? rc : get_str(r, row, 14, &v->error.exc_type);
    if (with_results) {
        int c = PG_VIEW_NCOLS;
        rc = rc ? rc : get_blob(r, row, c, &v->result);
        rc = rc ? rc : get_blob(r, row, c + 1, &v->result_json);
        rc = rc ? rc : get_blob(r, row, c + 2, &v->error.exception);
        rc = rc ? rc : get_str(r, row, c + 3, &v->error.traceback);
    }
    if (rc)
        job_view_release(v);
    return rc;
}

int pg_row_spec(const PGresult *r, int row, int col, struct job_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    if (PQnfields(r) < col + PG_PAYLOAD_NCOLS || PQgetisnull(r, row, col))
        return -EPROTO;
    int rc = get_blob(r, row, col, &spec->callable);
    rc = rc ? rc : get_blob(r, row, col + 1, &spec->args);
    rc = rc ? rc : get_blob(r, row, col + 2, &spec->kwargs);
    rc = rc ? rc : get_blob(r, row, col + 3, &spec->json_args);
    rc = rc ? rc : get_blob(r, row, col + 4, &spec->json_kwargs);
    spec->retry_on_timeout = get_int(r, row, col + 5) != 0;
    spec->result_json = get_int(r, row, col + 6) != 0;
    spec->priority = (int)get_int(r, row, col + 7);
    spec->soft_timeout = get_f64(r, row, col + 8);
    if (rc)
        job_spec_release(spec);
    return rc;
}

/* --- parameters ----------------------------------------------------------------------- */

void pg_params_reset(struct pg_params *p)
{
    p->n = 0;
}

static int slot(struct pg_params *p)
{
    int i = p->n < PG_MAX_PARAMS ? p->n++ : PG_MAX_PARAMS - 1;
    p->formats[i] = 0;
    p->lengths[i] = 0;
    return i;
}

void pg_param_text(struct pg_params *p, const char *s)
{
    p->values[slot(p)] = s;
}

void pg_param_i64(struct pg_params *p, int64_t v)
{
    int i = slot(p);
    snprintf(p->buf[i], sizeof(p->buf[i]), "%lld", (long long)v);
    p->values[i] = p->buf[i];
}

void pg_param_f64(struct pg_params *p, double v)
{
    int i = slot(p);
    snprintf(p->buf[i], sizeof(p->buf[i]), "%.17g", v);
    p->values[i] = p->buf[i];
}

void pg_param_blob(struct pg_params *p, const struct blob *b)
{
    int i = slot(p);
    p->values[i] = b ? (const char *)blob_data(b) : NULL;
    p->lengths[i] = b ? (int)blob_len(b) : 0;
    p->formats[i] = 1;
}

const struct pg_stmt *const pg_statements[] = {
    &pg_sql_insert,
    &pg_sql_update,
    &pg_sql_finish,
    &pg_sql_delete,
    &pg_sql_claim,
    &pg_sql_adopt,
    &pg_sql_fetch,
    &pg_sql_fetch_many,
    &pg_sql_fetch_done,
    &pg_sql_list,
    &pg_sql_cancel,
    &pg_sql_forget,
    &pg_sql_status,
    &pg_sql_watch,
    &pg_sql_register,
    &pg_sql_heartbeat,
    &pg_sql_reap,
    &pg_sql_release,
    &pg_sql_retention,
    &pg_sql_notify,
    &pg_sql_count_queued,
    &pg_sql_notify_waited,
    NULL,
};
