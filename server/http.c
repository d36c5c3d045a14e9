/*
 * http.c — libmicrohttpd adapter (include/pyjobd/http.h).
 *
 * Per connection-request state lives in *req_cls (struct request) and is freed in
 * the completed callback on every path. A request body is collected up to the limit
 * (413 as soon as the declared or received size exceeds it), then handed whole to the
 * api. Long-polls suspend the connection; the pool wakes it through wake_cb() from
 * its own thread and the next call of the handler writes the final answer.
 * Body bytes are passed through untouched: this process never unpickles them.
 *
 * Every connection is tracked from accept to close (conn_track): a watchdog thread
 * shuts down connections that have not delivered a request's headers within the
 * header deadline (slow-loris clients, idle keep-alives), and the count gives the
 * connection cap its 503.
 */
#include "pyjobd/http.h"
#include "pyjobd/origin.h"
#include "pyjobd/api.h"
#include "pyjobd/auth.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

/* Where a connection is in its current request, for the watchdog. */
enum { CONN_IDLE, CONN_BODY, CONN_HANDLED };

/* One accepted connection, from the connection-started to the -closed callback. */
struct conn_track {
    int fd;
    int stage;        /* CONN_IDLE, CONN_BODY or CONN_HANDLED */
    int64_t since_ms; /* start of the current stage */
    size_t received;  /* body bytes so far (CONN_BODY) */
    LIST_ENTRY(conn_track) link;
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;
    int listen_fd;
    unsigned port;
    pthread_mutex_t lock; /* guards conns, nconns */
    LIST_HEAD(, conn_track) conns;
    unsigned nconns;
    pthread_t watchdog;
    int watchdog_started;
    int stopping; /* under lock */
    pthread_cond_t wake;
};

enum request_phase { PHASE_BODY, PHASE_WAITING, PHASE_DONE };

struct request {
    struct MHD_Connection *conn;
    struct http_server *srv;
    enum request_phase phase;
    char *body;
    size_t body_len, body_cap;
    int too_large;
    struct conn_track *track; /* this connection's entry in the watchdog's list */
    const char *tenant;       /* authenticated tenant (borrowed from auth) */
    enum api_role role;       /* what that tenant may administer */
    struct api_response resp; /* a pending long-poll */
};

static const char *query_cb(void *ctx, const char *key)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result send_response(struct request *r, struct api_response *resp)
{
    struct MHD_Response *m =
        MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
    if (!m) {
        api_response_release(resp);
        return MHD_NO;
    }
    resp->body = NULL; /* now libmicrohttpd's */
    if (resp->content_type)
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->location)
        MHD_add_response_header(m, MHD_HTTP_HEADER_LOCATION, resp->location);
    if (resp->allow)
        MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (resp->retry_after > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", resp->retry_after);
        MHD_add_response_header(m, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)resp->status, m);
    MHD_destroy_response(m);
    api_response_release(resp);
    r->phase = PHASE_DONE;
    return ret;
}

static enum MHD_Result send_too_large(struct request *r)
{
    api_count_response(r->srv->cfg.api, 413);
    struct api_response resp = {0};
    api_problem(&resp, 413, "Request body too large",
                "The request body is larger than the server's limit of %zu bytes "
                "(--max-request-bytes). Send a smaller payload, or raise the limit.",
                r->srv->cfg.max_request_bytes);
    return send_response(r, &resp);
}

static enum MHD_Result send_unauthorized(struct request *r, const char *detail)
{
    struct api_response resp = {0};
    api_problem(&resp, 401, "Unauthorized", "%s", detail);
    api_count_response(r->srv->cfg.api, 401);
    struct MHD_Response *m =
        MHD_create_response_from_buffer(resp.body_len, resp.body, MHD_RESPMEM_MUST_FREE);
    if (!m) {
        api_response_release(&resp);
        return MHD_NO;
    }
    resp.body = NULL;
    MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type);
    MHD_add_response_header(m, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"pyjobd\"");
    enum MHD_Result ret = MHD_queue_response(r->conn, 401, m);
    MHD_destroy_response(m);
    api_response_release(&resp);
    r->phase = PHASE_DONE;
    return ret;
}

static int probe_path(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
}

/* Paths anyone may read: liveness and readiness probes (and /metrics if opened). */
static int open_path(const struct http_server *srv, const char *url)
{
    return probe_path(url) || (srv->cfg.metrics_open && strcmp(url, "/metrics") == 0);
}

/*
 * Returns 0 when the request may go on (r->tenant and r->role set), else queues a 401.
 * Without tokens the one user is an admin; an open path with tokens is served to an
 * anonymous user (tenant NULL, role user).
 */
static int authenticate(struct request *r, const char *url, enum MHD_Result *ret)
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
    *ret = send_unauthorized(r, detail);
    return -1;
}

/* Moves the connection's request to a stage (see the watchdog); with CONN_BODY,
 * adds body bytes received. */
static void track(struct request *r, int stage, size_t received)
{
    if (!r->track) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->track = ci ? ci->socket_context : NULL;
        if (!r->track)
            return;
    }
    pthread_mutex_lock(&r->srv->lock);
    if (r->track->stage != stage) {
        r->track->stage = stage;
        r->track->since_ms = clock_now_ms();
        r->track->received = 0;
    }
    r->track->received += received;
    pthread_mutex_unlock(&r->srv->lock);
}

static void track_request_end(struct http_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_track *t = ci ? ci->socket_context : NULL;
    if (t) {
        pthread_mutex_lock(&srv->lock);
        t->stage = CONN_IDLE; /* the keep-alive wait for the next request */
        t->since_ms = clock_now_ms();
        pthread_mutex_unlock(&srv->lock);
    }
}

/*
 * A body that grows past the limit while it is being read. libmicrohttpd (0.9.75)
 * cannot queue a response before the request is complete, and reading an unbounded
 * chunked stream to its end is what the limit is there to prevent. So on a plain
 * connection the 413 is written to the socket directly, on this connection's own
 * thread while libmicrohttpd is between reads, and the connection is then dropped;
 * over TLS it is only dropped.
 */
static enum MHD_Result abort_too_large(struct request *r)
{
    struct http_server *srv = r->srv;
    if (!(srv->cfg.tls_cert_pem && srv->cfg.tls_key_pem) && r->track && r->track->fd >= 0) {
        struct api_response resp = {0};
        api_problem(&resp, 413, "Request body too large",
                    "The request body grew past the server's limit of %zu bytes "
                    "(--max-request-bytes) and was not read further. Send a smaller payload, "
                    "or raise the limit.",
                    srv->cfg.max_request_bytes);
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 413 Content Too Large\r\nContent-Type: %s\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         resp.content_type, resp.body_len);
        int fd = r->track->fd;
        if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n &&
            send(fd, resp.body, resp.body_len, MSG_NOSIGNAL) == (ssize_t)resp.body_len) {
            /* A close with unread input sends a reset, which can destroy the answer
             * in the client's buffers: say we are done, then drain what is in flight
             * for a moment (bounded: 200 ms, 256 KiB) before libmicrohttpd closes. */
            shutdown(fd, SHUT_WR);
            char sink[16384];
            size_t drained = 0;
            int64_t until = clock_now_ms() + 200;
            while (drained < (256u << 10) && clock_now_ms() < until) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                if (poll(&pfd, 1, 20) != 1)
                    break;
                ssize_t got = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
                if (got <= 0)
                    break;
                drained += (size_t)got;
            }
        }
        api_response_release(&resp);
    }
    api_count_response(srv->cfg.api, 413);
    r->phase = PHASE_DONE;
    return MHD_NO;
}

/* Runs on the pool's supervisor thread (or inline): the long-poll is over. */
static void wake_cb(void *arg)
{
    struct request *r = arg;
    MHD_resume_connection(r->conn);
}

static int append_body(struct request *r, const char *data, size_t len)
{
    if (r->body_len + len > r->srv->cfg.max_request_bytes) {
        r->too_large = 1;
        return 0;
    }
    if (r->body_cap - r->body_len < len) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap - r->body_len < len)
            cap *= 2;
        if (cap > r->srv->cfg.max_request_bytes)
            cap = r->srv->cfg.max_request_bytes;
        char *b = realloc(r->body, cap);
        if (!b)
            return -ENOMEM;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    (void)version;

    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->conn = conn;
        r->srv = srv;
        *req_cls = r;
        track(r, CONN_BODY, 0);
        pthread_mutex_lock(&srv->lock);
        /* Probes keep working in a flood, so an orchestrator does not restart a server
         * that is merely busy. */
        int crowded = srv->nconns > srv->cfg.max_connections && !probe_path(url);
        pthread_mutex_unlock(&srv->lock);
        if (crowded) {
            struct api_response resp = {0};
            api_problem(&resp, 503, "Service Unavailable",
                        "The server is at its limit of %u open connections. Retry shortly, "
                        "or reuse connections (keep-alive).",
                        srv->cfg.max_connections);
            resp.retry_after = 1;
            api_count_response(srv->cfg.api, 503);
            return send_response(r, &resp);
        }
        /* Before anything else: a rebound or foreign page gets nothing (probes excepted). */
        const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        char why[800];
        int status = srv->cfg.origin && !probe_path(url)
                         ? origin_check(srv->cfg.origin, host, origin, why, sizeof(why))
                         : 0;
        if (status) {
            struct api_response resp = {0};
            api_problem(&resp, status, status == 421 ? "Misdirected Request" : "Forbidden", "%s",
                        why);
            api_count_response(srv->cfg.api, status);
            return send_response(r, &resp);
        }
        enum MHD_Result denied;
        if (authenticate(r, url, &denied) != 0)
            return denied;
        /* Refuse an oversized body from its declared length, before reading it. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == ERANGE || n > srv->cfg.max_request_bytes)
                return send_too_large(r);
        }
        return MHD_YES;
    }

    if (r->phase == PHASE_BODY && *upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        track(r, CONN_BODY, n);
        if (append_body(r, upload_data, n) != 0)
            return MHD_NO;
        /* Over the limit (a chunked body has no length to refuse up front): answer now
         * rather than read the rest. */
        if (r->too_large)
            return abort_too_large(r);
        return MHD_YES;
    }
    if (r->phase == PHASE_DONE)
        return MHD_YES;
    if (r->too_large)
        return send_too_large(r);

    if (r->phase == PHASE_WAITING) {
        api_wait_finish(srv->cfg.api, &r->resp);
        return send_response(r, &r->resp);
    }

    track(r, CONN_HANDLED, 0);
    struct api_request req = {
        .method = method,
        .path = url,
        .query = query_cb,
        .query_ctx = conn,
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .body = (const uint8_t *)r->body,
        .body_len = r->body_len,
        .tenant = r->tenant,
        .role = r->role,
    };
    struct api_response resp = {0};
    api_handle(srv->cfg.api, &req, &resp);
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    if (!resp.wait)
        return send_response(r, &resp);

    /* Suspend first: the wake-up may come from another thread at once. */
    r->resp = resp;
    r->phase = PHASE_WAITING;
    MHD_suspend_connection(conn);
    api_wait_start(srv->cfg.api, &r->resp, wake_cb, r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    track_request_end(cls, conn);
    struct request *r = *req_cls;
    if (!r)
        return;
    free(r->body);
    api_response_release(&r->resp);
    free(r);
    *req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    struct conn_track *t = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        t = calloc(1, sizeof(*t));
        if (!t)
            return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->fd = ci ? ci->connect_fd : -1;
        t->since_ms = clock_now_ms();
        pthread_mutex_lock(&srv->lock);
        LIST_INSERT_HEAD(&srv->conns, t, link);
        srv->nconns++;
        pthread_mutex_unlock(&srv->lock);
        *socket_context = t;
    } else if (t) {
        pthread_mutex_lock(&srv->lock);
        LIST_REMOVE(t, link);
        srv->nconns--;
        pthread_mutex_unlock(&srv->lock);
        free(t);
        *socket_context = NULL;
    }
}

/* Cuts off connections that keep the server waiting for a request's headers. The
 * shutdown() makes libmicrohttpd see the peer gone and close it on its own thread. */
static void *watchdog_main(void *arg)
{
    struct http_server *srv = arg;
    int64_t limit = (int64_t)(srv->cfg.header_timeout * 1000.0);
    pthread_mutex_lock(&srv->lock);
    while (!srv->stopping) {
        struct timespec ts;
        clock_deadline_in(&ts, 250);
        pthread_cond_timedwait(&srv->wake, &srv->lock, &ts);
        int64_t now = clock_now_ms();
        struct conn_track *t;
        LIST_FOREACH(t, &srv->conns, link)
        {
            /* Headers within the deadline; a body at 64 KB/s or faster after it. A
             * handled request (running, or a suspended long-poll) has no deadline here:
             * the pool holds those. */
            int64_t allowed = t->stage == CONN_IDLE   ? limit
                              : t->stage == CONN_BODY ? limit + (int64_t)(t->received / 64)
                                                      : INT64_MAX;
            if (t->fd >= 0 && now - t->since_ms > allowed) {
                log_debug("http: closing connection fd %d: request too slow (%s)", t->fd,
                          t->stage == CONN_IDLE ? "headers" : "body");
                shutdown(t->fd, SHUT_RDWR);
                t->since_ms = INT64_MAX / 2; /* once is enough */
            }
        }
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = 0;
    log_debug("http: %s", msg);
}

static int bind_listener(const struct http_config *cfg, unsigned *port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->listen, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)cfg->port);
        sslen = sizeof(*in4);
    } else if (inet_pton(AF_INET6, cfg->listen, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->port);
        sslen = sizeof(*in6);
    } else {
        snprintf(err, errlen, "--listen %s is not a numeric IPv4 or IPv6 address", cfg->listen);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", cfg->listen, cfg->port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    sslen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    *port = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    return fd;
}

struct http_server *http_start(const struct http_config *cfg, char *err, size_t errlen)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->listen_fd = bind_listener(cfg, &s->port, err, errlen);
    if (s->listen_fd < 0) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    int tls = cfg->tls_cert_pem && cfg->tls_key_pem;
    if (tls)
        flags |= MHD_USE_TLS;
    /* The hard cap leaves room above the soft one, so that the connections beyond it
     * can still be told "503" instead of being dropped. */
    unsigned hard_cap = cfg->max_connections + 64;
    struct MHD_OptionItem tls_opts[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cfg->tls_cert_pem},
        {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)cfg->tls_key_pem},
        {tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
         (void *)(cfg->tls_priorities ? cfg->tls_priorities : HTTP_TLS_PRIORITIES)},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_CONNECTION_LIMIT, hard_cap,
        /* Per-connection buffer: it bounds a request's headers, and libmicrohttpd clears
         * it for every request, so a small one is also a fast one. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "libmicrohttpd failed to start on %s port %u%s", cfg->listen, s->port,
                 tls ? " (check the TLS certificate and key)" : "");
        close(s->listen_fd);
        free(s);
        return NULL;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0)
        s->watchdog_started = 1;
    return s;
}

unsigned http_port(const struct http_server *s)
{
    return s->port;
}

void http_stop(struct http_server *s, int drain_ms)
{
    if (!s)
        return;
    for (int waited = 0; waited < drain_ms; waited += 10) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0)
            break;
        usleep(10000);
    }
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    if (s->watchdog_started)
        pthread_join(s->watchdog, NULL);
    MHD_stop_daemon(s->daemon);
    close(s->listen_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}
