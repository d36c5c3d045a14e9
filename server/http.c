/*
 * http.c — libmicrohttpd adapter (include/pyjobd/http.h).
 *
 * Per connection-request state lives in *req_cls (struct request) and is freed in
 * the completed callback on every path. A request body is collected up to the limit
 * (413 as soon as the declared or received size exceeds it), then handed whole to the
 * api. Long-polls suspend the connection; the pool wakes it through wake_cb() from
 * its own thread and the next call of the handler writes the final answer.
 * Body bytes are passed through untouched: this process never unpickles them.
 */
#include "pyjobd/http.h"
#include "pyjobd/api.h"
#include "pyjobd/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;
    int listen_fd;
    unsigned port;
};

enum request_phase { PHASE_BODY, PHASE_WAITING, PHASE_DONE };

struct request {
    struct MHD_Connection *conn;
    struct http_server *srv;
    enum request_phase phase;
    char *body;
    size_t body_len, body_cap;
    int too_large;
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
    struct api_response resp = {0};
    api_problem(&resp, 413, "Request body too large",
                "The request body is larger than the server's limit of %zu bytes "
                "(--max-request-bytes). Send a smaller payload, or raise the limit.",
                r->srv->cfg.max_request_bytes);
    return send_response(r, &resp);
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
        if (!r->too_large && append_body(r, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
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

    struct api_request req = {
        .method = method,
        .path = url,
        .query = query_cb,
        .query_ctx = conn,
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .body = (const uint8_t *)r->body,
        .body_len = r->body_len,
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
    (void)cls;
    (void)conn;
    (void)toe;
    struct request *r = *req_cls;
    if (!r)
        return;
    free(r->body);
    api_response_release(&r->resp);
    free(r);
    *req_cls = NULL;
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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET,
                                 s->listen_fd, MHD_OPTION_THREAD_POOL_SIZE, cfg->threads,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "libmicrohttpd failed to start on %s port %u", cfg->listen, s->port);
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
    MHD_stop_daemon(s->daemon);
    close(s->listen_fd);
    free(s);
}
