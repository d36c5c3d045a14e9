/*
 * http.c — the libmicrohttpd daemon (include/pyjobd/http.h) and a request's course;
 * see http_internal.h for the other files of the front end.
 *
 * Per-request state (struct request) starts in the URI log callback and is freed in
 * the completed callback on every path. At the first call, the headers are checked
 * (connection cap, framing, Host and Origin, token, declared length, the body budget);
 * the body is then collected up to the limit and handed whole to the api. Long-polls
 * suspend the connection; the pool wakes it through wake_cb() from its own thread and
 * the next call of the handler writes the final answer. Body bytes are passed through
 * untouched: this process never unpickles them.
 *
 * Every connection is watched from accept to close (conn_watch.h): deadlines for
 * headers, for bodies and responses (a minimum rate), the connection cap's count and
 * the bytes all bodies hold together.
 */
#include "http_internal.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *query_cb(void *ctx, const char *key)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, key);
}

/* Runs on the pool's supervisor thread (or inline): the long-poll is over. */
static void wake_cb(void *arg)
{
    struct request *r = arg;
    MHD_resume_connection(r->conn);
}

/* 0, -ENOMEM, or -EAGAIN: all connections' bodies would pass --max-buffered-bytes. */
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
        if (r->declared && r->declared <= r->srv->cfg.max_request_bytes &&
            r->body_len + len <= r->declared)
            cap = (size_t)r->declared; /* what was reserved, exactly */
        /* The budget counts what is allocated (a declared length was reserved whole
         * up front, and this grows only a chunked body). */
        if (r->track && cap > r->body_cap &&
            conn_watch_reserve_upto(r->srv->watch, r->track, cap) != 0)
            return -EAGAIN;
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

/* The first call for a request: its headers are in, its body not yet read. */
static enum MHD_Result on_headers(struct request *r, const char *url, const char *version)
{
    struct http_server *srv = r->srv;
    struct MHD_Connection *conn = r->conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->track = ci ? ci->socket_context : NULL;
    r->phase = PHASE_BODY;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    r->declared = declared;
    if (r->track)
        conn_watch_stage(srv->watch, r->track, CONN_BODY, declared);
    /* Probes keep working in a flood, so an orchestrator does not restart a server
     * that is merely busy. */
    struct api_response resp = {0};
    if (conn_watch_count(srv->watch) > srv->cfg.max_connections && !http__probe_path(url)) {
        api_problem(&resp, 503, "Service Unavailable",
                    "The server is at its limit of %u open connections. Retry shortly, "
                    "or reuse connections (keep-alive).",
                    srv->cfg.max_connections);
        resp.retry_after = 1;
        api_count_response(srv->cfg.api, 503);
        return http__send(r, &resp);
    }
    /* One framing, strictly: anything ambiguous is refused, and the connection closed
     * (what follows could be read as another request). */
    char why[800];
    int status = http__check_framing(r, version, why, sizeof(why));
    if (status) {
        api_problem(&resp, status,
                    status == 501   ? "Not Implemented"
                    : status == 431 ? "Request Header Fields Too Large"
                                    : "Bad Request",
                    "%s", why);
        api_count_response(srv->cfg.api, status);
        return http__send_closing(r, &resp, 1);
    }
    /* Before anything else: a rebound or foreign page gets nothing (probes excepted). */
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    status = srv->cfg.origin && !http__probe_path(url)
                 ? origin_check(srv->cfg.origin, host, origin, why, sizeof(why))
                 : 0;
    if (status) {
        api_problem(&resp, status, status == 421 ? "Misdirected Request" : "Forbidden", "%s", why);
        api_count_response(srv->cfg.api, status);
        return http__send(r, &resp);
    }
    enum MHD_Result denied;
    if (http__authenticate(r, url, &denied) != 0)
        return denied;
    /* Refuse an oversized body from its declared length, before reading it; and one
     * the server cannot hold now. */
    if (cl && declared > srv->cfg.max_request_bytes)
        return http__send_too_large(r);
    if (declared && r->track && conn_watch_reserve_upto(srv->watch, r->track, declared) != 0) {
        http__buffered_problem(r, &resp);
        api_count_response(srv->cfg.api, 503);
        return http__send_closing(r, &resp, 1);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    if (!r) /* not made by uri_log (it ran out of memory) */
        return MHD_NO;
    if (r->phase == PHASE_NEW) {
        r->conn = conn;
        return on_headers(r, url, version);
    }

    if (r->phase == PHASE_BODY && *upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->track)
            conn_watch_progress(srv->watch, r->track, n);
        int rc = append_body(r, upload_data, n);
        struct api_response resp = {0};
        if (rc == -EAGAIN) {
            http__buffered_problem(r, &resp);
            return http__abort_body(r, &resp);
        }
        if (rc != 0)
            return MHD_NO;
        /* Over the limit (a chunked body has no length to refuse up front): answer now
         * rather than read the rest. */
        if (r->too_large) {
            api_problem(&resp, 413, "Request body too large",
                        "The request body grew past the server's limit of %zu bytes "
                        "(--max-request-bytes) and was not read further. Send a smaller "
                        "payload, or raise the limit.",
                        srv->cfg.max_request_bytes);
            return http__abort_body(r, &resp);
        }
        return MHD_YES;
    }
    if (r->phase == PHASE_DONE)
        return MHD_YES;
    if (r->too_large)
        return http__send_too_large(r);

    if (r->phase == PHASE_WAITING) {
        api_wait_finish(srv->cfg.api, &r->resp);
        return http__send(r, &r->resp);
    }

    if (r->track)
        conn_watch_stage(srv->watch, r->track, CONN_HANDLED, 0);
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
        .idempotency_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key"),
    };
    struct api_response resp = {0};
    api_handle(srv->cfg.api, &req, &resp);
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    if (r->track) /* handed to the pool (or refused): no longer the server's to hold */
        conn_watch_unreserve(srv->watch, r->track);
    if (!resp.wait)
        return http__send(r, &resp);

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
    struct http_server *srv = cls;
    struct request *r = *req_cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_track *t = ci ? ci->socket_context : NULL;
    if (t) {
        conn_watch_unreserve(srv->watch, t);
        conn_watch_stage(srv->watch, t, CONN_IDLE, 0); /* the keep-alive wait */
    }
    if (!r)
        return;
    if (http__parsing == r)
        http__parsing = NULL;
    free(r->body);
    api_response_release(&r->resp);
    free(r);
    *req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = conn_watch_add(srv->watch, ci ? ci->connect_fd : -1);
    } else if (*socket_context) {
        conn_watch_remove(srv->watch, *socket_context);
        *socket_context = NULL;
    }
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
    struct conn_watch_config wcfg = {
        .header_timeout = cfg->header_timeout,
        .min_rate = cfg->min_transfer_rate,
        .grace = cfg->transfer_grace,
        .max_buffered = cfg->max_buffered_bytes,
    };
    if (!(s->watch = conn_watch_start(&wcfg))) {
        snprintf(err, errlen, "cannot start the connection watchdog: %s", strerror(errno));
        close(s->listen_fd);
        free(s);
        return NULL;
    }
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
        MHD_OPTION_URI_LOG_CALLBACK, http__uri_log, s, MHD_OPTION_UNESCAPE_CALLBACK, http__unescape,
        NULL, MHD_OPTION_CONNECTION_LIMIT, hard_cap,
        /* Per-connection buffer: it bounds a request's headers, and libmicrohttpd clears
         * it for every request, so a small one is also a fast one. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "libmicrohttpd failed to start on %s port %u%s", cfg->listen, s->port,
                 tls ? " (check the TLS certificate and key)" : "");
        conn_watch_stop(s->watch);
        close(s->listen_fd);
        free(s);
        return NULL;
    }
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
    MHD_stop_daemon(s->daemon); /* closes every connection: none is watched after */
    conn_watch_stop(s->watch);
    close(s->listen_fd);
    free(s);
}
