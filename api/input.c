/*
 * input.c — pure validation helpers shared by the resources of api/ (see input.h).
 */
#include "input.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int api__failf(char *detail, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

const char *api__json_type_name(const json_t *v)
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

int api__is_json_media_type(const char *ct)
{
    static const char json[] = "application/json";
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, json, sizeof(json) - 1) != 0)
        return 0;
    ct += sizeof(json) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

int api__body_parse(const uint8_t *body, size_t len, const char *example, json_t **out,
                    char *detail, size_t detail_len)
{
    *out = NULL;
    if (len == 0 || !body)
        return api__failf(detail, detail_len,
                          "request body is empty: send a JSON object such as %s", example);
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return -ENOMEM;
        return api__failf(detail, detail_len,
                          "request body is not valid JSON: %s at line %d column %d", jerr.text,
                          jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        int rc = api__failf(detail, detail_len,
                            "request body must be a JSON object, got %s; send one such as %s",
                            api__json_type_name(root), example);
        json_decref(root);
        return rc;
    }
    *out = root;
    return 0;
}

const char *api__short_text(const char *s, char *buf, size_t len)
{
    size_t n = strlen(s);
    if (n < len && n <= 48)
        return s;
    n = len - 4 < 48 ? len - 4 : 48;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    memcpy(buf, s, n);
    memcpy(buf + n, "...", 4);
    return buf;
}

/* Edit distance, bounded: enough to suggest "timeout" for "timout". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[24];
    if (la >= 24 || lb >= 24)
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

int api__check_fields(json_t *obj, const char *const *known, size_t n, const char *where,
                      char *detail, size_t detail_len)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int found = 0;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(key, known[i]) == 0;
        if (found)
            continue;
        char accepted[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < n && used < sizeof(accepted); i++)
            used += (size_t)snprintf(accepted + used, sizeof(accepted) - used, "%s%s",
                                     i ? ", " : "", known[i]);
        const char *guess = NULL;
        size_t best = 3;
        for (size_t i = 0; i < n; i++) {
            size_t d = distance(key, known[i]);
            if (d < best)
                best = d, guess = known[i];
        }
        char buf[64];
        const char *name = api__short_text(key, buf, sizeof(buf));
        if (guess)
            return api__failf(detail, detail_len,
                              "%sunknown field '%s' (did you mean '%s'?); accepted fields: %s",
                              where, name, guess, accepted);
        return api__failf(detail, detail_len, "%sunknown field '%s'; accepted fields: %s", where,
                          name, accepted);
    }
    return 0;
}

size_t api__json_depth(const json_t *v, size_t limit)
{
    size_t deepest = 0;
    if (limit == 0)
        return 1;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            size_t d = api__json_depth(e, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest >= limit)
                break;
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            size_t d = api__json_depth(e, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest >= limit)
                break;
        }
    }
    return deepest + 1;
}

int api__parse_seconds(const char *s, double *out)
{
    const char *p = s;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    if (*p || digits == 0)
        return -EINVAL;
    *out = strtod(s, NULL);
    return isfinite(*out) ? 0 : -EINVAL;
}

int api__parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int api__parse_bool(const char *s, int *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *out = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *out = 0;
    else
        return -EINVAL;
    return 0;
}
