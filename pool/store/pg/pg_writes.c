/*
 * pg_writes.c — this node's writes to the shared store: queued by store_put and sent
 * many per transaction (group commit); each update is fenced by (node, attempt), so a
 * node presumed dead cannot overwrite what another node did since. NOTIFYs ride
 * along: one when unclaimed jobs were added, one for finished jobs someone waits on.
 */
#include "pgstore.h"
#include "../store_history.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- writes ---------------------------------------------------------------------------- */

void pgs__wop_free(struct wop *w)
{
    job_view_release(&w->v);
    job_spec_release(&w->spec);
    free(w);
}

static void writes_done(struct pg_store *s, struct seg *g, int ok)
{
    s->writes_inflight = 0;
    struct wop_list sent = STAILQ_HEAD_INITIALIZER(sent);
    STAILQ_CONCAT(&sent, &s->sent);
    struct wop *first = STAILQ_FIRST(&sent), *w;
    if (ok == 0 && first && STAILQ_NEXT(first, link)) {
        /* One statement failed and took the group with it: send each write again in
         * a transaction of its own, so that only the bad one is lost. */
        log_warn("store: a group of writes failed (%s); retrying them one by one", g->ps.errmsg);
        STAILQ_FOREACH(w, &sent, link)
        w->solo = 1;
        ok = -1;
    }
    if (ok < 0) {
        /* Unknown whether it committed: send the same writes again (they are
         * idempotent) once reconnected, before anything newer. */
        pthread_mutex_lock(&s->lock);
        STAILQ_CONCAT(&sent, &s->writes); /* sent, then what came since */
        STAILQ_CONCAT(&s->writes, &sent);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (ok == 0)
        log_error("store: a write of job %s failed and was rolled back: %s",
                  first ? first->v.id : "?", g->ps.errmsg);
    /* Fenced writes: the row was not ours (any more); accepted final states. */
    size_t nfenced = 0, ndone = 0, cap = g->ps.n ? (size_t)g->ps.n : 1;
    char(*fenced)[JOB_ID_LEN + 1] = calloc(cap, sizeof(*fenced));
    char(*done)[JOB_ID_LEN + 1] = calloc(cap, sizeof(*done));
    uint64_t upto = 0;
    int i = 0; /* the statement's result: one per write, in order */
    for (w = STAILQ_FIRST(&sent); w; w = STAILQ_NEXT(w, link), i++) {
        upto = w->ticket;
        if (ok != 1 || !fenced || !done || (w->kind != W_UPDATE && w->kind != W_FINISH))
            continue;
        if (g->ps.res[i] && PQntuples(g->ps.res[i]) == 0)
            memcpy(fenced[nfenced++], w->v.id, JOB_ID_LEN + 1);
        else if (w->kind == W_FINISH)
            memcpy(done[ndone++], w->v.id, JOB_ID_LEN + 1);
    }
    while ((w = STAILQ_FIRST(&sent))) {
        STAILQ_REMOVE_HEAD(&sent, link);
        pgs__wop_free(w);
    }
    pthread_mutex_lock(&s->lock);
    if (upto > s->committed)
        s->committed = upto;
    if (ok == 0 && upto > s->failed_upto)
        s->failed_upto = upto;
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    void (*on_commit)(void *) = s->on_commit;
    void *on_commit_arg = s->on_commit_arg;
    s->in_events++; /* on_commit's too */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (on_commit)
        on_commit(on_commit_arg);
    if (ndone && ev.committed)
        ev.committed(arg, done, ndone);
    free(done);
    for (size_t k = 0; k < nfenced; k++) {
        log_warn("store: job %s was taken over by another node (this node was presumed "
                 "dead); its result from here is discarded",
                 fenced[k]);
        if (ev.fenced)
            ev.fenced(arg, fenced[k]);
    }
    pgs__events_done(s);
    free(fenced);
}

/* When a scheduled job becomes queued: its retry's backoff, else its run_at. */
static int64_t due_us(const struct job_view *v)
{
    return v->next_attempt_us ? v->next_attempt_us : v->run_at_us;
}

static int send_write(struct pg_store *s, struct wop *w)
{
    struct pg_params p;
    pg_params_reset(&p);
    const struct job_view *v = &w->v;
    char *history = NULL;
    int rc;
    pg_param_text(&p, v->id);
    switch (w->kind) {
    case W_INSERT:
        pg_param_text(&p, v->owner);
        pg_param_text(&p, w->claimed ? w->node : NULL);
        pg_param_i64(&p, clock_ts_us(v->created_at));
        pg_param_f64(&p, v->timeout);
        pg_param_i64(&p, v->max_retries);
        pg_param_text(&p, w->spec.retry_on_timeout ? "t" : "f");
        pg_param_text(&p, w->spec.result_json ? "t" : "f");
        pg_param_text(&p, v->metadata);
        pg_param_payload(&p, &w->spec);
        pg_param_i64(&p, v->priority);
        pg_param_f64(&p, v->soft_timeout);
        pg_param_i64(&p, v->status == JOB_SCHEDULED ? JOB_SCHEDULED : JOB_QUEUED);
        pg_param_i64(&p, v->run_at_us);
        pg_param_i64(&p, v->expires_at_us);
        pg_param_i64(&p, due_us(v));
        pg_param_retry(&p, v);
        pg_param_text(&p, v->rerun_of[0] ? v->rerun_of : NULL);
        pg_param_text(&p, v->schedule[0] ? v->schedule : NULL);
        return pg_conn_send(&s->pc, &pg_sql_insert, p.n, p.values, p.lengths, p.formats, 0);
    case W_UPDATE:
        pg_param_i64(&p, v->status);
        pg_param_i64(&p, v->attempts);
        pg_param_i64(&p, clock_ts_us(v->started_at));
        pg_param_i64(&p, v->worker_pid);
        pg_param_text(&p, w->node);
        pg_param_i64(&p, v->next_attempt_us);
        pg_param_i64(&p, due_us(v));
        history = v->nhistory ? sqls__history_encode(v->history, v->nhistory) : NULL;
        pg_param_text(&p, history);
        rc = pg_conn_send(&s->pc, &pg_sql_update, p.n, p.values, p.lengths, p.formats, 0);
        free(history);
        return rc;
    case W_FINISH:
        pg_param_i64(&p, v->status);
        pg_param_i64(&p, v->attempts);
        pg_param_i64(&p, clock_ts_us(v->started_at));
        pg_param_i64(&p, clock_ts_us(v->finished_at));
        pg_param_i64(&p, v->worker_pid);
        pg_param_i64(&p, v->error.type);
        pg_param_text(&p, v->error.message);
        pg_param_text(&p, v->error.exc_type);
        pg_param_i64(&p, v->error.exit_code);
        pg_param_i64(&p, v->error.signal);
        pg_param_i64(&p, v->error.max_rss_bytes);
        pg_param_text(&p, w->node);
        pg_param_blob(&p, v->result);
        pg_param_blob(&p, v->result_json);
        pg_param_blob(&p, v->error.exception);
        pg_param_text(&p, v->error.traceback);
        history = v->nhistory ? sqls__history_encode(v->history, v->nhistory) : NULL;
        pg_param_text(&p, history);
        rc = pg_conn_send(&s->pc, &pg_sql_finish, p.n, p.values, p.lengths, p.formats, 0);
        free(history);
        return rc;
    case W_DELETE:
        return pg_conn_send(&s->pc, &pg_sql_delete, p.n, p.values, p.lengths, p.formats, 0);
    }
    return -1;
}

/* Statements that tell waiters elsewhere about finished jobs: one per NOTIFY_IDS. */
static int send_notify_waited(struct pg_store *s, char (*ids)[JOB_ID_LEN + 1], size_t n, int *count)
{
    for (size_t from = 0; from < n; from += NOTIFY_IDS) {
        size_t to = from + NOTIFY_IDS < n ? from + NOTIFY_IDS : n;
        char *arr = pgs__id_array(ids, from, to);
        if (!arr)
            return -1;
        const char *vals[2] = {s->chan_done, arr};
        int rc = pg_conn_send(&s->pc, &pg_sql_notify_waited, 2, vals, NULL, NULL, 0);
        free(arr);
        if (rc)
            return -1;
        (*count)++;
    }
    return 0;
}

void pgs__round_writes(struct pg_store *s)
{
    pthread_mutex_lock(&s->lock);
    struct wop *w = STAILQ_FIRST(&s->writes);
    int n = 0, most = w && w->solo ? 1 : WRITES_PER_ROUND;
    while ((w = STAILQ_FIRST(&s->writes)) && n < most) {
        STAILQ_REMOVE_HEAD(&s->writes, link);
        STAILQ_INSERT_TAIL(&s->sent, w, link);
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    if (!n)
        return;
    struct seg *g = pgs__seg_new(s, writes_done);
    s->writes_inflight = 1;
    if (!g) {
        writes_done(s, &(struct seg){.ps = {.n = n}}, -1);
        return;
    }
    int failed = 0, unclaimed = 0, count = 0;
    size_t nfin = 0;
    char(*fin)[JOB_ID_LEN + 1] = calloc((size_t)n, sizeof(*fin));
    for (w = STAILQ_FIRST(&s->sent); w && !failed; w = STAILQ_NEXT(w, link)) {
        failed = send_write(s, w) != 0;
        count++;
        if (w->kind == W_INSERT && !w->claimed)
            unclaimed = 1;
        if (w->kind == W_FINISH && fin)
            memcpy(fin[nfin++], w->v.id, JOB_ID_LEN + 1);
    }
    /* Notifications are delivered at commit, with the transaction. */
    if (!failed && unclaimed) {
        failed = pgs__send_notify(s, s->chan_queued, "") != 0;
        count++;
    }
    if (!failed && nfin)
        failed = send_notify_waited(s, fin, nfin, &count) != 0;
    free(fin);
    g->ps.n = count; /* results past the writes (notifies) are ignored */
    pgs__send_or_lose(s, g, failed);
}

int pgs__send_insert(struct pg_store *s, struct wop *w)
{
    return w->kind == W_INSERT ? send_write(s, w) : -1;
}
