/*
 * pg_requests.c — reads for other threads: fetch, list, cancel, forget (waited for,
 * with a bound), and watches and cancel requests (fire and forget), each a kind of
 * request (pg_request.c carries them to the store's thread and back); plus the
 * periodic re-check of jobs that local waiters wait for on other nodes.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/registry.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- waited jobs and retention ---------------------------------------------------------- */

static void deliver_views(struct pg_store *s, PGresult *r)
{
    pthread_mutex_lock(&s->lock);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    s->in_events++;
    pthread_mutex_unlock(&s->lock);
    int rows = r ? PQntuples(r) : 0;
    for (int i = 0; i < rows; i++) {
        struct job_view v;
        if (pg_row_view(r, i, 1, &v, NULL) != 0)
            continue;
        if (ev.updated)
            ev.updated(arg, &v);
        job_view_release(&v);
    }
    pgs__events_done(s);
}

static void recheck_done(struct pg_store *s, struct seg *g, int ok)
{
    s->recheck_inflight = 0;
    if (ok == 1)
        deliver_views(s, g->ps.res[0]);
}

void pgs__round_recheck(struct pg_store *s, int64_t now)
{
    pthread_mutex_lock(&s->lock);
    int all = s->recheck_now || now >= s->next_recheck_ms;
    s->recheck_now = 0;
    /* Notified ids: those of jobs that someone, somewhere, waits for. */
    char(*ids)[JOB_ID_LEN + 1] = s->done_ids;
    size_t n = s->ndone;
    s->done_ids = NULL;
    s->ndone = s->capdone = 0;
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    s->in_events++;
    pthread_mutex_unlock(&s->lock);
    if (!ev.waited || !ev.keep_waited || (!all && !n)) {
        pgs__events_done(s);
        free(ids);
        return;
    }
    if (all) {
        /* Every job waited for here, at the poll interval: the fallback. */
        s->next_recheck_ms = now + s->poll_ms;
        free(ids);
        ids = calloc(WAITED_MAX, sizeof(*ids));
        n = ids ? ev.waited(arg, ids, WAITED_MAX) : 0;
    } else {
        n = ev.keep_waited(arg, ids, n); /* the notified ones waited for here */
    }
    pgs__events_done(s);
    char *arr = n ? pgs__id_array(ids, 0, n) : NULL;
    free(ids);
    if (!arr)
        return;
    struct seg *g = pgs__seg_new(s, recheck_done);
    if (!g) {
        free(arr);
        return;
    }
    const char *vals[1] = {arr};
    g->ps.n = 1;
    s->recheck_inflight = 1;
    int failed = pg_conn_send(&s->pc, &pg_sql_fetch_done, 1, vals, NULL, NULL, 1) != 0;
    free(arr);
    pgs__send_or_lose(s, g, failed);
}

/* --- requests of HTTP threads ------------------------------------------------------------ */

/* --- the kinds of request: how each is sent, how its results are read ------------------- */

static int send_fetch(struct pg_store *s, struct seg *g, struct req *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_text(&p, q->id);
    g->ps.n = 1;
    return pg_conn_send(&s->pc, &pg_sql_fetch, p.n, p.values, p.lengths, p.formats, 1);
}

static int fetch_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    PGresult *r = g->ps.res[0];
    if (!r || PQntuples(r) == 0)
        return -ENOENT;
    if (!(q->views = calloc(1, sizeof(*q->views))))
        return -ENOMEM;
    int rc = pg_row_view(r, 0, 1, q->views, NULL);
    q->n = rc == 0;
    return rc;
}

static int send_fetch_many(struct pg_store *s, struct seg *g, struct req *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_text(&p, q->ids);
    g->ps.n = 1;
    return pg_conn_send(&s->pc, &pg_sql_fetch_many, p.n, p.values, p.lengths, p.formats, 1);
}

static int fetch_many_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    PGresult *r = g->ps.res[0];
    int rows = r ? PQntuples(r) : 0, rc = 0;
    q->views = calloc(rows ? (size_t)rows : 1, sizeof(*q->views));
    if (!q->views)
        return -ENOMEM;
    for (int i = 0; i < rows && rc == 0; i++)
        if ((rc = pg_row_view(r, i, 1, &q->views[i], NULL)) == 0)
            q->n++;
    return rc;
}

static int send_list(struct pg_store *s, struct seg *g, struct req *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_i64(&p, q->status);
    pg_param_text(&p, q->has_owner ? q->owner : NULL);
    pg_param_i64(&p, (int64_t)q->cursor);
    pg_param_i64(&p, (int64_t)q->limit + 1);
    g->ps.n = 1;
    return pg_conn_send(&s->pc, &pg_sql_list, p.n, p.values, p.lengths, p.formats, 1);
}

static int list_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    PGresult *r = g->ps.res[0];
    int rows = r ? PQntuples(r) : 0, rc = 0;
    q->views = calloc(rows ? (size_t)rows : 1, sizeof(*q->views));
    if (!q->views)
        return -ENOMEM;
    uint64_t seq = 0;
    for (int i = 0; i < rows && rc == 0; i++) {
        if ((size_t)i == q->limit) {
            q->next = seq; /* there is at least one more */
            break;
        }
        rc = pg_row_view(r, i, 0, &q->views[i], &seq);
        if (rc == 0)
            q->n++;
    }
    return rc;
}

static int send_cancel(struct pg_store *s, struct seg *g, struct req *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_text(&p, q->id);
    pg_param_i64(&p, clock_real_us());
    pg_param_text(&p, "Cancelled by a client before it started.");
    const char *one[1] = {q->id};
    char *arr = pgs__id_array((char(*)[JOB_ID_LEN + 1]) q->id, 0, 1);
    const char *nv[2] = {s->chan_done, arr};
    g->ps.n = 3;
    int failed = !arr ||
                 pg_conn_send(&s->pc, &pg_sql_cancel, p.n, p.values, p.lengths, p.formats, 0) ||
                 pg_conn_send(&s->pc, &pg_sql_status, 1, one, NULL, NULL, 0) ||
                 pg_conn_send(&s->pc, &pg_sql_notify_waited, 2, nv, NULL, NULL, 0);
    free(arr);
    return failed;
}

static int send_forget(struct pg_store *s, struct seg *g, struct req *q)
{
    const char *one[1] = {q->id};
    g->ps.n = 2;
    return pg_conn_send(&s->pc, &pg_sql_forget, 1, one, NULL, NULL, 0) ||
           pg_conn_send(&s->pc, &pg_sql_status, 1, one, NULL, NULL, 0);
}

/* A cancel or forget that changed no row: the job's status (and node) from the status
 * statement after it, into q; -1 when there is no such job. */
static int status_of(struct seg *g, struct req *q)
{
    PGresult *r = g->ps.res[1];
    if (!r || PQntuples(r) != 1)
        return q->status = -1;
    q->status = atoi(PQgetvalue(r, 0, 0));
    if (q->status >= 0 && !PQgetisnull(r, 0, 1))
        snprintf(q->node, sizeof(q->node), "%s", PQgetvalue(r, 0, 1));
    return q->status;
}

static int cancel_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    if (g->ps.res[0] && PQntuples(g->ps.res[0]) == 1)
        return 0; /* cancelled */
    int st = status_of(g, q);
    return st < 0 ? -ENOENT : job_status_is_terminal((enum job_status)st) ? -EALREADY : -EXDEV;
}

static int forget_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    if (g->ps.res[0] && PQntuples(g->ps.res[0]) == 1)
        return 0; /* deleted */
    int st = status_of(g, q);
    return st < 0 ? -ENOENT : job_status_is_terminal((enum job_status)st) ? -EIO : -EBUSY;
}

static int send_ask_cancel(struct pg_store *s, struct seg *g, struct req *q)
{
    char payload[JOB_NODE_MAX + JOB_ID_LEN + 48];
    /* "node id force grace_ms": a node that reads only three fields cancels outright. */
    snprintf(payload, sizeof(payload), "%s %s %d %lld", q->node, q->id, q->force,
             (long long)(q->grace > 0 ? q->grace * 1000.0 + 0.5 : 0));
    g->ps.n = 1;
    return pgs__send_notify(s, s->chan_cancel, payload);
}

static int no_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s, (void)g, (void)q;
    return 0;
}

static int send_watch(struct pg_store *s, struct seg *g, struct req *q)
{
    /* Every watch asked for since the last round, in one statement each way. */
    char *arr = pgs__id_array(q->watch, 0, q->nwatch);
    const char *one[1] = {arr};
    g->ps.n = 2;
    int failed = !arr || pg_conn_send(&s->pc, &pg_sql_watch, 1, one, NULL, NULL, 0) ||
                 pg_conn_send(&s->pc, &pg_sql_fetch_done, 1, one, NULL, NULL, 1);
    free(arr);
    return failed;
}

static int watch_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)q;
    deliver_views(s, g->ps.res[1]);
    return 0;
}

/* The kinds of this file. */
static const struct req_ops fetch_ops = {send_fetch, fetch_result, NULL};
static const struct req_ops fetch_many_ops = {send_fetch_many, fetch_many_result, NULL};
static const struct req_ops list_ops = {send_list, list_result, NULL};
static const struct req_ops cancel_ops = {send_cancel, cancel_result, NULL};
static const struct req_ops forget_ops = {send_forget, forget_result, NULL};
static const struct req_ops watch_ops = {send_watch, watch_result, NULL};
static const struct req_ops ask_cancel_ops = {send_ask_cancel, no_result, NULL};

static int request(struct pg_store *s, struct req *q)
{
    return pgs__request(s, q, REQUEST_WAIT_MS);
}

int pgs__fetch(struct store *base, const char *id, struct job_view *out)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_FETCH, &fetch_ops, id);
    if (!q)
        return -ENOMEM;
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0 && q->n == 1) {
        *out = q->views[0];
        q->n = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    pgs__req_free(q);
    return rc;
}

int pgs__fetch_many(struct store *base, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                    int *found)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_FETCH_MANY, &fetch_many_ops, NULL);
    if (!q || !(q->ids = pgs__id_array(ids, 0, n))) {
        free(q);
        return -ENOMEM;
    }
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    struct registry *at = rc == 0 ? registry_new() : NULL;
    if (rc == 0 && !at)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        found[i] = 0;
        if (registry_insert(at, ids[i], &found[i]) == -ENOMEM)
            rc = -ENOMEM; /* a repeated id keeps its first slot */
    }
    for (size_t k = 0; rc == 0 && k < q->n; k++) {
        int *slot = registry_find(at, q->views[k].id);
        if (!slot || *slot)
            continue;
        size_t i = (size_t)(slot - found);
        out[i] = q->views[k];
        memset(&q->views[k], 0, sizeof(q->views[k]));
        *slot = 1;
    }
    /* Repeated ids get a copy of their first answer. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int *slot = registry_find(at, ids[i]);
        if (slot != &found[i] && *slot) {
            size_t first = (size_t)(slot - found);
            if (job_view_copy(&out[i], &out[first]) == 0)
                found[i] = 1;
        }
    }
    registry_free(at);
    pgs__req_free(q);
    return rc;
}

int pgs__list(struct store *base, const struct pool_list_query *lq, struct job_view **out,
              size_t *n, uint64_t *next)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_LIST, &list_ops, NULL);
    if (!q)
        return -ENOMEM;
    q->status = lq->status;
    q->has_owner = lq->owner != NULL;
    if (lq->owner)
        snprintf(q->owner, sizeof(q->owner), "%s", lq->owner);
    q->cursor = lq->cursor;
    q->limit = lq->limit ? lq->limit : 100;
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0) {
        *out = q->n ? q->views : NULL;
        *n = q->n;
        *next = q->next;
        if (q->n)
            q->views = NULL, q->n = 0;
    }
    pgs__req_free(q);
    return rc;
}

static int simple_request(struct store *base, enum rkind kind, const struct req_ops *ops,
                          const char *id)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(kind, ops, id);
    if (!q)
        return -ENOMEM;
    int rc = request(s, q);
    if (rc != -ETIMEDOUT)
        pgs__req_free(q);
    return rc;
}

int pgs__cancel(struct store *base, const char *id, int *status, char *node)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_CANCEL, &cancel_ops, id);
    if (!q)
        return -ENOMEM;
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    *status = q->status;
    snprintf(node, JOB_NODE_MAX, "%s", q->node);
    pgs__req_free(q);
    return rc;
}

int pgs__forget(struct store *base, const char *id)
{
    return simple_request(base, R_FORGET, &forget_ops, id);
}

void pgs__watch(struct store *base, const char *id)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    struct req *q = s->watch_req;
    if (!q && (q = pgs__req_new(R_WATCH, &watch_ops, NULL))) {
        q->abandoned = 1; /* the thread frees it; the answer comes as events.updated */
        if (pgs__req_queue_locked(s, q) != 0) {
            pthread_mutex_unlock(&s->lock);
            free(q);
            return; /* the periodic re-check covers it once connected */
        }
        s->watch_req = q;
    }
    if (q && q->nwatch == q->capwatch) {
        size_t cap = q->capwatch ? q->capwatch * 2 : 16;
        void *more = realloc(q->watch, cap * sizeof(*q->watch));
        if (more)
            q->watch = more, q->capwatch = cap;
    }
    if (q && q->nwatch < q->capwatch)
        memcpy(q->watch[q->nwatch++], id, JOB_ID_LEN + 1);
    pthread_mutex_unlock(&s->lock);
    pgs__poke(s);
}

void pgs__ask_cancel(struct store *base, const char *node, const char *id, int force, double grace)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_ASK_CANCEL, &ask_cancel_ops, id);
    if (!q)
        return;
    snprintf(q->node, sizeof(q->node), "%s", node);
    q->force = force;
    q->grace = grace;
    pgs__req_post(s, q);
}
