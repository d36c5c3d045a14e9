/*
 * test_pool.c — the pool with real pyjobd-worker processes: success, exception,
 * timeout, crash, crash isolation, long-poll watches, shutdown.
 *
 * Payloads are made by Debian's /usr/bin/python3 + cloudpickle (the interpreter the
 * worker embeds), and results are read back the same way. The worker binary comes
 * from $PYJOBD_WORKER (the Makefile sets it).
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
#include <sys/wait.h>
#include <unistd.h>

#include "pyjobd/pool.h"

#include "pool_test_util.h"

static void pool__lambda__succeeds_with_result(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1];
    submit(p, "lambda x, y: x * y", "(6, 7)", 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_int_equal(v.attempts, 1);
    assert_true(v.worker_pid > 0);
    assert_non_null(v.result);
    char *r = unpickle_repr(v.result);
    assert_string_equal(r, "42");
    free(r);
    job_view_release(&v);
    pool_free(p);
}

static void pool__exception__fails_with_pickled_exception(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1];
    submit(p, "lambda: int('nope')", NULL, 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_EXCEPTION);
    assert_string_equal(v.error.exc_type, "ValueError");
    assert_non_null(strstr(v.error.message, "invalid literal"));
    assert_non_null(v.error.traceback);
    assert_non_null(strstr(v.error.traceback, "ValueError"));
    assert_non_null(v.error.exception);
    char *r = unpickle_repr(v.error.exception);
    assert_non_null(strstr(r, "ValueError(\"invalid literal"));
    free(r);
    job_view_release(&v);
    pool_free(p);
}

static void pool__timeout__killed_near_deadline_and_worker_replaced(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1], id2[JOB_ID_LEN + 1];
    /* A busy loop in C-level code that never returns to the eval loop for long. */
    submit(p, "lambda: time.sleep(30)", NULL, 0.3, id);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_TIMEOUT);
    assert_non_null(strstr(v.error.message, "0.3 s"));
    double ran = (double)(v.finished_at.tv_sec - v.started_at.tv_sec) +
                 (double)(v.finished_at.tv_nsec - v.started_at.tv_nsec) / 1e9;
    assert_true(ran >= 0.3);
    assert_true(ran < 0.4); /* the deadline is enforced within 100 ms */
    pid_t old = v.worker_pid;
    job_view_release(&v);
    submit(p, "lambda: os.getpid()", NULL, 0, id2);
    wait_done(p, id2, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_true(v.worker_pid != old);
    job_view_release(&v);
    pool_free(p);
}

static void pool__segfault__worker_crashed_with_signal(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1], id2[JOB_ID_LEN + 1];
    submit(p, "lambda: os.kill(os.getpid(), signal.SIGSEGV)", NULL, 0, id);
    submit(p, "lambda: 'after'", NULL, 0, id2);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    assert_int_equal(v.error.signal, SIGSEGV);
    assert_true(v.error.max_rss_bytes > 1000000);
    assert_non_null(strstr(v.error.message, "SIGSEGV"));
    job_view_release(&v);
    wait_done(p, id2, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    pool_free(p);
}

static void pool__exit__worker_crashed_with_code(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1];
    submit(p, "lambda: os._exit(3)", NULL, 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    assert_int_equal(v.error.exit_code, 3);
    assert_int_equal(v.error.signal, 0);
    job_view_release(&v);
    pool_free(p);
}

static void pool__crash__other_jobs_in_flight_unaffected(void **state)
{
    (void)state;
    struct pool *p = start_pool(2);
    char slow[JOB_ID_LEN + 1], crash[JOB_ID_LEN + 1], more[4][JOB_ID_LEN + 1];
    submit(p, "lambda: (time.sleep(1), 'slow')[1]", NULL, 0, slow);
    submit(p, "lambda: os.kill(os.getpid(), signal.SIGKILL)", NULL, 0, crash);
    for (int i = 0; i < 4; i++)
        submit(p, "lambda x: x + 1", "(41,)", 0, more[i]);
    struct job_view v;
    wait_done(p, crash, &v);
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    assert_int_equal(v.error.signal, SIGKILL);
    job_view_release(&v);
    wait_done(p, slow, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    char *r = unpickle_repr(v.result);
    assert_string_equal(r, "'slow'");
    free(r);
    job_view_release(&v);
    for (int i = 0; i < 4; i++) {
        wait_done(p, more[i], &v);
        assert_int_equal(v.status, JOB_SUCCEEDED);
        job_view_release(&v);
    }
    pool_free(p);
}

static void pool__watch__fires_on_completion_and_on_deadline(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(0.5)", NULL, 0, id);
    struct wake early = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct wake late = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(pool_watch(p, id, clock_now_ms() + 100, wake_cb, &early), 0);
    assert_int_equal(pool_watch(p, id, clock_now_ms() + 20000, wake_cb, &late), 0);
    int64_t t1 = wait_fired(&early);
    assert_true(t1 >= 90 && t1 < 300); /* the deadline, not the job's end */
    struct job_view v;
    assert_int_equal(pool_job_get(p, id, &v), 0);
    assert_false(job_status_is_terminal(v.status));
    job_view_release(&v);
    wait_fired(&late); /* the job's end (well before 20 s) */
    assert_int_equal(pool_job_get(p, id, &v), 0);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    assert_int_equal(early.fired, 1);
    assert_int_equal(late.fired, 1);
    /* Finished job: fires at once, on this thread. */
    struct wake now = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(pool_watch(p, id, clock_now_ms() + 20000, wake_cb, &now), 0);
    assert_int_equal(now.fired, 1);
    assert_int_equal(
        pool_watch(p, "0123456789abcdef0123456789abcdef", clock_now_ms() + 10, wake_cb, &now),
        -ENOENT);
    pool_free(p);
}

static void pool__stop__interrupts_queued_and_running_and_fires_waiters(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char running[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(30)", NULL, 0, running);
    submit(p, "lambda: 1", NULL, 0, queued);
    struct job_view v;
    for (int i = 0; i < 500; i++) { /* until the first job is running */
        assert_int_equal(pool_job_get(p, running, &v), 0);
        enum job_status s = v.status;
        job_view_release(&v);
        if (s == JOB_RUNNING)
            break;
        usleep(10000);
    }
    struct wake w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    assert_int_equal(pool_watch(p, queued, clock_now_ms() + 30000, wake_cb, &w), 0);
    int64_t start = clock_now_ms();
    pool_stop(p);
    assert_true(clock_now_ms() - start < 3000);
    assert_int_equal(w.fired, 1);
    assert_int_equal(pool_job_get(p, running, &v), 0);
    assert_int_equal(v.error.type, JOB_ERR_INTERRUPTED);
    job_view_release(&v);
    assert_int_equal(pool_job_get(p, queued, &v), 0);
    assert_int_equal(v.error.type, JOB_ERR_INTERRUPTED);
    job_view_release(&v);
    struct job_spec spec = {.callable = pickle("lambda: 1")};
    char id[JOB_ID_LEN + 1];
    assert_int_equal(submit_id(p, &spec, id), -ESHUTDOWN);
    job_spec_release(&spec);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool__lambda__succeeds_with_result),
        cmocka_unit_test(pool__exception__fails_with_pickled_exception),
        cmocka_unit_test(pool__timeout__killed_near_deadline_and_worker_replaced),
        cmocka_unit_test(pool__segfault__worker_crashed_with_signal),
        cmocka_unit_test(pool__exit__worker_crashed_with_code),
        cmocka_unit_test(pool__crash__other_jobs_in_flight_unaffected),
        cmocka_unit_test(pool__watch__fires_on_completion_and_on_deadline),
        cmocka_unit_test(pool__stop__interrupts_queued_and_running_and_fires_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
