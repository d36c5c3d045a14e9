/*
 * test_origin.c — which Host and Origin a request may carry (server/origin.c): DNS
 * rebinding against a token-less server, and browsers' cross-site requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pyjobd/origin.h"

static int check(const struct origin_policy *p, const char *host, const char *origin)
{
    char detail[800];
    return origin_check(p, host, origin, detail, sizeof(detail));
}

static void host__without_tokens__only_loopback_names(void **state)
{
    (void)state;
    struct origin_policy p = {0};
    assert_int_equal(check(&p, "localhost:8080", NULL), 0);
    assert_int_equal(check(&p, "LOCALHOST", NULL), 0);
    assert_int_equal(check(&p, "app.localhost:8080", NULL), 0);
    assert_int_equal(check(&p, "127.0.0.1:8080", NULL), 0);
    assert_int_equal(check(&p, "127.1.2.3", NULL), 0);
    assert_int_equal(check(&p, "[::1]:8080", NULL), 0);
    assert_int_equal(check(&p, NULL, NULL), 0); /* no Host: no browser */
    assert_int_equal(check(&p, "rebind.attacker.example:8080", NULL), 421);
    assert_int_equal(check(&p, "127.0.0.1.attacker.example", NULL), 421);
    assert_int_equal(check(&p, "localhost.attacker.example", NULL), 421);
    assert_int_equal(check(&p, "128.0.0.1", NULL), 421);
    assert_int_equal(check(&p, "127.0.0.256", NULL), 421);
    assert_int_equal(check(&p, "[::2]:80", NULL), 421);
}

static void host__allowed_hosts__added_and_with_tokens_exclusive(void **state)
{
    (void)state;
    const char *const hosts[] = {"pyjobd.internal", "10.0.0.5", NULL};
    struct origin_policy p = {.allowed_hosts = hosts};
    assert_int_equal(check(&p, "PyJobD.internal:8080", NULL), 0);
    assert_int_equal(check(&p, "10.0.0.5", NULL), 0);
    assert_int_equal(check(&p, "other.internal", NULL), 421);
    p.tokens = 1;
    assert_int_equal(check(&p, "other.internal", NULL), 421);
    assert_int_equal(check(&p, "localhost:1", NULL), 0);
    struct origin_policy open = {.tokens = 1}; /* tokens, no --allowed-hosts: any */
    assert_int_equal(check(&open, "anything.example", NULL), 0);
}

static void origin__own_or_listed_only(void **state)
{
    (void)state;
    const char *const origins[] = {"https://dash.example.com", NULL};
    struct origin_policy p = {.cors_origins = origins};
    char detail[800];
    assert_int_equal(check(&p, "127.0.0.1:8080", "http://127.0.0.1:8080"), 0);
    assert_int_equal(check(&p, "127.0.0.1:8080", "https://dash.example.com"), 0);
    assert_int_equal(
        origin_check(&p, "127.0.0.1:8080", "http://evil.example", detail, sizeof(detail)), 403);
    assert_non_null(strstr(detail, "--cors-origin http://evil.example"));
    assert_int_equal(check(&p, "127.0.0.1:8080", "null"), 403);
    assert_int_equal(check(&p, "127.0.0.1:8080", "http://127.0.0.1:9999"), 403);
    assert_int_equal(check(&p, NULL, "http://127.0.0.1:8080"), 403);
}

static void host__refusal__names_the_flag(void **state)
{
    (void)state;
    struct origin_policy p = {0};
    char detail[800];
    assert_int_equal(origin_check(&p, "rebind.attacker.example:8080", NULL, detail, sizeof(detail)),
                     421);
    assert_non_null(strstr(detail, "--allowed-hosts rebind.attacker.example"));
    assert_non_null(strstr(detail, "rebinding"));
}

static void list__parsed_trimmed_and_checked(void **state)
{
    (void)state;
    const char *bad;
    char **l = origin_list_parse(" a.example , b:80,,c ", &bad);
    assert_null(bad);
    assert_non_null(l);
    assert_string_equal(l[0], "a.example");
    assert_string_equal(l[1], "b:80");
    assert_string_equal(l[2], "c");
    assert_null(l[3]);
    origin_list_free(l);
    assert_null(origin_list_parse("", &bad));
    assert_null(origin_list_parse(NULL, &bad));
    l = origin_list_parse("ok.example,bad host", &bad);
    assert_non_null(bad);
    assert_string_equal(bad, "bad host");
    origin_list_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(host__without_tokens__only_loopback_names),
        cmocka_unit_test(host__allowed_hosts__added_and_with_tokens_exclusive),
        cmocka_unit_test(origin__own_or_listed_only),
        cmocka_unit_test(host__refusal__names_the_flag),
        cmocka_unit_test(list__parsed_trimmed_and_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
