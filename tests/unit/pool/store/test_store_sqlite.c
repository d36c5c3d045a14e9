/*
 * test_store_sqlite.c — the SQLite store against a temporary file: records survive a close
 * and reopen with every field intact, deletes stick, writes come back in seq order,
 * a newer schema and a damaged file are refused with a message naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pyjobd/store.h"

static char dir[] = "/tmp/pyjobd-store-XXXXXX";
static char path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pyjobd-store-XXXXXX");
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

static void make_job(struct job_view *v, struct job_spec *spec, int i, enum job_status st)
{
    memset(v, 0, sizeof(*v));
    memset(spec, 0, sizeof(*spec));
    snprintf(v->id, sizeof(v->id), "%032x", i + 1);
    snprintf(v->owner, sizeof(v->owner), "tenant%d", i % 2);
    v->status = st;
    v->created_at = (struct timespec){1795636800 + i, 123456000};
    v->timeout = 1.5;
    v->attempts = (unsigned)i;
    v->max_retries = 2;
    v->error.exit_code = -1;
    v->error.max_rss_bytes = -1;
    if (st == JOB_SUCCEEDED)
        v->result = blob_new_copy("\x80\x05K*.", 5);
    if (st == JOB_FAILED) {
        v->error.type = JOB_ERR_WORKER_CRASHED;
        v->error.message = strdup("killed");
        v->error.signal = 11;
        v->error.max_rss_bytes = 1 << 20;
    }
    if (st == JOB_QUEUED) {
        spec->callable = blob_new_copy("callable\0bytes", 14);
        spec->json_args = blob_new_copy("[1, 2]", 6);
        spec->result_json = 1;
        spec->max_retries = 2;
    }
    v->metadata = i == 0 ? strdup("{\"k\":1}") : NULL;
}

struct seen {
    int n;
    uint64_t last_seq;
};

static int check_cb(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    struct seen *s = arg;
    assert_true(seq > s->last_seq); /* oldest first */
    s->last_seq = seq;
    int i = (int)strtol(v->id, NULL, 16) - 1;
    assert_int_equal(v->attempts, (unsigned)i);
    assert_int_equal(v->created_at.tv_sec, 1795636800 + i);
    assert_int_equal(v->created_at.tv_nsec, 123456000);
    char owner[16];
    snprintf(owner, sizeof(owner), "tenant%d", i % 2);
    assert_string_equal(v->owner, owner);
    if (v->status == JOB_SUCCEEDED)
        assert_memory_equal(blob_data(v->result), "\x80\x05K*.", 5);
    if (v->status == JOB_FAILED) {
        assert_int_equal(v->error.type, JOB_ERR_WORKER_CRASHED);
        assert_string_equal(v->error.message, "killed");
        assert_int_equal(v->error.signal, 11);
        assert_int_equal(v->error.exit_code, -1);
    }
    if (v->status == JOB_QUEUED) {
        assert_int_equal(blob_len(spec->callable), 14);
        assert_memory_equal(blob_data(spec->callable), "callable\0bytes", 14);
        assert_memory_equal(blob_data(spec->json_args), "[1, 2]", 6);
        assert_int_equal(spec->result_json, 1);
        assert_int_equal(spec->max_retries, 2);
        assert_null(spec->args);
    }
    if (i == 0)
        assert_string_equal(v->metadata, "{\"k\":1}");
    s->n++;
    job_view_release(v);
    job_spec_release(spec);
    return 0;
}

static void store__put_delete_reopen__records_intact(void **state)
{
    (void)state;
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    uint64_t t = 0;
    const enum job_status sts[4] = {JOB_QUEUED, JOB_SUCCEEDED, JOB_FAILED, JOB_QUEUED};
    for (int i = 0; i < 40; i++) {
        struct job_view v;
        struct job_spec spec;
        make_job(&v, &spec, i, sts[i % 4]);
        t = store_put(s, &v, &spec, (uint64_t)i + 1, 0);
        job_view_release(&v);
        job_spec_release(&spec);
    }
    /* A later write of the same job replaces it. */
    struct job_view v;
    struct job_spec spec;
    make_job(&v, &spec, 3, JOB_SUCCEEDED);
    store_put(s, &v, &spec, 4, 0);
    job_view_release(&v);
    job_spec_release(&spec);
    store_delete(s, "00000000000000000000000000000005"); /* job i = 4 */
    t = store_delete(s, "00000000000000000000000000000006");
    assert_int_equal(store_sync(s, t), 0);
    store_close(s);

    s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    struct seen seen = {0};
    assert_int_equal(store_load(s, check_cb, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 38);
    store_close(s);
}

struct kept {
    int n;
    struct job_view v[4];
};

static int keep_cb(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    (void)seq;
    struct kept *k = arg;
    assert_true(k->n < 4);
    k->v[k->n++] = *v;
    job_spec_release(spec);
    return 0;
}

static off_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

/* A start logged before the database committed it (the server was killed in between)
 * makes the queued row running again on load; an older logged start does not, and the
 * log is emptied once a later start is committed. */
static void store__start_logged_not_committed__row_running_on_load(void **state)
{
    (void)state;
    char err[256], log[160];
    snprintf(log, sizeof(log), "%s-starts", path);
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    struct job_view v[2];
    struct job_spec spec;
    uint64_t t = 0;
    for (int i = 0; i < 2; i++) {
        make_job(&v[i], &spec, i, JOB_QUEUED);
        v[i].attempts = 0;
        t = store_put(s, &v[i], &spec, (uint64_t)i + 1, 0);
        job_spec_release(&spec);
    }
    assert_int_equal(store_sync(s, t), 0);
    /* Job 0 starts, its "running" never written (as if killed before the commit). */
    v[0].status = JOB_RUNNING;
    v[0].attempts = 1;
    v[0].worker_pid = 4242;
    v[0].started_at = (struct timespec){1795640000, 5000};
    assert_int_equal(store_started(s, &v[0], 0), 0); /* on record at once */
    assert_true(file_size(log) > 0);
    store_close(s);

    s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    struct kept k = {0};
    assert_int_equal(store_load(s, keep_cb, &k, err, sizeof(err)), 0);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.v[0].id, v[0].id);
    assert_int_equal(k.v[0].status, JOB_RUNNING);
    assert_int_equal(k.v[0].attempts, 1);
    assert_int_equal(k.v[0].worker_pid, 4242);
    assert_int_equal(k.v[0].started_at.tv_sec, 1795640000);
    assert_int_equal(k.v[1].status, JOB_QUEUED); /* never started */
    assert_int_equal(k.v[1].attempts, 0);
    for (int i = 0; i < k.n; i++)
        job_view_release(&k.v[i]);
    /* The last run's start stays logged until this run's first start is committed. */
    assert_true(file_size(log) > 0);
    job_view_release(&v[0]);
    v[1].status = JOB_RUNNING; /* job 1 starts, written and committed this time */
    v[1].attempts = 1;
    make_job(&v[0], &spec, 1, JOB_QUEUED); /* for its payload only */
    job_view_release(&v[0]);
    t = store_put(s, &v[1], &spec, 2, 0);
    job_spec_release(&spec);
    assert_int_equal(store_started(s, &v[1], t), 0);
    assert_int_equal(store_sync(s, t), 0);
    assert_int_equal(file_size(log), 0);
    job_view_release(&v[1]);
    store_close(s);
}

static void store__newer_schema__refused(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[256];
    assert_null(store_open_sqlite(path, err, sizeof(err)));
    assert_non_null(strstr(err, "newer pyjobd"));
    assert_non_null(strstr(err, path));
}

static void store__garbage_file__refused_naming_it(void **state)
{
    (void)state;
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 4096; i++)
        fputc("not a database"[i % 14], f);
    fclose(f);
    char err[256];
    assert_null(store_open_sqlite(path, err, sizeof(err)));
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(store__put_delete_reopen__records_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(store__start_logged_not_committed__row_running_on_load,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(store__newer_schema__refused, setup, teardown),
        cmocka_unit_test_setup_teardown(store__garbage_file__refused_naming_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
