/*
 * test_sha256.c — SHA-256 against the FIPS 180-2 test vectors (appendix B: "abc", the
 * two-block message, a million "a"), the empty message, and updates split at every
 * point giving the digest of the whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pyjobd/sha256.h"

static void hex(const uint8_t d[SHA256_BYTES], char out[2 * SHA256_BYTES + 1])
{
    for (int i = 0; i < SHA256_BYTES; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void check(const char *msg, const char *want)
{
    uint8_t d[SHA256_BYTES];
    char got[2 * SHA256_BYTES + 1];
    sha256(msg, strlen(msg), d);
    hex(d, got);
    assert_string_equal(got, want);
}

static void sha256__fips_vectors__match(void **state)
{
    (void)state;
    check("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void sha256__million_a__matches(void **state)
{
    (void)state;
    char chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    struct sha256 c;
    sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        sha256_update(&c, chunk, sizeof(chunk));
    uint8_t d[SHA256_BYTES];
    char got[2 * SHA256_BYTES + 1];
    sha256_final(&c, d);
    hex(d, got);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void sha256__split_updates__same_digest(void **state)
{
    (void)state;
    char msg[200];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)(i * 7 + 3);
    uint8_t whole[SHA256_BYTES], parts[SHA256_BYTES];
    sha256(msg, sizeof(msg), whole);
    for (size_t cut = 0; cut <= sizeof(msg); cut++) {
        struct sha256 c;
        sha256_init(&c);
        sha256_update(&c, msg, cut);
        sha256_update(&c, msg + cut, sizeof(msg) - cut);
        sha256_final(&c, parts);
        assert_memory_equal(whole, parts, SHA256_BYTES);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256__fips_vectors__match),
        cmocka_unit_test(sha256__million_a__matches),
        cmocka_unit_test(sha256__split_updates__same_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
