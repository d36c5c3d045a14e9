/*
 * idempotency.c — the key of an idempotent submission and the digest of its request.
 * The pool compares digests, never bodies: a digest is SHA-256 (lib/sha256.c, no TLS
 * library in api/) of the request's canonical JSON, streamed into the hash by jansson
 * so that a large payload is never serialised whole a second time.
 */
#include "idempotency.h"
#include "input.h"
#include "pyjobd/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int api__idem_key_check(const char *key, const char *what, char *detail, size_t len)
{
    size_t n = strlen(key);
    if (n == 0 || n > JOB_IDEM_KEY_MAX)
        return api__failf(detail, len,
                          "%s must be 1 to %d printable ASCII characters (no spaces), got %zu "
                          "bytes; a UUID is a good key",
                          what, JOB_IDEM_KEY_MAX, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x21 || c > 0x7e)
            return api__failf(detail, len,
                              "%s must be printable ASCII characters without spaces (0x21 to "
                              "0x7E); byte %zu is 0x%02X",
                              what, i, c);
    }
    return 0;
}

static int hash_cb(const char *buf, size_t size, void *data)
{
    sha256_update(data, buf, size);
    return 0;
}

int api__idem_attach(json_t *obj, const char *key, struct job_spec *spec)
{
    json_t *copy = json_copy(obj); /* shallow: the members are shared, not copied */
    if (!copy)
        return -ENOMEM;
    json_object_del(copy, API_IDEM_FIELD);
    struct sha256 c;
    sha256_init(&c);
    int rc = json_dump_callback(copy, hash_cb, &c, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(copy);
    if (rc != 0)
        return -ENOMEM;
    char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    free(spec->idem_key);
    spec->idem_key = k;
    sha256_final(&c, spec->idem_digest);
    return 0;
}

int api__idem_from_field(json_t *obj, const char *where, struct job_spec *spec, char *detail,
                         size_t len)
{
    json_t *v = json_object_get(obj, API_IDEM_FIELD);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return api__failf(detail, len,
                          "%sfield '" API_IDEM_FIELD "' must be a string of 1 to %d printable "
                          "ASCII characters, got %s",
                          where, JOB_IDEM_KEY_MAX, api__json_type_name(v));
    char what[64];
    snprintf(what, sizeof(what), "%sfield '" API_IDEM_FIELD "'", where);
    /* A NUL inside the string would cut the key short: refuse it as a bad byte. */
    if (strlen(json_string_value(v)) != json_string_length(v))
        return api__failf(detail, len, "%s must not contain NUL bytes", what);
    int rc = api__idem_key_check(json_string_value(v), what, detail, len);
    return rc ? rc : api__idem_attach(obj, json_string_value(v), spec);
}
