/*
 * test_json_check.c — api__json_check (api/json_check.c): a worker's JSON result is
 * spliced into a response only when it is exactly one JSON value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/json_check.h"

static int ok(const char *s)
{
    return api__json_check(s, strlen(s));
}

static void values__accepted(void **state)
{
    (void)state;
    const char *good[] = {
        "0",
        "-0",
        "1.5",
        "-12.5e-3",
        "1E+9",
        "true",
        "false",
        "null",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u00e9\\n\\t\\/\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "[]",
        "{}",
        " [1, [2, {\"a\": [true, null]}], \"x\"] \n",
        "{\"a\":1,\"b\":{\"c\":[]}}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        if (!ok(good[i]))
            fail_msg("refused: %s", good[i]);
}

static void not_one_value__refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        " ",
        "1,\"status\":\"hacked\"",
        "1}",
        "{\"a\":1}}",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":}",
        "{a:1}",
        "{\"a\":1,}",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "+1",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "\"abc",
        "\"a\x01\"",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"\xc3\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf5\x80\x80\x80\"",
        "[",
        "]",
        "[1]]",
        "1 2",
        "{\"a\":1 \"b\":2}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (ok(bad[i]))
            fail_msg("accepted: %s", bad[i]);
    assert_false(api__json_check("1\0", 2)); /* a NUL after the value */
}

static void nesting__bounded(void **state)
{
    (void)state;
    size_t depth = 1024;
    char *s = malloc(2 * depth + 2);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    assert_true(ok(s));
    char *deeper = malloc(2 * depth + 4);
    assert_non_null(deeper);
    snprintf(deeper, 2 * depth + 4, "[%s]", s);
    assert_false(ok(deeper)); /* 1025 levels */
    free(s);
    free(deeper);
}

/* Agrees with jansson on what it accepts, for a set of mutations of a document. */
static void agrees_with_jansson(void **state)
{
    (void)state;
    const char *doc = "{\"a\": [1, -2.5e3, \"x\\u0041\", true, null], \"b\": {}}";
    size_t n = strlen(doc);
    char buf[128];
    const char subst[] = "[]{}\",:0e.-tfn \\";
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof(subst) - 1; k++) {
            memcpy(buf, doc, n + 1);
            buf[i] = subst[k];
            json_error_t err;
            json_t *j = json_loadb(buf, n, JSON_DECODE_ANY, &err);
            int theirs = j != NULL;
            json_decref(j);
            if (api__json_check(buf, n) != theirs)
                fail_msg("disagree (jansson %d) on %s", theirs, buf);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(values__accepted),
        cmocka_unit_test(not_one_value__refused),
        cmocka_unit_test(nesting__bounded),
        cmocka_unit_test(agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
