/*
 * http_respond.c — the HTTP front end's answers (http_internal.h): a body in one piece
 * or in parts (a result is read from its blob as it is sent: never copied, never
 * encoded whole), the connection's progress reported to the watchdog, and the answers
 * written straight to the socket when a body cannot be read to its end.
 */
#include "http_internal.h"
#include "pyjobd/clock.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A response in parts being sent (libmicrohttpd's content reader): it owns the
 * response, which holds references to the results' blobs. */
struct stream {
    struct api_response resp;
    struct api_body_cursor cursor;
    struct conn_watch *watch;
    struct conn_track *track;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    size_t n = api_response_read(&st->resp, &st->cursor, pos, buf, max);
    if (!n)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->track)
        conn_watch_progress(st->watch, st->track, n);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    api_response_release(&st->resp);
    free(st);
}

#define STREAM_BLOCK (32u << 10) /* what a connection sending a long body holds */

/* A body in parts is read as it is sent (no copy of a result is ever made); any other
 * body is handed over as it is. */
/* A body in parts this short is copied into one buffer: a stream costs a block of
 * STREAM_BLOCK bytes that libmicrohttpd zeroes (about 35,000 instructions a response,
 * callgrind), more than copying a small body. */
#define FLATTEN_MAX STREAM_BLOCK

static int flatten(struct api_response *resp)
{
    unsigned long long len = api_response_length(resp);
    char *body = malloc(len ? len : 1);
    if (!body)
        return -1;
    struct api_body_cursor c = {0};
    size_t got = api_response_read(resp, &c, 0, body, len);
    struct api_response parts = {.parts = resp->parts, .nparts = resp->nparts};
    api_response_release(&parts);
    resp->parts = NULL;
    resp->nparts = 0;
    resp->body = body;
    resp->body_len = got;
    return 0;
}

static struct MHD_Response *make_response(struct request *r, struct api_response *resp)
{
    if (resp->parts && api_response_length(resp) <= FLATTEN_MAX && flatten(resp) != 0)
        return NULL;
    if (!resp->parts) {
        struct MHD_Response *m =
            MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (m)
            resp->body = NULL; /* now libmicrohttpd's */
        return m;
    }
    struct stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->watch = r->srv->watch;
    st->track = r->track;
    uint64_t len = api_response_length(resp);
    struct MHD_Response *m =
        MHD_create_response_from_callback(len, STREAM_BLOCK, stream_read, st, stream_free);
    if (!m) {
        free(st);
        return NULL;
    }
    st->resp = *resp; /* the stream's now: the caller's copy is cleared */
    memset(resp, 0, sizeof(*resp));
    return m;
}

enum MHD_Result http__send_closing(struct request *r, struct api_response *resp, int close)
{
    uint64_t len = api_response_length(resp);
    int status = resp->status;
    char *location = resp->location;
    resp->location = NULL;
    const char *content_type = resp->content_type, *allow = resp->allow;
    int retry_after = resp->retry_after, replayed = resp->replayed;
    int streamed = resp->parts != NULL && len > FLATTEN_MAX; /* make_response takes them */
    struct MHD_Response *m = make_response(r, resp);
    if (!m) {
        free(location);
        api_response_release(resp);
        return MHD_NO;
    }
    if (content_type)
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (location)
        MHD_add_response_header(m, MHD_HTTP_HEADER_LOCATION, location);
    free(location);
    if (allow)
        MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, allow);
    if (retry_after > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", retry_after);
        MHD_add_response_header(m, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    if (replayed) /* an Idempotency-Key's job, made before */
        MHD_add_response_header(m, "Idempotent-Replayed", "true");
    if (close)
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->track) {
        conn_watch_stage(r->srv->watch, r->track, CONN_SENDING, len);
        if (!streamed && len) /* a body in one piece is handed over at once */
            conn_watch_progress(r->srv->watch, r->track, (size_t)len);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, m);
    MHD_destroy_response(m);
    api_response_release(resp);
    r->phase = PHASE_DONE;
    return ret;
}

enum MHD_Result http__send(struct request *r, struct api_response *resp)
{
    return http__send_closing(r, resp, 0);
}

enum MHD_Result http__send_too_large(struct request *r)
{
    api_count_response(r->srv->cfg.api, 413);
    struct api_response resp = {0};
    api_problem(&resp, 413, "Request body too large",
                "The request body is larger than the server's limit of %zu bytes "
                "(--max-request-bytes). Send a smaller payload, or raise the limit.",
                r->srv->cfg.max_request_bytes);
    return http__send(r, &resp);
}

enum MHD_Result http__send_unauthorized(struct request *r, const char *detail)
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

/*
 * A body that cannot be read to its end: it grows past the limit, or past what all
 * connections may hold together. libmicrohttpd (0.9.75) cannot queue a response before
 * the request is complete, and reading an unbounded chunked stream to its end is what
 * the limits are there to prevent. So on a plain connection the answer is written to
 * the socket directly, on this connection's own thread while libmicrohttpd is between
 * reads, and the connection is then dropped; over TLS it is only dropped.
 */
enum MHD_Result http__abort_body(struct request *r, struct api_response *resp)
{
    struct http_server *srv = r->srv;
    int fd = r->track ? conn_track_fd(r->track) : -1;
    if (!(srv->cfg.tls_cert_pem && srv->cfg.tls_key_pem) && fd >= 0) {
        char head[320];
        int n = snprintf(
            head, sizeof(head),
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
            "Connection: close\r\n\r\n",
            resp->status, resp->status == 413 ? "Content Too Large" : "Service Unavailable",
            resp->content_type, resp->body_len, resp->retry_after > 0 ? "Retry-After: 1\r\n" : "");
        if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n &&
            send(fd, resp->body, resp->body_len, MSG_NOSIGNAL) == (ssize_t)resp->body_len) {
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
    }
    api_count_response(srv->cfg.api, resp->status);
    api_response_release(resp);
    r->phase = PHASE_DONE;
    return MHD_NO;
}

void http__buffered_problem(struct request *r, struct api_response *resp)
{
    api_problem(resp, 503, "Service Unavailable",
                "the server holds as many request bodies as it may (--max-buffered-bytes %zu "
                "bytes, all connections together); retry shortly",
                r->srv->cfg.max_buffered_bytes);
    resp->retry_after = 1;
}
