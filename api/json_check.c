/*
 * json_check.c — is this text one JSON value (RFC 8259)? Checked without building it:
 * a result in JSON form is sent as its own bytes, never parsed into a tree (which costs
 * several times its size) nor copied, but a worker's bytes are untrusted and must not
 * change the shape of the document they are spliced into.
 */
#include "json_check.h"

#include <stdint.h>

#define MAX_DEPTH 1024 /* jansson's own limit is 2048 */

struct scan {
    const unsigned char *s, *end;
};

static void skip_ws(struct scan *c)
{
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r'))
        c->s++;
}

static int literal(struct scan *c, const char *word)
{
    for (; *word; word++, c->s++)
        if (c->s >= c->end || *c->s != (unsigned char)*word)
            return 0;
    return 1;
}

static int digits(struct scan *c)
{
    const unsigned char *start = c->s;
    while (c->s < c->end && *c->s >= '0' && *c->s <= '9')
        c->s++;
    return c->s > start;
}

static int number(struct scan *c)
{
    if (c->s < c->end && *c->s == '-')
        c->s++;
    if (c->s < c->end && *c->s == '0')
        c->s++;
    else if (!digits(c))
        return 0;
    if (c->s < c->end && *c->s == '.') {
        c->s++;
        if (!digits(c))
            return 0;
    }
    if (c->s < c->end && (*c->s == 'e' || *c->s == 'E')) {
        c->s++;
        if (c->s < c->end && (*c->s == '+' || *c->s == '-'))
            c->s++;
        if (!digits(c))
            return 0;
    }
    return 1;
}

static int hex4(struct scan *c)
{
    for (int i = 0; i < 4; i++, c->s++) {
        if (c->s >= c->end)
            return 0;
        unsigned char h = *c->s;
        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
            return 0;
    }
    return 1;
}

/* One UTF-8 sequence starting at a byte >= 0x80 (no overlongs, no surrogates). */
static int utf8(struct scan *c)
{
    unsigned char b = *c->s++;
    int more;
    uint32_t cp;
    if (b >= 0xc2 && b <= 0xdf)
        more = 1, cp = b & 0x1f;
    else if (b >= 0xe0 && b <= 0xef)
        more = 2, cp = b & 0x0f;
    else if (b >= 0xf0 && b <= 0xf4)
        more = 3, cp = b & 0x07;
    else
        return 0;
    for (int i = 0; i < more; i++, c->s++) {
        if (c->s >= c->end || (*c->s & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (*c->s & 0x3f);
    }
    if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return 1;
}

static int string(struct scan *c)
{
    c->s++; /* the opening quote */
    while (c->s < c->end) {
        unsigned char b = *c->s;
        if (b == '"') {
            c->s++;
            return 1;
        }
        if (b < 0x20)
            return 0;
        if (b == '\\') {
            c->s++;
            if (c->s >= c->end)
                return 0;
            unsigned char e = *c->s++;
            if (e == 'u') {
                if (!hex4(c))
                    return 0;
            } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                       e != 'r' && e != 't') {
                return 0;
            }
        } else if (b >= 0x80) {
            if (!utf8(c))
                return 0;
        } else {
            c->s++;
        }
    }
    return 0;
}

int api__json_check(const char *text, size_t len)
{
    struct scan c = {(const unsigned char *)text, (const unsigned char *)text + len};
    char stack[MAX_DEPTH]; /* '[' or '{' per open container */
    int depth = 0;
    for (;;) {
        /* A value. */
        skip_ws(&c);
        if (c.s >= c.end)
            return 0;
        unsigned char b = *c.s;
        if (b == '[' || b == '{') {
            if (depth == MAX_DEPTH)
                return 0;
            stack[depth++] = (char)b;
            c.s++;
            skip_ws(&c);
            if (c.s < c.end && *c.s == (b == '[' ? ']' : '}')) {
                c.s++;
                depth--;
                goto after_value;
            }
            if (b == '{')
                goto member;
            continue;
        }
        if (b == '"') {
            if (!string(&c))
                return 0;
        } else if (b == 't') {
            if (!literal(&c, "true"))
                return 0;
        } else if (b == 'f') {
            if (!literal(&c, "false"))
                return 0;
        } else if (b == 'n') {
            if (!literal(&c, "null"))
                return 0;
        } else if (!number(&c)) {
            return 0;
        }
    after_value:
        for (;;) {
            skip_ws(&c);
            if (depth == 0)
                return c.s == c.end;
            if (c.s >= c.end)
                return 0;
            char open = stack[depth - 1];
            if (*c.s == ',') {
                c.s++;
                if (open == '{')
                    goto member;
                break; /* the next element */
            }
            if (*c.s == (open == '[' ? ']' : '}')) {
                c.s++;
                depth--;
                continue;
            }
            return 0;
        }
        continue;
    member: /* "key": before an object's value */
        skip_ws(&c);
        if (c.s >= c.end || *c.s != '"' || !string(&c))
            return 0;
        skip_ws(&c);
        if (c.s >= c.end || *c.s != ':')
            return 0;
        c.s++;
    }
}
