/*
 * test_store_sqlite_migrate.c — a database written by schema version 1 (made here by
 * hand with version 1's own CREATE TABLE, and a row inserted the way version 1 did:
 * positional VALUES) opens with the current code, is migrated to version 2 in place,
 * and loads its row intact with priority 0 and no soft timeout; a job put after the
 * migration keeps its priority and soft_timeout across a reopen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pyjobd/clock.h"
#include "pyjobd/store.h"

static char dir[] = "/tmp/pyjobd-migrate-XXXXXX";
static char path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pyjobd-migrate-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jobs.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

/* Version 1's schema, as it shipped (pool/store/store_sqlite.c, schema_v1). */
static const char *const v1_schema =
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY, seq INTEGER NOT NULL, owner TEXT NOT NULL, status INTEGER NOT NULL,"
    " created_us INTEGER, started_us INTEGER, finished_us INTEGER, timeout REAL,"
    " attempts INTEGER, worker_pid INTEGER, max_retries INTEGER, retry_on_timeout INTEGER,"
    " result_format_json INTEGER, metadata TEXT,"
    " callable BLOB, args BLOB, kwargs BLOB, json_args BLOB, json_kwargs BLOB,"
    " result BLOB, result_json BLOB,"
    " err_type INTEGER, err_message TEXT, err_exc_type TEXT, err_exception BLOB,"
    " err_traceback TEXT, err_exit_code INTEGER, err_signal INTEGER, err_max_rss INTEGER);"
    "CREATE INDEX jobs_seq ON jobs(seq);"
    "PRAGMA user_version = 1;";

#define OLD_ID "0000000000000000000000000000000a"
#define NEW_ID "0000000000000000000000000000000b"

static void write_v1_file(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    /* A queued job, as version 1 wrote it: every column, by position. */
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO jobs VALUES ('" OLD_ID "', 7, 'alice', 0,"
                                  " 1795636800123456, 0, 0, 2.5, 0, 0, 1, 1, 1, '{\"k\":1}',"
                                  " x'63616c6c', NULL, NULL, x'5b315d', NULL, NULL, NULL,"
                                  " 0, NULL, NULL, NULL, NULL, -1, 0, -1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static int file_user_version(void)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

struct loaded {
    int n, old_seen, new_seen;
};

static int load_cb(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    struct loaded *l = arg;
    l->n++;
    if (strcmp(v->id, OLD_ID) == 0) {
        l->old_seen = 1;
        assert_int_equal(seq, 7);
        assert_string_equal(v->owner, "alice");
        assert_int_equal(v->status, JOB_QUEUED);
        assert_int_equal(v->created_at.tv_sec, 1795636800);
        assert_true(v->timeout == 2.5);
        assert_int_equal(v->max_retries, 1);
        assert_int_equal(spec->retry_on_timeout, 1);
        assert_int_equal(spec->result_json, 1);
        assert_string_equal(v->metadata, "{\"k\":1}");
        assert_memory_equal(blob_data(spec->callable), "call", 4);
        assert_memory_equal(blob_data(spec->json_args), "[1]", 3);
        assert_int_equal(v->error.exit_code, -1);
        assert_int_equal(v->priority, 0);
        assert_int_equal(spec->priority, 0);
        assert_true(v->soft_timeout == 0);
        assert_true(spec->soft_timeout == 0);
        assert_true(v->run_at_us == 0 && v->expires_at_us == 0); /* schema 4's defaults */
        assert_false(v->retry.given);                            /* schema 5's */
        assert_null(v->retry.on);
        assert_int_equal(v->nhistory, 0);
    } else {
        assert_string_equal(v->id, NEW_ID);
        l->new_seen = 1;
        assert_int_equal(seq, 8);
        assert_int_equal(v->priority, -42);
        assert_int_equal(spec->priority, -42);
        assert_true(v->soft_timeout == 1.25);
        assert_true(spec->soft_timeout == 1.25);
        assert_int_equal(v->status, JOB_SCHEDULED);
        assert_true(v->run_at_us == 1796146200000001LL && spec->run_at_us == v->run_at_us);
        assert_true(v->expires_at_us == 1796146260000000LL);
        /* schema 5: the policy, the next attempt, the history (a message with a newline
         * and a backslash stays one entry) */
        assert_true(v->retry.given && v->retry.jitter && v->retry.no_crash);
        assert_string_equal(v->retry.on, "ConnectionError\nmymod.Transient");
        assert_string_equal(spec->retry.on, v->retry.on);
        assert_null(v->retry.not_on);
        assert_true(v->retry.initial == 0.5 && v->retry.factor == 3 && v->retry.max_delay == 9);
        assert_true(v->next_attempt_us == 1796146230000000LL);
        assert_int_equal(v->nhistory, 2);
        assert_string_equal(v->history[0].message, "first\nline \\ two");
        assert_int_equal(v->history[0].error, JOB_ERR_EXCEPTION);
        assert_true(v->history[1].started_us == 3 && v->history[1].ended_us == 4);
        assert_int_equal(v->history[1].worker_pid, 77);
        assert_null(v->history[1].message);
        assert_string_equal(v->history[0].node, "");
        assert_string_equal(v->history[1].node, "host_1-1a2b3c4d"); /* a blank written '_' */
        assert_string_equal(v->rerun_of, OLD_ID);                   /* schema 6 */
        assert_string_equal(v->schedule, OLD_ID);                   /* schema 7 */
        assert_memory_equal(blob_data(spec->callable), "fn", 2);
    }
    job_view_release(v);
    job_spec_release(spec);
    return 0;
}

static int key_cb(void *arg, const char *owner, const char *key, const uint8_t *digest,
                  const char *job_id, int64_t expires_us)
{
    assert_string_equal(owner, "bob");
    assert_string_equal(key, "key-1");
    assert_int_equal(digest[0], 7);
    assert_string_equal(job_id, NEW_ID);
    assert_true(expires_us > clock_real_us());
    ++*(int *)arg;
    return 0;
}

static void store__v1_file__migrated_and_loaded(void **state)
{
    (void)state;
    write_v1_file();
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    if (!s)
        fail_msg("cannot open a version-1 file: %s", err);
    struct loaded l = {0};
    assert_int_equal(store_load(s, load_cb, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.old_seen, 1);

    /* A job of the new version beside the old row. */
    struct job_view v;
    struct job_spec spec;
    memset(&v, 0, sizeof(v));
    memset(&spec, 0, sizeof(spec));
    strcpy(v.id, NEW_ID);
    strcpy(v.owner, "bob");
    v.created_at = (struct timespec){1795636801, 0};
    v.error.exit_code = -1;
    v.error.max_rss_bytes = -1;
    v.priority = spec.priority = -42;
    v.soft_timeout = spec.soft_timeout = 1.25;
    v.status = JOB_SCHEDULED; /* schema 4: its times */
    v.run_at_us = 1796146200000001LL;
    v.expires_at_us = 1796146260000000LL;
    v.retry = (struct job_retry){.on = strdup("ConnectionError\nmymod.Transient"),
                                 .initial = 0.5,
                                 .factor = 3,
                                 .max_delay = 9,
                                 .jitter = 1,
                                 .no_crash = 1,
                                 .given = 1};
    v.next_attempt_us = 1796146230000000LL;
    /* The second with the node it ran on (the codec's "@node", from a shared store). */
    struct job_attempt hist[2] = {{1, 2, 76, JOB_ERR_EXCEPTION, "first\nline \\ two", ""},
                                  {3, 4, 77, JOB_ERR_WORKER_CRASHED, NULL, "host 1-1a2b3c4d"}};
    v.history = hist;
    v.nhistory = 2;
    memcpy(v.rerun_of, OLD_ID, JOB_ID_LEN + 1);
    memcpy(v.schedule, OLD_ID, JOB_ID_LEN + 1);
    spec.callable = blob_new_copy("fn", 2);
    spec.idem_key = strdup("key-1"); /* schema 3: the key is written with the job */
    memset(spec.idem_digest, 7, sizeof(spec.idem_digest));
    spec.idem_expires_us = clock_real_us() + 60000000;
    assert_int_equal(store_sync(s, store_put(s, &v, &spec, 8, STORE_NEW)), 0);
    free(v.retry.on);
    v.history = NULL; /* the test's own */
    job_spec_release(&spec);
    store_close(s);
    assert_int_equal(file_user_version(), 8);

    /* Reopened (no migration this time): both rows, both with their options. */
    s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_load(s, load_cb, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.old_seen + l.new_seen, 2);
    int keys = 0;
    assert_int_equal(store_load_keys(s, key_cb, &keys), 0);
    assert_int_equal(keys, 1);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(store__v1_file__migrated_and_loaded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
