/*
 * test_spec_codec.c — a job request as a schedule keeps it: every member round trips,
 * and bytes that are not such a request (cut, another frame, a string with a NUL, no
 * callable) are refused, never half read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/frame.h"
#include "pyjobd/spec_codec.h"

static void codec__round_trip__every_member(void **state)
{
    (void)state;
    struct job_spec a = {0}, b;
    a.callable = blob_new_copy("fn", 2);
    a.args = blob_new_copy("\0\1\2", 3);
    a.json_kwargs = blob_new_copy("{\"k\":1}", 7);
    a.result_json = 1;
    a.timeout = 2.5;
    a.max_retries = 3;
    a.retry_on_timeout = 1;
    a.priority = -42;
    a.soft_timeout = 1.25;
    a.metadata = strdup("{\"team\":\"data\"}");
    a.retry.on = strdup("ConnectionError\nmymod.X");
    a.retry.initial = 0.5;
    a.retry.factor = 3;
    a.retry.max_delay = 9;
    a.retry.jitter = a.retry.no_crash = a.retry.given = 1;
    strcpy(a.owner, "alice");
    uint8_t *buf;
    size_t len;
    assert_int_equal(spec_encode(&a, &buf, &len), 0);
    assert_int_equal(spec_decode(buf, len, &b), 0);
    assert_memory_equal(blob_data(b.callable), "fn", 2);
    assert_int_equal(blob_len(b.args), 3);
    assert_memory_equal(blob_data(b.args), "\0\1\2", 3);
    assert_null(b.kwargs);
    assert_memory_equal(blob_data(b.json_kwargs), "{\"k\":1}", 7);
    assert_true(b.result_json && b.timeout == 2.5 && b.max_retries == 3 && b.retry_on_timeout);
    assert_true(b.priority == -42 && b.soft_timeout == 1.25);
    assert_string_equal(b.metadata, a.metadata);
    assert_string_equal(b.retry.on, a.retry.on);
    assert_null(b.retry.not_on);
    assert_true(b.retry.initial == 0.5 && b.retry.factor == 3 && b.retry.max_delay == 9);
    assert_true(b.retry.jitter && b.retry.no_crash && !b.retry.no_node_lost && b.retry.given);
    assert_string_equal(b.owner, "alice");
    /* Every cut is refused. */
    for (size_t n = 0; n < len; n++) {
        struct job_spec c;
        assert_int_equal(spec_decode(buf, n, &c), -EPROTO);
        assert_null(c.callable);
    }
    free(buf);
    job_spec_release(&a);
    job_spec_release(&b);
}

static void codec__not_a_request__refused(void **state)
{
    (void)state;
    struct job_spec s;
    uint8_t *buf;
    size_t len;
    struct frame_builder fb;
    /* Another frame type. */
    frame_builder_init(&fb, FRAME_JOB);
    frame_builder_add(&fb, 1, "fn", 2);
    assert_int_equal(frame_builder_finish(&fb, &buf, &len), 0);
    assert_int_equal(spec_decode(buf, len, &s), -EPROTO);
    free(buf);
    /* No callable. */
    struct job_spec empty = {0};
    assert_int_equal(spec_encode(&empty, &buf, &len), 0);
    assert_int_equal(spec_decode(buf, len, &s), -EPROTO);
    free(buf);
    /* A fixed-size member of the wrong size, and a string with a NUL in it. */
    for (int k = 0; k < 2; k++) {
        frame_builder_init(&fb, 0x53504543u);
        frame_builder_add(&fb, 1, "fn", 2);
        if (k == 0)
            frame_builder_add(&fb, 7, "abc", 3); /* timeout: 3 bytes */
        else
            frame_builder_add(&fb, 12, "a\0b", 3); /* metadata */
        assert_int_equal(frame_builder_finish(&fb, &buf, &len), 0);
        assert_int_equal(spec_decode(buf, len, &s), -EPROTO);
        assert_null(s.callable);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec__round_trip__every_member),
        cmocka_unit_test(codec__not_a_request__refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
