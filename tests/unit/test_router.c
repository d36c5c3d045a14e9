/*
 * test_router.c — api/router.c and api/problem.c against a fake pool: routes,
 * status codes, problem+json bodies, Location, and the two-step long-poll.
 *
 * The pool_* functions below replace the real pool at link time (the archive's
 * pool object is never pulled in because every symbol it would provide is here).
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

#include "pyjobd/api.h"
#include "pyjobd/pool.h"

static const char ID[] = "0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e";

/* --- fake pool ------------------------------------------------------------------- */

static struct {
    int submit_rc;
    int submits;
    size_t callable_len;
    double timeout;
    int exists;
    enum job_status status;
    int watch_rc;
    int watches;
    int64_t watch_deadline;
    int watch_calls_back; /* call cb before returning, like a finished job */
} fake;

int pool_submit(struct pool *p, const struct job_spec *spec, char *id_out)
{
    (void)p;
    fake.submits++;
    if (fake.submit_rc)
        return fake.submit_rc;
    fake.callable_len = blob_len(spec->callable);
    fake.timeout = spec->timeout;
    memcpy(id_out, ID, sizeof(ID));
    fake.exists = 1;
    return 0;
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    (void)p;
    if (!fake.exists || strcmp(id, ID) != 0)
        return -ENOENT;
    memset(out, 0, sizeof(*out));
    memcpy(out->id, ID, sizeof(ID));
    out->status = fake.status;
    out->created_at = (struct timespec){1795636800, 0};
    out->error.exit_code = -1;
    out->error.max_rss_bytes = -1;
    if (fake.status == JOB_SUCCEEDED)
        out->result = blob_new_copy("foobar", 6);
    return 0;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    (void)p;
    (void)id;
    fake.watches++;
    fake.watch_deadline = deadline_ms;
    if (fake.watch_rc)
        return fake.watch_rc;
    if (fake.watch_calls_back)
        cb(arg);
    return 0;
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    out->workers = 4;
    out->workers_ready = 3;
    strcpy(out->cloudpickle_version, "3.0.0");
    out->queued = 2;
    out->running = 1;
}

int64_t pool_now_ms(void)
{
    return 1000000;
}

/* --- helpers --------------------------------------------------------------------- */

static const char *query_wait;

static const char *query_cb(void *ctx, const char *key)
{
    (void)ctx;
    return strcmp(key, "wait") == 0 ? query_wait : NULL;
}

static struct api *api;
static struct api_response resp;
static json_t *body;

static int setup(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    fake.status = JOB_QUEUED;
    query_wait = NULL;
    struct api_config cfg = {.pool = (struct pool *)&fake,
                             .max_wait = 60,
                             .max_request_bytes = 1 << 20,
                             .default_timeout = 0,
                             .version = "0.1.0"};
    api = api_new(&cfg);
    return api ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(body);
    body = NULL;
    api_response_release(&resp);
    api_free(api);
    return 0;
}

static void request(const char *method, const char *path, const char *ctype, const char *text)
{
    struct api_request req = {
        .method = method,
        .path = path,
        .query = query_cb,
        .content_type = ctype,
        .body = (const uint8_t *)text,
        .body_len = text ? strlen(text) : 0,
    };
    json_decref(body);
    body = NULL;
    api_response_release(&resp);
    api_handle(api, &req, &resp);
    if (resp.body) {
        assert_int_equal(resp.body[resp.body_len - 1], '\n');
        body = json_loadb(resp.body, resp.body_len, 0, NULL);
        assert_non_null(body);
    }
}

static void assert_problem(int status, const char *detail_part)
{
    assert_int_equal(resp.status, status);
    assert_string_equal(resp.content_type, "application/problem+json");
    assert_null(resp.wait);
    assert_string_equal(json_string_value(json_object_get(body, "type")), "about:blank");
    assert_non_null(json_string_value(json_object_get(body, "title")));
    assert_int_equal(json_integer_value(json_object_get(body, "status")), status);
    const char *detail = json_string_value(json_object_get(body, "detail"));
    assert_non_null(detail);
    if (!strstr(detail, detail_part))
        fail_msg("detail '%s' lacks '%s'", detail, detail_part);
}

static void wake_cb(void *arg)
{
    ++*(int *)arg;
}

/* --- tests ----------------------------------------------------------------------- */

static void router_healthz__get__ok(void **state)
{
    (void)state;
    request("GET", "/healthz", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.body, "{\"status\":\"ok\"}\n");
}

static void router_healthz__post__405_with_allow(void **state)
{
    (void)state;
    request("POST", "/healthz", NULL, NULL);
    assert_problem(405, "POST is not allowed on /healthz");
    assert_string_equal(resp.allow, "GET, HEAD");
    assert_string_equal(json_string_value(json_object_get(body, "title")), "Method Not Allowed");
}

static void router_unknown_path__404_problem(void **state)
{
    (void)state;
    request("GET", "/v2/jobs", NULL, NULL);
    assert_problem(404, "no resource at '/v2/jobs'");
    request("GET",
            "/v1/jobs/"
            "0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e/result",
            NULL, NULL);
    assert_problem(404, "no resource");
}

static void router_info__get__pool_facts_and_limits(void **state)
{
    (void)state;
    request("GET", "/v1/info", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_string_equal(json_string_value(json_object_get(body, "version")), "0.1.0");
    assert_true(json_is_null(json_object_get(body, "python_version")));
    assert_string_equal(json_string_value(json_object_get(body, "cloudpickle_version")), "3.0.0");
    assert_int_equal(json_integer_value(json_object_get(body, "workers")), 4);
    assert_int_equal(json_integer_value(json_object_get(body, "workers_ready")), 3);
    assert_int_equal(json_integer_value(json_object_get(body, "queued")), 2);
    assert_int_equal(json_integer_value(json_object_get(body, "running")), 1);
    json_t *limits = json_object_get(body, "limits");
    assert_int_equal(json_integer_value(json_object_get(limits, "max_request_bytes")), 1 << 20);
    assert_true(json_number_value(json_object_get(limits, "max_wait_seconds")) == 60);
    assert_true(json_is_null(json_object_get(limits, "default_timeout")));
}

static void router_create__valid__201_location_and_job(void **state)
{
    (void)state;
    request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9vYmFy\",\"timeout\":5}");
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.location, "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e");
    assert_string_equal(json_string_value(json_object_get(body, "id")), ID);
    assert_string_equal(json_string_value(json_object_get(body, "status")), "queued");
    assert_int_equal(fake.callable_len, 6);
    assert_true(fake.timeout == 5);
}

static void router_create__content_type_with_charset__accepted(void **state)
{
    (void)state;
    request("POST", "/v1/jobs", "Application/JSON; charset=utf-8", "{\"callable\":\"Zm9v\"}");
    assert_int_equal(resp.status, 201);
}

static void router_create__wrong_content_type__415(void **state)
{
    (void)state;
    request("POST", "/v1/jobs", "text/plain", "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "Content-Type must be application/json, got 'text/plain'");
    request("POST", "/v1/jobs", NULL, "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "got none");
    request("POST", "/v1/jobs", "application/jsonx", "{\"callable\":\"Zm9v\"}");
    assert_problem(415, "application/jsonx");
    assert_int_equal(fake.submits, 0);
}

static void router_create__invalid_body__400_with_detail(void **state)
{
    (void)state;
    request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9v\",\"timout\":1}");
    assert_problem(400, "unknown field 'timout'");
    assert_string_equal(json_string_value(json_object_get(body, "title")), "Bad Request");
    assert_int_equal(fake.submits, 0);
}

static void router_create__shutting_down__503(void **state)
{
    (void)state;
    fake.submit_rc = -ESHUTDOWN;
    request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9v\"}");
    assert_problem(503, "server is shutting down");
    assert_null(resp.location);
}

static void router_create__bad_wait__400_before_submit(void **state)
{
    (void)state;
    static const char *const bad[] = {"abc", "-1", "61", "1e1", "", "nan", "inf", " 5", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        query_wait = bad[i];
        request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9v\"}");
        assert_problem(400, "query parameter 'wait' must be a number of seconds from 0 to 60");
    }
    assert_int_equal(fake.submits, 0);
}

static void router_create__wait__suspends_then_201(void **state)
{
    (void)state;
    query_wait = "2.5";
    request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9v\"}");
    assert_non_null(resp.wait);
    assert_null(resp.body);
    int woken = 0;
    fake.watch_calls_back = 1;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(woken, 1);
    assert_int_equal(fake.watch_deadline, 1000000 + 2500);
    fake.status = JOB_SUCCEEDED;
    api_wait_finish(api, &resp);
    assert_null(resp.wait);
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.location, "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e");
    assert_non_null(resp.body);
    body = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(body, "result")), "Zm9vYmFy");
}

static void router_create__wait_zero__answers_directly(void **state)
{
    (void)state;
    query_wait = "0";
    request("POST", "/v1/jobs", "application/json", "{\"callable\":\"Zm9v\"}");
    assert_null(resp.wait);
    assert_int_equal(resp.status, 201);
}

static void router_get__known__200(void **state)
{
    (void)state;
    fake.exists = 1;
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_null(resp.location);
    assert_string_equal(json_string_value(json_object_get(body, "id")), ID);
}

static void router_get__malformed_id__404_says_format(void **state)
{
    (void)state;
    request("GET", "/v1/jobs/0B6F4C1E9D2A4F7A8C3E5B1D2F4A6C8E", NULL, NULL);
    assert_problem(404, "job ids are 32 lowercase hexadecimal digits");
    request("GET", "/v1/jobs/", NULL, NULL);
    assert_problem(404, "job ids are 32");
}

static void router_get__unknown_id__404(void **state)
{
    (void)state;
    request("GET", "/v1/jobs/ffffffffffffffffffffffffffffffff", NULL, NULL);
    assert_problem(404, "no job with id ffffffffffffffffffffffffffffffff");
}

static void router_get__wait_on_terminal_job__answers_directly(void **state)
{
    (void)state;
    fake.exists = 1;
    fake.status = JOB_FAILED;
    query_wait = "30";
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", NULL, NULL);
    assert_null(resp.wait);
    assert_int_equal(resp.status, 200);
    assert_int_equal(fake.watches, 0);
}

static void router_get__wait_job_deleted__wakes_once_then_404(void **state)
{
    (void)state;
    fake.exists = 1;
    query_wait = "60";
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", NULL, NULL);
    assert_non_null(resp.wait);
    fake.exists = 0;
    fake.watch_rc = -ENOENT;
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(woken, 1);
    api_wait_finish(api, &resp);
    body = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_problem(404, "no job with id");
}

static void router_get__pending_wait_released__no_leak(void **state)
{
    (void)state;
    fake.exists = 1;
    query_wait = "1";
    request("GET", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", NULL, NULL);
    assert_non_null(resp.wait);
    api_response_release(&resp);
    assert_null(resp.wait);
}

static void router_jobs__wrong_methods__405(void **state)
{
    (void)state;
    request("GET", "/v1/jobs", NULL, NULL);
    assert_problem(405, "allowed: POST");
    assert_string_equal(resp.allow, "POST");
    request("DELETE", "/v1/jobs/0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e", NULL, NULL);
    assert_problem(405, "DELETE is not allowed");
    assert_string_equal(resp.allow, "GET, HEAD");
}

static void problem__invalid_utf8_detail__still_json(void **state)
{
    (void)state;
    api_problem(&resp, 400, NULL, "bad %s", "\xff\xfe");
    body = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_problem(400, "bad ??");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(router_healthz__get__ok),
        T(router_healthz__post__405_with_allow),
        T(router_unknown_path__404_problem),
        T(router_info__get__pool_facts_and_limits),
        T(router_create__valid__201_location_and_job),
        T(router_create__content_type_with_charset__accepted),
        T(router_create__wrong_content_type__415),
        T(router_create__invalid_body__400_with_detail),
        T(router_create__shutting_down__503),
        T(router_create__bad_wait__400_before_submit),
        T(router_create__wait__suspends_then_201),
        T(router_create__wait_zero__answers_directly),
        T(router_get__known__200),
        T(router_get__malformed_id__404_says_format),
        T(router_get__unknown_id__404),
        T(router_get__wait_on_terminal_job__answers_directly),
        T(router_get__wait_job_deleted__wakes_once_then_404),
        T(router_get__pending_wait_released__no_leak),
        T(router_jobs__wrong_methods__405),
        T(problem__invalid_utf8_detail__still_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
