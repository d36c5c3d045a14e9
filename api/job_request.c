/*
 * job_request.c — turns the JSON body of POST /v1/jobs into a struct job_spec.
 *
 * Everything a client can get wrong is caught here, before the pool sees the job,
 * and answered with a detail precise enough to fix the request: which field, what
 * was expected, what was sent. Unknown fields are rejected (a typo such as
 * "timout" must not silently run a job without its limit). Nothing is unpickled.
 */
#include "job_request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pyjobd/base64.h"

static const char *const known_fields[] = {"callable", "args", "kwargs", "timeout", "python"};

/* Fields of the wire contract this server does not implement yet. */
static const char *const later_fields[] = {"json_args", "json_kwargs", "result_format"};

#define ACCEPTED_FIELDS "callable, args, kwargs, timeout, python"

static int failf(char *detail, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(char *detail, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

/* Copies at most 48 bytes of a client-chosen name, cut on a UTF-8 boundary. */
static const char *short_name(const char *name, char *buf, size_t len)
{
    size_t n = strlen(name);
    if (n < len && n <= 48)
        return name;
    n = len - 4 < 48 ? len - 4 : 48;
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
        n--;
    memcpy(buf, name, n);
    memcpy(buf + n, "...", 4);
    return buf;
}

/* Edit distance, bounded: enough to suggest "timeout" for "timout". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[16];
    if (la >= 16 || lb >= 16)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int check_fields(json_t *obj, char *detail, size_t len)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof(known_fields) / sizeof(*known_fields); i++)
            known |= strcmp(key, known_fields[i]) == 0;
        if (known)
            continue;
        for (size_t i = 0; i < sizeof(later_fields) / sizeof(*later_fields); i++)
            if (strcmp(key, later_fields[i]) == 0)
                return failf(detail, len,
                             "field '%s' is not supported by this server yet; send 'args' and "
                             "'kwargs' as base64 of cloudpickle.dumps(...) instead",
                             key);
        const char *guess = NULL;
        for (size_t i = 0; i < sizeof(known_fields) / sizeof(*known_fields); i++)
            if (distance(key, known_fields[i]) <= 2)
                guess = known_fields[i];
        char buf[64];
        const char *name = short_name(key, buf, sizeof(buf));
        if (guess)
            return failf(detail, len,
                         "unknown field '%s' (did you mean '%s'?); accepted fields: %s", name,
                         guess, ACCEPTED_FIELDS);
        return failf(detail, len, "unknown field '%s'; accepted fields: %s", name, ACCEPTED_FIELDS);
    }
    return 0;
}

/* Decodes a base64 payload field. Absent or null leaves *out NULL (unless required). */
static int decode_payload(json_t *obj, const char *field, const char *what, int required,
                          struct blob **out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return failf(detail, len, "field '%s' is required: the base64 of %s", field, what);
        return 0;
    }
    if (!json_is_string(v))
        return failf(detail, len, "field '%s' must be a string (the base64 of %s), got %s", field,
                     what, type_name(v));
    struct base64_error err;
    int rc = base64_decode_blob(json_string_value(v), json_string_length(v), out, &err);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        char why[96];
        return failf(detail, len, "field '%s' is not valid base64: %s", field,
                     base64_error_format(&err, why, sizeof(why)));
    }
    if (blob_len(*out) == 0) {
        blob_unref(*out);
        *out = NULL;
        return failf(detail, len, "field '%s' is empty: it must be the base64 of %s", field, what);
    }
    return 0;
}

static int parse_timeout(json_t *obj, double *out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, "timeout");
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return failf(detail, len, "field 'timeout' must be a number of seconds >= 0, got %s",
                     type_name(v));
    double t = json_number_value(v);
    if (!isfinite(t) || t < 0)
        return failf(detail, len, "field 'timeout' must be a number of seconds >= 0, got %g", t);
    if (t > API_JOB_TIMEOUT_MAX)
        return failf(detail, len,
                     "field 'timeout' must be at most %.0f seconds (30 days), got %g; "
                     "use 0 for the server's default",
                     API_JOB_TIMEOUT_MAX, t);
    *out = t;
    return 0;
}

int api__job_request_parse(const uint8_t *body, size_t len, struct job_spec *spec, char *detail,
                           size_t detail_len)
{
    memset(spec, 0, sizeof(*spec));
    if (len == 0 || !body)
        return failf(detail, detail_len,
                     "request body is empty: send a JSON object such as "
                     "{\"callable\": \"<base64 of cloudpickle.dumps(fn)>\"}");

    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return -ENOMEM;
        return failf(detail, detail_len, "request body is not valid JSON: %s at line %d column %d",
                     jerr.text, jerr.line, jerr.column);
    }

    int rc;
    if (!json_is_object(root)) {
        rc = failf(detail, detail_len, "request body must be a JSON object, got %s",
                   type_name(root));
        goto out;
    }
    json_t *python = json_object_get(root, "python");
    if ((rc = check_fields(root, detail, detail_len)) ||
        (rc = decode_payload(root, "callable", "cloudpickle.dumps(fn)", 1, &spec->callable, detail,
                             detail_len)) ||
        (rc = decode_payload(root, "args", "cloudpickle.dumps(tuple)", 0, &spec->args, detail,
                             detail_len)) ||
        (rc = decode_payload(root, "kwargs", "cloudpickle.dumps(dict)", 0, &spec->kwargs, detail,
                             detail_len)) ||
        (rc = parse_timeout(root, &spec->timeout, detail, detail_len)))
        goto out;
    /* Accepted for forward compatibility; the version check comes later. */
    if (python && !json_is_string(python) && !json_is_null(python))
        rc = failf(detail, detail_len,
                   "field 'python' must be a string (platform.python_version()), got %s",
                   type_name(python));
out:
    json_decref(root);
    if (rc)
        job_spec_release(spec);
    return rc;
}
