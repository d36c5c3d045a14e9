/*
 * pg_claims.c — taking queued jobs for this node: up to its free capacity, with a
 * CTE over FOR UPDATE SKIP LOCKED (pg_sql.c), when notified or at the poll
 * interval, or when a scheduled job submitted here is due; after a reconnect, the jobs
 * already claimed here are taken up again. Each count of the shared queue (every
 * --pg-poll, on every node), and a claim for a due job, first runs the database's
 * timers (pg_sql_promote): expired jobs fail, due scheduled jobs are queued.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- claims and adoption ---------------------------------------------------------------- */

static void deliver_jobs(struct pg_store *s, PGresult *r)
{
    pthread_mutex_lock(&s->lock);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    s->in_events++;
    pthread_mutex_unlock(&s->lock);
    int rows = r ? PQntuples(r) : 0;
    for (int i = 0; i < rows; i++) {
        struct job_view v;
        struct job_spec spec;
        if (pg_row_view(r, i, 0, &v, NULL) != 0) {
            log_error("store: cannot decode a claimed job (out of memory?)");
            continue;
        }
        if (pg_row_spec(r, i, PG_VIEW_NCOLS, &spec) != 0) {
            log_error("store: cannot decode the payload of claimed job %s", v.id);
            job_view_release(&v);
            continue;
        }
        if (pg_spec_options(&spec, &v) != 0) {
            job_view_release(&v);
            job_spec_release(&spec);
            continue;
        }
        if (ev.claimed)
            ev.claimed(arg, &v, &spec);
        else {
            job_view_release(&v);
            job_spec_release(&spec);
        }
    }
    pgs__events_done(s);
}

/* --- due times -------------------------------------------------------------------------- */

void pgs__due_add(struct pg_store *s, int64_t ms)
{
    if (s->ndue == s->capdue) {
        size_t cap = s->capdue ? s->capdue * 2 : 64;
        int64_t *more = cap <= DUE_MAX ? realloc(s->due, cap * sizeof(*more)) : NULL;
        if (!more)
            return; /* the poll finds it, a little later */
        s->due = more, s->capdue = cap;
    }
    size_t i = s->ndue++;
    for (; i > 0 && s->due[(i - 1) / 2] > ms; i = (i - 1) / 2)
        s->due[i] = s->due[(i - 1) / 2];
    s->due[i] = ms;
}

int64_t pgs__due_next(const struct pg_store *s)
{
    return s->ndue ? s->due[0] : INT64_MAX;
}

static void due_pop(struct pg_store *s)
{
    int64_t last = s->due[--s->ndue];
    size_t i = 0, n = s->ndue;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && s->due[c + 1] < s->due[c])
            c++;
        if (s->due[c] >= last)
            break;
        s->due[i] = s->due[c];
        i = c;
    }
    if (n)
        s->due[i] = last;
}

/* --- claims ------------------------------------------------------------------------------ */

/* The database's timers, first in a claim's or a count's segment (pg_sql_promote). */
static int send_promote(struct pg_store *s)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)clock_real_us());
    const char *vals[3] = {now, s->chan_queued, s->chan_done};
    return pg_conn_send(&s->pc, &pg_sql_promote, 3, vals, NULL, NULL, 0);
}

static void claim_done(struct pg_store *s, struct seg *g, int ok)
{
    s->claim_inflight = 0;
    if (ok == 1) {
        PGresult *r = g->ps.res[g->ps.n - 1]; /* the claim: after the timers, if sent */
        deliver_jobs(s, r);
        /* A full batch: there may be more, go again as soon as there is room. */
        if (r && (size_t)PQntuples(r) == g->limit) {
            pthread_mutex_lock(&s->lock);
            s->claim_now = 1;
            pthread_mutex_unlock(&s->lock);
        }
    } else if (ok == 0) {
        log_error("store: claiming jobs failed: %s", g->ps.errmsg);
    }
}

void pgs__round_claim(struct pg_store *s, int64_t now)
{
    pthread_mutex_lock(&s->lock);
    unsigned want = s->want;
    int due = now >= pgs__due_next(s); /* a scheduled job queued here is due */
    int go = want > 0 && (s->claim_now || now >= s->next_claim_ms || due);
    if (go)
        s->claim_now = 0;
    while (go && s->ndue && s->due[0] <= now)
        due_pop(s);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    if (!go)
        return;
    s->next_claim_ms = now + s->poll_ms;
    struct seg *g = pgs__seg_new(s, claim_done);
    if (!g)
        return;
    char lim[16];
    snprintf(lim, sizeof(lim), "%u", want);
    const char *vals[2] = {lim, node};
    g->limit = want;
    /* The timers only when a job queued here is due: every node runs them at each
     * count of the queue anyway (pgs__round_count), and a claim is frequent. */
    g->ps.n = due ? 2 : 1;
    s->claim_inflight = 1;
    pgs__send_or_lose(s, g,
                      (due && send_promote(s) != 0) ||
                          pg_conn_send(&s->pc, &pg_sql_claim, 2, vals, NULL, NULL, 1) != 0);
}

static void adopt_done(struct pg_store *s, struct seg *g, int ok)
{
    if (ok == 1) {
        if (g->ps.res[0] && PQntuples(g->ps.res[0]))
            log_info("store: %d queued jobs claimed by this node before the connection was lost "
                     "are taken up again",
                     PQntuples(g->ps.res[0]));
        deliver_jobs(s, g->ps.res[0]);
    } else {
        s->adopt_needed = 1;
    }
}

void pgs__round_adopt(struct pg_store *s)
{
    struct seg *g = pgs__seg_new(s, adopt_done);
    if (!g)
        return;
    s->adopt_needed = 0;
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[1] = {node};
    g->ps.n = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_adopt, 1, vals, NULL, NULL, 1) != 0);
}

/* --- the size of the shared queue (--max-queue) --------------------------------------- */

static void count_done(struct pg_store *s, struct seg *g, int ok)
{
    s->count_inflight = 0;
    if (ok != 1 || !g->ps.res[1] || PQntuples(g->ps.res[1]) != 1)
        return;
    atomic_store(&s->queue_counted, atoll(PQgetvalue(g->ps.res[1], 0, 0)));
    atomic_fetch_sub(&s->queue_added, s->added_at_count);
}

void pgs__round_count(struct pg_store *s, int64_t now)
{
    if (s->count_inflight || now < s->next_count_ms)
        return;
    s->next_count_ms = now + s->poll_ms;
    struct seg *g = pgs__seg_new(s, count_done);
    if (!g)
        return;
    s->added_at_count = atomic_load(&s->queue_added);
    /* Many jobs since the statistics were made: fresh ones (and fresh plans). */
    int64_t ins = atomic_load(&s->inserted);
    int analyze = ins - s->analyzed_at >= ANALYZE_ROWS && now >= s->next_analyze_ms;
    if (analyze)
        s->analyzed_at = ins, s->next_analyze_ms = now + ANALYZE_EVERY_MS;
    g->ps.n = analyze ? 3 : 2;
    s->count_inflight = 1;
    /* With the count, the timers of the jobs no node holds, whether or not this node has
     * room: an expired job fails and a due one is queued even when every worker is busy. */
    pgs__send_or_lose(
        s, g,
        send_promote(s) != 0 ||
            pg_conn_send(&s->pc, &pg_sql_count_queued, 0, NULL, NULL, NULL, 0) != 0 ||
            (analyze && pg_conn_send(&s->pc, &pg_sql_analyze, 0, NULL, NULL, NULL, 0) != 0));
}
