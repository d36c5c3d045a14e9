/*
 * test_store_sqlite.c — the SQLite store against a temporary file: records survive a close
 * and reopen with every field intact (priority and soft_timeout too), deletes stick, writes come
 * back in seq order, one job's results are read back byte for byte from any thread, a newer schema
 * and a damaged file are refused with a message naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
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
    v->priority = spec->priority = i - 20;
    v->soft_timeout = spec->soft_timeout = i % 3 ? 0.25 * i : 0;
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
    assert_int_equal(v->priority, i - 20);
    assert_int_equal(spec->priority, i - 20);
    assert_true(v->soft_timeout == (i % 3 ? 0.25 * i : 0));
    assert_true(spec->soft_timeout == v->soft_timeout);
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
    /* Its row waits for the job's next put, at most CARRY_MS (store_sqlite.c): then it
     * is written, and the log emptied. */
    for (int i = 0; i < 200 && file_size(log) != 0; i++)
        usleep(10000);
    assert_int_equal(file_size(log), 0);
    job_view_release(&v[1]);
    store_close(s);
}

struct reader {
    struct store *s;
    const char *id;
    const struct blob *want;
    int reads;
};

/* Reads the results of one job over and over while the writer thread commits others. */
static void *read_loop(void *arg)
{
    struct reader *r = arg;
    for (int i = 0; i < 20; i++) {
        struct job_view v;
        memset(&v, 0, sizeof(v));
        /* Counted, not asserted: cmocka's asserts belong to the main thread. */
        if (store_read_results(r->s, r->id, &v) == 0 && v.result && !v.result_json &&
            blob_len(v.result) == blob_len(r->want) &&
            memcmp(blob_data(v.result), blob_data(r->want), blob_len(r->want)) == 0)
            r->reads++;
        job_view_release(&v);
    }
    return NULL;
}

/* Results that left the pool's memory come back from the row byte for byte: a pickle,
 * JSON, an exception pickle; from other threads while the writer commits; an unknown or
 * deleted id is -ENOENT and leaves the view as it was. */
static void store__read_results__byte_identical_from_any_thread(void **state)
{
    (void)state;
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    struct job_view v[3];
    struct job_spec spec;
    make_job(&v[0], &spec, 0, JOB_SUCCEEDED);
    job_spec_release(&spec);
    blob_unref(v[0].result);
    size_t big = (3u << 20) + 11;
    v[0].result = blob_new(big);
    for (size_t i = 0; i < big; i++)
        blob_mutable_data(v[0].result)[i] = (uint8_t)(i * 2654435761u >> 13);
    make_job(&v[1], &spec, 1, JOB_SUCCEEDED);
    job_spec_release(&spec);
    blob_unref(v[1].result);
    v[1].result = NULL;
    const char *json = "{\"a\": [1, 2.5, \"\\u00e9\"]}";
    v[1].result_json = blob_new_copy(json, strlen(json));
    make_job(&v[2], &spec, 2, JOB_FAILED);
    job_spec_release(&spec);
    v[2].error.type = JOB_ERR_EXCEPTION;
    v[2].error.exception = blob_new_copy("\x80\x05\x00exc", 6);
    uint64_t t = 0;
    for (int i = 0; i < 3; i++)
        t = store_put(s, &v[i], &spec, (uint64_t)i + 1, 0);
    assert_int_equal(store_sync(s, t), 0);

    struct reader r = {.s = s, .id = v[0].id, .want = v[0].result};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_loop, &r), 0);
    for (int i = 0; i < 200; i++) { /* the writer busy meanwhile, with other rows */
        struct job_view w;
        make_job(&w, &spec, 10 + i % 7, JOB_QUEUED);
        t = store_put(s, &w, &spec, (uint64_t)(10 + i), 0);
        job_view_release(&w);
        job_spec_release(&spec);
    }
    pthread_join(th, NULL);
    assert_int_equal(r.reads, 20);
    assert_int_equal(store_sync(s, t), 0);

    struct job_view got;
    memset(&got, 0, sizeof(got));
    assert_int_equal(store_read_results(s, v[1].id, &got), 0);
    assert_null(got.result);
    assert_int_equal(blob_len(got.result_json), strlen(json));
    assert_memory_equal(blob_data(got.result_json), json, strlen(json));
    job_view_release(&got);
    assert_int_equal(store_read_results(s, v[2].id, &got), 0);
    assert_int_equal(blob_len(got.error.exception), 6);
    assert_memory_equal(blob_data(got.error.exception), "\x80\x05\x00exc", 6);
    assert_null(got.result);
    job_view_release(&got);

    /* Unknown, then deleted: -ENOENT, the view untouched. */
    struct blob *mine = blob_new_copy("mine", 4);
    got.result = mine;
    assert_int_equal(store_read_results(s, "0123456789abcdef0123456789abcdef", &got), -ENOENT);
    assert_ptr_equal(got.result, mine);
    assert_int_equal(store_sync(s, store_delete(s, v[0].id)), 0);
    assert_int_equal(store_read_results(s, v[0].id, &got), -ENOENT);
    assert_ptr_equal(got.result, mine);
    job_view_release(&got);
    for (int i = 0; i < 3; i++)
        job_view_release(&v[i]);
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
        cmocka_unit_test_setup_teardown(store__read_results__byte_identical_from_any_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(store__newer_schema__refused, setup, teardown),
        cmocka_unit_test_setup_teardown(store__garbage_file__refused_naming_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
