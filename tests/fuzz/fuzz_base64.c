/*
 * fuzz_base64.c — libFuzzer harness for the base64 codec (include/pyjobd/base64.h).
 *
 * The input is used twice: as text to decode, and as bytes to encode. Invariants
 * (abort on violation):
 *   - decoding never writes more than base64_decoded_max(n) bytes;
 *   - a failed decode names an offset inside the input, and for BAD_CHAR and
 *     BAD_PADDING the byte at that offset (or, for padding cut short, the end of
 *     the input and byte 0);
 *   - decode(encode(decode(x))) == decode(x) (what decodes, round-trips);
 *   - encode(x) is base64_encoded_len(|x|) characters of the alphabet plus padding,
 *     NUL-terminated, and decodes back to x;
 *   - base64_decode_blob agrees with base64_decode;
 *   - base64_error_format never writes past the length it is given.
 */
#include "pyjobd/base64.h"
#include "pyjobd/blob.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Encodes src and checks the text's shape and that it decodes back to src. */
static void check_encode(const uint8_t *src, size_t n)
{
    size_t want = base64_encoded_len(n);
    CHECK(want == (n + 2) / 3 * 4);
    size_t len;
    char *text = base64_encode_alloc(src, n, &len);
    if (!text)
        return;
    CHECK(len == want && text[len] == '\0');
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '=')
            CHECK(i >= len - 2 && (i == len - 1 || text[len - 1] == '='));
        else
            CHECK(in_alphabet(text[i]));
    }
    uint8_t *back = malloc(base64_decoded_max(len) + 1);
    CHECK(back);
    struct base64_error err;
    long long m = base64_decode(text, len, back, &err);
    CHECK(m == (long long)n);
    CHECK(n == 0 || memcmp(back, src, n) == 0);
    free(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copy: a read past the input is caught by ASan. */
    char *src = malloc(size ? size : 1);
    if (!src)
        return 0;
    memcpy(src, data, size);

    size_t max = base64_decoded_max(size);
    /* Canary bytes after the bound catch a write past base64_decoded_max. */
    uint8_t *dst = malloc(max + 16);
    CHECK(dst);
    memset(dst + max, 0xA5, 16);
    struct base64_error err;
    memset(&err, 0, sizeof(err));
    long long n = base64_decode(src, size, dst, &err);
    for (size_t i = 0; i < 16; i++)
        CHECK(dst[max + i] == 0xA5);

    struct blob *b = NULL;
    struct base64_error err2;
    int rc = base64_decode_blob(src, size, &b, &err2);
    if (n >= 0) {
        CHECK((size_t)n <= max);
        if (rc == 0) {
            CHECK(blob_len(b) == (size_t)n);
            CHECK(n == 0 || memcmp(blob_data(b), dst, (size_t)n) == 0);
        } else {
            CHECK(rc == -ENOMEM);
        }
        check_encode(dst, (size_t)n);
    } else {
        CHECK(n == -1);
        CHECK(err.code != BASE64_OK);
        if (err.code == BASE64_BAD_PADDING && err.offset == size) {
            /* Incomplete padding ("QQ="): reported at the end of the input. */
            CHECK(err.byte == 0);
        } else if (err.code == BASE64_BAD_CHAR || err.code == BASE64_BAD_PADDING) {
            CHECK(err.offset < size);
            CHECK((unsigned char)src[err.offset] == err.byte);
        } else if (err.code == BASE64_TRUNCATED) {
            CHECK(err.offset <= size);
        }
        CHECK(rc == -EINVAL || rc == -ENOMEM);
        if (rc == -EINVAL)
            CHECK(err2.code == err.code && err2.offset == err.offset);
        /* Every buffer length, including tiny ones, must stay within bounds. */
        size_t cap = size ? (uint8_t)data[0] % 120 : 0;
        char *msg = malloc(cap ? cap : 1);
        CHECK(msg);
        base64_error_format(&err, msg, cap);
        if (cap)
            CHECK(memchr(msg, '\0', cap) != NULL);
        free(msg);
    }
    blob_unref(b);

    check_encode(data, size);
    free(dst);
    free(src);
    return 0;
}
