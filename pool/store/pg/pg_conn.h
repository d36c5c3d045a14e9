/*
 * pg_conn.h — one non-blocking libpq connection in pipeline mode, driven by its
 * owner's poll loop (pool/store/pg/store_pg.c): connecting and reconnecting with backoff,
 * a setup script on every new connection, then segments of statements sent
 * back-to-back, each ended by a Sync. The statements of one segment form one
 * implicit transaction: all of it commits at the Sync, or none of it.
 */
#ifndef PYJOBD_PG_CONN_H
#define PYJOBD_PG_CONN_H

#include <libpq-fe.h>

#include "pg_sql.h"
#include <stdint.h>
#include <sys/queue.h>

struct pg_seg;

/* ok: 1 committed (res[] hold each statement's result); 0 a statement failed and the
 * segment was rolled back (errmsg says why); -1 the connection was lost (whether it
 * committed is unknown). The callee may keep nothing: results are freed after. */
typedef void (*pg_seg_done)(void *ctx, struct pg_seg *seg, int ok);

struct pg_seg {
    int n;            /* statements */
    PGresult **res;   /* n results, NULL until received */
    int cur, got_cur; /* reading position */
    int failed;
    char errmsg[256];
    pg_seg_done done;
    void *ctx;
    STAILQ_ENTRY(pg_seg) link;
};

enum pg_state { PG_DOWN, PG_CONNECTING, PG_SETUP, PG_READY };

struct pg_conn {
    const char *const *keywords; /* connection parameters (owner's) */
    const char *const *values;
    const char *setup_sql; /* run on each new connection before pipeline mode */
    PGconn *conn;
    enum pg_state state;
    PostgresPollingStatusType polling;
    int64_t retry_at_ms, backoff_ms;
    int64_t sent_ms;  /* when the oldest unanswered segment was sent; 0 = none */
    int64_t stall_ms; /* give up on a connection that answers nothing this long */
    int64_t connect_timeout_ms;
    int64_t connect_started_ms;
    int need_flush;
    STAILQ_HEAD(pg_seg_list, pg_seg) segs; /* in flight, oldest first (STAILQ_INIT it) */
    char error[256];  /* why the last connection attempt or connection failed */
    int setup_failed; /* the setup script itself failed (not the network) */
    void *ctx;
    void (*on_ready)(void *ctx);
    void (*on_lost)(void *ctx);
    void (*on_notify)(void *ctx, const char *channel, const char *payload);
};

/* The descriptor to poll (and *events), or -1 with *timeout_ms set to the next retry. */
int pg_conn_pollfd(struct pg_conn *c, short *events, int64_t now, int64_t *timeout_ms);

/* Advances the connection: call after poll with the revents of the descriptor (0 on
 * timeout). Runs callbacks. */
void pg_conn_step(struct pg_conn *c, short revents, int64_t now);

/* Sends one statement (prepared on every connection, see pg_sql.h) of a segment being
 * built: text parameters except where formats[i] = 1; binary results when binary.
 * 0 or -1 (connection lost). */
int pg_conn_send(struct pg_conn *c, const struct pg_stmt *st, int nparams,
                 const char *const *values, const int *lengths, const int *formats, int binary);

/* Ends the segment of the statements sent since the last sync: seg->n must equal their
 * number; seg->res is allocated here. 0 or -1 (the connection was lost; seg->done ran). */
int pg_conn_sync(struct pg_conn *c, struct pg_seg *seg);

/* Drops the connection (its in-flight segments report -1) and retries after backoff. */
void pg_conn_lost(struct pg_conn *c, const char *why, int64_t now);

void pg_conn_close(struct pg_conn *c);

/* Frees a segment's results (not the segment). */
void pg_seg_clear(struct pg_seg *seg);

#endif
