/*
 * pg_request.c — carrying other threads' requests to the PostgreSQL store's thread and
 * back: made with their kind's operations (how it is sent, how its results are read,
 * what it holds), queued, sent as one segment each, answered, freed. The kinds live in
 * the files that make them (pg_requests.c, pg_keys.c, pg_reruns.c); this file knows
 * none of them.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct req *pgs__req_new(enum rkind kind, const struct req_ops *ops, const char *id)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q) {
        q->kind = kind;
        q->ops = ops;
        if (id)
            snprintf(q->id, sizeof(q->id), "%s", id);
    }
    return q;
}

void pgs__req_free(struct req *q)
{
    if (!q)
        return;
    if (q->ops && q->ops->release)
        q->ops->release(q);
    for (size_t i = 0; i < q->n; i++)
        job_view_release(&q->views[i]);
    free(q->views);
    free(q->ids);
    free(q->watch);
    for (size_t i = 0; i < q->nspecs; i++)
        job_spec_release(&q->specs[i]);
    free(q->specs);
    free(q);
}

void pgs__req_finish(struct pg_store *s, struct req *q, int rc)
{
    pthread_mutex_lock(&s->lock);
    q->rc = rc;
    q->done = 1;
    int abandoned = q->abandoned;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (abandoned)
        pgs__req_free(q);
}

static void req_done(struct pg_store *s, struct seg *g, int ok)
{
    struct req *q = g->req;
    if (ok < 0) {
        pgs__req_finish(s, q, -ENOTCONN);
        return;
    }
    if (ok == 0) {
        log_error("store: a read failed: %s", g->ps.errmsg);
        pgs__req_finish(s, q, -EIO);
        return;
    }
    pgs__req_finish(s, q, q->ops->result(s, g, q));
}

void pgs__round_request(struct pg_store *s, struct req *q)
{
    struct seg *g = pgs__seg_new(s, req_done);
    if (!g) {
        pgs__req_finish(s, q, -ENOMEM);
        return;
    }
    g->req = q;
    pgs__send_or_lose(s, g, q->ops->send(s, g, q) != 0);
}

int pgs__req_queue_locked(struct pg_store *s, struct req *q)
{
    if (!s->ready || s->stopping)
        return -ENOTCONN;
    STAILQ_INSERT_TAIL(&s->requests, q, link);
    return 0;
}

int pgs__request(struct pg_store *s, struct req *q, int wait_ms)
{
    struct timespec until;
    clock_deadline_in(&until, wait_ms);
    pthread_mutex_lock(&s->lock);
    if (pgs__req_queue_locked(s, q) != 0) {
        pthread_mutex_unlock(&s->lock);
        return -ENOTCONN;
    }
    pthread_mutex_unlock(&s->lock);
    pgs__poke(s);
    pthread_mutex_lock(&s->lock);
    while (!q->done)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT && !q->done) {
            q->abandoned = 1; /* the thread frees it */
            pthread_mutex_unlock(&s->lock);
            return -ETIMEDOUT;
        }
    pthread_mutex_unlock(&s->lock);
    return q->rc;
}

void pgs__req_post(struct pg_store *s, struct req *q)
{
    q->abandoned = 1; /* the thread frees it */
    pthread_mutex_lock(&s->lock);
    int rc = pgs__req_queue_locked(s, q);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        pgs__req_free(q); /* a cancel asked of another node: its asker sees no answer */
    else
        pgs__poke(s);
}
