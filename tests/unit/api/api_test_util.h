/*
 * api_test_util.h — shared by the api unit tests that drive api_handle() over the fake
 * pool (tests/fake/fake_pool.h, linked into every api test): setup and teardown that
 * reset the fake and open an api on it, request helpers, and assertions on the answer.
 * Header-only (static functions) because each test file is its own program.
 */
#ifndef PYJOBD_API_TEST_UTIL_H
#define PYJOBD_API_TEST_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pyjobd/api.h"
#include "tests/fake/fake_pool.h"

#define UNUSED __attribute__((unused))

static const char *query_keys[8], *query_vals[8];
static size_t nquery;

UNUSED static void set_query(const char *key, const char *value)
{
    query_keys[nquery] = key;
    query_vals[nquery++] = value;
}

static const char *query_cb(void *ctx, const char *key)
{
    (void)ctx;
    for (size_t i = 0; i < nquery; i++)
        if (query_keys[i] && strcmp(query_keys[i], key) == 0)
            return query_vals[i];
    return NULL;
}

static struct api *api;
static struct api_response resp;
static json_t *body;
static struct api_config cfg;
static const char *tenant; /* the authenticated tenant of request(), NULL: no auth */
/* The role of tenant's token (setup: user). Without a tenant, request() is the one user
 * of a server without tokens, an admin, as server/http.c makes it. */
static enum api_role role;

/* The api as configured for tests; a test may change cfg and call api_reopen(). */
UNUSED static void api_reopen(void)
{
    api_free(api);
    api = api_new(&cfg);
    assert_non_null(api);
}

UNUSED static int setup(void **state)
{
    (void)state;
    fake_reset();
    nquery = 0;
    tenant = NULL;
    role = API_ROLE_USER;
    cfg = (struct api_config){.pool = (struct pool *)&fake,
                              .max_wait = 60,
                              .max_request_bytes = 1 << 20,
                              .default_timeout = 0,
                              .version = "0.1.0",
                              .max_retries_limit = 3,
                              .max_batch = 4,
                              .max_queue = 100,
                              .max_jobs = 1000,
                              .result_ttl = 3600};
    api = api_new(&cfg);
    return api ? 0 : -1;
}

UNUSED static int teardown(void **state)
{
    (void)state;
    json_decref(body);
    body = NULL;
    api_response_release(&resp);
    api_free(api);
    api = NULL;
    fake_reset();
    return 0;
}

/* A body in parts becomes one plain body, so that the tests read resp.body; it is
 * read whole once and in pieces of 1 to 7 bytes once, which must agree. */
static void flatten(void)
{
    if (!resp.parts)
        return;
    unsigned long long n = api_response_length(&resp);
    char *whole = malloc(n + 1), *pieces = malloc(n + 1);
    assert_non_null(whole);
    assert_non_null(pieces);
    struct api_body_cursor c = {0};
    assert_int_equal(api_response_read(&resp, &c, 0, whole, n), n);
    struct api_body_cursor c2 = {0};
    unsigned long long at = 0;
    for (unsigned step = 1; at < n; step = step % 7 + 1) {
        size_t got = api_response_read(&resp, &c2, at, pieces + at, step);
        assert_true(got > 0 && got <= step);
        at += got;
    }
    assert_int_equal(api_response_read(&resp, &c2, n, pieces, 1), 0);
    assert_memory_equal(whole, pieces, n);
    free(pieces);
    whole[n] = '\0';
    struct api_response parts = {.parts = resp.parts, .nparts = resp.nparts};
    api_response_release(&parts);
    resp.parts = NULL;
    resp.nparts = 0;
    resp.body = whole;
    resp.body_len = n;
}

/* Parses resp's body into body when it is JSON. */
static void load_body(void)
{
    flatten();
    json_decref(body);
    body = NULL;
    if (resp.body && resp.content_type && strstr(resp.content_type, "json")) {
        assert_int_equal(resp.body[resp.body_len - 1], '\n');
        body = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, NULL);
        assert_non_null(body);
    }
}

UNUSED static void request(const char *method, const char *path, const char *ctype,
                           const char *text)
{
    struct api_request req = {
        .tenant = tenant,
        .role = tenant ? role : API_ROLE_ADMIN,
        .method = method,
        .path = path,
        .query = query_cb,
        .content_type = ctype,
        .body = (const uint8_t *)text,
        .body_len = text ? strlen(text) : 0,
    };
    api_response_release(&resp);
    api_handle(api, &req, &resp);
    load_body();
}

UNUSED static void post_json(const char *path, const char *text)
{
    request("POST", path, "application/json", text);
}

UNUSED static void finish_wait(void)
{
    api_wait_finish(api, &resp);
    assert_null(resp.wait);
    load_body();
}

UNUSED static void assert_problem(int status, const char *detail_part)
{
    if (resp.status != status)
        fail_msg("status %d, want %d (%.*s)", resp.status, status, (int)resp.body_len,
                 resp.body ? resp.body : "");
    assert_string_equal(resp.content_type, "application/problem+json");
    assert_null(resp.wait);
    assert_string_equal(json_string_value(json_object_get(body, "type")), "about:blank");
    assert_non_null(json_string_value(json_object_get(body, "title")));
    assert_int_equal(json_integer_value(json_object_get(body, "status")), status);
    const char *detail = json_string_value(json_object_get(body, "detail"));
    assert_non_null(detail);
    if (!strstr(detail, detail_part))
        fail_msg("detail '%s' lacks '%s'", detail, detail_part);
}

UNUSED static void assert_status(int status)
{
    if (resp.status != status)
        fail_msg("status %d, want %d (%.*s)", resp.status, status, (int)resp.body_len,
                 resp.body ? resp.body : "");
}

UNUSED static void wake_cb(void *arg)
{
    ++*(int *)arg;
}

UNUSED static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

UNUSED static long long jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("'%s' is not an integer", key);
    return json_integer_value(v);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

#endif
