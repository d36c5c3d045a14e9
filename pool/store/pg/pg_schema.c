/*
 * pg_schema.c — the script every new connection of the PostgreSQL store runs first
 * (pg_sql.h): the schema's tables, created or migrated under a lock, the version
 * check, LISTEN, and every statement prepared.
 *
 * Versions: 1 the first; 2 jobs.priority and jobs.soft_timeout, the claim's index by
 * priority; 3 (issue 17) delayed, expiring and retried jobs (status 5 "scheduled"
 * until due_us), the retry policy, the history of attempts, rerun_of and schedule,
 * the Idempotency-Keys' table and the recurring schedules' table.
 */
#include "pg_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tables and indexes, inside the migration's transaction (search_path set). Every
 * statement is idempotent: nodes of older and newer versions run it. */
static const char ddl[] =
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
    /* From version 1, in place: the columns (a constant default rewrites nothing) and
     * the claim's index by priority instead of by age. Only then: ALTER TABLE locks the
     * table even when the columns exist. */
    "DO $$ BEGIN IF coalesce((SELECT max(version) FROM meta), 0) < 2 THEN"
    " ALTER TABLE jobs ADD COLUMN IF NOT EXISTS priority smallint NOT NULL"
    " DEFAULT 0, ADD COLUMN IF NOT EXISTS soft_timeout float8 NOT NULL DEFAULT 0;"
    " DROP INDEX IF EXISTS jobs_claimable_owner; END IF; END $$;"
    /* Version 3. run_at_us, expires_at_us, next_attempt_us as the job resource shows
     * them; due_us: when a scheduled job (status 5) becomes queued (the later of run_at
     * and the next attempt), what the due index orders. The retry policy as submitted
     * (retry_flags: 1 jitter, 2 no_crash, 4 no_node_lost, 8 given); history in the
     * codec of pool/store/store_history.c. */
    "DO $$ BEGIN IF coalesce((SELECT max(version) FROM meta), 0) < 3 THEN"
    " ALTER TABLE jobs ADD COLUMN IF NOT EXISTS run_at_us bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS expires_at_us bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS next_attempt_us bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS due_us bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS retry_on text, ADD COLUMN IF NOT EXISTS retry_not_on text,"
    " ADD COLUMN IF NOT EXISTS retry_initial float8 NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS retry_factor float8 NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS retry_max float8 NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS retry_flags int NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS history text, ADD COLUMN IF NOT EXISTS rerun_of text,"
    " ADD COLUMN IF NOT EXISTS schedule text;"
    " DROP INDEX IF EXISTS jobs_by_node; DROP INDEX IF EXISTS jobs_finished; END IF; END $$;"
    /* Queued unclaimed rows by age (their count, an index-only scan). */
    "CREATE INDEX IF NOT EXISTS jobs_claimable ON jobs (seq)"
    " WHERE status = 0 AND node IS NULL;"
    /* The claim: the tenants with queued jobs (a loose scan of its first column), and
     * each one's jobs in the order it takes them. */
    "CREATE INDEX IF NOT EXISTS jobs_claimable_prio ON jobs (owner, priority DESC,"
    " seq) WHERE status = 0 AND node IS NULL;"
    /* Scheduled jobs nobody holds, by when they are due (pg_sql_promote). */
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due_us) WHERE status = 5 AND node IS NULL;"
    /* Jobs that may expire before they start (pg_sql_promote). */
    "CREATE INDEX IF NOT EXISTS jobs_expiring ON jobs (expires_at_us)"
    " WHERE expires_at_us > 0 AND status IN (0, 5) AND node IS NULL;"
    "CREATE INDEX IF NOT EXISTS jobs_running_owner ON jobs (owner) WHERE status = 1;"
    "CREATE INDEX IF NOT EXISTS jobs_by_node_v3 ON jobs (node) WHERE status IN (0, 1, 5);"
    /* Finished jobs (2, 3, 4; not 5, scheduled) by age, for retention. */
    "CREATE INDEX IF NOT EXISTS jobs_finished_v3 ON jobs (finished_us) WHERE status IN (2, 3, 4);"
    "CREATE TABLE IF NOT EXISTS payloads ("
    " id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, callable bytea NOT NULL,"
    " args bytea, kwargs bytea, json_args bytea, json_kwargs bytea);"
    "CREATE TABLE IF NOT EXISTS results ("
    " id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, result bytea,"
    " result_json bytea, err_exception bytea, err_traceback text);"
    /* Idempotency-Keys (issue 17 item 1): one row per tenant and key, naming its job;
     * digest is the SHA-256 of the request as parsed. Not a foreign key: the key
     * outlives a job forgotten before its TTL (a replay then answers 410). */
    "CREATE TABLE IF NOT EXISTS idempotency_keys ("
    " owner text NOT NULL, key text NOT NULL, digest bytea NOT NULL, job_id text NOT NULL,"
    " expires_us bigint NOT NULL, PRIMARY KEY (owner, key));"
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_us);"
    /* Recurring schedules (issue 17 item 4): as store.h's struct store_schedule; job is
     * the request in lib/spec_codec.c's bytes. */
    "CREATE TABLE IF NOT EXISTS schedules ("
    " id text PRIMARY KEY, owner text NOT NULL, job bytea NOT NULL, cron text,"
    " every float8 NOT NULL DEFAULT 0, timezone text NOT NULL, run_once boolean NOT NULL,"
    " created_us bigint NOT NULL, last_tick_us bigint NOT NULL DEFAULT 0,"
    " runs bigint NOT NULL DEFAULT 0, last_job text);"
    "CREATE INDEX IF NOT EXISTS schedules_owner ON schedules (owner, created_us);";

/* Appends "PREPARE name AS sql;" for every statement of a NULL-terminated list. */
static char *prepare_all(char *sql, const struct pg_stmt *const *list)
{
    for (int i = 0; sql && list[i]; i++) {
        char *more = NULL;
        if (!list[i]->name)
            continue;
        if (asprintf(&more, "%sPREPARE %s AS %s;", sql, list[i]->name, list[i]->sql) < 0)
            more = NULL;
        free(sql);
        sql = more;
    }
    return sql;
}

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
                 "%s"
                 "UPDATE meta SET version = %d WHERE version < %d;"
                 "INSERT INTO meta (version) SELECT %d WHERE NOT EXISTS (SELECT 1 FROM meta);"
                 "COMMIT;"
                 "SET search_path TO %s;"
                 "LISTEN %s; LISTEN %s; LISTEN %s;",
                 lit, lit, lit, ident, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, lit, ddl,
                 PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION, ident, q, d, c) < 0)
        sql = NULL;
    /* Every statement prepared once per connection, after search_path is set. */
    for (int i = 0; sql && pg_statement_sets[i]; i++)
        sql = prepare_all(sql, pg_statement_sets[i]);
    PQfreemem(ident);
    PQfreemem(lit);
    PQfreemem(q);
    PQfreemem(d);
    PQfreemem(c);
    return sql;
}
