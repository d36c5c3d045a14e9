/*
 * test_framing.c — one framing per request (server/framing.c): the header fields that
 * would let a proxy and this server disagree on where a request ends, or on who sends
 * it, are refused; plain requests pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pyjobd/framing.h"

#define F(name, value)                                                                             \
    {                                                                                              \
        name, value, sizeof(value) - 1                                                             \
    }

static int check(const struct framing_header *h, size_t n, char *why)
{
    return framing_check(h, n, why, 400);
}

static void plain_requests__pass(void **state)
{
    (void)state;
    char why[400];
    struct framing_header none[] = {F("Host", "localhost")};
    assert_int_equal(check(none, 1, why), 0);
    struct framing_header cl[] = {F("Host", "x"), F("Content-Length", "12"),
                                  F("Authorization", "Bearer t")};
    assert_int_equal(check(cl, 3, why), 0);
    struct framing_header same[] = {F("Content-Length", "12"), F("content-length", " 12 ")};
    assert_int_equal(check(same, 2, why), 0);
    struct framing_header chunked[] = {F("Transfer-Encoding", " Chunked")};
    assert_int_equal(check(chunked, 1, why), 0);
}

static void two_framings__400(void **state)
{
    (void)state;
    char why[400];
    struct framing_header both[] = {F("Content-Length", "5"), F("Transfer-Encoding", "chunked")};
    assert_int_equal(check(both, 2, why), 400);
    assert_non_null(strstr(why, "both Content-Length and Transfer-Encoding"));
    struct framing_header both2[] = {F("transfer-encoding", "chunked"), F("CONTENT-LENGTH", "0")};
    assert_int_equal(check(both2, 2, why), 400);
    struct framing_header differ[] = {F("Content-Length", "2"), F("Content-Length", "30")};
    assert_int_equal(check(differ, 2, why), 400);
    assert_non_null(strstr(why, "2 and 30"));
    const char *bad[] = {"+2", "-1", "0x10", "1,1", "", " ", "1 2", "12a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct framing_header h = {"Content-Length", bad[i], strlen(bad[i])};
        assert_int_equal(check(&h, 1, why), 400);
        assert_non_null(strstr(why, "decimal number"));
    }
}

static void codings_other_than_chunked__501(void **state)
{
    (void)state;
    char why[400];
    const char *bad[] = {"gzip", "gzip, chunked", "chunked, gzip", "identity", "chunkedx", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct framing_header h = {"Transfer-Encoding", bad[i], strlen(bad[i])};
        assert_int_equal(check(&h, 1, why), 501);
        assert_non_null(strstr(why, "is not supported"));
    }
    struct framing_header twice[] = {F("Transfer-Encoding", "chunked"),
                                     F("Transfer-Encoding", "chunked")};
    assert_int_equal(check(twice, 2, why), 501);
    assert_non_null(strstr(why, "several fields"));
}

static void second_authorization__400(void **state)
{
    (void)state;
    char why[400];
    struct framing_header h[] = {F("Authorization", "Bearer a"), F("Host", "x"),
                                 F("authorization", "Bearer b")};
    assert_int_equal(check(h, 3, why), 400);
    assert_non_null(strstr(why, "2 Authorization"));
    struct framing_header k[] = {F("Idempotency-Key", "a"), F("idempotency-key", "b")};
    assert_int_equal(check(k, 2, why), 400);
    assert_non_null(strstr(why, "2 Idempotency-Key"));
    struct framing_header one[] = {F("Idempotency-Key", "a")};
    assert_int_equal(check(one, 1, why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_requests__pass),
        cmocka_unit_test(two_framings__400),
        cmocka_unit_test(codings_other_than_chunked__501),
        cmocka_unit_test(second_authorization__400),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
