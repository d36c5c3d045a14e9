/*
 * cursor.c — opaque cursors for GET /v1/jobs (api/cursor.h), and the key they use.
 *
 * SipHash-2-4 is written here from its published description ("SipHash: a fast
 * short-input PRF", Aumasson and Bernstein, 2012): a 128-bit key, 64-bit words read
 * little-endian, two rounds per word, four to finish. It is the round function of a
 * balanced Feistel network on the two 32-bit halves of a cursor; four rounds of a
 * pseudorandom function make a pseudorandom permutation (Luby and Rackoff), so
 * cursors of consecutive seqs look unrelated and their difference cannot be computed
 * without the key.
 *
 * A keyed cursor is always 16 hex digits. The seq fits in 48 bits, so any cursor that
 * decodes with the high 16 bits set was not made with this key: a tampered cursor, or
 * one from a server with other tokens, is refused (all but 1 in 65536 of them).
 */
#include "cursor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pyjobd/api.h"

#define FEISTEL_ROUNDS 4

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = rotl(v[2], 32);
}

static void absorb(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    sipround(v);
    sipround(v);
    v[0] ^= m;
}

uint64_t api__siphash24(const uint8_t key[API_CURSOR_KEY_BYTES], const void *msg, size_t len)
{
    const uint8_t *in = msg;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    /* "somepseudorandomlygeneratedbytes" */
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                     k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8)
        absorb(v, load_le64(in + i));
    /* The last word: the remaining bytes, and the length mod 256 in the top byte. */
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)in[whole + i] << (8 * i);
    absorb(v, last);
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The round function: SipHash of (round, half), 32 bits of it. */
static uint32_t round_fn(const uint8_t key[API_CURSOR_KEY_BYTES], unsigned round, uint32_t half)
{
    uint8_t m[8];
    uint64_t word = (uint64_t)round << 32 | half;
    for (int i = 0; i < 8; i++)
        m[i] = (uint8_t)(word >> (8 * i));
    return (uint32_t)api__siphash24(key, m, sizeof(m));
}

uint64_t api__cursor_permute(const uint8_t key[API_CURSOR_KEY_BYTES], uint64_t x)
{
    uint32_t l = (uint32_t)(x >> 32), r = (uint32_t)x;
    for (unsigned i = 0; i < FEISTEL_ROUNDS; i++) {
        uint32_t t = l ^ round_fn(key, i, r);
        l = r;
        r = t;
    }
    return (uint64_t)l << 32 | r;
}

uint64_t api__cursor_unpermute(const uint8_t key[API_CURSOR_KEY_BYTES], uint64_t y)
{
    uint32_t l = (uint32_t)(y >> 32), r = (uint32_t)y;
    for (unsigned i = FEISTEL_ROUNDS; i-- > 0;) {
        uint32_t t = r ^ round_fn(key, i, l);
        r = l;
        l = t;
    }
    return (uint64_t)l << 32 | r;
}

int api__cursor_encode(const uint8_t *key, uint64_t seq, char out[API_CURSOR_LEN + 1])
{
    if (!key) {
        snprintf(out, API_CURSOR_LEN + 1, "%" PRIx64, seq);
        return 0;
    }
    if (seq >> API_CURSOR_SEQ_BITS)
        return -ERANGE;
    snprintf(out, API_CURSOR_LEN + 1, "%016" PRIx64, api__cursor_permute(key, seq));
    return 0;
}

int api__cursor_decode(const uint8_t *key, const char *s, uint64_t *seq)
{
    size_t n = strlen(s);
    uint64_t v = 0;
    if (n == 0 || n > API_CURSOR_LEN || (key && n != API_CURSOR_LEN))
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (*p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else
            return -EINVAL;
        v = v << 4 | d;
    }
    if (key) {
        v = api__cursor_unpermute(key, v);
        if (v >> API_CURSOR_SEQ_BITS)
            return -EINVAL; /* not made with this key */
    }
    if (v == 0)
        return -EINVAL;
    *seq = v;
    return 0;
}

void api_cursor_key_derive(const void *material, size_t len, uint8_t key[API_CURSOR_KEY_BYTES])
{
    /* Fixed, public keys: the secret is the material (tokens of at least 16 characters
     * each). Two of them give the 128 bits of the cursor key. */
    static const uint8_t k0[API_CURSOR_KEY_BYTES] = "pyjobd cursor/0";
    static const uint8_t k1[API_CURSOR_KEY_BYTES] = "pyjobd cursor/1";
    uint64_t h[2] = {api__siphash24(k0, material, len), api__siphash24(k1, material, len)};
    for (int i = 0; i < API_CURSOR_KEY_BYTES; i++)
        key[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
    explicit_bzero(h, sizeof(h));
}
