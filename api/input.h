/*
 * input.h — pure helpers for what clients send: JSON bodies, their fields, query
 * values (api-internal; jansson and libc only, no pool, no responses).
 *
 * Every function that rejects input writes one sentence into detail[0..len) saying
 * what is wrong and how to fix it, and returns -EINVAL.
 */
#ifndef PYJOBD_API_INPUT_H
#define PYJOBD_API_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Deepest nesting accepted inside json_args, json_kwargs and metadata. */
#define API_JSON_VALUE_MAX_DEPTH 64

/* Formats detail and returns -EINVAL. */
int api__failf(char *detail, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "object", "array", "string", "number", "boolean", "null". */
const char *api__json_type_name(const json_t *v);

/* 1 when ct is application/json (any case, optional parameters). */
int api__is_json_media_type(const char *ct);

/*
 * Parses body[0..len) as a JSON object (duplicate keys rejected, nesting bounded by
 * jansson). *out: a new reference. 0; -EINVAL (empty, not JSON, not an object: the
 * detail quotes example as what to send); -ENOMEM.
 */
int api__body_parse(const uint8_t *body, size_t len, const char *example, json_t **out,
                    char *detail, size_t detail_len);

/*
 * Rejects members of obj not in known[0..n) with a suggestion for near misses
 * ("timout" → "timeout"). where prefixes the detail (e.g. "jobs[3]: "), may be "".
 */
int api__check_fields(json_t *obj, const char *const *known, size_t n, const char *where,
                      char *detail, size_t detail_len);

/* Copies at most 48 bytes of client text, cut on a UTF-8 boundary, "..." appended. */
const char *api__short_text(const char *s, char *buf, size_t len);

/* Nesting depth of v (a scalar is 1), counting no further than limit + 1. */
size_t api__json_depth(const json_t *v, size_t limit);

/* A number of seconds without sign or exponent: "5", "0.25", "30.". 0 or -EINVAL. */
int api__parse_seconds(const char *s, double *out);

/* A decimal integer without sign: 0 or -EINVAL (also on overflow). */
int api__parse_uint(const char *s, uint64_t *out);

/* "true" | "false" | "1" | "0". 0 or -EINVAL. */
int api__parse_bool(const char *s, int *out);

#endif
