/*
 * sha256.h — SHA-256 (FIPS 180-4), for digests that must not depend on a TLS library
 * (the fuzzers link api/ and lib/ without one). Not for secrets: no constant-time
 * promise beyond what the algorithm has by nature.
 */
#ifndef PYJOBD_SHA256_H
#define PYJOBD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

struct sha256 {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
/* Writes the digest; c must be initialised again before another use. */
void sha256_final(struct sha256 *c, uint8_t out[SHA256_BYTES]);

/* The digest of data[0..len) in one call. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);

#endif
