/*
 * test_pool_resource.c — api/pool_resource.c and api/metrics.c: the pool JSON, PATCH
 * validation and resize, the Prometheus exposition, and what only an admin may do
 * (resize, /metrics, every worker in the pool view).
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

static void pool_get__shape(void **state)
{
    (void)state;
    request("GET", "/v1/pool", NULL, NULL);
    assert_status(200);
    assert_int_equal(jint(body, "workers_target"), 2);
    assert_int_equal(jint(body, "queued"), 3);
    assert_int_equal(jint(body, "running"), 1);
    assert_int_equal(jint(body, "boot_failures"), 0);
    assert_true(json_is_null(json_object_get(body, "boot_error")));
    json_t *r = json_object_get(body, "restarts");
    assert_int_equal(jint(r, "crash"), 1);
    assert_int_equal(jint(r, "timeout"), 2);
    assert_int_equal(jint(r, "recycle"), 3);
    assert_int_equal(jint(r, "cancel"), 4);
    json_t *w0 = json_array_get(json_object_get(body, "workers"), 0);
    json_t *w1 = json_array_get(json_object_get(body, "workers"), 1);
    assert_int_equal(jint(w0, "pid"), 101);
    assert_string_equal(jstr(w0, "state"), "busy");
    assert_string_equal(jstr(w0, "job_id"), fake_id(0));
    assert_int_equal(jint(w0, "jobs_done"), 7);
    assert_string_equal(jstr(w0, "started_at"), "2026-11-25T20:00:00.500000Z");
    assert_int_equal(jint(w0, "rss_bytes"), 123456);
    assert_int_equal(jint(w0, "uid"), 64001);
    assert_true(json_is_null(json_object_get(w1, "uid")));
    assert_true(json_is_false(json_object_get(w0, "retiring")));
    assert_true(json_is_null(json_object_get(w1, "job_id")));
    assert_true(json_is_null(json_object_get(w1, "rss_bytes")));
    assert_true(json_is_null(json_object_get(w1, "started_at")));
    assert_true(json_is_true(json_object_get(w1, "retiring")));
}

static void pool_patch__valid__resizes_and_answers_pool(void **state)
{
    (void)state;
    request("PATCH", "/v1/pool", "application/json", "{\"workers\": 8}");
    assert_status(200);
    assert_int_equal(fake.resized_to, 8);
    assert_int_equal(jint(body, "workers_target"), 2);
}

static void pool_patch__bad_input__400_415_503(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"{}", "field 'workers' is required"},
        {"{\"workers\": 0}", "from 1 to 1024, got 0"},
        {"{\"workers\": 1025}", "got 1025"},
        {"{\"workers\": -3}", "got -3"},
        {"{\"workers\": 2.5}", "got number"},
        {"{\"workers\": \"4\"}", "got string"},
        {"{\"workers\": true}", "got boolean"},
        {"{\"workers\": 99999999999999999999}", "not valid JSON"},
        {"{\"workers\": 2, \"workrs\": 3}", "unknown field 'workrs'"},
        {"{\"workers\": 2, \"workers\": 3}", "duplicate"},
        {"[4]", "must be a JSON object"},
        {"", "request body is empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        request("PATCH", "/v1/pool", "application/json", bad[i].body);
        assert_problem(400, bad[i].want);
    }
    request("PATCH", "/v1/pool", "application/x-www-form-urlencoded", "workers=4");
    assert_problem(415, "Content-Type must be application/json");
    assert_int_equal(fake.resized_to, 0);
    fake.resize_rc = -ESHUTDOWN;
    request("PATCH", "/v1/pool", "application/json", "{\"workers\": 2}");
    assert_problem(503, "shutting down");
}

static void metrics__families_and_histogram(void **state)
{
    (void)state;
    request("GET", "/metrics", NULL, NULL);
    assert_status(200);
    const char *text = resp.body;
    static const char *const want[] = {
        "# HELP pyjobd_jobs_submitted_total ",
        "# TYPE pyjobd_jobs_submitted_total counter\npyjobd_jobs_submitted_total 42\n",
        "pyjobd_jobs_finished_total{status=\"succeeded\"} 30\n",
        "pyjobd_jobs_finished_total{status=\"failed\"} 5\n",
        "pyjobd_jobs_finished_total{status=\"cancelled\"} 2\n",
        "# TYPE pyjobd_queue_depth gauge\npyjobd_queue_depth 3\n",
        "pyjobd_jobs_running 1\n",
        "pyjobd_workers{state=\"busy\"} 1\n",
        "pyjobd_workers{state=\"idle\"} 1\n",
        "pyjobd_workers{state=\"starting\"} 0\n",
        "pyjobd_worker_restarts_total{cause=\"crash\"} 1\n",
        "pyjobd_worker_restarts_total{cause=\"cancel\"} 4\n",
        "# TYPE pyjobd_job_duration_seconds histogram\n",
        "pyjobd_job_duration_seconds_bucket{le=\"0.001\"} 1\n",
        "pyjobd_job_duration_seconds_bucket{le=\"0.005\"} 1\n",
        "pyjobd_job_duration_seconds_bucket{le=\"1\"} 3\n",
        "pyjobd_job_duration_seconds_bucket{le=\"300\"} 3\n",
        "pyjobd_job_duration_seconds_bucket{le=\"+Inf\"} 4\n",
        "pyjobd_job_duration_seconds_sum 400.5\n",
        "pyjobd_job_duration_seconds_count 4\n",
        "# TYPE pyjobd_http_requests_total counter\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack '%s':\n%s", want[i], text);
    assert_int_equal(resp.body_len, strlen(resp.body));
    assert_int_equal(text[resp.body_len - 1], '\n');
    /* Exactly one +Inf bucket. */
    const char *inf = strstr(text, "le=\"+Inf\"");
    assert_null(strstr(inf + 1, "le=\"+Inf\""));
}

static void metrics__pool_error__problem(void **state)
{
    (void)state;
    fake.stats_rc = -ENOMEM;
    request("GET", "/metrics", NULL, NULL);
    assert_problem(503, "cannot read the pool");
    request("GET", "/v1/pool", NULL, NULL);
    assert_problem(503, "cannot read the pool");
}

/* A request as the server makes it for an open path with tokens: no tenant, a user. */
static void request_anonymous(const char *method, const char *path)
{
    struct api_request req = {.method = method, .path = path, .query = query_cb};
    api_response_release(&resp);
    api_handle(api, &req, &resp);
    load_body();
}

/* The pids GET /v1/pool lists, as a bit set: 1 for 101, 2 for 102. */
static int listed_pids(void)
{
    int set = 0;
    json_t *workers = json_object_get(body, "workers");
    assert_true(json_is_array(workers));
    for (size_t i = 0; i < json_array_size(workers); i++) {
        long long pid = jint(json_array_get(workers, i), "pid");
        assert_true(pid == 101 || pid == 102);
        set |= pid == 101 ? 1 : 2;
    }
    return set;
}

static void pool_get__user__sees_only_workers_running_its_jobs(void **state)
{
    (void)state;
    strcpy(fake_jobs[0].owner, "alice"); /* on worker 101 */
    strcpy(fake_jobs[1].owner, "bob");   /* on worker 102 */
    fake.worker2_job = 2;
    tenant = "alice";
    request("GET", "/v1/pool", NULL, NULL);
    assert_status(200);
    assert_int_equal(listed_pids(), 1);
    json_t *w = json_array_get(json_object_get(body, "workers"), 0);
    assert_string_equal(jstr(w, "job_id"), fake_id(0));
    assert_null(strstr(resp.body, fake_id(1)));
    /* The counts are the whole pool's. */
    assert_int_equal(jint(body, "workers_target"), 2);
    assert_int_equal(jint(body, "queued"), 3);
    assert_int_equal(jint(body, "running"), 1);
    assert_int_equal(jint(json_object_get(body, "restarts"), "timeout"), 2);
    assert_int_equal(jint(body, "boot_failures"), 0);

    tenant = "bob";
    request("GET", "/v1/pool", NULL, NULL);
    assert_int_equal(listed_pids(), 2);
    assert_null(strstr(resp.body, fake_id(0)));
    tenant = "carol";
    request("GET", "/v1/pool", NULL, NULL);
    assert_status(200);
    assert_int_equal(listed_pids(), 0);
    request_anonymous("GET", "/v1/pool");
    assert_int_equal(listed_pids(), 0);

    /* An admin sees every worker, still without other tenants' job ids. */
    tenant = "ops";
    role = API_ROLE_ADMIN;
    request("GET", "/v1/pool", NULL, NULL);
    assert_int_equal(listed_pids(), 3);
    assert_null(strstr(resp.body, fake_id(0)));
    assert_null(strstr(resp.body, fake_id(1)));
    /* Without tokens the one user sees everything. */
    tenant = NULL;
    request("GET", "/v1/pool", NULL, NULL);
    assert_int_equal(listed_pids(), 3);
    assert_non_null(strstr(resp.body, fake_id(1)));
}

static void pool_patch__user__403_before_the_body_is_read(void **state)
{
    (void)state;
    tenant = "alice";
    static const struct {
        const char *ctype, *body;
    } tries[] = {
        {"application/json", "{\"workers\": 8}"},
        {"application/json", "{\"workers\": 0}"},
        {"application/json", "not json"},
        {"text/plain", "workers=1"},
    };
    for (size_t i = 0; i < sizeof(tries) / sizeof(*tries); i++) {
        request("PATCH", "/v1/pool", tries[i].ctype, tries[i].body);
        assert_problem(403, "tenant 'alice' may not resize the pool");
        assert_problem(403, "role admin in the token file");
        assert_string_equal(jstr(body, "title"), "Forbidden");
    }
    request_anonymous("PATCH", "/v1/pool");
    assert_problem(403, "without a token may not resize the pool");
    assert_int_equal(fake.resized_to, 0);

    tenant = "ops";
    role = API_ROLE_ADMIN;
    request("PATCH", "/v1/pool", "application/json", "{\"workers\": 8}");
    assert_status(200);
    assert_int_equal(fake.resized_to, 8);
    assert_int_equal(listed_pids(), 3); /* the admin's view */
}

static void metrics__user__403_unless_public(void **state)
{
    (void)state;
    tenant = "alice";
    request("GET", "/metrics", NULL, NULL);
    assert_problem(403, "tenant 'alice' may not read /metrics");
    assert_problem(403, "--public-metrics");
    assert_null(strstr(resp.body, "pyjobd_"));
    request("HEAD", "/metrics", NULL, NULL);
    assert_status(403);
    request_anonymous("GET", "/metrics");
    assert_problem(403, "without a token may not read /metrics");

    role = API_ROLE_ADMIN;
    request("GET", "/metrics", NULL, NULL);
    assert_status(200);
    assert_non_null(strstr(resp.body, "pyjobd_jobs_submitted_total 42\n"));
    /* The 403s were counted like any answer. */
    assert_non_null(strstr(resp.body, "pyjobd_http_requests_total{code=\"403\"} 3\n"));

    cfg.public_metrics = 1;
    api_reopen();
    role = API_ROLE_USER;
    request("GET", "/metrics", NULL, NULL);
    assert_status(200);
    request_anonymous("GET", "/metrics");
    assert_status(200);
    /* --public-metrics opens /metrics only. */
    request("PATCH", "/v1/pool", "application/json", "{\"workers\": 8}");
    assert_status(403);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(pool_get__shape),
        T(pool_patch__valid__resizes_and_answers_pool),
        T(pool_patch__bad_input__400_415_503),
        T(metrics__families_and_histogram),
        T(metrics__pool_error__problem),
        T(pool_get__user__sees_only_workers_running_its_jobs),
        T(pool_patch__user__403_before_the_body_is_read),
        T(metrics__user__403_unless_public),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
