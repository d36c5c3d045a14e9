/*
 * test_frame.c — the worker protocol's encoder and decoder: round trips, partial
 * input (every split point), oversize frames, malformed fields.
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

static uint8_t *build(size_t *len)
{
    struct frame_builder b;
    frame_builder_init(&b, FRAME_JOB);
    frame_builder_add(&b, FRAME_TAG_CALLABLE, "fn-bytes", 8);
    frame_builder_add(&b, FRAME_TAG_ARGS, "", 0);
    frame_builder_add_str(&b, FRAME_TAG_KWARGS, "kw");
    uint8_t *buf;
    assert_int_equal(frame_builder_finish(&b, &buf, len), 0);
    return buf;
}

static void frame__round_trip__fields_in_order(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build(&len);
    assert_int_equal(len, FRAME_HEADER_SIZE + 3 * FRAME_FIELD_HEADER_SIZE + 8 + 0 + 2);
    struct frame f;
    assert_int_equal(frame_decode(buf, len, 1024, &f), (long)len);
    assert_int_equal(f.type, FRAME_JOB);
    size_t cur = 0;
    struct frame_field fld;
    assert_int_equal(frame_next_field(&f, &cur, &fld), 1);
    assert_int_equal(fld.tag, FRAME_TAG_CALLABLE);
    assert_memory_equal(fld.data, "fn-bytes", 8);
    assert_int_equal(frame_next_field(&f, &cur, &fld), 1);
    assert_int_equal(fld.tag, FRAME_TAG_ARGS);
    assert_int_equal(fld.len, 0);
    assert_int_equal(frame_next_field(&f, &cur, &fld), 1);
    assert_int_equal(fld.tag, FRAME_TAG_KWARGS);
    assert_memory_equal(fld.data, "kw", 2);
    assert_int_equal(frame_next_field(&f, &cur, &fld), 0);
    assert_int_equal(frame_find_field(&f, FRAME_TAG_KWARGS, &fld), 1);
    assert_int_equal(frame_find_field(&f, FRAME_TAG_RESULT, &fld), 0);
    free(buf);
}

static void frame_decode__every_partial_prefix__returns_again(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build(&len);
    struct frame f;
    for (size_t n = 0; n < len; n++)
        assert_int_equal(frame_decode(buf, n, 1024, &f), -EAGAIN);
    free(buf);
}

static void frame_decode__two_frames_back_to_back__decodes_one_at_a_time(void **state)
{
    (void)state;
    size_t len;
    uint8_t *one = build(&len);
    uint8_t *two = malloc(2 * len);
    memcpy(two, one, len);
    memcpy(two + len, one, len);
    struct frame f;
    assert_int_equal(frame_decode(two, 2 * len, 1024, &f), (long)len);
    assert_int_equal(frame_decode(two + len, len, 1024, &f), (long)len);
    free(one);
    free(two);
}

static void frame_decode__oversize__rejected_from_header_alone(void **state)
{
    (void)state;
    uint8_t hdr[FRAME_HEADER_SIZE] = {0x01, 0x00, 0x10, 0x00, FRAME_RESULT, 0, 0, 0};
    struct frame f;
    assert_int_equal(frame_decode(hdr, sizeof(hdr), 0xfffff, &f), -EMSGSIZE);
    assert_int_equal(frame_decode(hdr, sizeof(hdr), 0x100001, &f), -EAGAIN);
}

static void frame_decode__whole_header__says_what_it_declares(void **state)
{
    (void)state;
    /* ~4 GiB declared: refused, and the caller learns the size and type to report. */
    uint8_t hdr[FRAME_HEADER_SIZE] = {0xf0, 0xff, 0xff, 0xff, FRAME_RESULT, 0, 0, 0};
    struct frame f;
    assert_int_equal(frame_decode(hdr, sizeof(hdr), 64u << 20, &f), -EMSGSIZE);
    assert_int_equal(f.len, 0xfffffff0u);
    assert_int_equal(f.type, FRAME_RESULT);
    assert_null(f.payload);
    /* Within the limit but incomplete: the length sizes the caller's buffer. */
    assert_int_equal(frame_decode(hdr, sizeof(hdr), UINT32_MAX, &f), -EAGAIN);
    assert_int_equal(f.len, 0xfffffff0u);
    assert_null(f.payload);
    /* Less than a header: nothing is known yet. */
    assert_int_equal(frame_decode(hdr, 5, UINT32_MAX, &f), -EAGAIN);
    assert_int_equal(f.len, 0);
    assert_int_equal(f.type, 0);
}

static void frame_next_field__field_past_end__eproto(void **state)
{
    (void)state;
    /* One field header claiming 100 bytes in a 12-byte payload. */
    uint8_t payload[12] = {1, 0, 0, 0, 100, 0, 0, 0, 'a', 'b', 'c', 'd'};
    struct frame f = {.type = FRAME_JOB, .len = sizeof(payload), .payload = payload};
    size_t cur = 0;
    struct frame_field fld;
    assert_int_equal(frame_next_field(&f, &cur, &fld), -EPROTO);
    /* A truncated field header. */
    f.len = 5;
    cur = 0;
    assert_int_equal(frame_next_field(&f, &cur, &fld), -EPROTO);
    assert_int_equal(frame_find_field(&f, 7, &fld), -EPROTO);
}

static void frame_builder__empty_payload__valid_frame(void **state)
{
    (void)state;
    struct frame_builder b;
    frame_builder_init(&b, FRAME_HELLO);
    uint8_t *buf;
    size_t len;
    assert_int_equal(frame_builder_finish(&b, &buf, &len), 0);
    assert_int_equal(len, FRAME_HEADER_SIZE);
    struct frame f;
    assert_int_equal(frame_decode(buf, len, 0, &f), (long)FRAME_HEADER_SIZE);
    assert_int_equal(f.type, FRAME_HELLO);
    assert_int_equal(f.len, 0);
    free(buf);
}

static void frame_builder__large_field__grows(void **state)
{
    (void)state;
    size_t big = 3 * 1024 * 1024 + 7;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 31);
    struct frame_builder b;
    frame_builder_init(&b, FRAME_RESULT);
    frame_builder_add(&b, FRAME_TAG_RESULT, data, big);
    uint8_t *buf;
    size_t len;
    assert_int_equal(frame_builder_finish(&b, &buf, &len), 0);
    struct frame f;
    assert_int_equal(frame_decode(buf, len, big, &f), -EMSGSIZE); /* header counts too */
    assert_int_equal(frame_decode(buf, len, big + FRAME_FIELD_HEADER_SIZE, &f), (long)len);
    struct frame_field fld;
    assert_int_equal(frame_find_field(&f, FRAME_TAG_RESULT, &fld), 1);
    assert_int_equal(fld.len, big);
    assert_memory_equal(fld.data, data, big);
    free(buf);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame__round_trip__fields_in_order),
        cmocka_unit_test(frame_decode__every_partial_prefix__returns_again),
        cmocka_unit_test(frame_decode__two_frames_back_to_back__decodes_one_at_a_time),
        cmocka_unit_test(frame_decode__oversize__rejected_from_header_alone),
        cmocka_unit_test(frame_decode__whole_header__says_what_it_declares),
        cmocka_unit_test(frame_next_field__field_past_end__eproto),
        cmocka_unit_test(frame_builder__empty_payload__valid_frame),
        cmocka_unit_test(frame_builder__large_field__grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
