/*
 * job_request.c — turns a job request object into a struct job_spec.
 *
 * Everything a client can get wrong is caught here, before the pool sees the job,
 * and answered with a detail precise enough to fix the request: which field, what
 * was expected, what was sent. Unknown fields are rejected (a typo such as
 * "timout" must not silently run a job without its limit). Nothing is unpickled:
 * the "python" version check is how a pickle from another interpreter is refused.
 */
#include "job_request.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idempotency.h"
#include "input.h"
#include "job_retry.h"
#include "job_timing.h"
#include "pyjobd/base64.h"

static const char *const known_fields[] = {"callable",
                                           "args",
                                           "kwargs",
                                           "json_args",
                                           "json_kwargs",
                                           "timeout",
                                           "python",
                                           "result_format",
                                           "metadata",
                                           "max_retries",
                                           "retry_on_timeout",
                                           "priority",
                                           "soft_timeout",
                                           "idempotency_key",
                                           "delay",
                                           "run_at",
                                           "expires_in",
                                           "expires_at",
                                           "retry"};

#define NFIELDS (sizeof(known_fields) / sizeof(*known_fields))

/* Decodes a base64 payload field. Absent or null leaves *out NULL (unless required). */
static int decode_payload(json_t *obj, const char *field, const char *what, int required,
                          const char *where, struct blob **out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return api__failf(detail, len, "%sfield '%s' is required: the base64 of %s", where,
                              field, what);
        return 0;
    }
    if (!json_is_string(v))
        return api__failf(detail, len, "%sfield '%s' must be a string (the base64 of %s), got %s",
                          where, field, what, api__json_type_name(v));
    struct base64_error err;
    int rc = base64_decode_blob(json_string_value(v), json_string_length(v), out, &err);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        char why[96];
        return api__failf(detail, len, "%sfield '%s' is not valid base64: %s", where, field,
                          base64_error_format(&err, why, sizeof(why)));
    }
    if (blob_len(*out) == 0) {
        blob_unref(*out);
        *out = NULL;
        return api__failf(detail, len, "%sfield '%s' is empty: it must be the base64 of %s", where,
                          field, what);
    }
    return 0;
}

/* Serializes a JSON array/object field (json_args, json_kwargs) into a blob. */
static int encode_json_field(json_t *obj, const char *field, int want_array, const char *where,
                             struct blob **out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    const char *want =
        want_array ? "array (the positional arguments)" : "object (the keyword arguments)";
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (want_array ? !json_is_array(v) : !json_is_object(v))
        return api__failf(detail, len, "%sfield '%s' must be a JSON %s, got %s", where, field, want,
                          api__json_type_name(v));
    if (api__json_depth(v, API_JSON_VALUE_MAX_DEPTH) > API_JSON_VALUE_MAX_DEPTH)
        return api__failf(detail, len, "%sfield '%s' is nested deeper than %d levels", where, field,
                          API_JSON_VALUE_MAX_DEPTH);
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return -ENOMEM;
    *out = blob_new_copy(text, strlen(text));
    free(text);
    return *out ? 0 : -ENOMEM;
}

static int parse_timeout(json_t *obj, const char *where, double *out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "timeout");
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return api__failf(detail, len, "%sfield 'timeout' must be a number of seconds >= 0, got %s",
                          where, api__json_type_name(v));
    double t = json_number_value(v);
    if (!isfinite(t) || t < 0)
        return api__failf(detail, len, "%sfield 'timeout' must be a number of seconds >= 0, got %g",
                          where, t);
    if (t > API_JOB_TIMEOUT_MAX)
        return api__failf(detail, len,
                          "%sfield 'timeout' must be at most %.0f seconds (30 days), got %g; "
                          "use 0 for the server's default",
                          where, API_JOB_TIMEOUT_MAX, t);
    *out = t;
    return 0;
}

static int parse_python(json_t *obj, const struct api__job_limits *lim, const char *where,
                        char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "python");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return api__failf(detail, len,
                          "%sfield 'python' must be a string (platform.python_version()), got %s",
                          where, api__json_type_name(v));
    const char *s = json_string_value(v);
    char buf[64];
    if (!api__python_version_is_valid(s))
        return api__failf(detail, len,
                          "%sfield 'python' must be a version such as \"3.11.2\" "
                          "(platform.python_version()), got '%s'",
                          where, api__short_text(s, buf, sizeof(buf)));
    if (!lim)
        return 0;
    char why[400];
    if (api__python_check(lim->python_match, lim->workers_python, s, why, sizeof(why)) < 0)
        return api__failf(detail, len, "%s%s", where, why);
    return 0;
}

static int parse_result_format(json_t *obj, const char *where, int *json_out, char *detail,
                               size_t len)
{
    json_t *v = json_object_get(obj, "result_format");
    *json_out = 0;
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    if (s && strcmp(s, "pickle") == 0)
        return 0;
    if (s && strcmp(s, "json") == 0) {
        *json_out = 1;
        return 0;
    }
    char buf[64];
    if (s)
        return api__failf(detail, len,
                          "%sfield 'result_format' must be \"pickle\" or \"json\", got '%s'", where,
                          api__short_text(s, buf, sizeof(buf)));
    return api__failf(detail, len, "%sfield 'result_format' must be \"pickle\" or \"json\", got %s",
                      where, api__json_type_name(v));
}

static int parse_metadata(json_t *obj, const char *where, char **out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "metadata");
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return api__failf(detail, len, "%sfield 'metadata' must be a JSON object, got %s", where,
                          api__json_type_name(v));
    if (api__json_depth(v, API_JSON_VALUE_MAX_DEPTH) > API_JSON_VALUE_MAX_DEPTH)
        return api__failf(detail, len, "%sfield 'metadata' is nested deeper than %d levels", where,
                          API_JSON_VALUE_MAX_DEPTH);
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    size_t n = strlen(text);
    if (n > API_METADATA_MAX_BYTES) {
        free(text);
        return api__failf(detail, len,
                          "%sfield 'metadata' is %zu bytes as compact JSON; the limit is %d bytes",
                          where, n, API_METADATA_MAX_BYTES);
    }
    *out = text;
    return 0;
}

static int parse_retries(json_t *obj, const struct api__job_limits *lim, const char *where,
                         struct job_spec *spec, char *detail, size_t len)
{
    unsigned limit = lim ? lim->max_retries_limit : API_DEFAULT_MAX_RETRIES_LIMIT;
    json_t *v = json_object_get(obj, "max_retries");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v))
            return api__failf(detail, len,
                              "%sfield 'max_retries' must be an integer from 0 to %u, got %s",
                              where, limit, api__json_type_name(v));
        json_int_t n = json_integer_value(v);
        if (n < 0 || (unsigned long long)n > limit)
            return api__failf(detail, len,
                              "%sfield 'max_retries' must be an integer from 0 to %u (this "
                              "server's --max-retries-limit), got %lld",
                              where, limit, (long long)n);
        spec->max_retries = (unsigned)n;
    }
    v = json_object_get(obj, "retry_on_timeout");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return api__failf(detail, len,
                              "%sfield 'retry_on_timeout' must be true or false, got %s", where,
                              api__json_type_name(v));
        spec->retry_on_timeout = json_is_true(v);
    }
    return 0;
}

static int parse_priority(json_t *obj, const char *where, int *out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "priority");
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v)) {
        if (json_is_real(v))
            return api__failf(detail, len,
                              "%sfield 'priority' must be an integer from %d to %d (higher runs "
                              "first; default 0), got %g",
                              where, API_PRIORITY_MIN, API_PRIORITY_MAX, json_real_value(v));
        return api__failf(detail, len,
                          "%sfield 'priority' must be an integer from %d to %d (higher runs "
                          "first; default 0), got %s",
                          where, API_PRIORITY_MIN, API_PRIORITY_MAX, api__json_type_name(v));
    }
    json_int_t n = json_integer_value(v);
    if (n < API_PRIORITY_MIN || n > API_PRIORITY_MAX)
        return api__failf(detail, len,
                          "%sfield 'priority' must be an integer from %d to %d (higher runs "
                          "first; default 0), got %lld",
                          where, API_PRIORITY_MIN, API_PRIORITY_MAX, (long long)n);
    *out = (int)n;
    return 0;
}

/* After parse_timeout: the soft timeout warns before the hard one, so it must come
 * first, whether the hard one is the request's or the server's default. */
static int parse_soft_timeout(json_t *obj, const struct api__job_limits *lim, const char *where,
                              struct job_spec *spec, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "soft_timeout");
    spec->soft_timeout = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return api__failf(detail, len,
                          "%sfield 'soft_timeout' must be a number of seconds > 0 (or null for "
                          "none), got %s",
                          where, api__json_type_name(v));
    double t = json_number_value(v);
    if (!isfinite(t) || t <= 0)
        return api__failf(detail, len,
                          "%sfield 'soft_timeout' must be a number of seconds > 0 (or null for "
                          "none), got %g",
                          where, t);
    if (spec->timeout > 0 && t >= spec->timeout)
        return api__failf(detail, len,
                          "%sfield 'soft_timeout' must be less than 'timeout' (%g s): it is the "
                          "warning before the hard stop, got %g",
                          where, spec->timeout, t);
    double dflt = lim ? lim->default_timeout : 0;
    if (spec->timeout <= 0 && dflt > 0 && t >= dflt)
        return api__failf(detail, len,
                          "%sfield 'soft_timeout' must be less than the job's timeout, here the "
                          "server's --default-timeout (%g s): it is the warning before the hard "
                          "stop, got %g; send a larger 'timeout' with it",
                          where, dflt, t);
    if (t > API_JOB_TIMEOUT_MAX)
        return api__failf(detail, len,
                          "%sfield 'soft_timeout' must be at most %.0f seconds (30 days), got %g",
                          where, API_JOB_TIMEOUT_MAX, t);
    spec->soft_timeout = t;
    return 0;
}

static int both_given(json_t *obj, const char *a, const char *b)
{
    json_t *x = json_object_get(obj, a), *y = json_object_get(obj, b);
    return x && !json_is_null(x) && y && !json_is_null(y);
}

int api__job_request_from_json(json_t *obj, const struct api__job_limits *lim, const char *where,
                               struct job_spec *spec, char *detail, size_t len)
{
    memset(spec, 0, sizeof(*spec));
    if (!where)
        where = "";
    if (!json_is_object(obj))
        return api__failf(detail, len,
                          "%sa job must be a JSON object such as {\"callable\": \"<base64>\"}, "
                          "got %s",
                          where, api__json_type_name(obj));
    int rc;
    if ((rc = api__check_fields(obj, known_fields, NFIELDS, where, detail, len)))
        return rc;
    if (both_given(obj, "args", "json_args"))
        return api__failf(detail, len,
                          "%sfields 'args' and 'json_args' are mutually exclusive: send the "
                          "positional arguments either pickled or as JSON",
                          where);
    if (both_given(obj, "kwargs", "json_kwargs"))
        return api__failf(detail, len,
                          "%sfields 'kwargs' and 'json_kwargs' are mutually exclusive: send the "
                          "keyword arguments either pickled or as JSON",
                          where);
    if ((rc = parse_python(obj, lim, where, detail, len)) ||
        (rc = decode_payload(obj, "callable", "cloudpickle.dumps(fn)", 1, where, &spec->callable,
                             detail, len)) ||
        (rc = decode_payload(obj, "args", "cloudpickle.dumps(tuple)", 0, where, &spec->args, detail,
                             len)) ||
        (rc = decode_payload(obj, "kwargs", "cloudpickle.dumps(dict)", 0, where, &spec->kwargs,
                             detail, len)) ||
        (rc = encode_json_field(obj, "json_args", 1, where, &spec->json_args, detail, len)) ||
        (rc = encode_json_field(obj, "json_kwargs", 0, where, &spec->json_kwargs, detail, len)) ||
        (rc = parse_timeout(obj, where, &spec->timeout, detail, len)) ||
        (rc = parse_soft_timeout(obj, lim, where, spec, detail, len)) ||
        (rc = parse_priority(obj, where, &spec->priority, detail, len)) ||
        (rc = parse_result_format(obj, where, &spec->result_json, detail, len)) ||
        (rc = parse_metadata(obj, where, &spec->metadata, detail, len)) ||
        (rc = parse_retries(obj, lim, where, spec, detail, len)) ||
        (rc = api__job_timing_from_json(obj, where, spec, detail, len)) ||
        (rc = api__job_retry_from_json(obj,
                                       lim ? lim->max_retries_limit : API_DEFAULT_MAX_RETRIES_LIMIT,
                                       where, spec, detail, len)) ||
        (rc = api__idem_from_field(obj, where, spec, detail, len)))
        job_spec_release(spec);
    return rc;
}

int api__job_request_parse_keyed(const uint8_t *body, size_t len, const struct api__job_limits *lim,
                                 const char *key, struct job_spec *spec, char *detail,
                                 size_t detail_len)
{
    json_t *root;
    memset(spec, 0, sizeof(*spec));
    int rc = api__body_parse(body, len, "{\"callable\": \"<base64 of cloudpickle.dumps(fn)>\"}",
                             &root, detail, detail_len);
    if (rc < 0)
        return rc;
    rc = api__job_request_from_json(root, lim, "", spec, detail, detail_len);
    if (rc == 0 && key && spec->idem_key && strcmp(key, spec->idem_key) != 0)
        rc = api__failf(detail, detail_len,
                        "header '" API_IDEM_HEADER "' and field '" API_IDEM_FIELD
                        "' differ; send the key once");
    else if (rc == 0 && key && !spec->idem_key)
        rc = api__idem_attach(root, key, spec);
    if (rc != 0)
        job_spec_release(spec);
    json_decref(root);
    return rc;
}

int api__job_request_parse(const uint8_t *body, size_t len, const struct api__job_limits *lim,
                           struct job_spec *spec, char *detail, size_t detail_len)
{
    return api__job_request_parse_keyed(body, len, lim, NULL, spec, detail, detail_len);
}
