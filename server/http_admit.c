/*
 * http_admit.c — what a request must pass before its body is read (http_internal.h):
 * one framing, strictly (framing.h, and NUL bytes or spaces in the target, which
 * libmicrohttpd 0.9.75 lets through), and the bearer token.
 *
 * libmicrohttpd cuts the target at a raw NUL without saying so, and gives no length:
 * its URI log callback sees the request line whole but for the NUL it puts before the
 * version, so the target's first NUL must be that one. A "%00" shows in its unescape
 * callback, called for the path and each query parameter of the same parse.
 */
#include "http_internal.h"
#include "pyjobd/auth.h"
#include "pyjobd/framing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int http__probe_path(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
}

/* Paths anyone may read: liveness and readiness probes (and /metrics if opened). */
static int open_path(const struct http_server *srv, const char *url)
{
    return http__probe_path(url) || (srv->cfg.metrics_open && strcmp(url, "/metrics") == 0);
}

/*
 * Returns 0 when the request may go on (r->tenant and r->role set), else queues a 401.
 * Without tokens the one user is an admin; an open path with tokens is served to an
 * anonymous user (tenant NULL, role user).
 */
int http__authenticate(struct request *r, const char *url, enum MHD_Result *ret)
{
    const struct http_server *srv = r->srv;
    r->role = API_ROLE_USER;
    if (auth_count(srv->cfg.auth) == 0) {
        r->role = API_ROLE_ADMIN;
        return 0;
    }
    if (open_path(srv, url))
        return 0;
    const char *header =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    enum auth_role role;
    r->tenant = auth_check(srv->cfg.auth, header, &role);
    if (r->tenant) {
        r->role = role == AUTH_ROLE_ADMIN ? API_ROLE_ADMIN : API_ROLE_USER;
        return 0;
    }
    const char *detail;
    if (header)
        detail = "The bearer token is not valid for this server. Send 'Authorization: Bearer "
                 "<token>' with a token from its --token-file or PYJOBD_TOKEN.";
    else if (MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "token") ||
             MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "access_token"))
        detail = "Tokens are not accepted in the query string (URLs end up in logs). Send "
                 "'Authorization: Bearer <token>' instead.";
    else
        detail = "This server requires a bearer token. Send 'Authorization: Bearer <token>'.";
    *ret = http__send_unauthorized(r, detail);
    return -1;
}

/* The request's header fields, for framing_check. */
#define FRAMING_MAX_FIELDS 128
struct framing_list {
    struct framing_header h[FRAMING_MAX_FIELDS];
    size_t n;
    int overflow;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    (void)kind, (void)key_size;
    struct framing_list *l = cls;
    if (l->n < FRAMING_MAX_FIELDS)
        l->h[l->n++] = (struct framing_header){key, value ? value : "", value ? value_size : 0};
    else
        l->overflow = 1;
    return MHD_YES;
}

/* 0, or the status of a request framed ambiguously (why says how): NUL bytes in the
 * target, and framing_check's rules. */
int http__check_framing(struct request *r, const char *version, char *why, size_t whylen)
{
    if (r->nul_escaped ||
        (version && version[0] && r->target_nul && r->target_nul + 1 != version)) {
        snprintf(why, whylen,
                 "the request target contains a NUL byte (%s), which no path or query "
                 "parameter of this server has",
                 r->nul_escaped ? "%00" : "raw");
        return 400;
    }
    if (r->target_space) {
        snprintf(why, whylen,
                 "the request target contains a space: percent-encode it (%%20) in the URL");
        return 400;
    }
    if (version && strcmp(version, "HTTP/1.1") == 0 &&
        !MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST)) {
        snprintf(why, whylen, "an HTTP/1.1 request must have a Host header");
        return 400;
    }
    struct framing_list l = {.n = 0};
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_header, &l);
    if (l.overflow) {
        snprintf(why, whylen, "the request has more than %d header fields", FRAMING_MAX_FIELDS);
        return 431;
    }
    return framing_check(l.h, l.n, why, whylen);
}

/* The request being parsed on this thread: libmicrohttpd calls uri_log, then unescape
 * (for each query parameter, then the path) from the same parse of the request line. */
__thread struct request *http__parsing;

/* Called once per request, with its request line still whole (only the space before
 * the version replaced by a NUL): the request object starts here. */
void *http__uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    struct request *r = calloc(1, sizeof(*r));
    if (r) {
        r->srv = cls;
        if (uri) { /* NULL for a request line without a target */
            r->target_nul = uri + strlen(uri);
            r->target_space = strpbrk(uri, " \t") != NULL;
        }
    }
    http__parsing = r;
    return r;
}

size_t http__unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls, (void)conn;
    size_t n = MHD_http_unescape(s);
    if (memchr(s, '\0', n) && http__parsing)
        http__parsing->nul_escaped = 1;
    return n;
}
