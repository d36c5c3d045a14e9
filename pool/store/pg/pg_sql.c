/*
 * pg_sql.c — the PostgreSQL store's statements about jobs (pg_sql.h); the schema is in
 * pg_schema.c, the decoding of result rows in pg_rows.c.
 */
#include "pg_sql.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIEW PG_VIEW_COLS

const struct pg_stmt pg_sql_insert = {
    "pyjobd_insert",
    "WITH j AS (INSERT INTO jobs (id, owner, status, node, created_us, timeout, max_retries,"
    " retry_on_timeout, result_json_fmt, metadata, priority, soft_timeout, run_at_us,"
    " expires_at_us, due_us, retry_on, retry_not_on, retry_initial, retry_factor, retry_max,"
    " retry_flags, rerun_of, schedule)"
    " VALUES ($1, $2, $17::int2, $3, $4::int8, $5::float8, $6::int, $7::bool, $8::bool, $9,"
    " $15::int2, $16::float8, $18::int8, $19::int8, $20::int8, $21, $22, $23::float8,"
    " $24::float8, $25::float8, $26::int, $27, $28)"
    " ON CONFLICT (id) DO NOTHING RETURNING id)"
    " INSERT INTO payloads (id, callable, args, kwargs, json_args, json_kwargs)"
    " SELECT id, $10::bytea, $11::bytea, $12::bytea, $13::bytea, $14::bytea FROM j"};

const struct pg_stmt pg_sql_update = {
    "pyjobd_update",
    "UPDATE jobs SET status = $2::int2, attempts = $3::int, started_us = $4::int8,"
    " worker_pid = $5::int, next_attempt_us = $7::int8, due_us = $8::int8, history = $9"
    " WHERE id = $1 AND node = $6 AND status IN (0, 1, 5) RETURNING id"};

const struct pg_stmt pg_sql_finish = {
    "pyjobd_finish",
    "WITH u AS (UPDATE jobs SET status = $2::int2, attempts = $3::int, started_us = $4::int8,"
    " finished_us = $5::int8, worker_pid = $6::int, err_type = $7::int2, err_message = $8,"
    " err_exc_type = $9, err_exit_code = $10::int, err_signal = $11::int,"
    " err_max_rss = $12::int8, next_attempt_us = 0, history = $18"
    " WHERE id = $1 AND node = $13 AND attempts = $3::int AND status IN (0, 1, 5) RETURNING id),"
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
                                     " WHERE j.node = $1 AND j.status IN (0, 5) ORDER BY j.seq"};

const struct pg_stmt pg_sql_fetch = {
    "pyjobd_fetch", "SELECT " VIEW ", " PG_RESULT_COLS
                    " FROM jobs j LEFT JOIN results r ON r.id = j.id WHERE j.id = $1"};

const struct pg_stmt pg_sql_fetch_many = {"pyjobd_fetch_many",
                                          "SELECT " VIEW ", " PG_RESULT_COLS
                                          " FROM jobs j LEFT JOIN results r ON r.id = j.id"
                                          " WHERE j.id = ANY($1::text[])"};

const struct pg_stmt pg_sql_fetch_done = {
    "pyjobd_fetch_done",
    "SELECT " VIEW ", " PG_RESULT_COLS " FROM jobs j LEFT JOIN results r ON r.id = j.id"
    " WHERE j.id = ANY($1::text[]) AND j.status IN (2, 3, 4)"};

const struct pg_stmt pg_sql_list = {
    "pyjobd_list",
    "SELECT " VIEW " FROM jobs j WHERE ($1::int < 0 OR j.status = $1::int)"
    " AND ($2::text IS NULL OR j.owner = $2::text) AND ($3::int8 = 0 OR j.seq < $3::int8)"
    " ORDER BY j.seq DESC LIMIT $4::int"};

const struct pg_stmt pg_sql_cancel = {
    "pyjobd_cancel",
    "UPDATE jobs SET status = 4, finished_us = $2::int8, err_type = 6, err_message = $3"
    " WHERE id = $1 AND status IN (0, 5) AND node IS NULL RETURNING id"};

const struct pg_stmt pg_sql_forget = {
    "pyjobd_forget", "DELETE FROM jobs WHERE id = $1 AND status IN (2, 3, 4) RETURNING id"};

const struct pg_stmt pg_sql_status = {"pyjobd_status",
                                      "SELECT status, node FROM jobs WHERE id = $1"};

const struct pg_stmt pg_sql_watch = {
    "pyjobd_watch",
    "UPDATE jobs SET has_waiter = true WHERE id = ANY($1::text[]) AND status IN (0, 1, 5)"
    " AND NOT has_waiter"};

const struct pg_stmt pg_sql_register = {
    "pyjobd_register", "INSERT INTO nodes (id, lease_ms) VALUES ($1, $2::int) ON CONFLICT (id)"
                       " DO UPDATE SET heartbeat_at = now(), lease_ms = EXCLUDED.lease_ms"};

const struct pg_stmt pg_sql_heartbeat = {
    "pyjobd_heartbeat", "UPDATE nodes SET heartbeat_at = now() WHERE id = $1 RETURNING id"};

/* A node whose heartbeat is older than its lease is dead: its claimed jobs go back to
 * the queue (scheduled ones, a retry waiting for its backoff, stay scheduled); its
 * running ones too while they have retries left and their policy retries a lost node
 * (after their backoff, if any: the delay of attempt k, min(max, initial × factor^(k−1)),
 * jittered when asked, as pool__retry_delay_us), else they fail. */
#define LOST "j.status = 1 AND (j.attempts > j.max_retries OR j.retry_flags & 4 <> 0)"
#define BACKOFF_US                                                                                 \
    "(LEAST(j.retry_max, j.retry_initial * power(j.retry_factor, GREATEST(j.attempts - 1, 0)))"    \
    " * CASE WHEN j.retry_flags & 1 <> 0 THEN random() ELSE 1 END * 1e6)::int8"
#define BACKS_OFF "j.status = 1 AND j.retry_initial > 0"
const struct pg_stmt pg_sql_reap = {
    "pyjobd_reap",
    "WITH dead AS (DELETE FROM nodes WHERE heartbeat_at < now() - lease_ms * interval '1 ms'"
    " AND id <> $4 RETURNING id),"
    " lost AS (UPDATE jobs j SET node = NULL, worker_pid = 0,"
    " status = CASE WHEN " LOST " THEN 3 WHEN j.status = 5 OR " BACKS_OFF " THEN 5 ELSE 0 END,"
    /* A running attempt ends here: it joins the history (store_history.c's lines). */
    " history = CASE WHEN j.status = 1 THEN coalesce(j.history, '') || format("
    "E'%s %s %s 9 @%s The node running this attempt stopped renewing its lease and was"
    " presumed dead.\\n', j.started_us, $1::int8, j.worker_pid, translate(j.node, E' \\t', '__'))"
    " ELSE j.history END,"
    " due_us = CASE WHEN " LOST " THEN j.due_us WHEN " BACKS_OFF " THEN $1::int8 + " BACKOFF_US
    " ELSE j.due_us END,"
    " next_attempt_us = CASE WHEN " LOST " THEN 0 WHEN " BACKS_OFF " THEN $1::int8 + " BACKOFF_US
    " ELSE j.next_attempt_us END,"
    " finished_us = CASE WHEN " LOST " THEN $1::int8 ELSE 0 END,"
    " started_us = CASE WHEN " LOST " THEN j.started_us ELSE 0 END,"
    " err_type = CASE WHEN " LOST " THEN 9 ELSE j.err_type END,"
    " err_message = CASE WHEN " LOST " THEN format('The node %s running this job (attempt %s)"
    " stopped renewing its lease and was presumed dead; the job is not retried (max_retries"
    " %s%s). Submit it again, or submit with max_retries >= 1 to have it re-run on another"
    " node.', j.node, j.attempts, j.max_retries, CASE WHEN j.retry_flags & 4 <> 0 THEN"
    " ', retry.on_node_lost false' ELSE '' END) ELSE j.err_message END"
    " FROM dead WHERE j.node = dead.id AND j.status IN (0, 1, 5)"
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
    "WITH r AS (UPDATE jobs SET node = NULL WHERE node = $1 AND status IN (0, 5) RETURNING id),"
    " d AS (DELETE FROM nodes WHERE id = $1) SELECT count(*) FROM r"};

const struct pg_stmt pg_sql_retention = {
    "pyjobd_retention",
    "WITH d AS (DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status IN (2, 3, 4)"
    " AND finished_us < $1::int8 ORDER BY finished_us LIMIT 1000) RETURNING 1)"
    " SELECT count(*) FROM d"};

const struct pg_stmt pg_sql_notify = {"pyjobd_notify", "SELECT pg_notify($1, $2)"};

/* Index-only scans of jobs_claimable and jobs_due: --max-queue bounds the scheduled
 * jobs with the queued ones. */
const struct pg_stmt pg_sql_count_queued = {
    "pyjobd_count_queued", "SELECT (SELECT count(*) FROM jobs WHERE status = 0 AND node IS NULL)"
                           " + (SELECT count(*) FROM jobs WHERE status = 5 AND node IS NULL)"};

/* Timers in the database ($1 now, µs; $2 the queued channel, $3 the done one): jobs
 * that had not started by their expires_at fail "expired" (status 3, error type 12;
 * their waiters are notified, at most NOTIFY_IDS a round), then scheduled jobs nobody
 * holds whose time has come are queued (and the nodes told). Each a bounded batch in
 * the order of its index, rows another node is at skipped; the rest next round. */
#define EXPIRED "expires_at_us > 0 AND expires_at_us <= $1::int8 AND attempts = 0"
const struct pg_stmt pg_sql_promote = {
    "pyjobd_promote",
    "WITH exp AS (UPDATE jobs SET status = 3, finished_us = $1::int8, err_type = 12,"
    " err_message = format('The job had not started by its expires_at (%s): it was not run."
    " Give it more time (expires_in, expires_at) or more workers to the queue it waits in.',"
    " to_char(to_timestamp(expires_at_us / 1e6) AT TIME ZONE 'UTC',"
    " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
    " WHERE id IN (SELECT id FROM jobs WHERE " EXPIRED " AND status IN (0, 5) AND node IS NULL"
    " ORDER BY expires_at_us LIMIT 200 FOR UPDATE SKIP LOCKED) RETURNING id, has_waiter),"
    " due AS (UPDATE jobs SET status = 0, next_attempt_us = 0 WHERE id IN (SELECT id FROM jobs"
    " WHERE status = 5 AND node IS NULL AND due_us <= $1::int8 AND NOT (" EXPIRED ")"
    " ORDER BY due_us LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING id),"
    " nq AS (SELECT pg_notify($2, '') FROM due HAVING count(*) > 0),"
    " nd AS (SELECT pg_notify($3, string_agg(id, ',')) FROM exp WHERE has_waiter"
    " HAVING count(*) > 0)"
    " SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM exp),"
    " (SELECT count(*) FROM nq) + (SELECT count(*) FROM nd)"};

/* Fresh statistics of jobs, after many inserts: the prepared statements' generic plans
 * were made for the table as it was (empty, at the first claims), and a plan made for
 * an empty table scans all of it (measured: each claim 40-55 ms with 100,000 scheduled
 * jobs inserted a few seconds before, 0.6 ms once analyzed). ANALYZE invalidates them:
 * each is planned again, for the table as it is now. */
const struct pg_stmt pg_sql_analyze = {NULL, "ANALYZE jobs"};

/* The request of a job, for a rerun ($1 id). */
const struct pg_stmt pg_sql_request = {
    "pyjobd_request", "SELECT " PG_PAYLOAD_COLS " FROM jobs j JOIN payloads p ON p.id = j.id"
                      " WHERE j.id = $1"};

/* Finished jobs and their requests, for a bulk rerun, oldest finished first ($1
 * status, $2 owner or NULL, $3 error type or 0, $4 finished at or after (µs), $5 limit). */
const struct pg_stmt pg_sql_reruns = {
    "pyjobd_reruns",
    "SELECT " VIEW ", " PG_PAYLOAD_COLS " FROM jobs j JOIN payloads p ON p.id = j.id"
    " WHERE j.status = $1::int2 AND j.status IN (2, 3, 4) AND ($2::text IS NULL OR j.owner = $2)"
    " AND ($3::int = 0 OR j.err_type = $3::int) AND j.finished_us >= $4::int8"
    " ORDER BY j.finished_us, j.seq LIMIT $5::int"};

const struct pg_stmt pg_sql_notify_waited = {
    "pyjobd_notify_waited",
    "SELECT pg_notify($1, string_agg(id, ',')) FROM jobs WHERE id = ANY($2::text[])"
    " AND has_waiter HAVING count(*) > 0"};

const struct pg_stmt *const pg_statements[] = {
    &pg_sql_insert,        &pg_sql_update,
    &pg_sql_finish,        &pg_sql_delete,
    &pg_sql_claim,         &pg_sql_adopt,
    &pg_sql_fetch,         &pg_sql_fetch_many,
    &pg_sql_fetch_done,    &pg_sql_list,
    &pg_sql_cancel,        &pg_sql_forget,
    &pg_sql_status,        &pg_sql_watch,
    &pg_sql_register,      &pg_sql_heartbeat,
    &pg_sql_reap,          &pg_sql_release,
    &pg_sql_retention,     &pg_sql_notify,
    &pg_sql_count_queued,  &pg_sql_promote,
    &pg_sql_request,       &pg_sql_reruns,
    &pg_sql_notify_waited, NULL,
};

const struct pg_stmt *const *const pg_statement_sets[] = {
    pg_statements,
    pg_key_statements,
    pg_schedule_statements,
    NULL,
};
