/*
 * conn_watch.h — the server's open connections and the deadlines that keep a slow
 * or stalled client from holding one (and the memory behind it) for long.
 *
 * Every connection is tracked from accept to close. A watchdog thread looks at them
 * four times a second and shuts down (shutdown(2): libmicrohttpd then sees the peer
 * gone and closes it on its own thread) a connection that
 *  - idles, or sends a request's headers, longer than the header timeout;
 *  - reads a request body, or is sent a response, slower than the minimum rate: after
 *    the grace, each window of `grace` seconds must carry min_rate x grace bytes (a
 *    stall ends it within two windows, however much came before: a fast start buys no
 *    time), and a body of declared length must be in by grace + length / min_rate.
 *    For a body the grace is at most the header timeout.
 * A handled request (the job is being queued, a long-poll is suspended) has no
 * deadline here.
 *
 * It also keeps the budget of request-body bytes held by all connections together
 * (max_buffered): a body reserves its bytes before they are read (its declared length
 * up front), and gives them back when the request ends.
 */
#ifndef PYJOBD_CONN_WATCH_H
#define PYJOBD_CONN_WATCH_H

#include <stddef.h>
#include <stdint.h>

struct conn_watch;
struct conn_track;

enum conn_stage {
    CONN_IDLE,    /* waiting for a request's headers (or the next request) */
    CONN_BODY,    /* reading a request body */
    CONN_HANDLED, /* no deadline: the request is being handled, or a long-poll waits */
    CONN_SENDING, /* a response is on its way */
};

struct conn_watch_config {
    double header_timeout; /* seconds */
    size_t min_rate;       /* bytes per second; 0: no rate */
    double grace;          /* seconds before the rate counts, and its window */
    size_t max_buffered;   /* body bytes of all connections together; 0: no bound */
};

/* Starts the watchdog. NULL on failure (errno). */
struct conn_watch *conn_watch_start(const struct conn_watch_config *cfg);
void conn_watch_stop(struct conn_watch *w); /* accepts NULL */

/* A new connection (its socket fd), in CONN_IDLE; NULL on ENOMEM. */
struct conn_track *conn_watch_add(struct conn_watch *w, int fd);
void conn_watch_remove(struct conn_watch *w, struct conn_track *t); /* gives back its bytes */
unsigned conn_watch_count(struct conn_watch *w);
int conn_track_fd(const struct conn_track *t);

/* The connection's request enters a stage; `expect` is the body's declared length
 * (CONN_BODY, 0 when unknown) or the response's length (CONN_SENDING). */
void conn_watch_stage(struct conn_watch *w, struct conn_track *t, enum conn_stage stage,
                      uint64_t expect);
/* Bytes of the body received, or of the response handed over to be sent. */
void conn_watch_progress(struct conn_watch *w, struct conn_track *t, size_t n);

/* Makes this connection's reservation of body bytes at least total: 0, or -EAGAIN
 * when all connections' bodies would hold more than max_buffered. */
int conn_watch_reserve_upto(struct conn_watch *w, struct conn_track *t, size_t total);
/* Gives back everything this connection reserved. */
void conn_watch_unreserve(struct conn_watch *w, struct conn_track *t);

#endif
