/*
 * test_base64.c — api/base64.c: round trips, the accepted forms (whitespace, missing
 * padding) and every rejected one with the offset it reports.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pyjobd/base64.h"

/* Decodes a C string; returns the blob or NULL (then *err says why). */
static struct blob *decode(const char *s, struct base64_error *err)
{
    struct blob *b = NULL;
    int rc = base64_decode_blob(s, strlen(s), &b, err);
    if (rc < 0)
        assert_int_equal(rc, -EINVAL);
    return b;
}

static void assert_decodes_to(const char *in, const char *want)
{
    struct base64_error err;
    struct blob *b = decode(in, &err);
    if (!b)
        fail_msg("'%s' rejected: code %d at %zu", in, err.code, err.offset);
    assert_int_equal(blob_len(b), strlen(want));
    assert_memory_equal(blob_data(b), want, strlen(want));
    blob_unref(b);
}

static void assert_rejected(const char *in, enum base64_errc code, size_t offset)
{
    struct base64_error err;
    struct blob *b = decode(in, &err);
    if (b)
        fail_msg("'%s' accepted", in);
    assert_int_equal(err.code, code);
    assert_int_equal(err.offset, offset);
}

static void base64_encode__rfc4648_vectors__match(void **state)
{
    (void)state;
    static const char *const vectors[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(vectors) / sizeof(*vectors); i++) {
        char out[16];
        size_t n = strlen(vectors[i][0]);
        assert_int_equal(base64_encoded_len(n), strlen(vectors[i][1]));
        assert_int_equal(base64_encode((const uint8_t *)vectors[i][0], n, out),
                         strlen(vectors[i][1]));
        assert_string_equal(out, vectors[i][1]);
        assert_decodes_to(vectors[i][1], vectors[i][0]);
    }
}

static void base64_encode__all_byte_values__round_trip(void **state)
{
    (void)state;
    uint8_t bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)i;
    size_t len;
    char *text = base64_encode_alloc(bytes, sizeof(bytes), &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    struct base64_error err;
    struct blob *b = decode(text, &err);
    assert_non_null(b);
    assert_int_equal(blob_len(b), 256);
    assert_memory_equal(blob_data(b), bytes, 256);
    blob_unref(b);
    free(text);
}

static void base64_roundtrip__lengths_0_to_64_random__identical(void **state)
{
    (void)state;
    srand(12345);
    for (int round = 0; round < 20; round++) {
        for (size_t n = 0; n <= 64; n++) {
            uint8_t in[64];
            for (size_t i = 0; i < n; i++)
                in[i] = (uint8_t)rand();
            char text[100];
            size_t len = base64_encode(in, n, text);
            assert_int_equal(len % 4, 0);
            assert_true(base64_decoded_max(len) >= n);

            uint8_t out[100];
            struct base64_error err;
            assert_int_equal(base64_decode(text, len, out, &err), (long long)n);
            assert_memory_equal(out, in, n);

            /* The same without padding. */
            while (len && text[len - 1] == '=')
                len--;
            assert_int_equal(base64_decode(text, len, out, &err), (long long)n);
            assert_memory_equal(out, in, n);
        }
    }
}

static void base64_roundtrip__large_random__identical(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    uint8_t *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)(i * 2654435761u >> 13);
    size_t len;
    char *text = base64_encode_alloc(in, n, &len);
    assert_non_null(text);
    struct blob *b = NULL;
    struct base64_error err;
    assert_int_equal(base64_decode_blob(text, len, &b, &err), 0);
    assert_int_equal(blob_len(b), n);
    assert_memory_equal(blob_data(b), in, n);
    blob_unref(b);
    free(text);
    free(in);
}

static void base64_decode__missing_padding__accepted(void **state)
{
    (void)state;
    assert_decodes_to("Zg", "f");
    assert_decodes_to("Zm8", "fo");
    assert_decodes_to("Zm9vYg", "foob");
}

static void base64_decode__whitespace__skipped(void **state)
{
    (void)state;
    assert_decodes_to("Zm9v\nYmFy\n", "foobar");
    assert_decodes_to(" Z m 9 v\r\n\tYmE=\n", "fooba");
    assert_decodes_to("Zg=\n=\n", "f");
    assert_decodes_to("\n\n", "");
}

static void base64_decode__every_byte_outside_alphabet__rejected_at_offset(void **state)
{
    (void)state;
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int c = 1; c < 256; c++) {
        char in[] = "Zm9v?mFy";
        in[4] = (char)c;
        uint8_t out[16];
        struct base64_error err;
        long long n = base64_decode(in, 8, out, &err);
        if (strchr(alphabet, c) || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            assert_true(n >= 0);
        } else if (c == '=') {
            assert_int_equal(n, -1);
            assert_int_equal(err.code, BASE64_BAD_PADDING);
        } else {
            assert_int_equal(n, -1);
            assert_int_equal(err.code, BASE64_BAD_CHAR);
            assert_int_equal(err.offset, 4);
            assert_int_equal(err.byte, c);
        }
    }
    /* NUL inside the given length is a character like any other. */
    uint8_t out[8];
    struct base64_error err;
    assert_int_equal(base64_decode("Zm\0v", 4, out, &err), -1);
    assert_int_equal(err.code, BASE64_BAD_CHAR);
    assert_int_equal(err.offset, 2);
}

static void base64_decode__urlsafe_alphabet__rejected(void **state)
{
    (void)state;
    assert_rejected("ab-_", BASE64_BAD_CHAR, 2);
    assert_rejected("Zm9v\vYmFy", BASE64_BAD_CHAR, 4); /* vertical tab is not skipped */
}

static void base64_decode__bad_padding__rejected(void **state)
{
    (void)state;
    assert_rejected("A===", BASE64_BAD_PADDING, 1);
    assert_rejected("=", BASE64_BAD_PADDING, 0);
    assert_rejected("Zm9v=", BASE64_BAD_PADDING, 4);
    assert_rejected("Zg===", BASE64_BAD_PADDING, 4);
    assert_rejected("Zm8==", BASE64_BAD_PADDING, 4);
    assert_rejected("Zg=", BASE64_BAD_PADDING, 3);      /* incomplete padding */
    assert_rejected("Zg==Zm9v", BASE64_BAD_PADDING, 4); /* data after padding */
    assert_rejected("Zg= =Zg", BASE64_BAD_PADDING, 5);
}

static void base64_decode__lone_final_character__rejected(void **state)
{
    (void)state;
    assert_rejected("A", BASE64_TRUNCATED, 0);
    assert_rejected("Zm9vY", BASE64_TRUNCATED, 4);
    assert_rejected("Zm9vY\n", BASE64_TRUNCATED, 4);
}

static void base64_error_format__bad_char__names_character_and_offset(void **state)
{
    (void)state;
    struct base64_error err;
    char buf[96];
    assert_null(decode("Zm9vYmFyZm9vYmFyZ%", &err));
    assert_string_equal(base64_error_format(&err, buf, sizeof(buf)),
                        "unexpected character '%' at offset 17");
    assert_null(decode("Zm\xc3\xa9", &err));
    assert_string_equal(base64_error_format(&err, buf, sizeof(buf)),
                        "unexpected byte 0xC3 at offset 2");
    assert_null(decode("A===", &err));
    assert_string_equal(base64_error_format(&err, buf, sizeof(buf)),
                        "misplaced padding '=' at offset 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_encode__rfc4648_vectors__match),
        cmocka_unit_test(base64_encode__all_byte_values__round_trip),
        cmocka_unit_test(base64_roundtrip__lengths_0_to_64_random__identical),
        cmocka_unit_test(base64_roundtrip__large_random__identical),
        cmocka_unit_test(base64_decode__missing_padding__accepted),
        cmocka_unit_test(base64_decode__whitespace__skipped),
        cmocka_unit_test(base64_decode__every_byte_outside_alphabet__rejected_at_offset),
        cmocka_unit_test(base64_decode__urlsafe_alphabet__rejected),
        cmocka_unit_test(base64_decode__bad_padding__rejected),
        cmocka_unit_test(base64_decode__lone_final_character__rejected),
        cmocka_unit_test(base64_error_format__bad_char__names_character_and_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
