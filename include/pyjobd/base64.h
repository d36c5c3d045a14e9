/*
 * base64.h — RFC 4648 base64 (standard alphabet) for payloads in JSON.
 *
 * The encoder always pads. The decoder is strict about the alphabet but friendly to
 * what people paste: it skips ASCII whitespace (the base64 CLI wraps lines) and
 * accepts missing padding. Anything else is an error that names the byte offset of
 * the first offending character, so a request can be answered precisely.
 */
#ifndef PYJOBD_BASE64_H
#define PYJOBD_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/blob.h"

enum base64_errc {
    BASE64_OK = 0,
    BASE64_BAD_CHAR,    /* a byte outside the alphabet, padding and whitespace */
    BASE64_BAD_PADDING, /* '=' where it cannot be ("A===", "AAAA=", "AA=A") */
    BASE64_TRUNCATED,   /* one lone base64 character at the end (6 bits) */
    BASE64_NOMEM,
};

struct base64_error {
    enum base64_errc code;
    size_t offset;      /* byte offset in the input of the offending character */
    unsigned char byte; /* that character (BASE64_BAD_CHAR, BASE64_BAD_PADDING) */
};

/* Length of the padded encoding of n bytes, without a terminating NUL.
 * Returns SIZE_MAX when it would not fit in a size_t. */
size_t base64_encoded_len(size_t n);

/* Writes the padded encoding of src[0..n) to dst, followed by a NUL: dst must hold
 * base64_encoded_len(n) + 1 bytes. Returns the length written (without the NUL). */
size_t base64_encode(const uint8_t *src, size_t n, char *dst);

/* Same, into a new NUL-terminated buffer the caller frees with free(). *out_len (may
 * be NULL) receives the length. Returns NULL when out of memory. */
char *base64_encode_alloc(const uint8_t *src, size_t n, size_t *out_len);

/* An upper bound on the decoded size of n input characters. */
size_t base64_decoded_max(size_t n);

/*
 * Decodes src[0..n) into dst (at least base64_decoded_max(n) bytes). Returns the
 * decoded length, or -1 and fills *err (which may be NULL) on invalid input.
 */
long long base64_decode(const char *src, size_t n, uint8_t *dst, struct base64_error *err);

/*
 * Decodes src[0..n) into a new blob (*out: a new reference the caller unrefs).
 * Returns 0, -EINVAL (invalid input, *err filled) or -ENOMEM.
 */
int base64_decode_blob(const char *src, size_t n, struct blob **out, struct base64_error *err);

/* Describes err in words, e.g. "unexpected character '%' at offset 17". Writes at
 * most len bytes (NUL included) to buf and returns buf. */
char *base64_error_format(const struct base64_error *err, char *buf, size_t len);

#endif
