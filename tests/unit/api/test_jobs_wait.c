/*
 * test_jobs_wait.c — api/jobs_wait.c and api/wait.c: validation of POST /v1/jobs/wait,
 * immediate answers, and the refcounted multi-waiter: FIRST_COMPLETED wakes on the
 * first firing, ALL_COMPLETED on the last, wake runs exactly once, and watches that
 * fire after the response was answered and released touch nothing freed (run this
 * binary under ASan to check the last point).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api_test_util.h"

#define ID0 "000000000000000000000000000000a0"
#define ID1 "000000000000000000000000000000a1"
#define ID2 "000000000000000000000000000000a2"
#define ID9 "ffffffffffffffffffffffffffffffff"

static void wait__bad_input__400(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"{}", "field 'ids' is required"},
        {"{\"ids\": \"" ID0 "\"}",
         "field 'ids' must be an array of 1 to 10000 job ids, got string"},
        {"{\"ids\": []}", "must hold 1 to 10000 job ids, got 0"},
        {"{\"ids\": [5]}", "ids[0] must be a job id (a string), got number"},
        {"{\"ids\": [\"" ID0 "\", \"nope\"]}", "ids[1] is not a job id: 'nope'"},
        {"{\"ids\": [\"" ID0 "\", \"" ID1 "\", \"" ID0 "\"]}", "lists " ID0 " more than once"},
        {"{\"ids\": [\"" ID0 "\"], \"timeout\": -1}", "from 0 to 60, got -1"},
        {"{\"ids\": [\"" ID0 "\"], \"timeout\": 61}", "from 0 to 60, got 61"},
        {"{\"ids\": [\"" ID0 "\"], \"timeout\": \"5\"}", "from 0 to 60, got string"},
        {"{\"ids\": [\"" ID0 "\"], \"timeout\": 1e400}", "not valid JSON"},
        {"{\"ids\": [\"" ID0 "\"], \"return_when\": \"FIRST_EXCEPTION\"}",
         "\"FIRST_COMPLETED\" or \"ALL_COMPLETED\", got 'FIRST_EXCEPTION'"},
        {"{\"ids\": [\"" ID0 "\"], \"return_when\": 1}", "got number"},
        {"{\"ids\": [\"" ID0 "\"], \"timeot\": 1}", "did you mean 'timeout'"},
        {"{\"ids\": [\"" ID0 "\"], \"ids\": []}", "duplicate"},
        {"", "request body is empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        post_json("/v1/jobs/wait", bad[i].body);
        assert_problem(400, bad[i].want);
    }
    assert_int_equal(fake.nwatches, 0);
}

static void wait__timeout_zero__answers_at_once_with_unknown(void **state)
{
    (void)state;
    fake_add(JOB_SUCCEEDED);
    fake_add(JOB_RUNNING);
    fake_add(JOB_QUEUED);
    fake_jobs[2].stale = 1;
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID9 "\", \"" ID1 "\", \"" ID0 "\", \"" ID2 "\"]}");
    assert_status(200);
    assert_null(resp.wait);
    json_t *done = json_object_get(body, "done");
    assert_int_equal(json_array_size(done), 1);
    assert_string_equal(jstr(json_array_get(done, 0), "id"), ID0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "not_done"), 0)),
                        ID1);
    json_t *unknown = json_object_get(body, "unknown");
    assert_int_equal(json_array_size(unknown), 2);
    assert_string_equal(json_string_value(json_array_get(unknown, 0)), ID9);
    assert_string_equal(json_string_value(json_array_get(unknown, 1)), ID2);
}

static void wait__first_completed_already_done__no_suspend(void **state)
{
    (void)state;
    fake_add(JOB_SUCCEEDED);
    fake_add(JOB_RUNNING);
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\", \"" ID1 "\"], \"timeout\": 30, "
                               "\"return_when\": \"FIRST_COMPLETED\"}");
    assert_status(200);
    assert_null(resp.wait);
    /* ALL_COMPLETED must wait for ID1. */
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\", \"" ID1 "\"], \"timeout\": 30}");
    assert_non_null(resp.wait);
}

static void wait__all_completed__wakes_after_last(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake_add(JOB_QUEUED);
    fake_add(JOB_SUCCEEDED);
    post_json("/v1/jobs/wait",
              "{\"ids\": [\"" ID0 "\", \"" ID1 "\", \"" ID2 "\"], \"timeout\": 5.5}");
    assert_non_null(resp.wait);
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(fake.nwatches, 2); /* the finished one needs no watch */
    assert_int_equal(fake.watches[0].deadline, 1000000 + 5500);
    fake_jobs[0].status = JOB_SUCCEEDED;
    fake_fire_watches(0, 1);
    assert_int_equal(woken, 0);
    fake_jobs[1].status = JOB_FAILED;
    fake_fire_watches(1, 2);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_status(200);
    assert_int_equal(json_array_size(json_object_get(body, "done")), 3);
    assert_int_equal(json_array_size(json_object_get(body, "not_done")), 0);
}

static void wait__first_completed__wakes_once_late_watches_safe(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake_add(JOB_QUEUED);
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\", \"" ID1 "\"], \"timeout\": 60, "
                               "\"return_when\": \"FIRST_COMPLETED\"}");
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(fake.nwatches, 2);
    fake_jobs[1].status = JOB_SUCCEEDED;
    fake_fire_watches(1, 2);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_int_equal(json_array_size(json_object_get(body, "done")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "not_done"), 0)),
                        ID0);
    api_response_release(&resp); /* the server sent it and forgot the request */
    /* The other watch fires at its deadline, after everything: no wake, no use after free. */
    fake_fire_watches(0, 1);
    assert_int_equal(woken, 1);
}

static void wait__deadline__renders_current_state(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake_add(JOB_RUNNING);
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\", \"" ID1 "\"], \"timeout\": 1}");
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    fake_fire_watches(0, 2); /* both at the deadline */
    assert_int_equal(woken, 1);
    finish_wait();
    assert_int_equal(json_array_size(json_object_get(body, "done")), 0);
    assert_int_equal(json_array_size(json_object_get(body, "not_done")), 2);
}

static void wait__job_gone_before_start__counts_as_fired(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake_add(JOB_RUNNING);
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\", \"" ID1 "\"], \"timeout\": 10}");
    fake_jobs[0].exists = 0;             /* finished and deleted in between */
    fake_jobs[1].status = JOB_SUCCEEDED; /* finished: the pool calls back inline */
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "unknown"), 0)),
                        ID0);
}

static void wait__released_unstarted_and_unwoken__no_leak_no_wake(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\"], \"timeout\": 10}");
    api_response_release(&resp); /* never started */
    post_json("/v1/jobs/wait", "{\"ids\": [\"" ID0 "\"], \"timeout\": 10}");
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    api_response_release(&resp); /* started, released before any firing */
    fake_fire_watches(0, 1);
    assert_int_equal(woken, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(wait__bad_input__400),
        T(wait__timeout_zero__answers_at_once_with_unknown),
        T(wait__first_completed_already_done__no_suspend),
        T(wait__all_completed__wakes_after_last),
        T(wait__first_completed__wakes_once_late_watches_safe),
        T(wait__deadline__renders_current_state),
        T(wait__job_gone_before_start__counts_as_fired),
        T(wait__released_unstarted_and_unwoken__no_leak_no_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
