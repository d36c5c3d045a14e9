/*
 * store_sqlite_schema.c — the SQLite store's schema and its migrations. The version is
 * PRAGMA user_version: 0 is a new file, newer than STORE_SCHEMA refuses to open, older
 * ones are migrated in order, each step inside one transaction with the version bump.
 */
#include "store_sqlite.h"
#include "pyjobd/log.h"

#include <sqlite3.h>
#include <stdio.h>

#define STORE_SCHEMA 8

static const char *const schema_v1 =
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY, seq INTEGER NOT NULL, owner TEXT NOT NULL, status INTEGER NOT NULL,"
    " created_us INTEGER, started_us INTEGER, finished_us INTEGER, timeout REAL,"
    " attempts INTEGER, worker_pid INTEGER, max_retries INTEGER, retry_on_timeout INTEGER,"
    " result_format_json INTEGER, metadata TEXT,"
    " callable BLOB, args BLOB, kwargs BLOB, json_args BLOB, json_kwargs BLOB,"
    " result BLOB, result_json BLOB,"
    " err_type INTEGER, err_message TEXT, err_exc_type TEXT, err_exception BLOB,"
    " err_traceback TEXT, err_exit_code INTEGER, err_signal INTEGER, err_max_rss INTEGER);"
    "CREATE INDEX jobs_seq ON jobs(seq);";

/* Version 2: the job options of issue 17 (priority, soft_timeout). */
static const char *const schema_v2 =
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN soft_timeout REAL NOT NULL DEFAULT 0;";

/* Version 3: the Idempotency-Keys of issue 17 (store_sqlite_keys.c): one row per owner
 * and key, written with the job it made, deleted once expired. */
static const char *const schema_v3 =
    "CREATE TABLE idempotency (owner TEXT NOT NULL, key TEXT NOT NULL, digest BLOB NOT NULL,"
    " job_id TEXT NOT NULL, expires_us INTEGER NOT NULL, PRIMARY KEY (owner, key));"
    "CREATE INDEX idempotency_expires ON idempotency(expires_us);";

/* Version 4: delayed and expiring jobs of issue 17 (CLOCK_REALTIME us, 0: none); a
 * scheduled job's status is JOB_SCHEDULED (5). */
static const char *const schema_v4 =
    "ALTER TABLE jobs ADD COLUMN run_at_us INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN expires_at_us INTEGER NOT NULL DEFAULT 0;";

/* Version 5: retry policies of issue 17 (names '\n'-separated; flags: 1 jitter, 2 not on
 * crash, 4 not on node loss, 8 given), the backoff's next attempt, the attempt history
 * (store_history.c). */
static const char *const schema_v5 =
    "ALTER TABLE jobs ADD COLUMN retry_on TEXT;"
    "ALTER TABLE jobs ADD COLUMN retry_not_on TEXT;"
    "ALTER TABLE jobs ADD COLUMN retry_initial REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN retry_factor REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN retry_max REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN retry_flags INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN next_attempt_us INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN history TEXT;";

/* Version 6: reruns of issue 17 (the job a rerun repeats). */
static const char *const schema_v6 = "ALTER TABLE jobs ADD COLUMN rerun_of TEXT;";

/* Version 7: recurring schedules of issue 17 (store_sqlite_schedules.c), and the
 * schedule a job was submitted by. */
static const char *const schema_v7 =
    "CREATE TABLE schedules (id TEXT PRIMARY KEY, owner TEXT NOT NULL, job BLOB NOT NULL,"
    " cron TEXT, every REAL NOT NULL DEFAULT 0, timezone TEXT NOT NULL, run_once INTEGER"
    " NOT NULL DEFAULT 0, created_us INTEGER NOT NULL, last_tick_us INTEGER NOT NULL DEFAULT 0,"
    " runs INTEGER NOT NULL DEFAULT 0, last_job TEXT);"
    "ALTER TABLE jobs ADD COLUMN schedule TEXT;";

/* Version 8: the write path's b-trees (issue 17, item 8). A job's row is keyed by its
 * seq (its submission order, unique: pool/records/job_table.c), so a new row is
 * appended to the table's b-tree, and the writer updates a row by its rowid without a
 * lookup; the id keeps one unique index. The old rows are copied with their seq
 * (the pool gave each job its own). A job's Idempotency-Key is
 * written in its row (store_sqlite_keys.c): a client's keys are random, and their own
 * b-tree took a write at a random place for each job. The keys table keeps those of
 * deleted jobs until they expire, as a WITHOUT ROWID table (one b-tree, not two). */
#define JOB_COLUMNS_V8                                                                             \
    "owner, status, created_us, started_us, finished_us, timeout, attempts, worker_pid,"           \
    " max_retries, retry_on_timeout, result_format_json, metadata, callable, args, kwargs,"        \
    " json_args, json_kwargs, result, result_json, err_type, err_message, err_exc_type,"           \
    " err_exception, err_traceback, err_exit_code, err_signal, err_max_rss, priority,"             \
    " soft_timeout, run_at_us, expires_at_us, retry_on, retry_not_on, retry_initial,"              \
    " retry_factor, retry_max, retry_flags, next_attempt_us, history, rerun_of, schedule"
static const char *const schema_v8 =
    "CREATE TABLE jobs_v8 ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,"
    " status INTEGER NOT NULL, created_us INTEGER, started_us INTEGER, finished_us INTEGER,"
    " timeout REAL, attempts INTEGER, worker_pid INTEGER, max_retries INTEGER,"
    " retry_on_timeout INTEGER, result_format_json INTEGER, metadata TEXT,"
    " callable BLOB, args BLOB, kwargs BLOB, json_args BLOB, json_kwargs BLOB,"
    " result BLOB, result_json BLOB,"
    " err_type INTEGER, err_message TEXT, err_exc_type TEXT, err_exception BLOB,"
    " err_traceback TEXT, err_exit_code INTEGER, err_signal INTEGER, err_max_rss INTEGER,"
    " priority INTEGER NOT NULL DEFAULT 0, soft_timeout REAL NOT NULL DEFAULT 0,"
    " run_at_us INTEGER NOT NULL DEFAULT 0, expires_at_us INTEGER NOT NULL DEFAULT 0,"
    " retry_on TEXT, retry_not_on TEXT, retry_initial REAL NOT NULL DEFAULT 0,"
    " retry_factor REAL NOT NULL DEFAULT 0, retry_max REAL NOT NULL DEFAULT 0,"
    " retry_flags INTEGER NOT NULL DEFAULT 0, next_attempt_us INTEGER NOT NULL DEFAULT 0,"
    " history TEXT, rerun_of TEXT, schedule TEXT,"
    " idem_key TEXT, idem_digest BLOB, idem_expires_us INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO jobs_v8 (seq, id, " JOB_COLUMNS_V8 ") SELECT seq, id, " JOB_COLUMNS_V8
    " FROM jobs ORDER BY seq;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v8 RENAME TO jobs;"
    "CREATE TABLE idempotency_v8 (owner TEXT NOT NULL, key TEXT NOT NULL, digest BLOB NOT NULL,"
    " job_id TEXT NOT NULL, expires_us INTEGER NOT NULL, PRIMARY KEY (owner, key)) WITHOUT ROWID;"
    "INSERT INTO idempotency_v8 SELECT owner, key, digest, job_id, expires_us FROM idempotency;"
    "DROP TABLE idempotency;"
    "ALTER TABLE idempotency_v8 RENAME TO idempotency;"
    "CREATE INDEX idempotency_expires ON idempotency(expires_us);";

int sqls__exec_or_err(sqlite3 *db, const char *sql, const char *path, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "store %s: %s (is it a pyjobd database, and is it intact?)", path,
             msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

static int user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

int sqls__migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int version = 0;
    if (user_version(db, &version) != 0) {
        snprintf(err, errlen, "store %s: cannot read it: %s (corrupt, or not a database?)", path,
                 sqlite3_errmsg(db));
        return -1;
    }
    if (version > STORE_SCHEMA) {
        snprintf(err, errlen,
                 "store %s was written by a newer pyjobd (schema %d; this one knows up to %d); "
                 "refusing to open it",
                 path, version, STORE_SCHEMA);
        return -1;
    }
    if (version == STORE_SCHEMA)
        return 0;
    /* Each step moves one version up, inside one transaction with its version bump. */
    if (sqls__exec_or_err(db, "BEGIN IMMEDIATE", path, err, errlen) != 0)
        return -1;
    if ((version < 1 && sqls__exec_or_err(db, schema_v1, path, err, errlen) != 0) ||
        (version < 2 && sqls__exec_or_err(db, schema_v2, path, err, errlen) != 0) ||
        (version < 3 && sqls__exec_or_err(db, schema_v3, path, err, errlen) != 0) ||
        (version < 4 && sqls__exec_or_err(db, schema_v4, path, err, errlen) != 0) ||
        (version < 5 && sqls__exec_or_err(db, schema_v5, path, err, errlen) != 0) ||
        (version < 6 && sqls__exec_or_err(db, schema_v6, path, err, errlen) != 0) ||
        (version < 7 && sqls__exec_or_err(db, schema_v7, path, err, errlen) != 0) ||
        (version < 8 && sqls__exec_or_err(db, schema_v8, path, err, errlen) != 0)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    char bump[64];
    snprintf(bump, sizeof(bump), "PRAGMA user_version = %d; COMMIT", STORE_SCHEMA);
    if (sqls__exec_or_err(db, bump, path, err, errlen) != 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (version > 0)
        log_info("store %s migrated from schema %d to %d", path, version, STORE_SCHEMA);
    return 0;
}
