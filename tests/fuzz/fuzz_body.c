/*
 * fuzz_body.c — libFuzzer harness for what a response splices and streams: the JSON
 * check of a worker's result (api/json_check.c) and bodies in parts (api/body.c).
 *
 * Invariants (abort on violation):
 *   - api__json_check accepts everything jansson accepts as one value, and refuses
 *     what jansson refuses, except where jansson is stricter than RFC 8259 (numbers
 *     it cannot hold, nesting deeper than its limit, a \u escape of a surrogate);
 *     a raw NUL byte anywhere is refused (jansson reads it as the end of the input);
 *   - spliced into {"r":X} a checked value leaves one object with one key "r";
 *   - a body in parts (texts, raw and base64 blobs cut from the input) reads the same
 *     whole and in pieces of every size the input picks, and equals its parts'
 *     concatenation (base64 made by base64_encode), with api_response_length bytes.
 */
#include "body.h"
#include "json_check.h"
#include "pyjobd/base64.h"
#include "pyjobd/blob.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int deep(const uint8_t *d, size_t n)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++)
        open += d[i] == '[' || d[i] == '{';
    return open > 1000;
}

static void check_json(const uint8_t *d, size_t n)
{
    if (deep(d, n))
        return;
    int ours = api__json_check((const char *)d, n);
    if (memchr(d, 0, n)) { /* never JSON; jansson takes a NUL for the end of its input */
        CHECK(!ours);
        return;
    }
    json_error_t err;
    json_t *j = json_loadb((const char *)d, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (j)
        CHECK(ours);
    else if (ours) {
        enum json_error_code c = json_error_code(&err);
        CHECK(c == json_error_numeric_overflow || strstr(err.text, "surrogate") ||
              strstr(err.text, "\\u") || c == json_error_out_of_memory);
    }
    json_decref(j);
    if (j && ours) {
        size_t len = n + 8;
        char *doc = malloc(len);
        if (doc) {
            memcpy(doc, "{\"r\":", 5);
            memcpy(doc + 5, d, n);
            doc[5 + n] = '}';
            json_t *o = json_loadb(doc, n + 6, JSON_ALLOW_NUL, &err);
            CHECK(o && json_is_object(o) && json_object_size(o) == 1 && json_object_get(o, "r"));
            json_decref(o);
            free(doc);
        }
    }
}

/* The input cut into parts: each starts with a byte (kind = b % 3, length = the next
 * byte), then that many bytes of content. */
static void check_parts(const uint8_t *d, size_t n)
{
    struct api__body b = {0};
    size_t at = 0, cap = 64, len = 0;
    char *want = malloc(cap);
    if (!want)
        return;
    while (at + 2 <= n && b.n < 64) {
        int kind = d[at] % 3;
        size_t k = d[at + 1];
        at += 2;
        if (k > n - at)
            k = n - at;
        const uint8_t *src = d + at;
        at += k;
        size_t add = kind == 2 ? base64_encoded_len(k) : k;
        if (len + add + 1 > cap) {
            cap = (len + add + 1) * 2;
            char *w = realloc(want, cap);
            if (!w)
                break;
            want = w;
        }
        if (kind == 0) {
            api__body_text(&b, (const char *)src, k);
            memcpy(want + len, src, k);
        } else {
            struct blob *bl = blob_new_copy(src, k);
            if (!bl)
                break;
            api__body_blob(&b, bl, kind == 1 ? API_PART_RAW : API_PART_BASE64);
            blob_unref(bl);
            if (kind == 1)
                memcpy(want + len, src, k);
            else
                base64_encode(src, k, want + len);
        }
        len += add;
    }
    if (b.failed) {
        api__body_release(&b);
        free(want);
        return;
    }
    struct api_response resp = {0};
    api__body_finish(&b, &resp, 200, "application/json");
    CHECK(api_response_length(&resp) == len);
    char *got = malloc(len + 1);
    if (got) {
        struct api_body_cursor c = {0};
        CHECK(api_response_read(&resp, &c, 0, got, len + 1) == len);
        CHECK(memcmp(got, want, len) == 0);
        /* In pieces whose sizes come from the input. */
        struct api_body_cursor c2 = {0};
        size_t pos = 0, i = 0;
        while (pos < len) {
            size_t step = n ? (size_t)(d[i++ % n] % 11) + 1 : 1;
            size_t r = api_response_read(&resp, &c2, pos, got + pos, step);
            CHECK(r > 0 && r <= step);
            pos += r;
        }
        CHECK(api_response_read(&resp, &c2, len, got, 4) == 0);
        CHECK(memcmp(got, want, len) == 0);
        free(got);
    }
    api_response_release(&resp);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_json(data, size);
    check_parts(data, size);
    return 0;
}
