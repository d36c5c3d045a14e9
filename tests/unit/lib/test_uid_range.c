/*
 * test_uid_range.c — "FIRST-LAST" (lib/uid_range.c), as --worker-uids and the worker's
 * --uids take it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pyjobd/uid_range.h"

static void parse__valid__both_ends(void **state)
{
    (void)state;
    unsigned long a, b;
    assert_int_equal(uid_range_parse("64000-64999", &a, &b), 0);
    assert_int_equal(a, 64000);
    assert_int_equal(b, 64999);
    assert_int_equal(uid_range_parse("7-7", &a, &b), 0);
    assert_int_equal(uid_range_parse("1-2147483646", &a, &b), 0);
}

static void parse__malformed__refused(void **state)
{
    (void)state;
    unsigned long a, b;
    const char *bad[] = {"",
                         "64000",
                         "0-10",
                         "10-9",
                         "-5-9",
                         "5--9",
                         "5-+9",
                         "5- 9",
                         " 5-9",
                         "5-9 ",
                         "5-9x",
                         "5-2147483647",
                         "99999999999999999999-1",
                         "a-b",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(uid_range_parse(bad[i], &a, &b), -1);
        assert_int_equal(a, 0);
        assert_int_equal(b, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse__valid__both_ends),
        cmocka_unit_test(parse__malformed__refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
