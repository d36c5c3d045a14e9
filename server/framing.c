/*
 * framing.c — the request's framing headers, checked strictly (include/pyjobd/framing.h).
 */
#include "pyjobd/framing.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_name(const struct framing_header *h, const char *name)
{
    return strcasecmp(h->name, name) == 0;
}

/* The value without surrounding spaces or tabs: [*b, *b + *n). */
static void trim(const struct framing_header *h, const char **b, size_t *n)
{
    const char *s = h->value;
    size_t len = h->value_len;
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    *b = s;
    *n = len;
}

static int all_digits(const char *s, size_t n)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int framing_check(const struct framing_header *h, size_t n, char *why, size_t whylen)
{
    const struct framing_header *cl = NULL, *te = NULL;
    unsigned auths = 0, tes = 0, keys = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_name(&h[i], "Authorization")) {
            auths++;
        } else if (is_name(&h[i], "Idempotency-Key")) {
            keys++;
        } else if (is_name(&h[i], "Transfer-Encoding")) {
            tes++;
            te = &h[i];
        } else if (is_name(&h[i], "Content-Length")) {
            const char *v, *w;
            size_t vn, wn;
            trim(&h[i], &v, &vn);
            if (!all_digits(v, vn)) {
                snprintf(why, whylen,
                         "Content-Length must be a decimal number of bytes, got '%.40s'",
                         h[i].value);
                return 400;
            }
            if (cl) {
                trim(cl, &w, &wn);
                if (vn != wn || memcmp(v, w, vn) != 0) {
                    snprintf(why, whylen,
                             "the request has two Content-Length fields that differ (%.20s and "
                             "%.20s): send exactly one",
                             cl->value, h[i].value);
                    return 400;
                }
            }
            cl = &h[i];
        }
    }
    if (auths > 1) {
        snprintf(why, whylen,
                 "the request has %u Authorization fields: send exactly one "
                 "'Authorization: Bearer <token>'",
                 auths);
        return 400;
    }
    if (keys > 1) {
        snprintf(why, whylen,
                 "the request has %u Idempotency-Key fields: send exactly one (which job it "
                 "names must not depend on who reads it)",
                 keys);
        return 400;
    }
    if (te && cl) {
        snprintf(why, whylen,
                 "the request has both Content-Length and Transfer-Encoding, which frame its "
                 "body two ways: send one of them");
        return 400;
    }
    if (te) {
        const char *v;
        size_t vn;
        trim(te, &v, &vn);
        if (tes > 1 || vn != 7 || strncasecmp(v, "chunked", 7) != 0) {
            snprintf(why, whylen,
                     "Transfer-Encoding '%.60s'%s is not supported: this server takes a body "
                     "with a Content-Length, or with 'Transfer-Encoding: chunked' alone",
                     te->value, tes > 1 ? " (in several fields)" : "");
            return 501;
        }
    }
    return 0;
}
