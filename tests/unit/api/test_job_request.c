/*
 * test_job_request.c — api/job_request.c: every way a POST /v1/jobs body can be wrong
 * is a -EINVAL with a precise detail; valid bodies give the right blobs and timeout.
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

#include "api/job_request.h"

static char detail[512];

/* Limits for the next parse (NULL: the parser's defaults). */
static const struct api__job_limits *lim;

static int parse(const char *body, struct job_spec *spec)
{
    detail[0] = '\0';
    return api__job_request_parse((const uint8_t *)body, strlen(body), lim, spec, detail,
                                  sizeof(detail));
}

/* Asserts body is rejected and the detail contains want. */
static void assert_rejected(const char *body, const char *want)
{
    struct job_spec spec;
    int rc = parse(body, &spec);
    if (rc != -EINVAL)
        fail_msg("accepted (rc %d): %s", rc, body);
    assert_null(spec.callable);
    assert_null(spec.args);
    assert_null(spec.kwargs);
    if (!strstr(detail, want))
        fail_msg("detail '%s' lacks '%s'", detail, want);
}

static void request_parse__empty_body__rejected(void **state)
{
    (void)state;
    assert_rejected("", "request body is empty");
}

static void request_parse__not_json__rejected(void **state)
{
    (void)state;
    assert_rejected("callable=abc", "request body is not valid JSON: ");
    assert_rejected("{\"callable\": \"Zm9v\",}", "at line 1 column");
    assert_rejected("{\"callable\": \"Zm9v\"} trailing", "request body is not valid JSON");
}

static void request_parse__json_error__reports_line_and_column(void **state)
{
    (void)state;
    assert_rejected("{\n  \"callable\": 'Zm9v'\n}", "at line 2 column");
}

static void request_parse__not_an_object__rejected(void **state)
{
    (void)state;
    assert_rejected("[\"Zm9v\"]", "request body must be a JSON object, got array");
    assert_rejected("\"Zm9v\"", "request body must be a JSON object, got string");
    assert_rejected("42", "request body must be a JSON object, got number");
    assert_rejected("null", "request body must be a JSON object, got null");
}

static void request_parse__duplicated_key__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"callable\": \"YmFy\"}", "duplicate");
}

static void request_parse__missing_callable__rejected(void **state)
{
    (void)state;
    assert_rejected("{}", "field 'callable' is required: the base64 of cloudpickle.dumps(fn)");
    assert_rejected("{\"args\": \"Zm9v\"}", "field 'callable' is required");
    assert_rejected("{\"callable\": null}", "field 'callable' is required");
}

static void request_parse__callable_not_a_string__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": 42}", "field 'callable' must be a string");
    assert_rejected("{\"callable\": 42}", "got number");
    assert_rejected("{\"callable\": [\"Zm9v\"]}", "got array");
    assert_rejected("{\"callable\": true}", "got boolean");
}

static void request_parse__bad_base64__rejected_with_offset(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9vYmFyZm9vYmFyZ%\"}",
                    "field 'callable' is not valid base64: unexpected character '%' at offset 17");
    assert_rejected("{\"callable\": \"Zm9v\", \"args\": \"Zm9v-A\"}",
                    "field 'args' is not valid base64: unexpected character '-' at offset 4");
    assert_rejected("{\"callable\": \"Zm9v\", \"kwargs\": \"A===\"}",
                    "field 'kwargs' is not valid base64: misplaced padding");
}

static void request_parse__empty_callable__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"\"}", "field 'callable' is empty");
    assert_rejected("{\"callable\": \"\\n \"}", "field 'callable' is empty");
    assert_rejected("{\"callable\": \"Zm9v\", \"args\": \"\"}", "field 'args' is empty");
}

static void request_parse__args_wrong_type__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"args\": [1, 2]}",
                    "field 'args' must be a string (the base64 of cloudpickle.dumps(tuple)), "
                    "got array");
    assert_rejected("{\"callable\": \"Zm9v\", \"kwargs\": {\"a\": 1}}",
                    "field 'kwargs' must be a string (the base64 of cloudpickle.dumps(dict)), "
                    "got object");
}

static void request_parse__bad_timeout__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": -1}",
                    "field 'timeout' must be a number of seconds >= 0, got -1");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": -0.5}", "got -0.5");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": \"30\"}",
                    "field 'timeout' must be a number of seconds >= 0, got string");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": true}", "got boolean");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 1e300}",
                    "field 'timeout' must be at most 2592000 seconds");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 2592001}", "at most");
    /* Not representable: jansson refuses them, still a clean 400. */
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 1e999}", "not valid JSON");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": NaN}", "not valid JSON");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 99999999999999999999999}",
                    "not valid JSON");
}

static void request_parse__unknown_field__rejected_with_suggestion(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"timout\": 5}",
                    "unknown field 'timout' (did you mean 'timeout'?); accepted fields: "
                    "callable, args, kwargs, json_args, json_kwargs, timeout, python, "
                    "result_format, metadata, max_retries, retry_on_timeout");
    assert_rejected("{\"callable\": \"Zm9v\", \"colour\": 5}", "unknown field 'colour'; accepted");
    assert_rejected("{\"callable\": \"Zm9v\", \"jsonargs\": [1]}", "did you mean 'json_args'");
}

static void request_parse__long_unknown_field__truncated_on_utf8_boundary(void **state)
{
    (void)state;
    char body[512];
    char name[200] = "";
    for (int i = 0; i < 60; i++)
        strcat(name, "\xc3\xa9"); /* é */
    snprintf(body, sizeof(body), "{\"callable\": \"Zm9v\", \"%s\": 1}", name);
    assert_rejected(body, "...'");
    /* 48 bytes is 24 whole characters. */
    assert_non_null(strstr(detail, "'\xc3\xa9"));
    char *end = strstr(detail, "...'");
    assert_int_equal((end - strchr(detail, '\'') - 1) % 2, 0);
}

static void request_parse__deep_nesting__rejected_not_crash(void **state)
{
    (void)state;
    size_t n = 100000;
    char *body = malloc(2 * n + 1);
    assert_non_null(body);
    memset(body, '[', n);
    memset(body + n, ']', n);
    body[2 * n] = '\0';
    assert_rejected(body, "not valid JSON");
    /* The same inside a field. */
    memcpy(body, "{\"callable\":", 12);
    body[2 * n - 1] = '}';
    assert_rejected(body, "not valid JSON");
    free(body);
}

static void request_parse__python_wrong_type__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": 3.11}",
                    "field 'python' must be a string");
}

static void request_parse__minimal__callable_only(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9vYmFy\"}", &spec), 0);
    assert_non_null(spec.callable);
    assert_int_equal(blob_len(spec.callable), 6);
    assert_memory_equal(blob_data(spec.callable), "foobar", 6);
    assert_null(spec.args);
    assert_null(spec.kwargs);
    assert_true(spec.timeout == 0);
    job_spec_release(&spec);
}

static void request_parse__full__all_fields(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\\nYmFy\\n\", \"args\": \"YQ==\", "
                           "\"kwargs\": \"YmM\", \"timeout\": 2.5, \"python\": \"3.11.2\"}",
                           &spec),
                     0);
    assert_memory_equal(blob_data(spec.callable), "foobar", 6);
    assert_int_equal(blob_len(spec.args), 1);
    assert_memory_equal(blob_data(spec.args), "a", 1);
    assert_int_equal(blob_len(spec.kwargs), 2);
    assert_memory_equal(blob_data(spec.kwargs), "bc", 2);
    assert_true(spec.timeout == 2.5);
    job_spec_release(&spec);
}

static void request_parse__nulls_and_integer_timeout__accepted(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"args\": null, \"kwargs\": null, "
                           "\"timeout\": 30, \"python\": null}",
                           &spec),
                     0);
    assert_null(spec.args);
    assert_null(spec.kwargs);
    assert_true(spec.timeout == 30);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"timeout\": 0}", &spec), 0);
    assert_true(spec.timeout == 0);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"timeout\": 2592000}", &spec), 0);
    job_spec_release(&spec);
}

static void request_parse__binary_body__rejected(void **state)
{
    (void)state;
    struct job_spec spec;
    static const uint8_t body[] = {'{', 0, 0xff, '}'};
    assert_int_equal(
        api__job_request_parse(body, sizeof(body), NULL, &spec, detail, sizeof(detail)), -EINVAL);
    assert_non_null(strstr(detail, "not valid JSON"));
}

static void request_parse__json_args_kwargs__serialized_compact(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"json_args\": [ 1, {\"a\" : [true]} ], "
                           "\"json_kwargs\": {\"x\": \"\\u00e9\"}}",
                           &spec),
                     0);
    assert_int_equal(blob_len(spec.json_args), strlen("[1,{\"a\":[true]}]"));
    assert_memory_equal(blob_data(spec.json_args), "[1,{\"a\":[true]}]", 16);
    assert_memory_equal(blob_data(spec.json_kwargs), "{\"x\":\"\xc3\xa9\"}", 10);
    assert_null(spec.args);
    job_spec_release(&spec);
    assert_int_equal(
        parse("{\"callable\": \"Zm9v\", \"json_args\": [], \"kwargs\": \"Zm9v\"}", &spec), 0);
    assert_memory_equal(blob_data(spec.json_args), "[]", 2);
    assert_non_null(spec.kwargs);
    job_spec_release(&spec);
}

static void request_parse__json_args_kwargs__rejected(void **state)
{
    (void)state;
    assert_rejected("{\"callable\": \"Zm9v\", \"args\": \"Zm9v\", \"json_args\": [1]}",
                    "fields 'args' and 'json_args' are mutually exclusive");
    assert_rejected("{\"callable\": \"Zm9v\", \"kwargs\": \"Zm9v\", \"json_kwargs\": {}}",
                    "fields 'kwargs' and 'json_kwargs' are mutually exclusive");
    assert_rejected(
        "{\"callable\": \"Zm9v\", \"json_args\": {\"a\": 1}}",
        "field 'json_args' must be a JSON array (the positional arguments), got object");
    assert_rejected("{\"callable\": \"Zm9v\", \"json_kwargs\": [1]}",
                    "field 'json_kwargs' must be a JSON object (the keyword arguments), got array");
    char deep[300];
    memset(deep, 0, sizeof(deep));
    strcpy(deep, "{\"callable\": \"Zm9v\", \"json_args\": ");
    size_t n = strlen(deep);
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    assert_rejected(deep, "field 'json_args' is nested deeper than 64 levels");
}

static void request_parse__result_format__pickle_or_json(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"result_format\": \"json\"}", &spec), 0);
    assert_int_equal(spec.result_json, 1);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"result_format\": \"pickle\"}", &spec), 0);
    assert_int_equal(spec.result_json, 0);
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"result_format\": \"JSON\"}",
                    "field 'result_format' must be \"pickle\" or \"json\", got 'JSON'");
    assert_rejected("{\"callable\": \"Zm9v\", \"result_format\": 1}", "got number");
}

static void request_parse__metadata__object_up_to_4k(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(
        parse("{\"callable\": \"Zm9v\", \"metadata\": {\"team\" : \"ml\", \"n\": 1}}", &spec), 0);
    assert_string_equal(spec.metadata, "{\"team\":\"ml\",\"n\":1}");
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"metadata\": [1]}",
                    "field 'metadata' must be a JSON object, got array");
    assert_rejected("{\"callable\": \"Zm9v\", \"metadata\": \"x\"}", "got string");
    /* {"k":"<4089 x>"} is 4097 bytes; one less fits. */
    char *body = malloc(8192);
    assert_non_null(body);
    strcpy(body, "{\"callable\": \"Zm9v\", \"metadata\": {\"k\":\"");
    size_t n = strlen(body);
    memset(body + n, 'x', 4089);
    strcpy(body + n + 4089, "\"}}");
    assert_rejected(body, "field 'metadata' is 4097 bytes as compact JSON; the limit is 4096");
    strcpy(body + n + 4088, "\"}}");
    assert_int_equal(parse(body, &spec), 0);
    assert_int_equal(strlen(spec.metadata), 4096);
    job_spec_release(&spec);
    free(body);
}

static void request_parse__retries__bounded_by_limit(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(
        parse("{\"callable\": \"Zm9v\", \"max_retries\": 3, \"retry_on_timeout\": true}", &spec),
        0);
    assert_int_equal(spec.max_retries, 3);
    assert_int_equal(spec.retry_on_timeout, 1);
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"max_retries\": 4}",
                    "field 'max_retries' must be an integer from 0 to 3 (this server's "
                    "--max-retries-limit), got 4");
    assert_rejected("{\"callable\": \"Zm9v\", \"max_retries\": -1}", "got -1");
    assert_rejected("{\"callable\": \"Zm9v\", \"max_retries\": 1.5}", "got number");
    assert_rejected("{\"callable\": \"Zm9v\", \"max_retries\": true}", "got boolean");
    assert_rejected("{\"callable\": \"Zm9v\", \"retry_on_timeout\": 1}",
                    "field 'retry_on_timeout' must be true or false, got number");
    struct api__job_limits l = {.max_retries_limit = 0};
    lim = &l;
    assert_rejected("{\"callable\": \"Zm9v\", \"max_retries\": 1}", "from 0 to 0");
    lim = NULL;
}

static void request_parse__python__format_and_match(void **state)
{
    (void)state;
    struct job_spec spec;
    static const char *const good[] = {"3.11.2", "3.13.0rc1", "3.14.0a1+", "3.12"};
    struct api__job_limits l = {.max_retries_limit = 3, .python_match = API_PYTHON_MATCH_MINOR};
    strcpy(l.workers_python, "3.12.4");
    lim = &l;
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        assert_true(api__python_version_is_valid(good[i]));
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"python\": \"3.12.0rc1\"}", &spec), 0);
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": \"3.11.2\"}",
                    "this server's workers run Python 3.12.4; the payload was made with 3.11.2: "
                    "pickles are not portable across minor versions; use a 3.12 client or set "
                    "--python-match");
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": \"three\"}",
                    "field 'python' must be a version such as \"3.11.2\"");
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": \"3\"}", "must be a version");
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": \"3.11.2 \"}", "must be a version");
    l.python_match = API_PYTHON_MATCH_EXACT;
    assert_rejected("{\"callable\": \"Zm9v\", \"python\": \"3.12.3\"}", "--python-match=exact");
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"python\": \"3.12.4\"}", &spec), 0);
    job_spec_release(&spec);
    l.python_match = API_PYTHON_MATCH_NONE;
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"python\": \"2.7.18\"}", &spec), 0);
    job_spec_release(&spec);
    lim = NULL;
}

static void request_parse__priority__integer_minus_100_to_100(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\"}", &spec), 0);
    assert_int_equal(spec.priority, 0);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"priority\": -100}", &spec), 0);
    assert_int_equal(spec.priority, -100);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"priority\": 100}", &spec), 0);
    assert_int_equal(spec.priority, 100);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"priority\": null}", &spec), 0);
    assert_int_equal(spec.priority, 0);
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": 101}",
                    "field 'priority' must be an integer from -100 to 100 (higher runs first; "
                    "default 0), got 101");
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": -101}", "got -101");
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": 4294967296}", "got 4294967296");
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": 1.5}",
                    "field 'priority' must be an integer from -100 to 100");
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": \"high\"}", "got string");
    assert_rejected("{\"callable\": \"Zm9v\", \"priority\": true}", "got boolean");
}

static void request_parse__soft_timeout__positive_and_below_timeout(void **state)
{
    (void)state;
    struct job_spec spec;
    assert_int_equal(parse("{\"callable\": \"Zm9v\"}", &spec), 0);
    assert_true(spec.soft_timeout == 0);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"soft_timeout\": 2.5}", &spec), 0);
    assert_true(spec.soft_timeout == 2.5);
    job_spec_release(&spec);
    assert_int_equal(
        parse("{\"callable\": \"Zm9v\", \"timeout\": 30, \"soft_timeout\": 29.5}", &spec), 0);
    assert_true(spec.soft_timeout == 29.5);
    assert_true(spec.timeout == 30);
    job_spec_release(&spec);
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"soft_timeout\": null}", &spec), 0);
    assert_true(spec.soft_timeout == 0);
    job_spec_release(&spec);
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 30, \"soft_timeout\": 30}",
                    "field 'soft_timeout' must be less than 'timeout' (30 s): it is the warning "
                    "before the hard stop, got 30");
    assert_rejected("{\"callable\": \"Zm9v\", \"timeout\": 1.5, \"soft_timeout\": 40}",
                    "must be less than 'timeout' (1.5 s)");
    assert_rejected("{\"callable\": \"Zm9v\", \"soft_timeout\": 0}",
                    "field 'soft_timeout' must be a number of seconds > 0 (or null for none), "
                    "got 0");
    assert_rejected("{\"callable\": \"Zm9v\", \"soft_timeout\": -1}", "got -1");
    assert_rejected("{\"callable\": \"Zm9v\", \"soft_timeout\": \"5\"}", "got string");
    assert_rejected("{\"callable\": \"Zm9v\", \"soft_timeout\": 1e9}",
                    "field 'soft_timeout' must be at most 2592000 seconds");
    /* Without a timeout of its own, the server's default is the hard stop. */
    struct api__job_limits l = {.max_retries_limit = 3, .default_timeout = 10};
    lim = &l;
    assert_rejected("{\"callable\": \"Zm9v\", \"soft_timeout\": 10}",
                    "field 'soft_timeout' must be less than the job's timeout, here the server's "
                    "--default-timeout (10 s)");
    assert_int_equal(parse("{\"callable\": \"Zm9v\", \"soft_timeout\": 9}", &spec), 0);
    assert_true(spec.soft_timeout == 9);
    job_spec_release(&spec);
    /* A timeout of the request's own replaces the default, also upwards. */
    assert_int_equal(
        parse("{\"callable\": \"Zm9v\", \"timeout\": 60, \"soft_timeout\": 50}", &spec), 0);
    job_spec_release(&spec);
    lim = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_parse__priority__integer_minus_100_to_100),
        cmocka_unit_test(request_parse__soft_timeout__positive_and_below_timeout),
        cmocka_unit_test(request_parse__json_args_kwargs__serialized_compact),
        cmocka_unit_test(request_parse__json_args_kwargs__rejected),
        cmocka_unit_test(request_parse__result_format__pickle_or_json),
        cmocka_unit_test(request_parse__metadata__object_up_to_4k),
        cmocka_unit_test(request_parse__retries__bounded_by_limit),
        cmocka_unit_test(request_parse__python__format_and_match),
        cmocka_unit_test(request_parse__empty_body__rejected),
        cmocka_unit_test(request_parse__not_json__rejected),
        cmocka_unit_test(request_parse__json_error__reports_line_and_column),
        cmocka_unit_test(request_parse__not_an_object__rejected),
        cmocka_unit_test(request_parse__duplicated_key__rejected),
        cmocka_unit_test(request_parse__missing_callable__rejected),
        cmocka_unit_test(request_parse__callable_not_a_string__rejected),
        cmocka_unit_test(request_parse__bad_base64__rejected_with_offset),
        cmocka_unit_test(request_parse__empty_callable__rejected),
        cmocka_unit_test(request_parse__args_wrong_type__rejected),
        cmocka_unit_test(request_parse__bad_timeout__rejected),
        cmocka_unit_test(request_parse__unknown_field__rejected_with_suggestion),
        cmocka_unit_test(request_parse__long_unknown_field__truncated_on_utf8_boundary),
        cmocka_unit_test(request_parse__deep_nesting__rejected_not_crash),
        cmocka_unit_test(request_parse__python_wrong_type__rejected),
        cmocka_unit_test(request_parse__minimal__callable_only),
        cmocka_unit_test(request_parse__full__all_fields),
        cmocka_unit_test(request_parse__nulls_and_integer_timeout__accepted),
        cmocka_unit_test(request_parse__binary_body__rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
