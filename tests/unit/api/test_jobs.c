/*
 * test_jobs.c — api/jobs.c and api/job_result.c against a fake pool: cancel, delete,
 * the result resource (binary, JSON, 409, 202), listing with cursors, and the new
 * members of the job object (metadata, result_json, max_retries).
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

static void jobs_cancel__queued__200_cancelled(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_status(200);
    assert_string_equal(jstr(body, "status"), "cancelled");
    assert_int_equal(fake.cancel_force, 0);
}

static void jobs_cancel__running__409_then_force(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake.cancel_rc = -EBUSY;
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_problem(409, "job " ID0 " is running; cancel with ?force=true to kill its worker "
                        "(only this job is affected)");
    fake.cancel_rc = 0;
    set_query("force", "true");
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_status(200);
    assert_int_equal(fake.cancel_force, 1);
}

static void jobs_cancel__finished__409_names_status(void **state)
{
    (void)state;
    fake_add(JOB_SUCCEEDED);
    fake.cancel_rc = -EALREADY;
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_problem(409, "already finished (status succeeded)");
    assert_string_equal(jstr(body, "title"), "Conflict");
}

static void jobs_cancel__bad_force__400(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    static const char *const bad[] = {"yes", "", "TRUE", "2", "true "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        nquery = 0;
        set_query("force", bad[i]);
        request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
        assert_problem(400, "query parameter 'force' must be true, false, 1 or 0");
    }
    assert_int_equal(fake.cancels, 0);
}

static void jobs_cancel__unknown_and_expired__404(void **state)
{
    (void)state;
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_problem(404, "no job with id " ID0);
    fake_jobs[0].stale = 1;
    request("POST", "/v1/jobs/" ID0 "/cancel", NULL, NULL);
    assert_problem(404, "was removed after the retention period");
}

static void jobs_delete__finished__204_no_body(void **state)
{
    (void)state;
    fake_add(JOB_FAILED);
    request("DELETE", "/v1/jobs/" ID0, NULL, NULL);
    assert_status(204);
    assert_null(resp.body);
    assert_int_equal(resp.body_len, 0);
    request("GET", "/v1/jobs/" ID0, NULL, NULL);
    assert_problem(404, "no job with id");
}

static void jobs_delete__unfinished__409(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    fake.delete_rc = -EBUSY;
    request("DELETE", "/v1/jobs/" ID0, NULL, NULL);
    assert_problem(409, "job " ID0 " is not finished; cancel it first");
    fake_jobs[0].stale = 1;
    request("DELETE", "/v1/jobs/" ID0, NULL, NULL);
    assert_problem(404, "retention");
}

static void jobs_result__pickle__raw_octets(void **state)
{
    (void)state;
    size_t i = fake_add(JOB_SUCCEEDED);
    fake_jobs[i].result = "\x80\x05K*\xff.";
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_status(200);
    assert_string_equal(resp.content_type, "application/octet-stream");
    assert_int_equal(resp.body_len, 6);
    assert_memory_equal(resp.body, "\x80\x05K*\xff.", 6);
}

static void jobs_result__json__the_value(void **state)
{
    (void)state;
    size_t i = fake_add(JOB_SUCCEEDED);
    fake_jobs[i].result_json = "{\"sum\":3}";
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_status(200);
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(jint(body, "sum"), 3);
    /* The job object carries it as result_json, and no base64 result. */
    request("GET", "/v1/jobs/" ID0, NULL, NULL);
    assert_int_equal(jint(json_object_get(body, "result_json"), "sum"), 3);
    assert_null(json_object_get(body, "result"));
}

static void jobs_result__failed__409_with_error_type(void **state)
{
    (void)state;
    size_t i = fake_add(JOB_FAILED);
    fake_jobs[i].err = JOB_ERR_EXCEPTION;
    fake_jobs[i].message = "ZeroDivisionError: division by zero";
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_problem(409, "job " ID0 " failed with error exception: ZeroDivisionError");
    assert_string_equal(jstr(body, "error_type"), "exception");
    assert_string_equal(jstr(body, "job_status"), "failed");
    fake_jobs[i].err = JOB_ERR_UNJSONABLE_RESULT;
    fake_jobs[i].message = "Object of type set is not JSON serializable";
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_string_equal(jstr(body, "error_type"), "unjsonable_result");
    fake_jobs[i].status = JOB_CANCELLED;
    fake_jobs[i].err = JOB_ERR_CANCELLED;
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_problem(409, "was cancelled");
    assert_string_equal(jstr(body, "job_status"), "cancelled");
}

static void jobs_result__pending__202_job_and_retry_after(void **state)
{
    (void)state;
    fake_add(JOB_RUNNING);
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_status(202);
    assert_int_equal(resp.retry_after, 1);
    assert_string_equal(jstr(body, "status"), "running");
}

static void jobs_result__wait__suspends_then_octets(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    set_query("wait", "10");
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    assert_non_null(resp.wait);
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    assert_int_equal(fake.watches[0].deadline, 1000000 + 10000);
    fake_jobs[0].status = JOB_SUCCEEDED;
    fake_fire_watches(0, 1);
    assert_int_equal(woken, 1);
    finish_wait();
    assert_status(200);
    assert_string_equal(resp.content_type, "application/octet-stream");
    assert_memory_equal(resp.body, "foobar", 6);
}

static void jobs_result__wait_deadline__202(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    set_query("wait", "1");
    request("GET", "/v1/jobs/" ID0 "/result", NULL, NULL);
    int woken = 0;
    api_wait_start(api, &resp, wake_cb, &woken);
    fake_fire_watches(0, 1); /* the deadline */
    finish_wait();
    assert_status(202);
    assert_int_equal(resp.retry_after, 1);
}

static void jobs_list__defaults_and_cursor(void **state)
{
    (void)state;
    fake_add(JOB_QUEUED);
    fake_add(JOB_SUCCEEDED);
    fake.list_n = 2;
    fake.list_next = 0xbeef;
    request("GET", "/v1/jobs", NULL, NULL);
    assert_status(200);
    assert_int_equal(json_array_size(json_object_get(body, "jobs")), 2);
    assert_string_equal(jstr(body, "next_cursor"), "beef");
    assert_int_equal(fake.list_q.status, -1);
    assert_int_equal(fake.list_q.limit, 100);
    assert_int_equal(fake.list_q.cursor, 0);
    set_query("status", "failed");
    set_query("limit", "1000");
    set_query("cursor", "beef");
    fake.list_next = 0;
    request("GET", "/v1/jobs", NULL, NULL);
    assert_status(200);
    assert_true(json_is_null(json_object_get(body, "next_cursor")));
    assert_int_equal(fake.list_q.status, JOB_FAILED);
    assert_int_equal(fake.list_q.limit, 1000);
    assert_int_equal(fake.list_q.cursor, 0xbeef);
}

static void jobs_list__bad_params__400(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"status", "done", "one of queued, running, succeeded, failed, cancelled"},
        {"status", "", "one of queued"},
        {"limit", "0", "from 1 to 1000"},
        {"limit", "1001", "from 1 to 1000"},
        {"limit", "-5", "from 1 to 1000"},
        {"limit", "99999999999999999999999", "from 1 to 1000"},
        {"limit", "1.5", "from 1 to 1000"},
        {"cursor", "xyz", "not a cursor"},
        {"cursor", "", "not a cursor"},
        {"cursor", "0", "not a cursor"},
        {"cursor", "11112222333344445", "not a cursor"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        nquery = 0;
        set_query(bad[i].key, bad[i].value);
        request("GET", "/v1/jobs", NULL, NULL);
        assert_problem(400, bad[i].want);
    }
}

/* With a token file the cursor is the seq through the keyed permutation (api/cursor.c):
 * it still pages, says nothing readable, and an altered one is a 400. */
static void jobs_list__keyed_cursor__opaque_round_trip(void **state)
{
    (void)state;
    static const uint8_t key[API_CURSOR_KEY_BYTES] = "k3y-of-the-token";
    cfg.cursor_key = key;
    api_reopen();
    fake_add(JOB_QUEUED);
    fake.list_n = 1;
    fake.list_next = 0xbeef;
    request("GET", "/v1/jobs", NULL, NULL);
    assert_status(200);
    char next[32];
    snprintf(next, sizeof(next), "%s", jstr(body, "next_cursor"));
    assert_int_equal(strlen(next), 16);
    assert_null(strstr(next, "beef"));
    fake.list_next = 0xbef0; /* the next seq: a cursor unlike the first */
    request("GET", "/v1/jobs", NULL, NULL);
    const char *other = jstr(body, "next_cursor");
    assert_int_equal(strlen(other), 16);
    size_t same = 0;
    for (size_t i = 0; i < 16; i++)
        same += next[i] == other[i];
    assert_true(same < 10);

    set_query("cursor", next);
    request("GET", "/v1/jobs", NULL, NULL);
    assert_status(200);
    assert_int_equal(fake.list_q.cursor, 0xbeef);

    char altered[32];
    snprintf(altered, sizeof(altered), "%s", next);
    altered[15] = altered[15] == '0' ? '1' : '0';
    nquery = 0;
    set_query("cursor", altered);
    fake.list_q.cursor = 0;
    request("GET", "/v1/jobs", NULL, NULL);
    assert_problem(400, "start again from the first page");
    assert_int_equal(fake.list_q.cursor, 0); /* the pool was not asked */
    nquery = 0;
    set_query("cursor", "beef"); /* the plain form */
    request("GET", "/v1/jobs", NULL, NULL);
    assert_problem(400, "not a cursor this server made");

    /* Another server's key (another token file) does not read it. */
    static const uint8_t key2[API_CURSOR_KEY_BYTES] = "k3y-of-the-toke2";
    cfg.cursor_key = key2;
    api_reopen();
    nquery = 0;
    set_query("cursor", next);
    request("GET", "/v1/jobs", NULL, NULL);
    assert_problem(400, "made by a server with other tokens");
}

static void jobs_create__json_fields__reach_the_spec_and_echo(void **state)
{
    (void)state;
    post_json("/v1/jobs", "{\"callable\":\"Zm9v\",\"json_args\":[1, \"a\"],"
                          "\"json_kwargs\":{\"k\": null},\"result_format\":\"json\","
                          "\"metadata\":{\"user\": \"ann\", \"n\": [1,2]},"
                          "\"max_retries\":1,\"retry_on_timeout\":true}");
    assert_status(201);
    assert_memory_equal(blob_data(fake.last.json_args), "[1,\"a\"]", 7);
    assert_memory_equal(blob_data(fake.last.json_kwargs), "{\"k\":null}", 10);
    assert_int_equal(fake.last.result_json, 1);
    assert_int_equal(fake.last.max_retries, 1);
    assert_int_equal(fake.last.retry_on_timeout, 1);
    assert_string_equal(fake.last.metadata, "{\"user\":\"ann\",\"n\":[1,2]}");
    json_t *md = json_object_get(body, "metadata");
    assert_string_equal(jstr(md, "user"), "ann");
    assert_int_equal(jint(body, "max_retries"), 1);
}

static void jobs_output__renders_both_streams_as_valid_utf8(void **state)
{
    (void)state;
    fake_add(JOB_SUCCEEDED);
    request("GET", "/v1/jobs/" ID0 "/output", NULL, NULL);
    assert_status(200);
    assert_string_equal(jstr(body, "stdout"), "out\n");
    assert_string_equal(jstr(body, "stderr"), "\xef\xbf\xbd!"); /* 0xff became U+FFFD */
    assert_int_equal(json_integer_value(json_object_get(body, "stderr_dropped_bytes")), 7);
    request("GET", "/v1/jobs/" ID0 "f/output", NULL, NULL);
    assert_status(404);
    request("POST", "/v1/jobs/" ID0 "/output", NULL, NULL);
    assert_status(405);
}

static void jobs_tenancy__other_tenants_jobs_do_not_exist(void **state)
{
    (void)state;
    tenant = "alice";
    post_json("/v1/jobs", "{\"callable\": \"gAVLAS4=\"}");
    assert_status(201);
    assert_string_equal(fake.last.owner, "alice");
    const char *id = jstr(body, "id");
    char path[128], out[128], cancel[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    snprintf(out, sizeof(out), "/v1/jobs/%s/output", id);
    snprintf(cancel, sizeof(cancel), "/v1/jobs/%s/cancel", id);
    request("GET", path, NULL, NULL);
    assert_status(200);
    tenant = "mallory";
    const char *paths[] = {path, out};
    for (int i = 0; i < 2; i++) {
        request("GET", paths[i], NULL, NULL);
        assert_status(404);
        assert_non_null(strstr(jstr(body, "detail"), "no job with id"));
    }
    request("POST", cancel, NULL, NULL);
    assert_status(404);
    request("DELETE", path, NULL, NULL);
    assert_status(404);
    assert_int_equal(fake.cancels, 0);
    assert_int_equal(fake.deletes, 0);
    request("GET", "/v1/jobs", NULL, NULL);
    assert_string_equal(fake.list_q.owner, "mallory");
    tenant = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(jobs_cancel__queued__200_cancelled),
        T(jobs_cancel__running__409_then_force),
        T(jobs_cancel__finished__409_names_status),
        T(jobs_cancel__bad_force__400),
        T(jobs_cancel__unknown_and_expired__404),
        T(jobs_delete__finished__204_no_body),
        T(jobs_delete__unfinished__409),
        T(jobs_result__pickle__raw_octets),
        T(jobs_result__json__the_value),
        T(jobs_result__failed__409_with_error_type),
        T(jobs_result__pending__202_job_and_retry_after),
        T(jobs_result__wait__suspends_then_octets),
        T(jobs_result__wait_deadline__202),
        T(jobs_list__defaults_and_cursor),
        T(jobs_list__bad_params__400),
        T(jobs_list__keyed_cursor__opaque_round_trip),
        T(jobs_create__json_fields__reach_the_spec_and_echo),
        T(jobs_output__renders_both_streams_as_valid_utf8),
        T(jobs_tenancy__other_tenants_jobs_do_not_exist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
