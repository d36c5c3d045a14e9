/*
 * test_clock.c — RFC 3339 parsing (what "run_at" and "expires_at" accept): the
 * forms, offsets, fractions and leap days that are times, and for those that are
 * not, the position of the first wrong character; formatting round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pyjobd/clock.h"

static int64_t parse(const char *s)
{
    int64_t us = -1;
    size_t pos = 99;
    assert_int_equal(clock_parse(s, &us, &pos), 0);
    return us;
}

static void parse__valid__microseconds_since_the_epoch(void **state)
{
    (void)state;
    assert_true(parse("1970-01-01T00:00:00Z") == 0);
    assert_true(parse("2026-12-01T17:30:00Z") == 1796146200LL * 1000000);
    assert_true(parse("2026-12-01t17:30:00z") == parse("2026-12-01 17:30:00Z"));
    assert_true(parse("2026-12-01T18:30:00+01:00") == parse("2026-12-01T17:30:00Z"));
    assert_true(parse("2026-12-01T12:00:00-05:30") == parse("2026-12-01T17:30:00Z"));
    assert_true(parse("2026-12-01T17:30:00.5Z") == parse("2026-12-01T17:30:00Z") + 500000);
    assert_true(parse("2026-12-01T17:30:00.123456789Z") == parse("2026-12-01T17:30:00Z") + 123456);
    assert_true(parse("2024-02-29T00:00:00Z") == parse("2024-02-28T00:00:00Z") + 86400000000LL);
    assert_true(parse("2000-02-29T00:00:00Z") > 0);                              /* 400-year leap */
    assert_true(parse("2016-12-31T23:59:60Z") == parse("2016-12-31T23:59:59Z")); /* leap s */
}

static void parse__malformed__position_of_the_first_wrong_character(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t pos;
    } bad[] = {
        {"", 0},
        {"2026-13-01T00:00:00Z", 5}, /* month 13: the month */
        {"2026-02-29T00:00:00Z", 8}, /* not a leap year: the day */
        {"1900-02-29T00:00:00Z", 8}, /* centuries are not, unless by 400 */
        {"2026-04-31T00:00:00Z", 8},
        {"2026-12-01T24:00:00Z", 11},
        {"2026-12-01T17:60:00Z", 14},
        {"2026-12-01T17:30:00", 19}, /* no zone */
        {"2026-12-01T17:30:00+0100", 22},
        {"2026-12-01T17:30:00.Z", 20}, /* a dot without digits */
        {"2026-12-01T17:30:00.1234567890Z", 30},
        {"2026-12-01T17:30:00Zjunk", 20},
        {"2026-12-1T17:30:00Z", 9},
        {"26-12-01T17:30:00Z", 2},
        {"2026/12/01T17:30:00Z", 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t us = 7;
        size_t pos = 999;
        assert_int_equal(clock_parse(bad[i].s, &us, &pos), -22 /* -EINVAL */);
        if (pos != bad[i].pos)
            fail_msg("%s: position %zu, expected %zu", bad[i].s, pos, bad[i].pos);
    }
}

static void format__parse__round_trip(void **state)
{
    (void)state;
    char buf[CLOCK_TEXT_LEN];
    int64_t us = 1796146200123456LL;
    struct timespec ts = clock_us_ts(us);
    assert_int_equal(clock_format(&ts, buf), 0);
    assert_string_equal(buf, "2026-12-01T17:30:00.123456Z");
    assert_true(parse(buf) == us);
    struct timespec zero = {0, 0};
    assert_int_equal(clock_format(&zero, buf), -22);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse__valid__microseconds_since_the_epoch),
        cmocka_unit_test(parse__malformed__position_of_the_first_wrong_character),
        cmocka_unit_test(format__parse__round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
