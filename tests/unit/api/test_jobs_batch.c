/*
 * test_jobs_batch.c — api/jobs_batch.c: all-or-nothing validation naming the index,
 * limits, 429 when the queue has no room, 201 with the jobs in order.
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

static void batch__valid__201_jobs_in_order(void **state)
{
    (void)state;
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\"},"
                                "{\"callable\":\"YmFy\",\"metadata\":{\"i\":1}}]}");
    assert_status(201);
    assert_null(resp.location);
    json_t *jobs = json_object_get(body, "jobs");
    assert_int_equal(json_array_size(jobs), 2);
    assert_string_equal(jstr(json_array_get(jobs, 0), "id"), fake_id(0));
    assert_string_equal(jstr(json_array_get(jobs, 1), "id"), fake_id(1));
    assert_int_equal(jint(json_object_get(json_array_get(jobs, 1), "metadata"), "i"), 1);
    assert_int_equal(fake.batch_n, 2);
}

static void batch__bad_job__400_names_index_nothing_queued(void **state)
{
    (void)state;
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\"},{\"callable\":\"Zm9v\"},"
                                "{\"args\":\"Zm9v\"},{\"timeout\":-1}]}");
    assert_problem(400, "jobs[2]: field 'callable' is required");
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\"}, 5]}");
    assert_problem(400, "jobs[1]: a job must be a JSON object");
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\",\"timout\":3}]}");
    assert_problem(400, "jobs[0]: unknown field 'timout'");
    assert_int_equal(fake.batch_n, 0);
}

static void batch__shape__400(void **state)
{
    (void)state;
    post_json("/v1/jobs/batch", "{}");
    assert_problem(400, "field 'jobs' is required");
    post_json("/v1/jobs/batch", "{\"jobs\":{}}");
    assert_problem(400, "field 'jobs' must be an array of 1 to 4 job requests, got object");
    post_json("/v1/jobs/batch", "{\"jobs\":[]}");
    assert_problem(400, "must hold 1 to 4 job requests (--max-batch), got 0");
    post_json("/v1/jobs/batch", "{\"jobs\":[{},{},{},{},{}]}");
    assert_problem(400, "got 5");
    post_json("/v1/jobs/batch", "{\"jobs\":[],\"job\":1}");
    assert_problem(400, "unknown field 'job'");
    post_json("/v1/jobs/batch", "[]");
    assert_problem(400, "request body must be a JSON object");
    post_json("/v1/jobs/batch", "");
    assert_problem(400, "request body is empty");
    request("POST", "/v1/jobs/batch", "text/json", "{\"jobs\":[]}");
    assert_problem(415, "Content-Type must be application/json");
    assert_int_equal(fake.batch_n, 0);
}

static void batch__queue_full__429_retry_after(void **state)
{
    (void)state;
    fake.batch_rc = -EAGAIN;
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\"},{\"callable\":\"Zm9v\"}]}");
    assert_problem(429, "no room for 2 more jobs (--max-queue 100); nothing was queued");
    assert_int_equal(resp.retry_after, 1);
    fake.batch_rc = -ESHUTDOWN;
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\"}]}");
    assert_problem(503, "shutting down");
}

static void batch__python_mismatch__names_index(void **state)
{
    (void)state;
    strcpy(fake.info.python_version, "3.11.2");
    post_json("/v1/jobs/batch", "{\"jobs\":[{\"callable\":\"Zm9v\",\"python\":\"3.11.0\"},"
                                "{\"callable\":\"Zm9v\",\"python\":\"3.10.0\"}]}");
    assert_problem(400, "jobs[1]: this server's workers run Python 3.11.2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(batch__valid__201_jobs_in_order),
        T(batch__bad_job__400_names_index_nothing_queued),
        T(batch__shape__400),
        T(batch__queue_full__429_retry_after),
        T(batch__python_mismatch__names_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
