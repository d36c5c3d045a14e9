/*
 * test_cursor.c — api/cursor.c: SipHash-2-4 against the published vectors, the keyed
 * permutation (round trip, no fixed points, keys matter, consecutive seqs look
 * unrelated), cursors in both forms, refusal of altered cursors and of another
 * key's, and the key derivation.
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

#include "api/cursor.h"

static const uint8_t key_a[API_CURSOR_KEY_BYTES] = "0123456789abcdef";
static const uint8_t key_b[API_CURSOR_KEY_BYTES] = "0123456789abcdeg";

/* A fixed pseudorandom sample (xorshift64*), the same on every run. */
static uint64_t sample_state;

static uint64_t sample_next(void)
{
    sample_state ^= sample_state >> 12;
    sample_state ^= sample_state << 25;
    sample_state ^= sample_state >> 27;
    return sample_state * 0x2545f4914f6cdd1dULL;
}

static void siphash24__reference_vectors(void **state)
{
    (void)state;
    /* The paper's key 00 01 .. 0f over messages 00 01 .. (n-1): the first entries of
     * the reference implementation's vectors, and the paper's 15-byte example. */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    static const uint64_t want[] = {0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL,
                                    0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
                                    0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL};
    for (size_t n = 0; n < sizeof(want) / sizeof(*want); n++)
        assert_int_equal(api__siphash24(key, msg, n), want[n]);
    assert_int_equal(api__siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
}

static void permute__round_trip(void **state)
{
    (void)state;
    static const uint64_t edges[] = {
        0, 1, 2, 0xffffffffULL, 1ULL << 32, (1ULL << 48) - 1, 1ULL << 48, UINT64_MAX};
    for (size_t i = 0; i < sizeof(edges) / sizeof(*edges); i++) {
        uint64_t x = edges[i];
        assert_int_equal(api__cursor_unpermute(key_a, api__cursor_permute(key_a, x)), x);
        assert_int_equal(api__cursor_permute(key_a, api__cursor_unpermute(key_a, x)), x);
    }
    sample_state = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = sample_next();
        assert_int_equal(api__cursor_unpermute(key_a, api__cursor_permute(key_a, x)), x);
        assert_int_equal(api__cursor_unpermute(key_b, api__cursor_permute(key_b, x)), x);
    }
}

static void permute__no_fixed_points_on_a_sample(void **state)
{
    (void)state;
    for (uint64_t x = 0; x <= 100000; x++)
        if (api__cursor_permute(key_a, x) == x)
            fail_msg("permute(%llu) == %llu", (unsigned long long)x, (unsigned long long)x);
}

static void permute__different_keys_give_different_values(void **state)
{
    (void)state;
    uint8_t one_bit[API_CURSOR_KEY_BYTES];
    memcpy(one_bit, key_a, sizeof(one_bit));
    one_bit[15] ^= 0x80;
    for (uint64_t x = 1; x <= 10000; x++) {
        uint64_t a = api__cursor_permute(key_a, x);
        assert_true(a != api__cursor_permute(key_b, x));
        assert_true(a != api__cursor_permute(one_bit, x));
    }
}

static int popcount64(uint64_t v)
{
    int n = 0;
    for (; v; v &= v - 1)
        n++;
    return n;
}

/* What a cursor must not give away: the distance between two seqs. */
static void permute__consecutive_seqs_look_unrelated(void **state)
{
    (void)state;
    enum { N = 4096 };
    uint64_t *diffs = calloc(N, sizeof(*diffs));
    assert_non_null(diffs);
    long bits = 0;
    for (uint64_t x = 1; x <= N; x++) {
        uint64_t a = api__cursor_permute(key_a, x), b = api__cursor_permute(key_a, x + 1);
        diffs[x - 1] = b - a;
        bits += popcount64(a ^ b);
    }
    /* A counter, an offset or any affine map repeats one difference; these are
     * (very nearly) all distinct. */
    size_t repeats = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            repeats += diffs[i] == diffs[j];
    free(diffs);
    assert_true(repeats <= 1);
    /* About half of the 64 bits change from one seq to the next (32 on average). */
    double mean = (double)bits / N;
    if (mean < 30 || mean > 34)
        fail_msg("consecutive cursors differ in %.2f bits on average, want about 32", mean);
}

static void cursor__plain_without_a_key(void **state)
{
    (void)state;
    char c[API_CURSOR_LEN + 1];
    uint64_t seq = 0;
    assert_int_equal(api__cursor_encode(NULL, 0xbeef, c), 0);
    assert_string_equal(c, "beef");
    assert_int_equal(api__cursor_decode(NULL, "beef", &seq), 0);
    assert_int_equal(seq, 0xbeef);
    assert_int_equal(api__cursor_encode(NULL, UINT64_MAX, c), 0);
    assert_string_equal(c, "ffffffffffffffff");
    assert_int_equal(api__cursor_decode(NULL, c, &seq), 0);
    assert_int_equal(seq, UINT64_MAX);
    static const char *const bad[] = {"", "0", "000", "BEEF", "xyz", "be ef", "11112222333344445"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(api__cursor_decode(NULL, bad[i], &seq), -EINVAL);
}

static void cursor__keyed__16_digits_round_trip(void **state)
{
    (void)state;
    char c[API_CURSOR_LEN + 1];
    uint64_t seq = 0;
    static const uint64_t seqs[] = {1, 2, 7, 0xbeef, 1000000, (1ULL << 48) - 1};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(*seqs); i++) {
        assert_int_equal(api__cursor_encode(key_a, seqs[i], c), 0);
        assert_int_equal(strlen(c), API_CURSOR_LEN);
        assert_int_equal(strspn(c, "0123456789abcdef"), API_CURSOR_LEN);
        assert_int_equal(api__cursor_decode(key_a, c, &seq), 0);
        assert_int_equal(seq, seqs[i]);
    }
    assert_int_equal(api__cursor_encode(key_a, 1ULL << 48, c), -ERANGE);
    /* The plain form is not accepted where cursors are keyed. */
    assert_int_equal(api__cursor_decode(key_a, "beef", &seq), -EINVAL);
    assert_int_equal(api__cursor_decode(key_a, "000000000000beef", &seq), -EINVAL);
    assert_int_equal(api__cursor_decode(key_a, "", &seq), -EINVAL);
    /* A cursor decoding to 0 ("from the newest") is not one we made. */
    snprintf(c, sizeof(c), "%016llx", (unsigned long long)api__cursor_permute(key_a, 0));
    assert_int_equal(api__cursor_decode(key_a, c, &seq), -EINVAL);
}

static void cursor__altered_or_other_key__refused(void **state)
{
    (void)state;
    static const char digits[] = "0123456789abcdef";
    char c[API_CURSOR_LEN + 1], t[API_CURSOR_LEN + 1];
    uint64_t seq;
    /* Every one-digit change of 100 cursors: 24000 tries, each accepted with chance
     * 2^-16 (0.37 expected). Without the check every one would be. */
    size_t tries = 0, accepted = 0;
    for (uint64_t s = 1; s <= 100; s++) {
        assert_int_equal(api__cursor_encode(key_a, s, c), 0);
        for (int pos = 0; pos < API_CURSOR_LEN; pos++)
            for (int d = 0; d < 16; d++) {
                if (digits[d] == c[pos])
                    continue;
                memcpy(t, c, sizeof(t));
                t[pos] = digits[d];
                tries++;
                accepted += api__cursor_decode(key_a, t, &seq) == 0;
            }
    }
    assert_int_equal(tries, 24000);
    assert_true(accepted <= 3);
    /* Cursors of a server with other tokens. */
    accepted = 0;
    for (uint64_t s = 1; s <= 20000; s++) {
        assert_int_equal(api__cursor_encode(key_a, s, c), 0);
        accepted += api__cursor_decode(key_b, c, &seq) == 0;
    }
    assert_true(accepted <= 3);
}

static void key_derive__same_material_same_key(void **state)
{
    (void)state;
    uint8_t k1[API_CURSOR_KEY_BYTES], k2[API_CURSOR_KEY_BYTES], k3[API_CURSOR_KEY_BYTES];
    uint8_t zero[API_CURSOR_KEY_BYTES] = {0};
    char m[] = "\x1c\0\0\0alice-token-aaaaaaaaaaaaaaaaaa";
    api_cursor_key_derive(m, sizeof(m) - 1, k1);
    api_cursor_key_derive(m, sizeof(m) - 1, k2);
    assert_memory_equal(k1, k2, sizeof(k1));
    assert_memory_not_equal(k1, zero, sizeof(k1));
    m[sizeof(m) - 2] ^= 1; /* one bit of one token */
    api_cursor_key_derive(m, sizeof(m) - 1, k3);
    assert_memory_not_equal(k1, k3, sizeof(k1));
    /* The two halves come from two different functions. */
    assert_memory_not_equal(k1, k1 + 8, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash24__reference_vectors),
        cmocka_unit_test(permute__round_trip),
        cmocka_unit_test(permute__no_fixed_points_on_a_sample),
        cmocka_unit_test(permute__different_keys_give_different_values),
        cmocka_unit_test(permute__consecutive_seqs_look_unrelated),
        cmocka_unit_test(cursor__plain_without_a_key),
        cmocka_unit_test(cursor__keyed__16_digits_round_trip),
        cmocka_unit_test(cursor__altered_or_other_key__refused),
        cmocka_unit_test(key_derive__same_material_same_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
