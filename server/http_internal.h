/*
 * http_internal.h — what the files of the HTTP front end share (server/http*.c), and
 * nothing else: the server, a request's state, and the calls between them.
 *
 *   http.c          the daemon, the connections, a request's course
 *   http_admit.c    what a request must pass before it is read: its framing, NUL bytes
 *                   and spaces in its target, the bearer token
 *   http_respond.c  answers: whole or streamed bodies, and the ones written straight to
 *                   the socket when a body cannot be read to its end
 */
#ifndef PYJOBD_HTTP_INTERNAL_H
#define PYJOBD_HTTP_INTERNAL_H

#include "pyjobd/api.h"
#include "pyjobd/conn_watch.h"
#include "pyjobd/http.h"

#include <microhttpd.h>
#include <stddef.h>

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;
    int listen_fd;
    unsigned port;
    struct conn_watch *watch;
};

enum request_phase { PHASE_NEW, PHASE_BODY, PHASE_WAITING, PHASE_DONE };

struct request {
    struct MHD_Connection *conn;
    struct http_server *srv;
    enum request_phase phase;
    /* Where the request target's first NUL is in libmicrohttpd's buffer (uri_log): any
     * but the one it put before the version means a NUL byte in the target. */
    const char *target_nul;
    int nul_escaped;  /* "%00" in the path or a query parameter (unescape) */
    int target_space; /* a space or tab inside the target (uri_log) */
    char *body;
    size_t body_len, body_cap;
    int too_large;
    unsigned long long declared; /* Content-Length; 0: none (chunked, or no body) */
    struct conn_track *track;    /* this connection's entry in the watchdog's list */
    const char *tenant;          /* authenticated tenant (borrowed from auth) */
    enum api_role role;          /* what that tenant may administer */
    struct api_response resp;    /* a pending long-poll */
};

/* http_respond.c: queue the answer (close: "Connection: close", and the connection
 * ends after it); the response is consumed. */
enum MHD_Result http__send(struct request *r, struct api_response *resp);
enum MHD_Result http__send_closing(struct request *r, struct api_response *resp, int close);
enum MHD_Result http__send_too_large(struct request *r);
enum MHD_Result http__send_unauthorized(struct request *r, const char *detail);
/* A body that cannot be read to its end: resp is written to the socket directly (not
 * over TLS) and the connection dropped. Returns MHD_NO. */
enum MHD_Result http__abort_body(struct request *r, struct api_response *resp);
void http__buffered_problem(struct request *r, struct api_response *resp); /* the 503 */

/* http_admit.c */
int http__probe_path(const char *url); /* /healthz, /readyz */
/* 0 when the request may go on (r->tenant and r->role set), else a 401 is queued in
 * *ret. */
int http__authenticate(struct request *r, const char *url, enum MHD_Result *ret);
/* 0, or the status of a request framed ambiguously (why says how). */
int http__check_framing(struct request *r, const char *version, char *why, size_t whylen);
/* libmicrohttpd's URI log and unescape callbacks: the request object starts in the
 * first, and both note what the target holds. */
void *http__uri_log(void *cls, const char *uri, struct MHD_Connection *conn);
size_t http__unescape(void *cls, struct MHD_Connection *conn, char *s);
extern __thread struct request *http__parsing; /* the request being parsed on this thread */

#endif
