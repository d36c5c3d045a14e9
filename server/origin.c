/*
 * origin.c — which Host and Origin a request may carry (include/pyjobd/origin.h).
 *
 * DNS rebinding: a page on attacker.example, whose address is then switched to
 * 127.0.0.1, sends requests that the browser treats as same-origin to itself; they
 * reach a server on loopback with "Host: attacker.example:8080". Without tokens that
 * server runs anyone's code, so it serves only Host names that mean this machine (and
 * the operator's --allowed-hosts). A browser's cross-site requests carry an Origin: one
 * that is neither the server's own (the same host and port as the Host header) nor in
 * --cors-origin is refused before anything runs.
 */
#include "pyjobd/origin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The host part of an authority "host[:port]" or "[v6]:port": [start, start+len). */
static void host_part(const char *authority, const char **start, size_t *len)
{
    if (authority[0] == '[') {
        const char *end = strchr(authority, ']');
        *start = authority + 1;
        *len = end ? (size_t)(end - authority - 1) : strlen(authority + 1);
        return;
    }
    const char *colon = strchr(authority, ':');
    *start = authority;
    *len = colon ? (size_t)(colon - authority) : strlen(authority);
}

static int host_is(const char *h, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(h, name, len) == 0;
}

/* localhost (and names under it), 127.0.0.0/8, ::1. */
static int loopback_host(const char *h, size_t len)
{
    if (host_is(h, len, "localhost") || host_is(h, len, "::1"))
        return 1;
    if (len > 10 && strncasecmp(h + len - 10, ".localhost", 10) == 0)
        return 1;
    unsigned a, b, c, d;
    char tail;
    char ip[16];
    if (len >= sizeof(ip))
        return 0;
    memcpy(ip, h, len);
    ip[len] = 0;
    return sscanf(ip, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

static int listed(const char *const *list, const char *h, size_t len)
{
    for (; list && *list; list++)
        if (host_is(h, len, *list))
            return 1;
    return 0;
}

int origin_check(const struct origin_policy *p, const char *host, const char *origin, char *detail,
                 size_t len)
{
    const char *h = NULL;
    size_t hlen = 0;
    if (host) {
        host_part(host, &h, &hlen);
        int ok = loopback_host(h, hlen) || listed(p->allowed_hosts, h, hlen) ||
                 (p->tokens && !p->allowed_hosts);
        if (!ok) {
            snprintf(detail, len,
                     "This server does not serve the host '%.*s' (the Host header)%s. If that is "
                     "this server's own name, start it with --allowed-hosts %.*s; a web page whose "
                     "name was pointed at this machine (DNS rebinding) is refused so.",
                     (int)(hlen > 200 ? 200 : hlen), h,
                     p->tokens ? "" : ": without tokens it answers only to loopback names",
                     (int)(hlen > 200 ? 200 : hlen), h);
            return 421;
        }
    }
    if (!origin)
        return 0;
    /* The server's own pages: the origin's authority is the Host header's. */
    const char *authority = strstr(origin, "://");
    if (host && authority && strcasecmp(authority + 3, host) == 0)
        return 0;
    for (const char *const *o = p->cors_origins; o && *o; o++)
        if (strcasecmp(*o, origin) == 0)
            return 0;
    snprintf(detail, len,
             "Requests from the web origin '%.200s' are not allowed. If a page there must use "
             "this server, start it with --cors-origin %.200s.",
             origin, origin);
    return 403;
}

void origin_list_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

char **origin_list_parse(const char *text, const char **bad)
{
    static char bad_item[256];
    *bad = NULL;
    if (!text)
        return NULL;
    size_t cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    char **out = calloc(cap + 1, sizeof(*out));
    size_t n = 0;
    const char *s = text;
    while (out && *s) {
        const char *end = strchr(s, ',');
        size_t l = end ? (size_t)(end - s) : strlen(s);
        while (l && isspace((unsigned char)*s))
            s++, l--;
        while (l && isspace((unsigned char)s[l - 1]))
            l--;
        for (size_t i = 0; i < l && !*bad; i++)
            if (!isalnum((unsigned char)s[i]) && !strchr(".-:[]/_", s[i])) {
                snprintf(bad_item, sizeof(bad_item), "%.*s", (int)(l > 200 ? 200 : l), s);
                *bad = bad_item;
            }
        if (l && !(out[n++] = strndup(s, l))) {
            origin_list_free(out);
            return NULL;
        }
        if (!end)
            break;
        s = end + 1;
    }
    if (out && n == 0) {
        free(out);
        return NULL;
    }
    return out;
}
