/*
 * conn_watch.c — open connections, their deadlines and the body budget
 * (include/pyjobd/conn_watch.h).
 */
#include "pyjobd/conn_watch.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct conn_track {
    int fd;
    enum conn_stage stage;
    int64_t since_ms;     /* start of the current stage */
    uint64_t expect;      /* declared body length or response length; 0 unknown */
    uint64_t done;        /* bytes so far in this stage */
    int64_t window_ms;    /* start of the current rate window */
    uint64_t window_done; /* `done` when it started */
    size_t reserved;      /* body bytes reserved in the budget */
    int cut;              /* shut down already */
    LIST_ENTRY(conn_track) link;
};

struct conn_watch {
    struct conn_watch_config cfg;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    LIST_HEAD(, conn_track) conns;
    unsigned n;
    size_t buffered;
    int stopping;
    pthread_t thread;
};

static const char *stage_name(enum conn_stage s)
{
    return s == CONN_IDLE ? "headers" : s == CONN_BODY ? "request body" : "response";
}

/* Why t must be cut off now (a static string), or NULL. Lock held. */
static const char *overdue(const struct conn_watch *w, struct conn_track *t, int64_t now)
{
    int64_t age = now - t->since_ms;
    if (t->stage == CONN_IDLE)
        return age > (int64_t)(w->cfg.header_timeout * 1000.0) ? "too slow" : NULL;
    if (t->stage == CONN_HANDLED || !w->cfg.min_rate)
        return NULL;
    int64_t grace = (int64_t)(w->cfg.grace * 1000.0);
    if (t->stage == CONN_BODY && w->cfg.header_timeout < w->cfg.grace)
        grace = (int64_t)(w->cfg.header_timeout * 1000.0); /* a body starts no later */
    if (grace < 250)
        grace = 250; /* one look of the watchdog */
    if (age <= grace)
        return NULL;
    /* Of a known length: all of it by grace + length / rate. */
    if (t->expect && age > grace + (int64_t)(t->expect * 1000 / w->cfg.min_rate))
        return "slower than the minimum rate overall";
    /* And each window of `grace` after the first carries its share. */
    if (now - t->window_ms >= grace) {
        uint64_t need = (uint64_t)w->cfg.min_rate * (uint64_t)grace / 1000;
        if (t->done - t->window_done < need)
            return "stalled (below the minimum rate for a whole window)";
        t->window_ms = now;
        t->window_done = t->done;
    }
    return NULL;
}

static void *watchdog_main(void *arg)
{
    struct conn_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        struct timespec ts;
        clock_deadline_in(&ts, 250);
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        int64_t now = clock_now_ms();
        struct conn_track *t;
        LIST_FOREACH(t, &w->conns, link)
        {
            const char *why = t->fd >= 0 && !t->cut ? overdue(w, t, now) : NULL;
            if (why) {
                log_debug("http: closing connection fd %d: %s %s", t->fd, stage_name(t->stage),
                          why);
                shutdown(t->fd, SHUT_RDWR);
                t->cut = 1; /* once is enough */
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct conn_watch *conn_watch_start(const struct conn_watch_config *cfg)
{
    struct conn_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->cfg = *cfg;
    LIST_INIT(&w->conns);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    if (rc != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        errno = rc;
        return NULL;
    }
    return w;
}

void conn_watch_stop(struct conn_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    struct conn_track *t;
    while ((t = LIST_FIRST(&w->conns))) {
        LIST_REMOVE(t, link);
        free(t);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}

struct conn_track *conn_watch_add(struct conn_watch *w, int fd)
{
    struct conn_track *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->fd = fd;
    t->stage = CONN_IDLE;
    t->since_ms = t->window_ms = clock_now_ms();
    pthread_mutex_lock(&w->lock);
    LIST_INSERT_HEAD(&w->conns, t, link);
    w->n++;
    pthread_mutex_unlock(&w->lock);
    return t;
}

void conn_watch_remove(struct conn_watch *w, struct conn_track *t)
{
    pthread_mutex_lock(&w->lock);
    LIST_REMOVE(t, link);
    w->n--;
    w->buffered -= t->reserved;
    pthread_mutex_unlock(&w->lock);
    free(t);
}

unsigned conn_watch_count(struct conn_watch *w)
{
    pthread_mutex_lock(&w->lock);
    unsigned n = w->n;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int conn_track_fd(const struct conn_track *t)
{
    return t->fd;
}

void conn_watch_stage(struct conn_watch *w, struct conn_track *t, enum conn_stage stage,
                      uint64_t expect)
{
    pthread_mutex_lock(&w->lock);
    t->stage = stage;
    t->since_ms = t->window_ms = clock_now_ms();
    t->expect = expect;
    t->done = t->window_done = 0;
    pthread_mutex_unlock(&w->lock);
}

void conn_watch_progress(struct conn_watch *w, struct conn_track *t, size_t n)
{
    pthread_mutex_lock(&w->lock);
    t->done += n;
    pthread_mutex_unlock(&w->lock);
}

int conn_watch_reserve_upto(struct conn_watch *w, struct conn_track *t, size_t total)
{
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    size_t n = total > t->reserved ? total - t->reserved : 0;
    if (w->cfg.max_buffered && n > w->cfg.max_buffered - w->buffered)
        rc = -EAGAIN;
    else {
        w->buffered += n;
        t->reserved += n;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void conn_watch_unreserve(struct conn_watch *w, struct conn_track *t)
{
    pthread_mutex_lock(&w->lock);
    w->buffered -= t->reserved;
    t->reserved = 0;
    pthread_mutex_unlock(&w->lock);
}
