/*
 * test_job_json.c — api/job_json.c: a job view renders to the v1 wire shape.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/job_json.h"

static const char ID[] = "0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e";

/* 2026-11-25T20:00:00Z */
#define T0 1795636800

static struct job_view base_view(enum job_status status)
{
    struct job_view v;
    memset(&v, 0, sizeof(v));
    memcpy(v.id, ID, sizeof(ID));
    v.status = status;
    v.created_at = (struct timespec){T0, 123456789};
    v.error.exit_code = -1;
    v.error.max_rss_bytes = -1;
    return v;
}

static void assert_key_string(json_t *obj, const char *key, const char *want)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("key '%s' is not a string", key);
    assert_string_equal(json_string_value(v), want);
}

static void assert_key_null(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_null(v))
        fail_msg("key '%s' is not null", key);
}

static void format_timestamp__microseconds__rfc3339_utc(void **state)
{
    (void)state;
    char buf[API_TIMESTAMP_LEN];
    assert_int_equal(api__format_timestamp(&(struct timespec){T0, 123456789}, buf), 0);
    assert_string_equal(buf, "2026-11-25T20:00:00.123456Z");
    assert_int_equal(api__format_timestamp(&(struct timespec){T0 + 59, 999}, buf), 0);
    assert_string_equal(buf, "2026-11-25T20:00:59.000000Z");
    assert_int_equal(api__format_timestamp(&(struct timespec){0, 1000}, buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000001Z");
}

static void format_timestamp__zero__means_never(void **state)
{
    (void)state;
    char buf[API_TIMESTAMP_LEN];
    assert_int_equal(api__format_timestamp(&(struct timespec){0, 0}, buf), -EINVAL);
}

static void signal_name__known_and_realtime__named(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(api__signal_name(SIGSEGV, buf, sizeof(buf)), "SIGSEGV");
    assert_string_equal(api__signal_name(SIGKILL, buf, sizeof(buf)), "SIGKILL");
    assert_string_equal(api__signal_name(SIGRTMIN + 2, buf, sizeof(buf)), "SIGRTMIN+2");
}

static void job_to_json__queued__nulls_and_no_result(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_QUEUED);
    json_t *j = api__job_to_json(&v);
    assert_non_null(j);
    assert_key_string(j, "id", ID);
    assert_key_string(j, "status", "queued");
    assert_key_string(j, "created_at", "2026-11-25T20:00:00.123456Z");
    assert_key_null(j, "started_at");
    assert_key_null(j, "finished_at");
    assert_key_null(j, "timeout");
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 0);
    assert_key_null(j, "worker_pid");
    assert_null(json_object_get(j, "result"));
    assert_key_null(j, "error");
    assert_int_equal(json_integer_value(json_object_get(j, "priority")), 0);
    assert_key_null(j, "soft_timeout");
    assert_key_null(j, "run_at");
    assert_key_null(j, "expires_at");
    /* + max_retries, priority, soft_timeout, run_at, expires_at */
    assert_int_equal(json_object_size(j), 14);
    json_decref(j);
}

static void job_to_json__succeeded__result_base64(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_SUCCEEDED);
    v.started_at = (struct timespec){T0 + 1, 500000000};
    v.finished_at = (struct timespec){T0 + 2, 0};
    v.timeout = 30;
    v.attempts = 1;
    v.worker_pid = 4242;
    v.result = blob_new_copy("foobar", 6);
    json_t *j = api__job_to_json(&v);
    assert_non_null(j);
    assert_key_string(j, "status", "succeeded");
    assert_key_string(j, "started_at", "2026-11-25T20:00:01.500000Z");
    assert_key_string(j, "finished_at", "2026-11-25T20:00:02.000000Z");
    assert_true(json_is_real(json_object_get(j, "timeout")));
    assert_true(json_real_value(json_object_get(j, "timeout")) == 30.0);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "worker_pid")), 4242);
    assert_key_string(j, "result", "Zm9vYmFy");
    assert_key_null(j, "error");

    /* Key order is part of the contract for readability. */
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    assert_string_equal(text,
                        "{\"id\":\"0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e\",\"status\":\"succeeded\","
                        "\"created_at\":\"2026-11-25T20:00:00.123456Z\","
                        "\"started_at\":\"2026-11-25T20:00:01.500000Z\","
                        "\"finished_at\":\"2026-11-25T20:00:02.000000Z\",\"timeout\":30.0,"
                        "\"attempts\":1,\"worker_pid\":4242,\"max_retries\":0,\"priority\":0,"
                        "\"soft_timeout\":null,\"run_at\":null,\"expires_at\":null,"
                        "\"result\":\"Zm9vYmFy\","
                        "\"error\":null}");
    free(text);
    json_decref(j);
    job_view_release(&v);
}

static void job_to_json__failed_exception__error_object(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_FAILED);
    v.finished_at = (struct timespec){T0 + 3, 0};
    v.attempts = 1;
    v.error.type = JOB_ERR_EXCEPTION;
    v.error.message = strdup("ValueError: boom");
    v.error.exc_type = strdup("ValueError");
    v.error.exception = blob_new_copy("fo", 2);
    v.error.traceback = strdup("Traceback (most recent call last):\n...");
    json_t *j = api__job_to_json(&v);
    assert_non_null(j);
    assert_key_string(j, "status", "failed");
    assert_null(json_object_get(j, "result"));
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_object(e));
    assert_key_string(e, "type", "exception");
    assert_key_string(e, "message", "ValueError: boom");
    assert_key_string(e, "exc_type", "ValueError");
    assert_key_string(e, "exception", "Zm8=");
    assert_key_string(e, "traceback", "Traceback (most recent call last):\n...");
    assert_key_null(e, "exit_code");
    assert_key_null(e, "signal");
    assert_key_null(e, "max_rss_bytes");
    assert_int_equal(json_object_size(e), 8);
    json_decref(j);
    job_view_release(&v);
}

static void job_to_json__worker_crashed__signal_and_rss(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_FAILED);
    v.error.type = JOB_ERR_WORKER_CRASHED;
    v.error.message = strdup("worker 17 was killed by SIGSEGV");
    v.error.signal = SIGSEGV;
    v.error.max_rss_bytes = 123456;
    json_t *j = api__job_to_json(&v);
    json_t *e = json_object_get(j, "error");
    assert_key_string(e, "type", "worker_crashed");
    assert_key_string(e, "signal", "SIGSEGV");
    assert_int_equal(json_integer_value(json_object_get(e, "max_rss_bytes")), 123456);
    assert_key_null(e, "exit_code");
    assert_key_null(e, "exception");
    assert_key_null(e, "exc_type");
    assert_key_null(e, "traceback");
    json_decref(j);
    job_view_release(&v);

    v = base_view(JOB_FAILED);
    v.error.type = JOB_ERR_WORKER_CRASHED;
    v.error.message = strdup("exited");
    v.error.exit_code = 0;
    j = api__job_to_json(&v);
    e = json_object_get(j, "error");
    assert_true(json_is_integer(json_object_get(e, "exit_code")));
    assert_int_equal(json_integer_value(json_object_get(e, "exit_code")), 0);
    json_decref(j);
    job_view_release(&v);
}

static void job_to_json__invalid_utf8_traceback__still_rendered(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_FAILED);
    v.error.type = JOB_ERR_EXCEPTION;
    v.error.message = strdup("bad \xff bytes");
    json_t *j = api__job_to_json(&v);
    assert_non_null(j);
    assert_key_string(json_object_get(j, "error"), "message", "bad ? bytes");
    json_decref(j);
    job_view_release(&v);
}

static void job_to_json__json_result_metadata_retries__rendered(void **state)
{
    (void)state;
    struct job_view v;
    memset(&v, 0, sizeof(v));
    strcpy(v.id, "0b6f4c1e9d2a4f7a8c3e5b1d2f4a6c8e");
    v.status = JOB_SUCCEEDED;
    v.max_retries = 2;
    v.error.exit_code = -1;
    v.error.max_rss_bytes = -1;
    v.result_json = blob_new_copy("[1,\"two\",null]", 14);
    v.metadata = strdup("{\"team\":\"ml\"}");
    json_t *j = api__job_to_json(&v);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "max_retries")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "result_json")), 3);
    assert_null(json_object_get(j, "result"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "team")),
                        "ml");
    json_decref(j);
    /* Not succeeded: no result_json; no metadata: no key. */
    v.status = JOB_RUNNING;
    free(v.metadata);
    v.metadata = NULL;
    j = api__job_to_json(&v);
    assert_null(json_object_get(j, "result_json"));
    assert_null(json_object_get(j, "metadata"));
    json_decref(j);
    job_view_release(&v);
}

static void job_to_json__priority_soft_timeout__in_the_head(void **state)
{
    (void)state;
    struct job_view v = base_view(JOB_QUEUED);
    v.priority = -7;
    v.soft_timeout = 2.5;
    json_t *head, *tail;
    assert_int_equal(api__job_json_halves(&v, &head, &tail), 0);
    assert_int_equal(json_integer_value(json_object_get(head, "priority")), -7);
    assert_true(json_is_real(json_object_get(head, "soft_timeout")));
    assert_true(json_real_value(json_object_get(head, "soft_timeout")) == 2.5);
    assert_null(json_object_get(tail, "priority"));
    assert_null(json_object_get(tail, "soft_timeout"));
    json_decref(head);
    json_decref(tail);
    json_t *j = api__job_to_json(&v);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(strstr(text, "\"max_retries\":0,\"priority\":-7,\"soft_timeout\":2.5,"));
    free(text);
    json_decref(j);
    job_view_release(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_timestamp__microseconds__rfc3339_utc),
        cmocka_unit_test(format_timestamp__zero__means_never),
        cmocka_unit_test(signal_name__known_and_realtime__named),
        cmocka_unit_test(job_to_json__queued__nulls_and_no_result),
        cmocka_unit_test(job_to_json__succeeded__result_base64),
        cmocka_unit_test(job_to_json__failed_exception__error_object),
        cmocka_unit_test(job_to_json__worker_crashed__signal_and_rss),
        cmocka_unit_test(job_to_json__invalid_utf8_traceback__still_rendered),
        cmocka_unit_test(job_to_json__json_result_metadata_retries__rendered),
        cmocka_unit_test(job_to_json__priority_soft_timeout__in_the_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
