/*
 * job_retry.c — a request's retry policy:
 *
 *     "retry": {"max": N, "on": ["ConnectionError", "mymod.TransientError"],
 *               "not_on": [...], "backoff": {"initial": 1.0, "factor": 2.0,
 *               "max": 300.0, "jitter": true}, "on_crash": true,
 *               "on_timeout": false, "on_node_lost": true}
 *
 * The names are only checked for shape here (dotted Python identifiers): the worker
 * matches them against the raised exception's MRO; nothing is unpickled. "max_retries"
 * and "retry_on_timeout" are the old shorthand: not together with "retry".
 */
#include "job_retry.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"

static const char *const retry_fields[] = {"max",      "on",         "not_on",      "backoff",
                                           "on_crash", "on_timeout", "on_node_lost"};
static const char *const backoff_fields[] = {"initial", "factor", "max", "jitter"};

static int ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* 0 when s is a dotted Python identifier ("ConnectionError", "mymod.sub.Error"); else
 * the 1-based position of the first character that is not right. */
static size_t name_bad_at(const char *s, size_t n)
{
    int start = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (start ? ident_start(c) : (ident_start(c) || (c >= '0' && c <= '9'))) {
            start = 0;
        } else if (c == '.' && !start) {
            start = 1;
        } else {
            return i + 1;
        }
    }
    return start ? n + 1 : 0; /* empty, or ending with '.' */
}

/* A list of class names, joined with '\n' into *out (malloc'd; NULL for absent). */
static int names(json_t *v, const char *field, const char *where, char **out, char *detail,
                 size_t len)
{
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > API_RETRY_MAX_NAMES)
        return api__failf(detail, len,
                          "%sfield 'retry.%s' must be a list of 1 to %d exception class names "
                          "(\"ConnectionError\", \"mymod.TransientError\"), got %s",
                          where, field, API_RETRY_MAX_NAMES,
                          json_is_array(v) ? "a list of another size" : api__json_type_name(v));
    size_t total = 0, n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return api__failf(detail, len, "%sfield 'retry.%s[%zu]' must be a string, got %s",
                              where, field, i, api__json_type_name(e));
        size_t l = json_string_length(e), bad = name_bad_at(json_string_value(e), l);
        if (l > API_RETRY_NAME_MAX)
            return api__failf(detail, len, "%sfield 'retry.%s[%zu]' is longer than %d characters",
                              where, field, i, API_RETRY_NAME_MAX);
        if (bad)
            return api__failf(detail, len,
                              "%sfield 'retry.%s[%zu]' is not an exception class name (a Python "
                              "identifier, or dotted: \"mymod.TransientError\"; ASCII): wrong at "
                              "character %zu of \"%.200s\"",
                              where, field, i, bad, json_string_value(e));
        total += l + 1;
    }
    char *joined = malloc(total);
    if (!joined)
        return -ENOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        memcpy(joined + at, json_string_value(e), json_string_length(e));
        at += json_string_length(e);
        joined[at++] = i + 1 < n ? '\n' : '\0';
    }
    *out = joined;
    return 0;
}

static int flag(json_t *obj, const char *field, const char *where, int dflt, int *out, char *detail,
                size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return api__failf(detail, len, "%sfield 'retry.%s' must be true or false, got %s", where,
                          field, api__json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A number in (lo, hi] (lo_incl: [lo, hi]), or absent (*out = dflt). */
static int number(json_t *obj, const char *field, double lo, int lo_incl, double hi, double dflt,
                  const char *where, double *out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!isfinite(x) || (lo_incl ? x < lo : x <= lo) || x > hi)
        return api__failf(detail, len,
                          "%sfield 'retry.backoff.%s' must be a number %s %g and at most %g, "
                          "got %s",
                          where, field, lo_incl ? ">=" : ">", lo, hi,
                          json_is_number(v) ? "one out of range" : api__json_type_name(v));
    *out = x;
    return 0;
}

static int backoff(json_t *v, const char *where, struct job_retry *r, char *detail, size_t len)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return api__failf(detail, len,
                          "%sfield 'retry.backoff' must be an object such as {\"initial\": 1, "
                          "\"factor\": 2, \"max\": 300, \"jitter\": true}, got %s",
                          where, api__json_type_name(v));
    char at[96];
    snprintf(at, sizeof(at), "%sretry.backoff: ", where);
    int rc = api__check_fields(v, backoff_fields, 4, at, detail, len);
    if (rc ||
        (rc = number(v, "initial", 0, 0, API_RETRY_INITIAL_MAX, 1.0, where, &r->initial, detail,
                     len)) ||
        (rc = number(v, "factor", 1, 1, API_RETRY_FACTOR_MAX, 2.0, where, &r->factor, detail,
                     len)) ||
        (rc = number(v, "max", 0, 0, API_RETRY_DELAY_MAX, (r->initial > 300.0 ? r->initial : 300.0),
                     where, &r->max_delay, detail, len)))
        return rc;
    if (r->max_delay < r->initial)
        return api__failf(detail, len,
                          "%sfield 'retry.backoff.max' (%g) must be at least 'initial' (%g)", where,
                          r->max_delay, r->initial);
    json_t *j = json_object_get(v, "jitter");
    if (j && !json_is_null(j) && !json_is_boolean(j))
        return api__failf(detail, len,
                          "%sfield 'retry.backoff.jitter' must be true or false, got %s", where,
                          api__json_type_name(j));
    r->jitter = j && json_is_true(j);
    return 0;
}

int api__job_retry_from_json(json_t *obj, unsigned limit, const char *where, struct job_spec *spec,
                             char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "retry");
    if (!v || json_is_null(v))
        return 0;
    json_t *old = json_object_get(obj, "max_retries");
    json_t *old2 = json_object_get(obj, "retry_on_timeout");
    if ((old && !json_is_null(old)) || (old2 && !json_is_null(old2)))
        return api__failf(detail, len,
                          "%sfield 'retry' and '%s' are mutually exclusive: put it in the "
                          "policy (\"max\", \"on_timeout\")",
                          where, old && !json_is_null(old) ? "max_retries" : "retry_on_timeout");
    if (!json_is_object(v))
        return api__failf(detail, len,
                          "%sfield 'retry' must be an object such as {\"max\": 3, \"on\": "
                          "[\"ConnectionError\"]}, got %s",
                          where, api__json_type_name(v));
    char at[96];
    snprintf(at, sizeof(at), "%sretry: ", where);
    int rc = api__check_fields(v, retry_fields, 7, at, detail, len);
    if (rc)
        return rc;
    struct job_retry r = {.given = 1};
    unsigned max = API_RETRY_DEFAULT_MAX < limit ? API_RETRY_DEFAULT_MAX : limit;
    json_t *m = json_object_get(v, "max");
    if (m && !json_is_null(m)) {
        if (!json_is_integer(m) || json_integer_value(m) < 0 ||
            (unsigned long long)json_integer_value(m) > limit)
            return api__failf(detail, len,
                              "%sfield 'retry.max' must be an integer from 0 to %u (this "
                              "server's --max-retries-limit), got %s",
                              where, limit,
                              json_is_integer(m) ? "one out of range" : api__json_type_name(m));
        max = (unsigned)json_integer_value(m);
    }
    int on_crash, on_node_lost, on_timeout;
    if ((rc = flag(v, "on_crash", where, 1, &on_crash, detail, len)) ||
        (rc = flag(v, "on_node_lost", where, 1, &on_node_lost, detail, len)) ||
        (rc = flag(v, "on_timeout", where, 0, &on_timeout, detail, len)) ||
        (rc = backoff(json_object_get(v, "backoff"), where, &r, detail, len)) ||
        (rc = names(json_object_get(v, "on"), "on", where, &r.on, detail, len)) ||
        (rc = names(json_object_get(v, "not_on"), "not_on", where, &r.not_on, detail, len))) {
        job_retry_release(&r);
        return rc;
    }
    r.no_crash = !on_crash;
    r.no_node_lost = !on_node_lost;
    job_retry_release(&spec->retry);
    spec->retry = r;
    spec->max_retries = max;
    spec->retry_on_timeout = on_timeout;
    return 0;
}
