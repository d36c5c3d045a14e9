/*
 * test_pool_admin.c — the pool's administrative behaviour with real workers: cancel,
 * delete, listing with cursors, retention (TTL and max records), a full queue,
 * all-or-nothing batches, resize both ways with jobs in flight, retries after a
 * crash, JSON arguments and results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "pool_test_util.h"
#include "pyjobd/clock.h"

static void wait_status(struct pool *p, const char *id, enum job_status want)
{
    struct job_view v;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(pool_job_get(p, id, &v), 0);
        enum job_status s = v.status;
        job_view_release(&v);
        if (s == want)
            return;
        usleep(5000);
    }
    fail_msg("job %s never reached status %s", id, job_status_name(want));
}

static void cancel__queued_running_finished__like_future_cancel(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char run[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1], after[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(30)", NULL, 0, run);
    submit(p, "lambda: 'never'", NULL, 0, queued);
    wait_status(p, run, JOB_RUNNING);
    assert_int_equal(pool_cancel(p, queued, 0), 0);
    struct job_view v;
    assert_int_equal(pool_job_get(p, queued, &v), 0);
    assert_int_equal(v.status, JOB_CANCELLED);
    assert_int_equal(v.error.type, JOB_ERR_CANCELLED);
    assert_int_equal(v.attempts, 0);
    job_view_release(&v);
    assert_int_equal(pool_cancel(p, queued, 0), -EALREADY);
    assert_int_equal(pool_cancel(p, run, 0), -EBUSY);
    assert_int_equal(pool_cancel(p, run, 1), 0);
    assert_int_equal(pool_job_get(p, run, &v), 0);
    assert_int_equal(v.status, JOB_CANCELLED);
    job_view_release(&v);
    /* The killed worker is replaced and takes the next job. */
    submit(p, "lambda: 'after'", NULL, 0, after);
    wait_done(p, after, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    assert_int_equal(pool_cancel(p, "0123456789abcdef0123456789abcdef", 0), -ENOENT);
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    assert_int_equal(st.restarts_cancel, 1);
    assert_int_equal(st.finished[JOB_CANCELLED], 2);
    assert_int_equal(st.finished[JOB_SUCCEEDED], 1);
    pool_stats_release(&st);
    pool_free(p);
}

static void interrupt__running_job_ends_cancelled_without_a_kill(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char run[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(30)", NULL, 0, run);
    submit(p, "lambda: 'never'", NULL, 0, queued);
    wait_status(p, run, JOB_RUNNING);
    usleep(100 * 1000); /* its call has begun */
    assert_int_equal(pool_interrupt(p, run, 0), -EINVAL);
    assert_int_equal(pool_interrupt(p, run, 3601), -EINVAL);
    assert_int_equal(pool_interrupt(p, queued, 1), 0); /* queued: cancelled at once */
    struct job_view v;
    assert_int_equal(pool_job_get(p, queued, &v), 0);
    assert_int_equal(v.status, JOB_CANCELLED);
    job_view_release(&v);
    int64_t t0 = clock_now_ms();
    assert_int_equal(pool_interrupt(p, run, 20), 0);
    wait_status(p, run, JOB_CANCELLED); /* pyjobd.Cancelled ended the sleep: no 20 s grace */
    assert_true(clock_now_ms() - t0 < 3000);
    assert_int_equal(pool_job_get(p, run, &v), 0);
    assert_int_equal(v.error.type, JOB_ERR_CANCELLED);
    assert_non_null(strstr(v.error.message, "it ended raising"));
    job_view_release(&v);
    assert_int_equal(pool_interrupt(p, run, 1), -EALREADY);
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    assert_int_equal(st.restarts_cancel, 0); /* the worker lives on */
    pool_stats_release(&st);
    pool_free(p);
}

static void delete__finished_only__then_unknown(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char slow[JOB_ID_LEN + 1], quick[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(0.5)", NULL, 0, slow);
    assert_int_equal(pool_delete(p, slow), -EBUSY);
    submit(p, "lambda: 1", NULL, 0, quick);
    struct job_view v;
    wait_done(p, quick, &v);
    job_view_release(&v);
    assert_int_equal(pool_delete(p, quick), 0);
    assert_int_equal(pool_job_get(p, quick, &v), -ENOENT);
    assert_int_equal(pool_delete(p, quick), -ENOENT);
    pool_free(p);
}

static void list__newest_first_with_cursor_and_filter(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char ids[5][JOB_ID_LEN + 1];
    for (int i = 0; i < 5; i++)
        submit(p, i == 2 ? "lambda: 1/0" : "lambda: 1", NULL, 0, ids[i]);
    struct job_view v;
    for (int i = 0; i < 5; i++) {
        wait_done(p, ids[i], &v);
        job_view_release(&v);
    }
    struct pool_list_query q = {.status = -1, .limit = 2};
    struct job_view *page;
    size_t n;
    uint64_t next;
    const int order[5] = {4, 3, 2, 1, 0};
    int seen = 0;
    for (int pages = 0; pages < 3; pages++) {
        assert_int_equal(pool_list(p, &q, &page, &n, &next), 0);
        assert_true(n >= 1 && n <= 2);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(page[i].id, ids[order[seen++]]);
            job_view_release(&page[i]);
        }
        free(page);
        if (pages < 2)
            assert_true(next != 0);
        q.cursor = next;
    }
    assert_int_equal(seen, 5);
    assert_int_equal(next, 0); /* the last page says there is no more */
    struct pool_list_query failed = {.status = JOB_FAILED, .limit = 10};
    assert_int_equal(pool_list(p, &failed, &page, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].id, ids[2]);
    assert_int_equal(next, 0);
    job_view_release(&page[0]);
    free(page);
    pool_free(p);
}

static void retention__ttl_and_max_jobs__expired_ids_say_so(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .result_ttl = 0.3, .max_jobs = 3};
    struct pool *p = start_pool_cfg(&cfg);
    char ids[4][JOB_ID_LEN + 1];
    struct job_view v;
    for (int i = 0; i < 4; i++) {
        submit(p, "lambda: 1", NULL, 0, ids[i]);
        wait_done(p, ids[i], &v);
        job_view_release(&v);
    }
    /* max_jobs 3: the oldest finished one went when the fourth arrived. */
    assert_int_equal(pool_job_get(p, ids[0], &v), -ESTALE);
    assert_int_equal(pool_job_get(p, ids[3], &v), 0);
    job_view_release(&v);
    usleep(500000);
    for (int i = 1; i < 4; i++)
        assert_int_equal(pool_job_get(p, ids[i], &v), -ESTALE);
    assert_int_equal(pool_job_get(p, "0123456789abcdef0123456789abcdef", &v), -ENOENT);
    pool_free(p);
}

static void queue__full__eagain_and_nothing_lost(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .max_queue = 2};
    struct pool *p = start_pool_cfg(&cfg);
    char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1], c[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(1.5) or 'a'", NULL, 0, a);
    wait_status(p, a, JOB_RUNNING);
    submit(p, "lambda: 'b'", NULL, 0, b);
    submit(p, "lambda: 'c'", NULL, 0, c);
    struct job_spec spec = {.callable = pickle("lambda: 'd'")};
    char d[JOB_ID_LEN + 1];
    assert_int_equal(submit_id(p, &spec, d), -EAGAIN);
    /* A batch that does not fit is refused whole. */
    struct job_spec two[2] = {spec, spec};
    char ids[2][JOB_ID_LEN + 1];
    assert_int_equal(submit_ids(p, two, 2, ids), -EAGAIN);
    job_spec_release(&spec);
    struct job_view v;
    const char *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        wait_done(p, all[i], &v);
        assert_int_equal(v.status, JOB_SUCCEEDED);
        job_view_release(&v);
    }
    pool_free(p);
}

static void batch__runs_in_order(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    struct job_spec specs[3] = {{.callable = pickle("lambda x: x * 10"), .args = pickle("(1,)")},
                                {.callable = pickle("lambda x: x * 10"), .args = pickle("(2,)")},
                                {.callable = pickle("lambda x: x * 10"), .args = pickle("(3,)")}};
    char ids[3][JOB_ID_LEN + 1];
    assert_int_equal(submit_ids(p, specs, 3, ids), 0);
    const char *want[3] = {"10", "20", "30"};
    for (int i = 0; i < 3; i++) {
        struct job_view v;
        wait_done(p, ids[i], &v);
        char *r = unpickle_repr(v.result);
        assert_string_equal(r, want[i]);
        free(r);
        job_view_release(&v);
        job_spec_release(&specs[i]);
    }
    pool_free(p);
}

static unsigned live_workers(struct pool *p, unsigned *busy)
{
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    unsigned live = 0;
    *busy = 0;
    for (size_t i = 0; i < st.nworkers; i++) {
        if (strcmp(st.workers[i].state, "idle") == 0 || strcmp(st.workers[i].state, "busy") == 0)
            live++;
        if (strcmp(st.workers[i].state, "busy") == 0)
            (*busy)++;
    }
    pool_stats_release(&st);
    return live;
}

static void resize__grow_and_shrink_with_a_running_job(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    unsigned busy;
    char slow[JOB_ID_LEN + 1];
    submit(p, "lambda: (time.sleep(1), 'slow')[1]", NULL, 0, slow);
    wait_status(p, slow, JOB_RUNNING);
    assert_int_equal(pool_resize(p, 3), 0);
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++, usleep(10000))
        ok = live_workers(p, &busy) == 3;
    assert_true(ok);
    /* Shrink to 1: the two idle workers go, the busy one keeps its job. */
    assert_int_equal(pool_resize(p, 1), 0);
    ok = 0;
    for (int i = 0; i < 500 && !ok; i++, usleep(10000))
        ok = live_workers(p, &busy) == 1;
    assert_true(ok);
    struct job_view v;
    wait_done(p, slow, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    /* New jobs still run after the shrink. */
    char more[JOB_ID_LEN + 1];
    submit(p, "lambda: 2", NULL, 0, more);
    wait_done(p, more, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    assert_int_equal(pool_resize(p, 0), -EINVAL);
    pool_free(p);
}

static void resize__shrink_below_busy__busy_worker_retires_after_its_job(void **state)
{
    (void)state;
    struct pool *p = start_pool(2);
    char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1];
    submit(p, "lambda: (time.sleep(0.5), 'a')[1]", NULL, 0, a);
    submit(p, "lambda: (time.sleep(0.5), 'b')[1]", NULL, 0, b);
    wait_status(p, a, JOB_RUNNING);
    wait_status(p, b, JOB_RUNNING);
    assert_int_equal(pool_resize(p, 1), 0);
    struct job_view v;
    wait_done(p, a, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    wait_done(p, b, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    unsigned busy;
    int ok = 0;
    for (int i = 0; i < 300 && !ok; i++, usleep(10000))
        ok = live_workers(p, &busy) == 1;
    assert_true(ok);
    pool_free(p);
}

static void retries__crash_on_first_attempt_only__succeeds_on_second(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char marker[] = "/tmp/pyjobd-retry-XXXXXX";
    int fd = mkstemp(marker);
    assert_true(fd >= 0);
    close(fd);
    unlink(marker);
    char fn[512];
    snprintf(fn, sizeof(fn),
             "lambda: 'second' if os.path.exists('%s') else (open('%s', 'w').close(), "
             "os._exit(7))",
             marker, marker);
    struct job_spec spec = {.callable = pickle(fn), .max_retries = 1};
    char id[JOB_ID_LEN + 1];
    assert_int_equal(submit_id(p, &spec, id), 0);
    job_spec_release(&spec);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_int_equal(v.attempts, 2);
    job_view_release(&v);
    unlink(marker);
    /* Without retries left the crash is final and keeps its details. */
    struct job_spec always = {.callable = pickle("lambda: os._exit(9)"), .max_retries = 1};
    assert_int_equal(submit_id(p, &always, id), 0);
    job_spec_release(&always);
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.attempts, 2);
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    assert_int_equal(v.error.exit_code, 9);
    job_view_release(&v);
    /* Exceptions are never retried. */
    struct job_spec raising = {.callable = pickle("lambda: 1/0"), .max_retries = 3};
    assert_int_equal(submit_id(p, &raising, id), 0);
    job_spec_release(&raising);
    wait_done(p, id, &v);
    assert_int_equal(v.attempts, 1);
    assert_int_equal(v.error.type, JOB_ERR_EXCEPTION);
    job_view_release(&v);
    pool_free(p);
}

static void json__args_and_result__round_trip(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    const char *args = "[2, 3]", *kwargs = "{\"z\": 4}";
    struct job_spec spec = {.callable = pickle("lambda x, y, z: {'sum': x + y + z}"),
                            .json_args = blob_new_copy(args, strlen(args)),
                            .json_kwargs = blob_new_copy(kwargs, strlen(kwargs)),
                            .result_json = 1};
    char id[JOB_ID_LEN + 1];
    assert_int_equal(submit_id(p, &spec, id), 0);
    job_spec_release(&spec);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_null(v.result);
    assert_non_null(v.result_json);
    assert_string_equal((const char *)blob_data(v.result_json), "{\"sum\": 9}");
    job_view_release(&v);
    struct job_spec bad = {.callable = pickle("lambda: {1, 2}"), .result_json = 1};
    assert_int_equal(submit_id(p, &bad, id), 0);
    job_spec_release(&bad);
    wait_done(p, id, &v);
    assert_int_equal(v.error.type, JOB_ERR_UNJSONABLE_RESULT);
    job_view_release(&v);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cancel__queued_running_finished__like_future_cancel),
        cmocka_unit_test(interrupt__running_job_ends_cancelled_without_a_kill),
        cmocka_unit_test(delete__finished_only__then_unknown),
        cmocka_unit_test(list__newest_first_with_cursor_and_filter),
        cmocka_unit_test(retention__ttl_and_max_jobs__expired_ids_say_so),
        cmocka_unit_test(queue__full__eagain_and_nothing_lost),
        cmocka_unit_test(batch__runs_in_order),
        cmocka_unit_test(resize__grow_and_shrink_with_a_running_job),
        cmocka_unit_test(resize__shrink_below_busy__busy_worker_retires_after_its_job),
        cmocka_unit_test(retries__crash_on_first_attempt_only__succeeds_on_second),
        cmocka_unit_test(json__args_and_result__round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
