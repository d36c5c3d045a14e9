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

const struct pg_stmt *const *const pg_statement_sets[] = {
    pg_statements,
    pg_key_statements,
    pg_schedule_statements,
    NULL,
};
