/*
 * test_utf8.c — UTF-8 checks (lib/utf8.c): what a worker sends is scrubbed before it
 * reaches PostgreSQL's text columns, which refuse invalid UTF-8 (and with it, every
 * other write of the same transaction). A job can write raw frames on its worker's
 * channel, so the server cannot rely on the worker's own escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pyjobd/utf8.h"

static void scrub__valid_text__unchanged(void **state)
{
    (void)state;
    char s[] = "plain, caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80";
    char copy[sizeof(s)];
    memcpy(copy, s, sizeof(s));
    utf8_scrub(s);
    assert_memory_equal(s, copy, sizeof(s));
    utf8_scrub(NULL);
}

static void scrub__invalid_bytes__replaced_one_for_one(void **state)
{
    (void)state;
    char latin1[] = "caf\xe9!";          /* a Latin-1 byte */
    char surrogate[] = "x\xed\xb3\xbfy"; /* an encoded lone surrogate */
    char truncated[] = "ab\xe2\x82";     /* a sequence cut short at the end */
    char overlong[] = "\xc0\xaf-";       /* an overlong encoding */
    char beyond[] = "\xf4\x90\x80\x80."; /* above U+10FFFF */
    utf8_scrub(latin1);
    utf8_scrub(surrogate);
    utf8_scrub(truncated);
    utf8_scrub(overlong);
    utf8_scrub(beyond);
    assert_string_equal(latin1, "caf?!");
    assert_string_equal(surrogate, "x???y");
    assert_string_equal(truncated, "ab??");
    assert_string_equal(overlong, "?"
                                  "?-");
    assert_string_equal(beyond, "????.");
}

static void seq__lengths(void **state)
{
    (void)state;
    assert_int_equal(utf8_seq((const unsigned char *)"a", 1), 1);
    assert_int_equal(utf8_seq((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(utf8_seq((const unsigned char *)"\xc3\xa9", 1), 0);
    assert_int_equal(utf8_seq((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(utf8_seq((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(utf8_seq((const unsigned char *)"\x80", 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scrub__valid_text__unchanged),
        cmocka_unit_test(scrub__invalid_bytes__replaced_one_for_one),
        cmocka_unit_test(seq__lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
