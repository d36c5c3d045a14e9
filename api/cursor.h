/*
 * cursor.h — the cursors of GET /v1/jobs (api/cursor.c), pure functions.
 *
 * The pool pages by seq, one sequence for every tenant's jobs, so a plain seq would
 * tell a tenant how many jobs the others submitted between two of its pages. With a
 * key (a token file), a cursor is instead the seq passed through a keyed 64-bit
 * permutation: 16 hex digits that decode only with the same key. Without a key (one
 * user, nothing to hide) a cursor is the seq in plain lowercase hex.
 */
#ifndef PYJOBD_API_CURSOR_H
#define PYJOBD_API_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/api.h" /* API_CURSOR_KEY_BYTES */

/* A keyed cursor carries a seq of at most 48 bits; the top 16 bits of what it decodes
 * to must be zero, so a random or altered cursor is refused but for 1 in 65536. */
#define API_CURSOR_SEQ_BITS 48
#define API_CURSOR_LEN 16 /* hex digits of a keyed cursor; a plain one has 1 to 16 */

/* SipHash-2-4 (Aumasson and Bernstein, 2012) of msg[0..len) under a 128-bit key. */
uint64_t api__siphash24(const uint8_t key[API_CURSOR_KEY_BYTES], const void *msg, size_t len);

/* The keyed permutation of 64-bit values (a 4-round Feistel network whose round
 * function is SipHash-2-4) and its inverse: unpermute(k, permute(k, x)) == x. */
uint64_t api__cursor_permute(const uint8_t key[API_CURSOR_KEY_BYTES], uint64_t x);
uint64_t api__cursor_unpermute(const uint8_t key[API_CURSOR_KEY_BYTES], uint64_t y);

/*
 * Writes the cursor of seq (>= 1) to out. key NULL: plain hex. Returns 0, or -ERANGE
 * when a keyed cursor cannot hold seq (2^48 and beyond).
 */
int api__cursor_encode(const uint8_t *key, uint64_t seq, char out[API_CURSOR_LEN + 1]);

/* Reads a cursor made by api__cursor_encode with the same key: 0 and *seq (>= 1), or
 * -EINVAL for anything else (malformed, altered, made with another key). */
int api__cursor_decode(const uint8_t *key, const char *s, uint64_t *seq);

#endif
