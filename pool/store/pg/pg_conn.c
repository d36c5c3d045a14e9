/*
 * pg_conn.c — a non-blocking libpq connection in pipeline mode (pg_conn.h).
 */
#include "pg_conn.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void set_error(struct pg_conn *c, const char *prefix)
{
    const char *msg = c->conn ? PQerrorMessage(c->conn) : "out of memory";
    snprintf(c->error, sizeof(c->error), "%s%s", prefix, msg && *msg ? msg : "unknown error");
    size_t n = strlen(c->error);
    while (n && (c->error[n - 1] == '\n' || c->error[n - 1] == ' '))
        c->error[--n] = 0;
}

void pg_seg_clear(struct pg_seg *seg)
{
    if (seg->res)
        for (int i = 0; i < seg->n; i++)
            PQclear(seg->res[i]);
    free(seg->res);
    seg->res = NULL;
}

static void finish_seg(struct pg_conn *c, int ok)
{
    struct pg_seg *seg = STAILQ_FIRST(&c->segs);
    STAILQ_REMOVE_HEAD(&c->segs, link);
    seg->done(seg->ctx, seg, ok); /* frees or reuses seg */
}

void pg_conn_lost(struct pg_conn *c, const char *why, int64_t now)
{
    int was_ready = c->state == PG_READY;
    if (why)
        snprintf(c->error, sizeof(c->error), "%s", why);
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
    c->state = PG_DOWN;
    c->need_flush = 0;
    c->sent_ms = 0;
    c->retry_at_ms = now + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    while (!STAILQ_EMPTY(&c->segs))
        finish_seg(c, -1);
    if (was_ready) {
        log_warn("database connection lost (%s); reconnecting", c->error);
        if (c->on_lost)
            c->on_lost(c->ctx);
    }
}

void pg_conn_close(struct pg_conn *c)
{
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
    while (!STAILQ_EMPTY(&c->segs))
        finish_seg(c, -1);
    c->state = PG_DOWN;
}

/* The server's notices and warnings, in the log's format instead of raw on stderr. */
static void log_notice(void *arg, const char *message)
{
    (void)arg;
    int len = (int)strcspn(message, "\n");
    log_warn("database: %.*s", len, message);
}

static void start_connect(struct pg_conn *c, int64_t now)
{
    c->conn = PQconnectStartParams(c->keywords, c->values, 1);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        set_error(c, "");
        pg_conn_lost(c, NULL, now);
        return;
    }
    PQsetnonblocking(c->conn, 1);
    PQsetNoticeProcessor(c->conn, log_notice, NULL);
    c->state = PG_CONNECTING;
    c->connect_started_ms = now;
    c->polling = PGRES_POLLING_WRITING;
}

int pg_conn_pollfd(struct pg_conn *c, short *events, int64_t now, int64_t *timeout_ms)
{
    if (c->state == PG_DOWN) {
        if (now >= c->retry_at_ms)
            start_connect(c, now);
        if (c->state == PG_DOWN) {
            *timeout_ms = c->retry_at_ms - now;
            return -1;
        }
    }
    int fd = PQsocket(c->conn);
    if (fd < 0) {
        *timeout_ms = 0;
        return -1;
    }
    if (c->state == PG_CONNECTING)
        *events = c->polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    else
        *events = POLLIN | (c->need_flush ? POLLOUT : 0);
    if (c->state != PG_READY) {
        int64_t left = c->connect_started_ms + c->connect_timeout_ms - now;
        *timeout_ms = left > 0 ? left : 0;
    } else if (c->sent_ms) {
        int64_t left = c->sent_ms + c->stall_ms - now;
        *timeout_ms = left > 0 ? left : 0;
    } else {
        *timeout_ms = -1;
    }
    return fd;
}

static void drain_notifies(struct pg_conn *c)
{
    PGnotify *n;
    while ((n = PQnotifies(c->conn))) {
        if (c->on_notify)
            c->on_notify(c->ctx, n->relname, n->extra);
        PQfreemem(n);
    }
}

/* Setup: the script's results, until the last one; then pipeline mode. */
static void read_setup(struct pg_conn *c, int64_t now)
{
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            if (c->setup_failed) {
                pg_conn_lost(c, NULL, now);
                return;
            }
            if (PQenterPipelineMode(c->conn) != 1) {
                set_error(c, "cannot enter pipeline mode: ");
                pg_conn_lost(c, NULL, now);
                return;
            }
            c->state = PG_READY;
            c->backoff_ms = BACKOFF_MIN_MS;
            c->error[0] = 0;
            if (c->on_ready)
                c->on_ready(c->ctx);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !c->setup_failed) {
            const char *m = PQresultErrorMessage(r);
            snprintf(c->error, sizeof(c->error), "setting up the schema failed: %s", m ? m : "");
            size_t n = strlen(c->error);
            while (n && c->error[n - 1] == '\n')
                c->error[--n] = 0;
            c->setup_failed = 1;
        }
        PQclear(r);
    }
}

/* Pipeline: results in the order the statements were sent; a Sync ends a segment. */
static void read_results(struct pg_conn *c, int64_t now)
{
    int idle_nulls = 0;
    while (!STAILQ_EMPTY(&c->segs) && c->conn && !PQisBusy(c->conn)) {
        struct pg_seg *seg = STAILQ_FIRST(&c->segs);
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            if (seg->got_cur) {
                seg->cur++;
                seg->got_cur = 0;
                continue;
            }
            if (++idle_nulls > 2)
                break;
            continue;
        }
        idle_nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            c->sent_ms = STAILQ_NEXT(seg, link) ? now : 0;
            finish_seg(c, seg->failed ? 0 : 1);
            continue;
        }
        if (seg->got_cur) {
            seg->cur++;
            seg->got_cur = 0;
        }
        if (st == PGRES_FATAL_ERROR && !seg->failed) {
            const char *m = PQresultErrorMessage(r);
            snprintf(seg->errmsg, sizeof(seg->errmsg), "%s", m ? m : "error");
            size_t n = strlen(seg->errmsg);
            while (n && seg->errmsg[n - 1] == '\n')
                seg->errmsg[--n] = 0;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED)
            seg->failed = 1;
        if (seg->cur < seg->n) {
            seg->res[seg->cur] = r;
            seg->got_cur = 1;
        } else {
            PQclear(r);
        }
    }
    if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
        pg_conn_lost(c, PQerrorMessage(c->conn), now);
}

void pg_conn_step(struct pg_conn *c, short revents, int64_t now)
{
    if (c->state == PG_DOWN || !c->conn)
        return;
    if (c->state != PG_READY && now - c->connect_started_ms >= c->connect_timeout_ms) {
        pg_conn_lost(c,
                     c->state == PG_CONNECTING ? "timed out connecting"
                                               : "timed out setting up the schema",
                     now);
        return;
    }
    if (c->state == PG_CONNECTING) {
        if (!revents)
            return;
        c->polling = PQconnectPoll(c->conn);
        if (c->polling == PGRES_POLLING_FAILED) {
            set_error(c, "");
            pg_conn_lost(c, NULL, now);
        } else if (c->polling == PGRES_POLLING_OK) {
            c->setup_failed = 0;
            if (!PQsendQuery(c->conn, c->setup_sql)) {
                set_error(c, "");
                pg_conn_lost(c, NULL, now);
                return;
            }
            c->state = PG_SETUP;
            c->need_flush = PQflush(c->conn) == 1;
        }
        return;
    }
    if (revents & POLLOUT) {
        int f = PQflush(c->conn);
        if (f < 0) {
            set_error(c, "");
            pg_conn_lost(c, NULL, now);
            return;
        }
        c->need_flush = f == 1;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!PQconsumeInput(c->conn)) {
            char why[256];
            snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
            why[strcspn(why, "\n")] = 0;
            pg_conn_lost(c, why, now);
            return;
        }
        drain_notifies(c);
    }
    if (c->state == PG_SETUP) {
        read_setup(c, now);
        return;
    }
    read_results(c, now);
    if (c->conn && c->state == PG_READY)
        drain_notifies(c);
    if (c->conn && c->sent_ms && now - c->sent_ms > c->stall_ms)
        pg_conn_lost(c, "the database did not answer in time", now);
}

int pg_conn_send(struct pg_conn *c, const struct pg_stmt *st, int nparams,
                 const char *const *values, const int *lengths, const int *formats, int binary)
{
    if (c->state != PG_READY)
        return -1;
    /* Prepared by the setup script: parsed and planned once per connection. */
    if (!(!st->name
              ? PQsendQueryParams(c->conn, st->sql, nparams, NULL, values, lengths, formats, binary)
              : PQsendQueryPrepared(c->conn, st->name, nparams, values, lengths, formats,
                                    binary))) {
        set_error(c, "");
        return -1;
    }
    return 0;
}

int pg_conn_sync(struct pg_conn *c, struct pg_seg *seg)
{
    if (!c->sent_ms)
        c->sent_ms = clock_now_ms();
    seg->res = calloc(seg->n > 0 ? (size_t)seg->n : 1, sizeof(*seg->res));
    seg->cur = seg->got_cur = seg->failed = 0;
    seg->errmsg[0] = 0;
    STAILQ_INSERT_TAIL(&c->segs, seg, link);
    if (!seg->res || c->state != PG_READY || PQpipelineSync(c->conn) != 1)
        return -1; /* the caller calls pg_conn_lost, which reports seg */
    int f = PQflush(c->conn);
    if (f < 0)
        return -1;
    c->need_flush = f == 1;
    return 0;
}
