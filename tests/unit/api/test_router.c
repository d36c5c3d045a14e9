/*
 * test_router.c — api/router.c, api/problem.c, api/service.c and the single-job
 * resources of api/jobs.c against the fake pool (tests/fake/): routes, 405 with
 * Allow on every path, status codes, problem+json bodies, Location, and the two-step
 * long-poll.
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

static void router_healthz__get__ok(void **state)
{
    (void)state;
    request("GET", "/healthz", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.body, "{\"status\":\"ok\"}\n");
}

static void router_every_path__wrong_method__405_with_allow(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"POST", "/healthz", "GET, HEAD"},
        {"PUT", "/readyz", "GET, HEAD"},
        {"POST", "/metrics", "GET, HEAD"},
        {"DELETE", "/v1/info", "GET, HEAD"},
        {"POST", "/v1/pool", "GET, HEAD, PATCH"},
        {"DELETE", "/v1/jobs", "GET, HEAD, POST"},
        {"GET", "/v1/jobs/batch", "POST"},
        {"GET", "/v1/jobs/wait", "POST"},
        {"POST", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", "GET, HEAD, DELETE"},
        {"DELETE", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e/result", "GET, HEAD"},
        {"GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e/cancel", "POST"},
        {"OPTIONS", "/v1/jobs", "GET, HEAD, POST"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        request(cases[i].method, cases[i].path, NULL, NULL);
        assert_problem(405, "is not allowed on");
        assert_string_equal(resp.allow, cases[i].allow);
        assert_string_equal(jstr(body, "title"), "Method Not Allowed");
    }
    assert_int_equal(fake.submits + fake.cancels + fake.deletes, 0);
}

static void router_unknown_path__404_problem(void **state)
{
    (void)state;
    request("GET", "/v2/jobs", NULL, NULL);
    assert_problem(404, "no resource at '/v2/jobs'");
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e/results", NULL, NULL);
    assert_problem(404, "no resource");
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e/result/x", NULL, NULL);
    assert_problem(404, "no resource");
    request("GET", "/v1/pool/", NULL, NULL);
    assert_problem(404, "no resource");
}

static void router_info__get__pool_facts_and_limits(void **state)
{
    (void)state;
    request("GET", "/v1/info", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(jstr(body, "version"), "0.1.0");
    assert_true(json_is_null(json_object_get(body, "python_version")));
    assert_string_equal(jstr(body, "cloudpickle_version"), "3.0.0");
    assert_int_equal(jint(body, "workers"), 4);
    assert_int_equal(jint(body, "workers_ready"), 3);
    assert_int_equal(jint(body, "queued"), 2);
    assert_int_equal(jint(body, "running"), 1);
    assert_string_equal(jstr(body, "store"), "memory");
    json_t *limits = json_object_get(body, "limits");
    assert_int_equal(jint(limits, "max_request_bytes"), 1 << 20);
    assert_true(json_number_value(json_object_get(limits, "max_wait_seconds")) == 60);
    assert_true(json_is_null(json_object_get(limits, "default_timeout")));
    assert_int_equal(jint(limits, "max_batch"), 4);
    assert_int_equal(jint(limits, "max_queue"), 100);
    assert_int_equal(jint(limits, "max_jobs"), 1000);
    assert_true(json_number_value(json_object_get(limits, "result_ttl")) == 3600);
    assert_int_equal(jint(limits, "max_retries_limit"), 3);
    assert_string_equal(jstr(limits, "python_match"), "minor");
}

static void router_info__unlimited__nulls_and_defaults(void **state)
{
    (void)state;
    cfg.max_queue = cfg.max_jobs = 0;
    cfg.result_ttl = 0;
    cfg.max_batch = 0;
    cfg.python_match = "exact";
    api_reopen();
    request("GET", "/v1/info", NULL, NULL);
    json_t *limits = json_object_get(body, "limits");
    assert_true(json_is_null(json_object_get(limits, "max_queue")));
    assert_true(json_is_null(json_object_get(limits, "max_jobs")));
    assert_true(json_is_null(json_object_get(limits, "result_ttl")));
    assert_int_equal(jint(limits, "max_batch"), 10000);
    assert_string_equal(jstr(limits, "python_match"), "exact");
}

static void router_new__bad_python_match__fails(void **state)
{
    (void)state;
    cfg.python_match = "major";
    assert_null(api_new(&cfg));
    assert_int_equal(errno, EINVAL);
}

static void router_readyz__states(void **state)
{
    (void)state;
    request("GET", "/readyz", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "{\"status\":\"ready\"}\n");
    fake.info.workers_ready = 0;
    request("GET", "/readyz", NULL, NULL);
    assert_problem(503, "no worker is ready yet");
    strcpy(fake.info.boot_error, "ModuleNotFoundError: No module named 'cloudpickle'");
    request("GET", "/readyz", NULL, NULL);
    assert_problem(503, "workers fail to boot: ModuleNotFoundError");
    fake.info.workers_ready = 2;
    fake.info.stopping = 1;
    request("HEAD", "/readyz", NULL, NULL);
    assert_problem(503, "shutting down");
}

static void router_create__valid__201_location_and_job(void **state)
{
    (void)state;
    post_json("/v1/jobs", "{\"callable\":\"Zm9vYmFy\",\"timeout\":5,\"max_retries\":2}");
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.location, "/v1/jobs/000000000000000000000000000000a0");
    assert_string_equal(jstr(body, "id"), fake_id(0));
    assert_string_equal(jstr(body, "status"), "queued");
    assert_int_equal(jint(body, "max_retries"), 2);
    assert_null(json_object_get(body, "metadata"));
    assert_int_equal(blob_len(fake.last.callable), 6);
    assert_true(fake.last.timeout == 5);
}

static void router_create__content_type__415_unless_json(void **state)
{
    (void)state;
    request("POST", "/v1/jobs", "Application/JSON; charset=utf-8", "{\"callable\":\"Zm9v\"}");
    assert_int_equal(resp.status, 201);
    request("POST", "/v1/jobs", "text/plain", "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "Content-Type must be application/json, got 'text/plain'");
    request("POST", "/v1/jobs", NULL, "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "got none");
    request("POST", "/v1/jobs", "application/jsonx", "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "application/jsonx");
    assert_int_equal(fake.submits, 1);
}

static void router_create__invalid_body__400_with_detail(void **state)
{
    (void)state;
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"timout\":1}");
    assert_problem(400, "unknown field 'timout' (did you mean 'timeout'?)");
    assert_string_equal(jstr(body, "title"), "Bad Request");
    post_json("/v1/jobs", "");
    assert_problem(400, "request body is empty");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"callable\":\"Zm9v\"}");
    assert_problem(400, "duplicate");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"max_retries\":4}");
    assert_problem(400, "from 0 to 3");
    assert_int_equal(fake.submits, 0);
}

static void router_create__python_mismatch__400_names_both(void **state)
{
    (void)state;
    strcpy(fake.info.python_version, "3.11.2");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"python\":\"3.12.1\"}");
    assert_problem(400, "this server's workers run Python 3.11.2; the payload was made with "
                        "3.12.1: pickles are not portable across minor versions; use a 3.11 "
                        "client or set --python-match");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"python\":\"3.11.9\"}");
    assert_int_equal(resp.status, 201);
    cfg.python_match = "exact";
    api_reopen();
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"python\":\"3.11.9\"}");
    assert_problem(400, "--python-match=exact");
    cfg.python_match = "none";
    api_reopen();
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"python\":\"3.12.1\"}");
    assert_int_equal(resp.status, 201);
    /* Workers not known yet: accepted. */
    cfg.python_match = NULL;
    api_reopen();
    fake.info.python_version[0] = '\0';
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"python\":\"3.12.1\"}");
    assert_int_equal(resp.status, 201);
}

static void router_create__queue_full__429_retry_after(void **state)
{
    (void)state;
    fake.submit_rc = -EAGAIN;
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\"}");
    assert_problem(429, "the job queue is full (--max-queue 100 jobs)");
    assert_int_equal(resp.retry_after, 1);
    assert_string_equal(jstr(body, "title"), "Too Many Requests");
}

static void router_create__shutting_down__503(void **state)
{
    (void)state;
    fake.submit_rc = -ESHUTDOWN;
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\"}");
    assert_problem(503, "server is shutting down");
    assert_null(resp.location);
    assert_int_equal(resp.retry_after, 0);
}

static void router_create__bad_wait__400_before_submit(void **state)
{
    (void)state;
    static const char *const bad[] = {"abc", "-1", "61", "1e1", "", "nan", "inf", " 5", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        nquery = 0;
        set_query("wait", bad[i]);
        post_json("/v1/jobs", "{\"callable\":\"Zm9v\"}");
        assert_problem(400, "query parameter 'wait' must be a number of seconds from 0 to 60");
    }
    assert_int_equal(fake.submits, 0);
}

static void router_create__wait__suspends_then_201(void **state)
{
    (void)state;
    set_query("wait", "2.5");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\"}");
    assert_non_null(resp.wait);
    assert_null(resp.body);
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(woken, 0);
    assert_int_equal(fake.nwatches, 1);
    assert_int_equal(fake.watches[0].deadline, 1000000 + 2500);
    fake_jobs[0].status = JOB_SUCCEEDED;
    fake_fire_watches(0, 1);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.location, "/v1/jobs/000000000000000000000000000000a0");
    assert_string_equal(jstr(body, "status"), "succeeded");
    assert_string_equal(jstr(body, "result"), "Zm9vYmFy");
}

static void router_create__wait_zero__answers_directly(void **state)
{
    (void)state;
    set_query("wait", "0");
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\"}");
    assert_null(resp.wait);
    assert_int_equal(resp.status, 201);
}

static void router_get__known__200(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    request("GET", "/v1/jobs/000000000000000000000000000000a0", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_null(resp.location);
    assert_string_equal(jstr(body, "id"), fake_id(0));
    assert_string_equal(jstr(body, "status"), "running");
}

static void router_get__malformed_id__404_says_format(void **state)
{
    (void)state;
    request("GET", "/v1/jobs/0B6F4C1E9D2A4F7A8C3E5B1D2F4A6C8E", NULL, NULL);
    assert_problem(404, "job ids are 32 lowercase hexadecimal digits");
    request("GET", "/v1/jobs/", NULL, NULL);
    assert_problem(404, "job ids are 32");
    request("GET", "/v1/jobs/zz/result", NULL, NULL);
    assert_problem(404, "job ids are 32");
    request("POST", "/v1/jobs/zz/cancel", NULL, NULL);
    assert_problem(404, "job ids are 32");
    request("DELETE", "/v1/jobs/zz", NULL, NULL);
    assert_problem(404, "job ids are 32");
}

static void router_get__unknown_id__404(void **state)
{
    (void)state;
    request("GET", "/v1/jobs/ffffffffffffffffffffffffffffffff", NULL, NULL);
    assert_problem(404, "no job with id ffffffffffffffffffffffffffffffff");
}

static void router_get__expired_id__404_says_retention(void **state)
{
    (void)state;
    fake_jobs[0].stale = 1;
    request("GET", "/v1/jobs/000000000000000000000000000000a0", NULL, NULL);
    assert_problem(404, "job 000000000000000000000000000000a0 finished and was removed after "
                        "the retention period (--result-ttl / --max-jobs); results are kept "
                        "for 3600 s");
}

static void router_get__wait_on_terminal_job__answers_directly(void **state)
{
    (void)state;
    fake_add(JOB_FAILED);
    set_query("wait", "30");
    request("GET", "/v1/jobs/000000000000000000000000000000a0", NULL, NULL);
    assert_null(resp.wait);
    assert_int_equal(resp.status, 200);
    assert_int_equal(fake.nwatches, 0);
}

static void router_get__wait_job_deleted__wakes_once_then_404(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    set_query("wait", "60");
    request("GET", "/v1/jobs/000000000000000000000000000000a0", NULL, NULL);
    assert_non_null(resp.wait);
    fake_jobs[0].exists = 0;
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_problem(404, "no job with id");
}

static void router_get__pending_wait_released__no_leak(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    set_query("wait", "1");
    request("GET", "/v1/jobs/000000000000000000000000000000a0", NULL, NULL);
    assert_non_null(resp.wait);
    api_response_release(&resp);
    assert_null(resp.wait);
}

static void router_metrics__counts_responses_incl_server_ones(void **state)
{
    (void)state;
    request("GET", "/healthz", NULL, NULL);
    request("GET", "/nowhere", NULL, NULL);
    request("GET", "/nowhere", NULL, NULL);
    api_count_response(api, 413);
    request("GET", "/metrics", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(resp.body, "pyjobd_http_requests_total{code=\"200\"} 1\n"));
    assert_non_null(strstr(resp.body, "pyjobd_http_requests_total{code=\"404\"} 2\n"));
    assert_non_null(strstr(resp.body, "pyjobd_http_requests_total{code=\"413\"} 1\n"));
}

static void problem__invalid_utf8_detail__still_json(void **state)
{
    (void)state;
    api_problem(&resp, 400, NULL, "bad %s", "\xff\xfe");
    load_body();
    assert_problem(400, "bad ??");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(router_healthz__get__ok),
        T(router_every_path__wrong_method__405_with_allow),
        T(router_unknown_path__404_problem),
        T(router_info__get__pool_facts_and_limits),
        T(router_info__unlimited__nulls_and_defaults),
        T(router_new__bad_python_match__fails),
        T(router_readyz__states),
        T(router_create__valid__201_location_and_job),
        T(router_create__content_type__415_unless_json),
        T(router_create__invalid_body__400_with_detail),
        T(router_create__python_mismatch__400_names_both),
        T(router_create__queue_full__429_retry_after),
        T(router_create__shutting_down__503),
        T(router_create__bad_wait__400_before_submit),
        T(router_create__wait__suspends_then_201),
        T(router_create__wait_zero__answers_directly),
        T(router_get__known__200),
        T(router_get__malformed_id__404_says_format),
        T(router_get__unknown_id__404),
        T(router_get__expired_id__404_says_retention),
        T(router_get__wait_on_terminal_job__answers_directly),
        T(router_get__wait_job_deleted__wakes_once_then_404),
        T(router_get__pending_wait_released__no_leak),
        T(router_metrics__counts_responses_incl_server_ones),
        T(problem__invalid_utf8_detail__still_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
