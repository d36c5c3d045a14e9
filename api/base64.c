/*
 * base64.c — table-driven base64 (include/pyjobd/base64.h).
 *
 * The decoder makes one pass: four data characters at a time while the input is
 * clean, one at a time around whitespace, padding and errors. Padding is optional,
 * but when present it must be complete and last (only whitespace may follow).
 * Unused low bits in the final character are ignored, like most decoders do.
 */
#include "pyjobd/base64.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const char enc_table[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Values 0..63 are data; the high bits mark everything else, so one OR over four
 * lookups tells whether a group is plain data. */
enum { D_WS = 0x80, D_PAD = 0x81, D_BAD = 0xFF };

#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)

static const uint8_t dec_table[256] = {
    /* 0x00 */ R4(D_BAD),
    R4(D_BAD),
    D_BAD,
    D_WS,
    D_WS,
    D_BAD,
    D_BAD,
    D_WS,
    D_BAD,
    D_BAD,
    /* 0x10 */ R16(D_BAD),
    /* 0x20 */ D_WS,
    R4(D_BAD),
    R4(D_BAD),
    D_BAD,
    D_BAD,
    62,
    D_BAD,
    D_BAD,
    D_BAD,
    63,
    /* 0x30 */ 52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    D_BAD,
    D_BAD,
    D_BAD,
    D_PAD,
    D_BAD,
    D_BAD,
    /* 0x40 */ D_BAD,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    /* 0x50 */ 15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    D_BAD,
    D_BAD,
    D_BAD,
    D_BAD,
    D_BAD,
    /* 0x60 */ D_BAD,
    26,
    27,
    28,
    29,
    30,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    /* 0x70 */ 41,
    42,
    43,
    44,
    45,
    46,
    47,
    48,
    49,
    50,
    51,
    D_BAD,
    D_BAD,
    D_BAD,
    D_BAD,
    D_BAD,
    /* 0x80 */ R16(D_BAD),
    R16(D_BAD),
    R16(D_BAD),
    R16(D_BAD),
    /* 0xC0 */ R16(D_BAD),
    R16(D_BAD),
    R16(D_BAD),
    R16(D_BAD),
};

size_t base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > SIZE_MAX / 4)
        return SIZE_MAX;
    return groups * 4;
}

size_t base64_encode(const uint8_t *src, size_t n, char *dst)
{
    char *p = dst;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        p[0] = enc_table[v >> 18];
        p[1] = enc_table[(v >> 12) & 63];
        p[2] = enc_table[(v >> 6) & 63];
        p[3] = enc_table[v & 63];
        p += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        p[0] = enc_table[v >> 18];
        p[1] = enc_table[(v >> 12) & 63];
        p[2] = '=';
        p[3] = '=';
        p += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        p[0] = enc_table[v >> 18];
        p[1] = enc_table[(v >> 12) & 63];
        p[2] = enc_table[(v >> 6) & 63];
        p[3] = '=';
        p += 4;
    }
    *p = '\0';
    return (size_t)(p - dst);
}

char *base64_encode_alloc(const uint8_t *src, size_t n, size_t *out_len)
{
    size_t len = base64_encoded_len(n);
    if (len == SIZE_MAX)
        return NULL;
    char *dst = malloc(len + 1);
    if (!dst)
        return NULL;
    base64_encode(src, n, dst);
    if (out_len)
        *out_len = len;
    return dst;
}

size_t base64_decoded_max(size_t n)
{
    return n / 4 * 3 + n % 4;
}

static long long fail(struct base64_error *err, enum base64_errc code, size_t offset,
                      unsigned char byte)
{
    if (err) {
        err->code = code;
        err->offset = offset;
        err->byte = byte;
    }
    return -1;
}

long long base64_decode(const char *src, size_t n, uint8_t *dst, struct base64_error *err)
{
    const unsigned char *s = (const unsigned char *)src;
    uint8_t *out = dst;
    uint32_t acc = 0;
    unsigned q = 0;         /* data characters in the current group of four */
    unsigned pads = 0;      /* '=' seen so far */
    unsigned pads_need = 0; /* '=' that complete the group (set by the first '=') */
    size_t last_data = 0;   /* offset of the most recent data character */
    size_t i = 0;

    while (i < n) {
        /* Fast path: a whole clean group. */
        if (q == 0 && pads == 0) {
            while (i + 4 <= n) {
                uint8_t a = dec_table[s[i]], b = dec_table[s[i + 1]];
                uint8_t c = dec_table[s[i + 2]], d = dec_table[s[i + 3]];
                if ((a | b | c | d) & 0xC0)
                    break;
                uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
                out[0] = (uint8_t)(v >> 16);
                out[1] = (uint8_t)(v >> 8);
                out[2] = (uint8_t)v;
                out += 3;
                i += 4;
            }
            if (i >= n)
                break;
        }
        uint8_t v = dec_table[s[i]];
        if (v < 64) {
            if (pads)
                return fail(err, BASE64_BAD_PADDING, i, s[i]);
            acc = acc << 6 | v;
            last_data = i;
            if (++q == 4) {
                out[0] = (uint8_t)(acc >> 16);
                out[1] = (uint8_t)(acc >> 8);
                out[2] = (uint8_t)acc;
                out += 3;
                acc = 0;
                q = 0;
            }
        } else if (v == D_PAD) {
            if (pads == 0) {
                if (q < 2)
                    return fail(err, BASE64_BAD_PADDING, i, s[i]);
                pads_need = 4 - q;
            }
            if (++pads > pads_need)
                return fail(err, BASE64_BAD_PADDING, i, s[i]);
        } else if (v != D_WS) {
            return fail(err, BASE64_BAD_CHAR, i, s[i]);
        }
        i++;
    }

    if (q == 1)
        return fail(err, BASE64_TRUNCATED, last_data, s[last_data]);
    if (pads && pads < pads_need)
        return fail(err, BASE64_BAD_PADDING, n, 0);
    if (q == 2) {
        *out++ = (uint8_t)(acc >> 4);
    } else if (q == 3) {
        *out++ = (uint8_t)(acc >> 10);
        *out++ = (uint8_t)(acc >> 2);
    }
    if (err)
        err->code = BASE64_OK;
    return (long long)(out - dst);
}

int base64_decode_blob(const char *src, size_t n, struct blob **out, struct base64_error *err)
{
    *out = NULL;
    struct blob *b = blob_new(base64_decoded_max(n));
    if (!b) {
        fail(err, BASE64_NOMEM, 0, 0);
        return -ENOMEM;
    }
    long long len = base64_decode(src, n, blob_mutable_data(b), err);
    if (len < 0) {
        blob_unref(b);
        return -EINVAL;
    }
    blob_truncate(b, (size_t)len);
    *out = b;
    return 0;
}

/* Printable ASCII is quoted as is; anything else by its hex value. */
static void describe_byte(unsigned char c, char *buf, size_t len)
{
    if (c > 0x20 && c < 0x7f && c != '\'')
        snprintf(buf, len, "character '%c'", c);
    else
        snprintf(buf, len, "byte 0x%02X", c);
}

char *base64_error_format(const struct base64_error *err, char *buf, size_t len)
{
    char what[24];
    describe_byte(err->byte, what, sizeof(what));
    switch (err->code) {
    case BASE64_OK:
        snprintf(buf, len, "no error");
        break;
    case BASE64_BAD_CHAR:
        snprintf(buf, len, "unexpected %s at offset %zu", what, err->offset);
        break;
    case BASE64_BAD_PADDING:
        if (err->byte == '=')
            snprintf(buf, len, "misplaced padding '=' at offset %zu", err->offset);
        else if (err->byte == 0)
            snprintf(buf, len, "incomplete padding at the end (offset %zu)", err->offset);
        else
            snprintf(buf, len, "unexpected %s after padding at offset %zu", what, err->offset);
        break;
    case BASE64_TRUNCATED:
        snprintf(buf, len, "truncated: a lone final character at offset %zu", err->offset);
        break;
    case BASE64_NOMEM:
        snprintf(buf, len, "out of memory");
        break;
    }
    return buf;
}
