/*
 * test_store_sqlite_batch.c — a group commit writes each job's row once
 * (pool/store/store_sqlite_batch.c): of a job's puts in one batch only the last one
 * writes the row, a delete supersedes the puts before it and not those after it, a
 * superseded first put hands its Idempotency-Key to the put that writes the row (or
 * writes it alone when a delete supersedes it), schedules' ops are untouched.
 * Then through the store: a burst held in one batch (the test holds the database's
 * write lock meanwhile) leaves, after a reopen, every job in its last state, the
 * deleted ones gone, every key naming its job.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "pool/store/store_sqlite.h"
#include "pyjobd/clock.h"
#include "pyjobd/store.h"

static char dir[] = "/tmp/pyjobd-batch-XXXXXX";
static char path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pyjobd-batch-XXXXXX");
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

/* --- the marking, on ops made by hand ---------------------------------------------- */

static struct op *add(struct op_list *batch, enum op_kind kind, int job, int fresh)
{
    struct op *op = calloc(1, sizeof(*op));
    assert_non_null(op);
    op->kind = kind;
    op->fresh = fresh;
    snprintf(op->v.id, sizeof(op->v.id), "%032x", job);
    STAILQ_INSERT_TAIL(batch, op, link);
    return op;
}

static void free_batch(struct op_list *batch)
{
    struct op *op;
    while ((op = STAILQ_FIRST(batch))) {
        STAILQ_REMOVE_HEAD(batch, link);
        free(op->spec.idem_key);
        free(op);
    }
}

static void coalesce__last_put_of_each_id__writes_the_row(void **state)
{
    (void)state;
    struct op_list batch = STAILQ_HEAD_INITIALIZER(batch);
    struct op *a1 = add(&batch, OP_PUT, 1, 1); /* submitted (with its key) */
    struct op *b1 = add(&batch, OP_PUT, 2, 0);
    struct op *a2 = add(&batch, OP_PUT, 1, 0); /* started */
    struct op *sched = add(&batch, OP_SCHEDULE_PUT, 1, 0);
    struct op *bdel = add(&batch, OP_DELETE, 2, 0);
    struct op *a3 = add(&batch, OP_PUT, 1, 0); /* finished */
    struct op *b2 = add(&batch, OP_PUT, 2, 0); /* a put after the delete */
    struct op *c1 = add(&batch, OP_PUT, 3, 0);
    a1->spec.idem_key = strdup("key-a");
    b1->spec.idem_key = strdup("key-b");
    b1->fresh = 1;
    sqls__batch_coalesce(&batch);
    assert_true(a1->superseded && a2->superseded);
    assert_false(a3->superseded);
    assert_true(a3->fresh); /* the row a1 would have inserted is not there yet */
    /* a1's key goes with the row a3 inserts; b1's stays (a delete supersedes it). */
    assert_null(a1->spec.idem_key);
    assert_null(a2->spec.idem_key);
    assert_string_equal(a3->spec.idem_key, "key-a");
    assert_string_equal(b1->spec.idem_key, "key-b");
    assert_null(b2->spec.idem_key);
    assert_true(b1->superseded);
    assert_false(bdel->superseded);
    assert_false(b2->superseded);
    assert_false(b2->fresh);
    assert_false(c1->superseded);
    assert_false(sched->superseded);
    free_batch(&batch);

    /* One op: nothing to look at. Many ids: each its own. */
    struct op *only = add(&batch, OP_PUT, 7, 0);
    sqls__batch_coalesce(&batch);
    assert_false(only->superseded);
    free_batch(&batch);
    struct op *ops[300];
    for (int i = 0; i < 300; i++)
        ops[i] = add(&batch, OP_PUT, i % 100, 0);
    sqls__batch_coalesce(&batch);
    for (int i = 0; i < 300; i++)
        assert_int_equal(ops[i]->superseded, i < 200);
    free_batch(&batch);
}

/* --- through the store ---------------------------------------------------------------- */

#define JOBS 60

static void job(struct job_view *v, struct job_spec *spec, int i, enum job_status st)
{
    memset(v, 0, sizeof(*v));
    memset(spec, 0, sizeof(*spec));
    snprintf(v->id, sizeof(v->id), "%032x", 0x1000 + i);
    snprintf(v->owner, sizeof(v->owner), "tenant%d", i % 3);
    v->status = st;
    v->created_at = (struct timespec){1795636800 + i, 0};
    v->error.exit_code = -1;
    v->error.max_rss_bytes = -1;
    spec->callable = blob_new_copy("callable", 8);
    if (st != JOB_QUEUED) {
        v->attempts = 1;
        v->worker_pid = 1000 + i;
        v->started_at = (struct timespec){1795636900 + i, 0};
    }
    if (st == JOB_SUCCEEDED) {
        char r[16];
        int n = snprintf(r, sizeof(r), "result%d", i);
        v->result = blob_new_copy(r, (size_t)n);
        v->finished_at = (struct timespec){1795637000 + i, 0};
    }
}

static uint64_t put(struct store *s, int i, enum job_status st, uint64_t seq, int keyed)
{
    struct job_view v;
    struct job_spec spec;
    job(&v, &spec, i, st);
    char key[32];
    snprintf(key, sizeof(key), "key-%d", i);
    if (keyed) {
        spec.idem_key = key;
        memset(spec.idem_digest, i, sizeof(spec.idem_digest));
        spec.idem_expires_us = clock_real_us() + 3600 * 1000000ll;
    }
    uint64_t t = store_put(s, &v, &spec, seq, keyed ? STORE_NEW : 0);
    spec.idem_key = NULL;
    job_view_release(&v);
    job_spec_release(&spec);
    return t;
}

struct found {
    int n;
    enum job_status status[JOBS];
    int seen[JOBS], keys[JOBS];
};

static int index_of(const char *id)
{
    int i = (int)strtol(id, NULL, 16) - 0x1000;
    assert_true(i >= 0 && i < JOBS);
    return i;
}

static int load_cb(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    (void)seq;
    struct found *f = arg;
    int i = index_of(v->id);
    f->n++;
    f->seen[i]++;
    f->status[i] = v->status;
    assert_int_equal(blob_len(spec->callable), 8);
    if (v->status == JOB_SUCCEEDED) {
        char r[16];
        int n = snprintf(r, sizeof(r), "result%d", i);
        assert_int_equal(blob_len(v->result), n);
        assert_memory_equal(blob_data(v->result), r, n);
        assert_int_equal(v->attempts, 1);
        assert_int_equal(v->worker_pid, 1000 + i);
        assert_int_equal(v->finished_at.tv_sec, 1795637000 + i);
    }
    job_view_release(v);
    job_spec_release(spec);
    return 0;
}

static int key_cb(void *arg, const char *owner, const char *key, const uint8_t *digest,
                  const char *job_id, int64_t expires_us)
{
    (void)expires_us;
    struct found *f = arg;
    int i = index_of(job_id);
    char want[32];
    snprintf(want, sizeof(want), "key-%d", i);
    assert_string_equal(key, want);
    snprintf(want, sizeof(want), "tenant%d", i % 3);
    assert_string_equal(owner, want);
    assert_int_equal(digest[0], i);
    f->keys[i]++;
    return 0;
}

/* The store reopened: every job and every key it loads, into f. */
static void reopen_and_load(struct found *f)
{
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(store_load(s, load_cb, f, err, sizeof(err)), 0);
    assert_int_equal(store_load_keys(s, key_cb, f), 0);
    store_close(s);
}

static void store__burst_in_one_batch__last_states_and_keys_after_reopen(void **state)
{
    (void)state;
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    /* Job 0 is on record before the burst: its later put updates the row. */
    assert_int_equal(store_sync(s, put(s, 0, JOB_QUEUED, 1, 1)), 0);

    /* The test holds the write lock: the writer waits (busy timeout 5 s) and what is
     * queued meanwhile goes in the next batch. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    uint64_t t = put(s, 0, JOB_RUNNING, 1, 0);
    for (int i = 1; i < JOBS; i++)
        t = put(s, i, JOB_QUEUED, (uint64_t)i + 1, 1);
    for (int i = 0; i < JOBS; i++)
        t = put(s, i, JOB_RUNNING, (uint64_t)i + 1, 0);
    for (int i = 0; i < JOBS; i++)
        t = put(s, i, i % 10 == 9 ? JOB_RUNNING : JOB_SUCCEEDED, (uint64_t)i + 1, 0);
    char id[JOB_ID_LEN + 1];
    for (int i = 5; i < JOBS; i += 10) { /* deleted after their puts */
        snprintf(id, sizeof(id), "%032x", 0x1000 + i);
        t = store_delete(s, id);
    }
    for (int i = 7; i < JOBS; i += 10) { /* deleted, then written again */
        snprintf(id, sizeof(id), "%032x", 0x1000 + i);
        store_delete(s, id);
        t = put(s, i, JOB_SUCCEEDED, (uint64_t)i + 1, 0);
    }
    assert_false(store_committed(s, t));
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_sync(s, t), 0);
    store_close(s);

    struct found f = {0};
    reopen_and_load(&f);
    for (int i = 0; i < JOBS; i++) {
        assert_int_equal(f.keys[i], 1); /* a deleted job's key was written too, as before */
        if (i % 10 == 5) {
            assert_int_equal(f.seen[i], 0);
            continue;
        }
        assert_int_equal(f.seen[i], 1);
        assert_int_equal(f.status[i], i % 10 == 9 ? JOB_RUNNING : JOB_SUCCEEDED);
    }
    assert_int_equal(f.n, JOBS - JOBS / 10);
}

/* A key lives in its job's row (schema 8); deleting the job in a later commit moves a
 * key not yet expired to the keys' table, so a restart still knows it names a job that
 * is gone; an expired one is not kept. A start's row, carried while the log holds it,
 * is on record after a reopen with the job's later state. */
static void store__deleted_job__key_kept_until_it_expires(void **state)
{
    (void)state;
    char err[256];
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_sync(s, put(s, i, JOB_QUEUED, (uint64_t)i + 1, 1)), 0);
    /* Job 3's key has expired by the time the job is deleted. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE jobs SET idem_expires_us = 1 WHERE id = '"
                                  "00000000000000000000000000001003'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char id[JOB_ID_LEN + 1];
    for (int i = 1; i < 4; i += 2) {
        snprintf(id, sizeof(id), "%032x", 0x1000 + i);
        assert_int_equal(store_sync(s, store_delete(s, id)), 0);
    }
    /* Job 2 starts (logged, its row carried) and ends: one row with its end. */
    struct job_view v;
    struct job_spec spec;
    job(&v, &spec, 2, JOB_RUNNING);
    uint64_t t = store_put(s, &v, &spec, 3, 0);
    assert_int_equal(store_started(s, &v, t), 0);
    job_view_release(&v);
    job_spec_release(&spec);
    assert_int_equal(store_sync(s, put(s, 2, JOB_SUCCEEDED, 3, 0)), 0);
    store_close(s);

    struct found f = {0};
    reopen_and_load(&f);
    assert_int_equal(f.n, 2);
    assert_true(f.seen[0] && f.seen[2] && !f.seen[1] && !f.seen[3]);
    assert_int_equal(f.status[2], JOB_SUCCEEDED);
    assert_int_equal(f.keys[0], 1);
    assert_int_equal(f.keys[1], 1); /* deleted, its key kept */
    assert_int_equal(f.keys[2], 1);
    assert_int_equal(f.keys[3], 0); /* expired before the delete */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coalesce__last_put_of_each_id__writes_the_row),
        cmocka_unit_test_setup_teardown(
            store__burst_in_one_batch__last_states_and_keys_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(store__deleted_job__key_kept_until_it_expires, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
