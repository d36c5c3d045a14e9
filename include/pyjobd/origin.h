/*
 * origin.h — which Host and Origin a request may carry (server/origin.c): the defence
 * against DNS rebinding (a web page whose name now points at 127.0.0.1 talking to a
 * token-less server on a developer's machine) and against cross-site requests from
 * browsers.
 */
#ifndef PYJOBD_ORIGIN_H
#define PYJOBD_ORIGIN_H

#include <stddef.h>

struct origin_policy {
    /* --allowed-hosts: host names (or addresses) a request's Host may name, any port,
     * compared without case; NULL-terminated, NULL for none. Loopback names and
     * addresses (localhost, 127.0.0.0/8, ::1) are always allowed. */
    const char *const *allowed_hosts;
    /* Without tokens only the above may be named; with tokens and no --allowed-hosts,
     * any Host is served (the token is the guard). */
    int tokens;
    /* --cors-origin: origins ("scheme://host[:port]", exact) a browser may send
     * requests from, besides the server's own; NULL-terminated, NULL for none. */
    const char *const *cors_origins;
};

/*
 * Checks a request's Host and Origin headers (each NULL when absent: a client that
 * sends no Host is no browser). 0 when it may be served; else the HTTP status to
 * answer (421 for the Host, 403 for the Origin) with a detail for problem+json that
 * names the flag to set.
 */
int origin_check(const struct origin_policy *p, const char *host, const char *origin, char *detail,
                 size_t len);

/*
 * Parses a comma-separated list ("a, b,c"; blanks around names dropped, empty items
 * skipped) into a NULL-terminated array owned by the caller (origin_list_free); NULL
 * for NULL or an empty list. *bad gets the first item with a character other than
 * letters, digits, '.', '-', ':', '[', ']', '/', '_' (or NULL).
 */
char **origin_list_parse(const char *text, const char **bad);
void origin_list_free(char **list);

#endif
