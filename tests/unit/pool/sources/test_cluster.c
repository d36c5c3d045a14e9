/*
 * test_cluster.c — the pool on a shared store (pool/sources/cluster.c), with real
 * pyjobd-worker processes and a fake store in memory (fake_store.c) in place of
 * PostgreSQL: claimed jobs run and their writes reach the store; waiters fire once
 * the store says the end is committed; a fenced or reaped job's worker is stopped
 * and its record dropped, so reads go to the store; idle workers make the pool ask
 * for jobs; a relayed cancel and a watched job of another node; --max-results-memory
 * drops results only once the database has them. Also what store.c answers for a
 * single-node store.
 *
 * Everything goes through the public pool API (pyjobd/pool.h); the fake plays the
 * database and its events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pyjobd/pool.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include "../fake_store.c" /* with fake_store.h: each test file is its own program */
#include "../pool_test_util.h"

#define LONG_MS 20000 /* bound of every wait for a worker: far above what it needs */

static struct pool *start_on(struct store *s, unsigned workers)
{
    struct pool_config cfg = {.workers = workers, .store = s};
    return start_pool_cfg(&cfg);
}

/* A job as a store hands it over when this node claims it (see pg_claims.c). */
static void claim_timeout(struct store *s, const char *fn, const char *args, double timeout,
                          char *id)
{
    static unsigned next = 0xc1a1;
    struct job_view v = {.status = JOB_QUEUED};
    snprintf(v.id, sizeof(v.id), "%032x", next++);
    snprintf(v.node, sizeof(v.node), "%s", FAKE_STORE_NODE);
    clock_gettime(CLOCK_REALTIME, &v.created_at);
    v.error.exit_code = -1;
    v.error.max_rss_bytes = -1;
    v.timeout = timeout;
    struct job_spec spec = {.callable = pickle(fn), .args = args ? pickle(args) : NULL};
    memcpy(id, v.id, JOB_ID_LEN + 1);
    fake_store_claim(s, &v, &spec); /* the pool takes v and spec */
}

static void claim(struct store *s, const char *fn, const char *args, char *id)
{
    claim_timeout(s, fn, args, 0, id);
}

/* Waits up to ms for w to fire; returns how often it did. */
static int wait_fired_ms(struct wake *w, int ms)
{
    struct timespec until;
    clock_deadline_in(&until, ms);
    pthread_mutex_lock(&w->m);
    while (!w->fired && pthread_cond_timedwait(&w->c, &w->m, &until) != ETIMEDOUT)
        ;
    int n = w->fired;
    pthread_mutex_unlock(&w->m);
    return n;
}

/* Waits up to ms for process pid to be gone (killed and reaped by the pool). */
static int gone_within(pid_t pid, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return 1;
        usleep(10000);
    }
    return 0;
}

static uint64_t cancel_restarts(struct pool *p)
{
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    uint64_t n = st.restarts_cancel;
    pool_stats_release(&st);
    return n;
}

static void cluster__claimed_job__runs_and_final_write_reaches_store(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char id[JOB_ID_LEN + 1];
    claim(s, "lambda x, y: x * y", "(6, 7)", id);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, id, JOB_SUCCEEDED, LONG_MS, &v), 0);
    assert_int_equal(v.attempts, 1);
    assert_true(v.worker_pid > 0);
    assert_non_null(v.result);
    char *r = unpickle_repr(v.result);
    assert_string_equal(r, "42");
    free(r);
    job_view_release(&v);
    /* It ran here: "running" went to the store first, then the end, as updates of
     * the claimed record (never a new one). */
    assert_int_equal(fake_store_wait_put(s, id, JOB_RUNNING, 0, &v), 0);
    job_view_release(&v);
    unsigned flags = 99;
    assert_int_equal(fake_store_last_put(s, id, &v, &flags), 0);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_int_equal(flags, 0);
    job_view_release(&v);
    pool_free(p);
    store_close(s);
}

/* At most once: a worker gets the job only once its "running" is committed; a
 * server killed before that finds it queued and runs it then, never twice. */
static void cluster__running_not_committed__worker_does_not_get_the_job_yet(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char id[JOB_ID_LEN + 1], first[JOB_ID_LEN + 1];
    /* A worker that has started (a job ran), so that only the commit holds it back. */
    claim(s, "lambda: 1", NULL, first);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, first, JOB_SUCCEEDED, LONG_MS, &v), 0);
    job_view_release(&v);

    char side[] = "/tmp/pyjobd-test-gate-XXXXXX";
    int fd = mkstemp(side);
    assert_true(fd >= 0);
    close(fd);
    unlink(side);
    char args[128];
    snprintf(args, sizeof(args), "('%s',)", side);
    fake_store_hold_commits(s);
    /* timeout 0.3 s, held 0.5 s: its time counts from when the worker got it. */
    claim_timeout(s, "lambda path: (__import__('time').sleep(0.1), open(path, 'a').write('x'))[1]",
                  args, 0.3, id);
    assert_int_equal(fake_store_wait_put(s, id, JOB_RUNNING, LONG_MS, &v), 0);
    job_view_release(&v);
    usleep(500 * 1000);
    assert_int_equal(access(side, F_OK), -1); /* the job's code has not run */
    assert_int_equal(fake_store_wait_put(s, id, JOB_SUCCEEDED, 0, &v), -ETIMEDOUT);
    assert_int_equal(fake_store_wait_put(s, id, JOB_FAILED, 0, &v), -ETIMEDOUT);

    fake_store_commit_all(s);
    assert_int_equal(fake_store_wait_put(s, id, JOB_SUCCEEDED, LONG_MS, &v), 0);
    job_view_release(&v);
    FILE *f = fopen(side, "r");
    assert_non_null(f);
    char got[8] = {0};
    assert_int_equal(fread(got, 1, sizeof(got) - 1, f), 1);
    fclose(f);
    unlink(side);
    assert_string_equal(got, "x");
    pool_free(p);
    store_close(s);
}

static void cluster__finished_job__waiters_fire_only_once_committed(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char id[JOB_ID_LEN + 1];
    claim(s, "lambda: 'done'", NULL, id);
    struct wake w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(pool_watch(p, id, clock_now_ms() + LONG_MS, wake_cb, &w), 0);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, id, JOB_SUCCEEDED, LONG_MS, &v), 0);
    job_view_release(&v);
    /* The final write is in the store but not confirmed: another node may have taken
     * the job over meanwhile, so nobody is told yet. */
    usleep(300000);
    assert_int_equal(w.fired, 0);
    fake_store_commit(s, id);
    assert_int_equal(wait_fired_ms(&w, 5000), 1);
    /* From now on the store answers for it: a new watch fires at once. */
    assert_int_equal(pool_watch(p, id, clock_now_ms() + LONG_MS, wake_cb, &w), 0);
    assert_int_equal(w.fired, 2);
    pool_free(p);
    store_close(s);
}

static void cluster__fenced_job__worker_stopped(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char id[JOB_ID_LEN + 1];
    claim(s, "lambda: time.sleep(30)", NULL, id);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, id, JOB_RUNNING, LONG_MS, &v), 0);
    pid_t pid = v.worker_pid;
    assert_true(pid > 0);
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(cancel_restarts(p), 0);
    /* Meanwhile another node took the job over (this one was presumed dead). */
    snprintf(v.node, sizeof(v.node), "other-node");
    v.attempts = 2;
    fake_store_set_row(s, &v);
    job_view_release(&v);
    size_t writes = fake_store_writes(s), fetches = fake_store_fetches(s);
    fake_store_fence(s, id);
    /* Its worker is stopped, and replaced. */
    assert_true(gone_within(pid, 5000));
    assert_int_equal(cancel_restarts(p), 1);
    /* Its record is gone from this node: reads are the store's. */
    assert_int_equal(pool_job_peek(p, id, &v), -ENOENT);
    assert_int_equal(pool_job_get(p, id, &v), 0);
    assert_string_equal(v.node, "other-node");
    assert_int_equal(v.attempts, 2);
    assert_int_equal(v.status, JOB_RUNNING);
    job_view_release(&v);
    assert_true(fake_store_fetches(s) > fetches);
    /* And nothing this node did with it since went to the store (no "failed" from
     * the killed worker, no delete of a record it no longer owns). */
    assert_int_equal(fake_store_writes(s), writes);
    pool_free(p);
    store_close(s);
}

static void cluster__reaped_node__unfinished_jobs_dropped(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char running[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1], done[JOB_ID_LEN + 1];
    claim(s, "lambda: 'first'", NULL, done);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, done, JOB_SUCCEEDED, LONG_MS, &v), 0);
    job_view_release(&v);
    claim(s, "lambda: time.sleep(30)", NULL, running);
    claim(s, "lambda: 1", NULL, queued);
    assert_int_equal(fake_store_wait_put(s, running, JOB_RUNNING, LONG_MS, &v), 0);
    pid_t pid = v.worker_pid;
    job_view_release(&v);
    assert_int_equal(pool_job_peek(p, queued, &v), 0);
    assert_int_equal(v.status, JOB_QUEUED);
    job_view_release(&v);
    fake_store_reap(s);
    assert_true(gone_within(pid, 5000));
    assert_int_equal(pool_job_peek(p, running, &v), -ENOENT);
    assert_int_equal(pool_job_peek(p, queued, &v), -ENOENT);
    /* A finished job is not taken over: this node keeps its record. */
    assert_int_equal(pool_job_peek(p, done, &v), 0);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    pool_free(p);
    store_close(s);
}

static void cluster__idle_workers__want_asked(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 2);
    /* Two idle workers: one job each, and one more each to start without a wait. */
    assert_int_equal(fake_store_wait_want(s, 4, LONG_MS), 0);
    char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1];
    claim(s, "lambda: time.sleep(30)", NULL, a);
    assert_int_equal(fake_store_wait_want(s, 2, LONG_MS), 0);
    claim(s, "lambda: time.sleep(30)", NULL, b);
    /* Busy workers ask for nothing: long jobs are not hoarded. */
    assert_int_equal(fake_store_wait_want(s, 0, LONG_MS), 0);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, b, JOB_RUNNING, 0, &v), 0);
    job_view_release(&v);
    pool_free(p);
    store_close(s);
}

static void cluster__relayed_cancel__queued_job_cancelled(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    char busy[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1];
    claim(s, "lambda: time.sleep(30)", NULL, busy);
    struct job_view v;
    assert_int_equal(fake_store_wait_put(s, busy, JOB_RUNNING, LONG_MS, &v), 0);
    job_view_release(&v);
    claim(s, "lambda: 1", NULL, id);
    fake_store_cancel(s, id, 0);
    assert_int_equal(fake_store_wait_put(s, id, JOB_CANCELLED, 5000, &v), 0);
    assert_int_equal(v.attempts, 0);
    job_view_release(&v);
    /* The running one is not touched by a cancel without force. */
    fake_store_cancel(s, busy, 0);
    assert_int_equal(pool_job_get(p, busy, &v), 0);
    assert_int_equal(v.status, JOB_RUNNING);
    job_view_release(&v);
    pool_free(p);
    store_close(s);
}

static void cluster__job_of_another_node__waiter_fires_on_update(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool *p = start_on(s, 1);
    struct job_view v = {.id = "0123456789abcdef0123456789abcdef", .status = JOB_RUNNING};
    snprintf(v.node, sizeof(v.node), "other-node");
    fake_store_set_row(s, &v);
    struct wake w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(pool_watch(p, v.id, clock_now_ms() + LONG_MS, wake_cb, &w), 0);
    assert_int_equal(fake_store_watches(s), 1); /* the database is told someone waits */
    usleep(100000);
    assert_int_equal(w.fired, 0);
    v.status = JOB_SUCCEEDED;
    fake_store_update(s, &v);
    assert_int_equal(wait_fired_ms(&w, 5000), 1);
    pool_free(p);
    store_close(s);
}

static void store__single_node__shared_calls_answer_for_one_node(void **state)
{
    (void)state;
    char dir[] = "/tmp/pyjobd-cluster-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jobs.db", dir);
    struct store *sqlite = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(sqlite);
    struct store *stores[2] = {sqlite, NULL}; /* NULL: a pool without a store */
    for (int i = 0; i < 2; i++) {
        struct store *s = stores[i];
        assert_int_equal(store_is_shared(s), 0);
        assert_int_equal(store_available(s), 1);
        assert_int_equal(store_queued(s), 0);
        assert_int_equal(store_lease_fresh(s), 1);
        char node[JOB_NODE_MAX] = "x";
        store_node_id(s, node);
        assert_string_equal(node, "");
        struct job_view v;
        assert_int_equal(store_fetch(s, "0123456789abcdef0123456789abcdef", &v), -ENOENT);
        store_want(s, 3);
        store_watch(s, "0123456789abcdef0123456789abcdef");
    }
    store_close(sqlite);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static size_t results_memory(struct pool *p)
{
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    size_t n = st.results_memory_bytes;
    pool_stats_release(&st);
    return n;
}

/* --max-results-memory on a shared store: a finished job's results leave this node's
 * memory only once the database has its end (it answers for the job from then on);
 * reads still get them, from the database. */
static void cluster__results_memory__dropped_once_committed_read_from_store(void **state)
{
    (void)state;
    struct store *s = fake_store_new();
    struct pool_config cfg = {.workers = 1, .store = s, .max_results_memory = 1u << 20};
    struct pool *p = start_pool_cfg(&cfg);
    char ids[5][JOB_ID_LEN + 1];
    for (int i = 0; i < 5; i++) {
        struct job_view v;
        claim(s, "lambda: b'r' * 300000", NULL, ids[i]);
        assert_int_equal(fake_store_wait_put(s, ids[i], JOB_SUCCEEDED, LONG_MS, &v), 0);
        job_view_release(&v);
    }
    usleep(100000);
    assert_true(results_memory(p) > 5 * 300000); /* not the database's yet: all kept */
    for (int i = 0; i < 5; i++)
        fake_store_commit(s, ids[i]);
    assert_true(results_memory(p) <= 1u << 20);
    assert_true(results_memory(p) >= 3 * 300000); /* the newest stay */
    for (int i = 0; i < 5; i++) {
        struct job_view v;
        assert_int_equal(pool_job_get(p, ids[i], &v), 0);
        assert_int_equal(v.status, JOB_SUCCEEDED);
        assert_non_null(v.result);
        assert_true(blob_len(v.result) > 300000);
        job_view_release(&v);
    }
    pool_free(p);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cluster__claimed_job__runs_and_final_write_reaches_store),
        cmocka_unit_test(cluster__running_not_committed__worker_does_not_get_the_job_yet),
        cmocka_unit_test(cluster__finished_job__waiters_fire_only_once_committed),
        cmocka_unit_test(cluster__fenced_job__worker_stopped),
        cmocka_unit_test(cluster__reaped_node__unfinished_jobs_dropped),
        cmocka_unit_test(cluster__idle_workers__want_asked),
        cmocka_unit_test(cluster__relayed_cancel__queued_job_cancelled),
        cmocka_unit_test(cluster__job_of_another_node__waiter_fires_on_update),
        cmocka_unit_test(cluster__results_memory__dropped_once_committed_read_from_store),
        cmocka_unit_test(store__single_node__shared_calls_answer_for_one_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
