/*
 * pg_schedule_requests.c — other threads' reads and writes of recurring schedules on
 * the PostgreSQL store (POST, GET, DELETE /v1/schedules on any node): queued for the
 * store's thread and waited for, with a bound, as pg_requests.c does for jobs. A
 * creation or a deletion NOTIFYs the leader (pg_schedules.c), which re-reads them.
 */
#include "pg_sched.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sreq_free(struct sreq *q)
{
    free((void *)q->row.job);
    free((void *)q->row.cron);
    free((void *)q->row.timezone);
    store_schedules_free(q->rows, q->n);
    free(q);
}

static void finish(struct pg_store *s, struct sreq *q, int rc)
{
    pthread_mutex_lock(&s->lock);
    q->rc = rc;
    q->done = 1;
    int abandoned = q->abandoned;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (abandoned)
        sreq_free(q);
}

void pgs__sched_fail(struct pg_store *s, int rc)
{
    struct pg_sched *c = s->sched;
    struct sreq_list all = STAILQ_HEAD_INITIALIZER(all);
    pthread_mutex_lock(&s->lock);
    STAILQ_CONCAT(&all, &c->reqs);
    pthread_mutex_unlock(&s->lock);
    struct sreq *q;
    while ((q = STAILQ_FIRST(&all))) {
        STAILQ_REMOVE_HEAD(&all, link);
        finish(s, q, rc);
    }
}

/* --- on the store's thread ---------------------------------------------------------------- */

static int answer(struct seg *g, struct sreq *q)
{
    PGresult *r = g->ps.res[q->kind == SQ_CREATE ? 1 : 0];
    switch (q->kind) {
    case SQ_CREATE:
        if (!r || PQntuples(r) != 1)
            return -EIO;
        if (atoi(PQgetvalue(r, 0, 0)) == 1)
            return 0;
        return strtoull(PQgetvalue(r, 0, 1), NULL, 10) >= q->tenant_max ? -EDQUOT : -EAGAIN;
    case SQ_READ:
        if (pg_schedule_rows(r, &q->rows, &q->n) != 0)
            return -ENOMEM;
        return q->id[0] && !q->n ? -ENOENT : 0;
    case SQ_DELETE:
        return r && PQntuples(r) == 1 ? 0 : -ENOENT;
    }
    return -EIO;
}

static void req_done(struct pg_store *s, struct seg *g, int ok)
{
    struct pg_sched *c = s->sched;
    struct sreq *q = STAILQ_FIRST(&c->sent_reqs);
    if (!q)
        return;
    STAILQ_REMOVE_HEAD(&c->sent_reqs, link);
    if (ok == 0)
        log_error("store: a request about schedules failed: %s", g->ps.errmsg);
    finish(s, q, ok < 0 ? -ENOTCONN : ok == 0 ? -EIO : answer(g, q));
}

static int send_req(struct pg_store *s, struct seg *g, struct sreq *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    const char *owner = q->has_owner ? q->owner : NULL;
    switch (q->kind) {
    case SQ_CREATE: {
        const struct store_schedule *r = &q->row;
        const char *lock[1] = {s->schema};
        pg_param_text(&p, r->id);
        pg_param_text(&p, r->owner);
        int i = p.n;
        pg_param_text(&p, (const char *)r->job);
        p.lengths[i] = (int)r->job_len;
        p.formats[i] = 1;
        pg_param_text(&p, r->cron);
        pg_param_f64(&p, r->every);
        pg_param_text(&p, r->timezone);
        pg_param_text(&p, r->run_once ? "t" : "f");
        pg_param_i64(&p, r->created_us);
        pg_param_i64(&p, (int64_t)q->tenant_max);
        pg_param_i64(&p, (int64_t)q->max);
        g->ps.n = 3;
        return pg_conn_send(&s->pc, &pg_sql_schedule_create_lock, 1, lock, NULL, NULL, 0) ||
               pg_conn_send(&s->pc, &pg_sql_schedule_create, p.n, p.values, p.lengths, p.formats,
                            0) ||
               pgs__send_notify(s, s->chan_queued, PG_SCHEDULES_PAYLOAD);
    }
    case SQ_READ: {
        char arr[JOB_ID_LEN + 3];
        snprintf(arr, sizeof(arr), "{%s}", q->id);
        const char *vals[3] = {"f", q->id[0] ? arr : NULL, owner};
        g->ps.n = 1;
        return pg_conn_send(&s->pc, &pg_sql_schedule_read, 3, vals, NULL, NULL, 1);
    }
    case SQ_DELETE: {
        const char *vals[2] = {q->id, owner};
        g->ps.n = 2;
        return pg_conn_send(&s->pc, &pg_sql_schedule_delete, 2, vals, NULL, NULL, 0) ||
               pgs__send_notify(s, s->chan_queued, PG_SCHEDULES_PAYLOAD);
    }
    }
    return -1;
}

void pgs__sched_send_requests(struct pg_store *s)
{
    struct pg_sched *c = s->sched;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct sreq *q = STAILQ_FIRST(&c->reqs);
        if (q)
            STAILQ_REMOVE_HEAD(&c->reqs, link);
        pthread_mutex_unlock(&s->lock);
        if (!q)
            return;
        struct seg *g = s->pc.state == PG_READY ? pgs__seg_new(s, req_done) : NULL;
        if (!g) {
            finish(s, q, s->pc.state == PG_READY ? -ENOMEM : -ENOTCONN);
            continue;
        }
        STAILQ_INSERT_TAIL(&c->sent_reqs, q, link);
        pgs__send_or_lose(s, g, send_req(s, g, q) != 0);
    }
}

/* --- the calls of other threads ----------------------------------------------------------- */

static struct sreq *sreq_new(enum sq_kind kind, const char *id, const char *owner)
{
    struct sreq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->kind = kind;
    snprintf(q->id, sizeof(q->id), "%s", id ? id : "");
    q->has_owner = owner != NULL;
    snprintf(q->owner, sizeof(q->owner), "%s", owner ? owner : "");
    return q;
}

/* Queues q and waits for its answer: q->rc, or -ENOTCONN (not queued: q is the
 * caller's), -ETIMEDOUT (q is abandoned to the store's thread). */
static int request(struct pg_store *s, struct sreq *q)
{
    struct timespec until;
    clock_deadline_in(&until, REQUEST_WAIT_MS);
    pthread_mutex_lock(&s->lock);
    if (!s->ready || s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return -ENOTCONN;
    }
    STAILQ_INSERT_TAIL(&s->sched->reqs, q, link);
    pthread_mutex_unlock(&s->lock);
    pgs__poke(s);
    pthread_mutex_lock(&s->lock);
    while (!q->done)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT && !q->done) {
            q->abandoned = 1;
            pthread_mutex_unlock(&s->lock);
            return -ETIMEDOUT;
        }
    pthread_mutex_unlock(&s->lock);
    return q->rc;
}

/* Waits for q, then frees it unless it was abandoned. */
static int request_and_free(struct pg_store *s, struct sreq *q)
{
    int rc = request(s, q);
    if (rc != -ETIMEDOUT)
        sreq_free(q);
    return rc;
}

int pgs__schedule_create(struct store *base, const struct store_schedule *sc, size_t tenant_max,
                         size_t max)
{
    struct pg_store *s = (struct pg_store *)base;
    struct sreq *q = sreq_new(SQ_CREATE, sc->id, NULL);
    if (!q)
        return -ENOMEM;
    q->row = *sc;
    uint8_t *job = malloc(sc->job_len ? sc->job_len : 1);
    if (job)
        memcpy(job, sc->job, sc->job_len);
    q->row.job = job;
    q->row.cron = sc->cron ? strdup(sc->cron) : NULL;
    q->row.timezone = strdup(sc->timezone ? sc->timezone : "UTC");
    q->tenant_max = tenant_max;
    q->max = max;
    if (!job || (sc->cron && !q->row.cron) || !q->row.timezone) {
        sreq_free(q);
        return -ENOMEM;
    }
    return request_and_free(s, q);
}

int pgs__schedule_read(struct store *base, const char *id, const char *owner,
                       struct store_schedule **rows, size_t *n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct sreq *q = sreq_new(SQ_READ, id, owner);
    if (!q)
        return -ENOMEM;
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0) {
        *rows = q->rows;
        *n = q->n;
        q->rows = NULL;
        q->n = 0;
    }
    sreq_free(q);
    return rc;
}

int pgs__schedule_delete(struct store *base, const char *id, const char *owner)
{
    struct sreq *q = sreq_new(SQ_DELETE, id, owner);
    return q ? request_and_free((struct pg_store *)base, q) : -ENOMEM;
}
