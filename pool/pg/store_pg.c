/*
 * store_pg.c — the shared job store on PostgreSQL (store.h, store_shared.h).
 *
 * One thread owns one non-blocking connection (pg_conn.c) and a poll loop over it
 * and an eventfd. Each turn it sends one round of segments (one implicit
 * transaction each) and reads their results:
 *   - queued writes of this node's jobs, many per transaction (group commit), each
 *     fenced by (node, attempt); a NOTIFY when unclaimed jobs were added, and one
 *     listing the finished jobs someone waits on;
 *   - requests of HTTP threads (fetch, list, cancel, forget), which wait for them;
 *   - a claim of up to `want` queued jobs (LISTEN/NOTIFY, with polling as fallback);
 *   - timers: heartbeat, reaping dead nodes, re-checking waited jobs, retention.
 * A lost connection is retried with backoff; writes are kept and sent again
 * (idempotent), requests fail with -ENOTCONN, and the pool answers 503 meanwhile.
 */
#include "../store_impl.h"
#include "pg_conn.h"
#include "pg_sql.h"
#include "pyjobd/log.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define WRITES_PER_ROUND 512
#define SYNC_WAIT_MS 10000   /* store_sync gives up (503) after this */
#define REQUEST_WAIT_MS 5000 /* a read gives up (503) after this */
#define STALL_MS 15000       /* a connection that answers nothing this long is dropped */
#define RETENTION_EVERY_MS 5000
#define WAITED_MAX 512
#define NOTIFY_IDS 200 /* ids per NOTIFY payload (its limit is 8000 bytes) */

enum wkind { W_INSERT, W_UPDATE, W_FINISH, W_DELETE };

struct wop {
    enum wkind kind;
    int claimed;
    uint64_t ticket;
    struct job_view v;
    struct job_spec spec;
    char node[JOB_NODE_MAX]; /* the node id at the time of the write: its fence */
    struct wop *next;
};

enum rkind { R_FETCH, R_LIST, R_CANCEL, R_FORGET, R_WATCH };

struct req {
    enum rkind kind;
    char id[JOB_ID_LEN + 1];
    int status;
    char owner[JOB_OWNER_MAX];
    int has_owner;
    uint64_t cursor;
    size_t limit;
    /* answer */
    int done, rc, abandoned;
    struct job_view *views;
    size_t n;
    uint64_t next;
    struct req *next_req;
};

struct pg_store {
    struct store base;
    struct pg_conn pc;
    const char *kw[8], *vals[8];
    char *uri, *schema, *setup_sql, *describe;
    char chan_queued[96], chan_done[96];
    char node_name[48];
    int64_t lease_ms, poll_ms, ttl_ms;
    pthread_t thread;
    int thread_started;
    int wakefd;

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;
    char node_id[JOB_NODE_MAX];
    struct wop *wh, *wt;
    uint64_t next_ticket, committed, failed_upto;
    struct req *rh, *rt;
    unsigned want;
    int claim_now, recheck_now;
    int ready;       /* connected and registered */
    int open_result; /* 0 waiting for the first connection, 1 up, -1 failed for good */
    int stopping;
    char last_error[256];
    struct store_events ev;
    void *ev_arg;

    /* The store thread's own. */
    struct wop *sent_h; /* writes of the segment in flight */
    int writes_inflight, claim_inflight, hb_inflight, reap_inflight, recheck_inflight;
    int ret_inflight, registered, connected_before, adopt_needed, released;
    int64_t next_claim_ms, next_hb_ms, next_reap_ms, next_recheck_ms, next_ret_ms;
    _Atomic int64_t last_hb_ok_ms; /* read by other threads: store_lease_fresh */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return pg_ts_us(ts);
}

static void poke(struct pg_store *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->wakefd, &one, sizeof(one));
    (void)r;
}

static void new_node_id(struct pg_store *s)
{
    unsigned char raw[4];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        memset(raw, 0, sizeof(raw));
    snprintf(s->node_id, sizeof(s->node_id), "%s-%02x%02x%02x%02x", s->node_name, raw[0], raw[1],
             raw[2], raw[3]);
}

/* Segments carry their context: what to do with the results. */
struct seg {
    struct pg_seg ps;
    struct pg_store *s;
    void (*handle)(struct pg_store *s, struct seg *g, int ok);
    struct req *req;
    size_t nids;
    char (*ids)[JOB_ID_LEN + 1];
};

static void seg_done(void *ctx, struct pg_seg *ps, int ok)
{
    struct seg *g = ctx;
    (void)ps;
    g->handle(g->s, g, ok);
    pg_seg_clear(&g->ps);
    free(g->ids);
    free(g);
}

static struct seg *seg_new(struct pg_store *s, void (*handle)(struct pg_store *, struct seg *, int))
{
    struct seg *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->s = s;
    g->handle = handle;
    g->ps.done = seg_done;
    g->ps.ctx = g;
    return g;
}

static void send_or_lose(struct pg_store *s, struct seg *g, int failed)
{
    if (failed || pg_conn_sync(&s->pc, &g->ps) != 0) {
        if (failed) { /* never queued: report it directly */
            g->handle(s, g, -1);
            pg_seg_clear(&g->ps);
            free(g->ids);
            free(g);
        }
        pg_conn_lost(&s->pc, NULL, now_ms());
    }
}

/* --- writes ---------------------------------------------------------------------------- */

static void wop_free(struct wop *w)
{
    job_view_release(&w->v);
    job_spec_release(&w->spec);
    free(w);
}

static void writes_done(struct pg_store *s, struct seg *g, int ok)
{
    s->writes_inflight = 0;
    struct wop *sent = s->sent_h;
    s->sent_h = NULL;
    if (ok < 0) {
        /* Unknown whether it committed: send the same writes again (they are
         * idempotent) once reconnected, before anything newer. */
        pthread_mutex_lock(&s->lock);
        struct wop *last = sent;
        while (last && last->next)
            last = last->next;
        if (last) {
            last->next = s->wh;
            if (!s->wh)
                s->wt = last;
            s->wh = sent;
        }
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (ok == 0)
        log_error("store: a write transaction failed and was rolled back: %s (%d writes lost)",
                  g->ps.errmsg, g->ps.n);
    /* Fenced writes: the row was not ours (any more); accepted final states. */
    size_t nfenced = 0, ndone = 0, cap = g->ps.n ? (size_t)g->ps.n : 1;
    char(*fenced)[JOB_ID_LEN + 1] = calloc(cap, sizeof(*fenced));
    char(*done)[JOB_ID_LEN + 1] = calloc(cap, sizeof(*done));
    uint64_t upto = 0;
    int i = 0;
    for (struct wop *w = sent; w; w = w->next, i++) {
        upto = w->ticket;
        if (ok != 1 || !fenced || !done || (w->kind != W_UPDATE && w->kind != W_FINISH))
            continue;
        if (g->ps.res[i] && PQntuples(g->ps.res[i]) == 0)
            memcpy(fenced[nfenced++], w->v.id, JOB_ID_LEN + 1);
        else if (w->kind == W_FINISH)
            memcpy(done[ndone++], w->v.id, JOB_ID_LEN + 1);
    }
    while (sent) {
        struct wop *n = sent->next;
        wop_free(sent);
        sent = n;
    }
    pthread_mutex_lock(&s->lock);
    if (upto > s->committed)
        s->committed = upto;
    if (ok == 0 && upto > s->failed_upto)
        s->failed_upto = upto;
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
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
    free(fenced);
}

static int send_write(struct pg_store *s, struct wop *w)
{
    struct pg_params p;
    pg_params_reset(&p);
    const struct job_view *v = &w->v;
    pg_param_text(&p, v->id);
    switch (w->kind) {
    case W_INSERT:
        pg_param_text(&p, v->owner);
        pg_param_text(&p, w->claimed ? w->node : NULL);
        pg_param_i64(&p, pg_ts_us(v->created_at));
        pg_param_f64(&p, v->timeout);
        pg_param_i64(&p, v->max_retries);
        pg_param_text(&p, w->spec.retry_on_timeout ? "t" : "f");
        pg_param_text(&p, w->spec.result_json ? "t" : "f");
        pg_param_text(&p, v->metadata);
        pg_param_blob(&p, w->spec.callable);
        pg_param_blob(&p, w->spec.args);
        pg_param_blob(&p, w->spec.kwargs);
        pg_param_blob(&p, w->spec.json_args);
        pg_param_blob(&p, w->spec.json_kwargs);
        return pg_conn_send(&s->pc, pg_sql_insert, p.n, p.values, p.lengths, p.formats, 0);
    case W_UPDATE:
        pg_param_i64(&p, v->status);
        pg_param_i64(&p, v->attempts);
        pg_param_i64(&p, pg_ts_us(v->started_at));
        pg_param_i64(&p, v->worker_pid);
        pg_param_text(&p, w->node);
        return pg_conn_send(&s->pc, pg_sql_update, p.n, p.values, p.lengths, p.formats, 0);
    case W_FINISH:
        pg_param_i64(&p, v->status);
        pg_param_i64(&p, v->attempts);
        pg_param_i64(&p, pg_ts_us(v->started_at));
        pg_param_i64(&p, pg_ts_us(v->finished_at));
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
        return pg_conn_send(&s->pc, pg_sql_finish, p.n, p.values, p.lengths, p.formats, 0);
    case W_DELETE:
        return pg_conn_send(&s->pc, pg_sql_delete, p.n, p.values, p.lengths, p.formats, 0);
    }
    return -1;
}

/* '{id,id,...}' for ids[from..to) */
static char *id_array(char (*ids)[JOB_ID_LEN + 1], size_t from, size_t to)
{
    char *a = malloc((to - from) * (JOB_ID_LEN + 1) + 3);
    if (!a)
        return NULL;
    char *p = a;
    *p++ = '{';
    for (size_t i = from; i < to; i++) {
        if (i > from)
            *p++ = ',';
        memcpy(p, ids[i], JOB_ID_LEN);
        p += JOB_ID_LEN;
    }
    *p++ = '}';
    *p = 0;
    return a;
}

static int send_notify(struct pg_store *s, const char *chan, const char *payload)
{
    const char *vals[2] = {chan, payload};
    return pg_conn_send(&s->pc, pg_sql_notify, 2, vals, NULL, NULL, 0);
}

/* Statements that tell waiters elsewhere about finished jobs: one per NOTIFY_IDS. */
static int send_notify_waited(struct pg_store *s, char (*ids)[JOB_ID_LEN + 1], size_t n, int *count)
{
    for (size_t from = 0; from < n; from += NOTIFY_IDS) {
        size_t to = from + NOTIFY_IDS < n ? from + NOTIFY_IDS : n;
        char *arr = id_array(ids, from, to);
        if (!arr)
            return -1;
        const char *vals[2] = {s->chan_done, arr};
        int rc = pg_conn_send(&s->pc, pg_sql_notify_waited, 2, vals, NULL, NULL, 0);
        free(arr);
        if (rc)
            return -1;
        (*count)++;
    }
    return 0;
}

static void round_writes(struct pg_store *s)
{
    pthread_mutex_lock(&s->lock);
    struct wop *head = s->wh, *w = head, *last = NULL;
    int n = 0;
    while (w && n < WRITES_PER_ROUND) {
        last = w;
        w = w->next;
        n++;
    }
    if (last) {
        last->next = NULL;
        s->wh = w;
        if (!w)
            s->wt = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (!n)
        return;
    struct seg *g = seg_new(s, writes_done);
    s->sent_h = head;
    s->writes_inflight = 1;
    if (!g) {
        writes_done(s, &(struct seg){.ps = {.n = n}}, -1);
        return;
    }
    int failed = 0, unclaimed = 0, count = 0;
    size_t nfin = 0;
    char(*fin)[JOB_ID_LEN + 1] = calloc((size_t)n, sizeof(*fin));
    for (w = head; w && !failed; w = w->next) {
        failed = send_write(s, w) != 0;
        count++;
        if (w->kind == W_INSERT && !w->claimed)
            unclaimed = 1;
        if (w->kind == W_FINISH && fin)
            memcpy(fin[nfin++], w->v.id, JOB_ID_LEN + 1);
    }
    /* Notifications are delivered at commit, with the transaction. */
    if (!failed && unclaimed) {
        failed = send_notify(s, s->chan_queued, "") != 0;
        count++;
    }
    if (!failed && nfin)
        failed = send_notify_waited(s, fin, nfin, &count) != 0;
    free(fin);
    g->ps.n = count; /* results past the writes (notifies) are ignored */
    send_or_lose(s, g, failed);
}

/* --- claims and adoption ---------------------------------------------------------------- */

static void deliver_jobs(struct pg_store *s, PGresult *r)
{
    pthread_mutex_lock(&s->lock);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
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
        v.max_retries = (unsigned)v.max_retries;
        spec.timeout = v.timeout;
        spec.max_retries = v.max_retries;
        memcpy(spec.owner, v.owner, sizeof(spec.owner));
        if (v.metadata && !(spec.metadata = strdup(v.metadata))) {
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
}

static void claim_done(struct pg_store *s, struct seg *g, int ok)
{
    s->claim_inflight = 0;
    if (ok == 1) {
        deliver_jobs(s, g->ps.res[0]);
        /* A full batch: there may be more, go again as soon as there is room. */
        if (g->ps.res[0] && (size_t)PQntuples(g->ps.res[0]) == g->nids) {
            pthread_mutex_lock(&s->lock);
            s->claim_now = 1;
            pthread_mutex_unlock(&s->lock);
        }
    } else if (ok == 0) {
        log_error("store: claiming jobs failed: %s", g->ps.errmsg);
    }
}

static void round_claim(struct pg_store *s, int64_t now)
{
    pthread_mutex_lock(&s->lock);
    unsigned want = s->want;
    int go = want > 0 && (s->claim_now || now >= s->next_claim_ms);
    if (go)
        s->claim_now = 0;
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    if (!go)
        return;
    s->next_claim_ms = now + s->poll_ms;
    struct seg *g = seg_new(s, claim_done);
    if (!g)
        return;
    char lim[16];
    snprintf(lim, sizeof(lim), "%u", want);
    const char *vals[2] = {lim, node};
    g->nids = want;
    g->ps.n = 1;
    s->claim_inflight = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_claim, 2, vals, NULL, NULL, 1) != 0);
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

static void round_adopt(struct pg_store *s)
{
    struct seg *g = seg_new(s, adopt_done);
    if (!g)
        return;
    s->adopt_needed = 0;
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[1] = {node};
    g->ps.n = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_adopt, 1, vals, NULL, NULL, 1) != 0);
}

/* --- membership: register, heartbeat, reap ------------------------------------------- */

static void register_done(struct pg_store *s, struct seg *g, int ok)
{
    (void)g;
    if (ok != 1) {
        if (ok == 0)
            log_error("store: registering this node failed: %s", g->ps.errmsg);
        return;
    }
    s->registered = 1;
    s->last_hb_ok_ms = now_ms();
    pthread_mutex_lock(&s->lock);
    s->ready = 1;
    s->claim_now = 1;
    s->recheck_now = 1;
    if (!s->open_result)
        s->open_result = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void send_register(struct pg_store *s)
{
    struct seg *g = seg_new(s, register_done);
    if (!g)
        return;
    char lease[24];
    snprintf(lease, sizeof(lease), "%lld", (long long)s->lease_ms);
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[2] = {node, lease};
    g->ps.n = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_register, 2, vals, NULL, NULL, 0) != 0);
}

static void heartbeat_done(struct pg_store *s, struct seg *g, int ok)
{
    s->hb_inflight = 0;
    if (ok != 1)
        return;
    if (g->ps.res[0] && PQntuples(g->ps.res[0]) == 1) {
        s->last_hb_ok_ms = now_ms();
        if (!s->registered)
            register_done(s, g, 1); /* reconnected and still a member */
        return;
    }
    /* Our row is gone: other nodes presumed us dead and took our jobs. */
    pthread_mutex_lock(&s->lock);
    char old[JOB_NODE_MAX];
    memcpy(old, s->node_id, sizeof(old));
    new_node_id(s);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    s->ready = 0;
    pthread_mutex_unlock(&s->lock);
    log_warn("store: this node (%s) missed its lease and was reaped by another node: its jobs "
             "were re-queued or failed there; stopping what it still runs and joining again as "
             "%s",
             old, s->node_id);
    if (ev.reaped)
        ev.reaped(arg);
    s->registered = 0;
    send_register(s);
}

static void round_heartbeat(struct pg_store *s, int64_t now)
{
    s->next_hb_ms = now + s->lease_ms / 3;
    struct seg *g = seg_new(s, heartbeat_done);
    if (!g)
        return;
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[1] = {node};
    g->ps.n = 1;
    s->hb_inflight = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_heartbeat, 1, vals, NULL, NULL, 0) != 0);
}

static void reap_done(struct pg_store *s, struct seg *g, int ok)
{
    s->reap_inflight = 0;
    if (ok != 1 || !g->ps.res[0] || PQntuples(g->ps.res[0]) != 1)
        return;
    PGresult *r = g->ps.res[0];
    if (PQgetisnull(r, 0, 0))
        return; /* nobody died */
    long requeued = atol(PQgetvalue(r, 0, 1)), failed = atol(PQgetvalue(r, 0, 2));
    log_warn("store: reaped node(s) %s (no heartbeat within their lease): %ld of their jobs "
             "re-queued, %ld failed as node_lost",
             PQgetvalue(r, 0, 0), requeued, failed);
    if (requeued) {
        pthread_mutex_lock(&s->lock);
        s->claim_now = 1;
        pthread_mutex_unlock(&s->lock);
    }
}

static void round_reap(struct pg_store *s, int64_t now)
{
    s->next_reap_ms = now + (s->lease_ms / 2 > 100 ? s->lease_ms / 2 : 100);
    struct seg *g = seg_new(s, reap_done);
    if (!g)
        return;
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)realtime_us());
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[4] = {t, s->chan_queued, s->chan_done, node};
    g->ps.n = 1;
    s->reap_inflight = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_reap, 4, vals, NULL, NULL, 0) != 0);
}

/* --- waited jobs and retention ---------------------------------------------------------- */

static void deliver_views(struct pg_store *s, PGresult *r)
{
    pthread_mutex_lock(&s->lock);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
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
}

static void recheck_done(struct pg_store *s, struct seg *g, int ok)
{
    s->recheck_inflight = 0;
    if (ok == 1)
        deliver_views(s, g->ps.res[0]);
}

static void round_recheck(struct pg_store *s, int64_t now)
{
    pthread_mutex_lock(&s->lock);
    int go = s->recheck_now || now >= s->next_recheck_ms;
    s->recheck_now = 0;
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    pthread_mutex_unlock(&s->lock);
    if (!go || !ev.waited)
        return;
    s->next_recheck_ms = now + s->poll_ms;
    char(*ids)[JOB_ID_LEN + 1] = calloc(WAITED_MAX, sizeof(*ids));
    if (!ids)
        return;
    size_t n = ev.waited(arg, ids, WAITED_MAX);
    char *arr = n ? id_array(ids, 0, n) : NULL;
    free(ids);
    if (!arr)
        return;
    struct seg *g = seg_new(s, recheck_done);
    if (!g) {
        free(arr);
        return;
    }
    const char *vals[1] = {arr};
    g->ps.n = 1;
    s->recheck_inflight = 1;
    int failed = pg_conn_send(&s->pc, pg_sql_fetch_done, 1, vals, NULL, NULL, 1) != 0;
    free(arr);
    send_or_lose(s, g, failed);
}

static void retention_done(struct pg_store *s, struct seg *g, int ok)
{
    s->ret_inflight = 0;
    if (ok == 1 && g->ps.res[0] && PQntuples(g->ps.res[0]) == 1 &&
        atol(PQgetvalue(g->ps.res[0], 0, 0)) >= 1000)
        s->next_ret_ms = 0; /* more to delete: go on next round */
}

static void round_retention(struct pg_store *s, int64_t now)
{
    s->next_ret_ms = now + RETENTION_EVERY_MS;
    struct seg *g = seg_new(s, retention_done);
    if (!g)
        return;
    char before[24];
    snprintf(before, sizeof(before), "%lld", (long long)(realtime_us() - s->ttl_ms * 1000));
    const char *vals[1] = {before};
    g->ps.n = 1;
    s->ret_inflight = 1;
    send_or_lose(s, g, pg_conn_send(&s->pc, pg_sql_retention, 1, vals, NULL, NULL, 0) != 0);
}

/* --- requests of HTTP threads ------------------------------------------------------------ */

static void req_finish(struct pg_store *s, struct req *q, int rc)
{
    pthread_mutex_lock(&s->lock);
    q->rc = rc;
    q->done = 1;
    int abandoned = q->abandoned;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (abandoned) {
        for (size_t i = 0; i < q->n; i++)
            job_view_release(&q->views[i]);
        free(q->views);
        free(q);
    }
}

static int status_of(PGresult *r)
{
    if (!r || PQntuples(r) != 1)
        return -1;
    return atoi(PQgetvalue(r, 0, 0));
}

static void req_done(struct pg_store *s, struct seg *g, int ok)
{
    struct req *q = g->req;
    if (ok < 0) {
        req_finish(s, q, -ENOTCONN);
        return;
    }
    if (ok == 0) {
        log_error("store: a read failed: %s", g->ps.errmsg);
        req_finish(s, q, -EIO);
        return;
    }
    PGresult *r = g->ps.res[0];
    int rc = 0;
    switch (q->kind) {
    case R_FETCH:
        if (!r || PQntuples(r) == 0) {
            rc = -ENOENT;
        } else if ((q->views = calloc(1, sizeof(*q->views)))) {
            rc = pg_row_view(r, 0, 1, q->views, NULL);
            q->n = rc == 0;
        } else {
            rc = -ENOMEM;
        }
        break;
    case R_LIST: {
        int rows = r ? PQntuples(r) : 0;
        q->views = calloc(rows ? (size_t)rows : 1, sizeof(*q->views));
        if (!q->views) {
            rc = -ENOMEM;
            break;
        }
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
        break;
    }
    case R_CANCEL:
    case R_FORGET: {
        if (r && PQntuples(r) == 1)
            break; /* done */
        int st = status_of(g->ps.res[1]);
        rc = st < 0 ? -ENOENT
             : job_status_is_terminal((enum job_status)st)
                 ? (q->kind == R_CANCEL ? -EALREADY : -EIO)
             : q->kind == R_CANCEL ? -EXDEV
                                   : -EBUSY;
        break;
    }
    case R_WATCH:
        deliver_views(s, g->ps.res[1]);
        break;
    }
    req_finish(s, q, rc);
}

static void round_request(struct pg_store *s, struct req *q)
{
    struct seg *g = seg_new(s, req_done);
    if (!g) {
        req_finish(s, q, -ENOMEM);
        return;
    }
    g->req = q;
    struct pg_params p;
    pg_params_reset(&p);
    int failed = 0;
    switch (q->kind) {
    case R_FETCH:
        pg_param_text(&p, q->id);
        g->ps.n = 1;
        failed = pg_conn_send(&s->pc, pg_sql_fetch, p.n, p.values, p.lengths, p.formats, 1);
        break;
    case R_LIST:
        pg_param_i64(&p, q->status);
        pg_param_text(&p, q->has_owner ? q->owner : NULL);
        pg_param_i64(&p, (int64_t)q->cursor);
        pg_param_i64(&p, (int64_t)q->limit + 1);
        g->ps.n = 1;
        failed = pg_conn_send(&s->pc, pg_sql_list, p.n, p.values, p.lengths, p.formats, 1);
        break;
    case R_CANCEL: {
        pg_param_text(&p, q->id);
        pg_param_i64(&p, realtime_us());
        pg_param_text(&p, "Cancelled by a client before it started.");
        const char *one[1] = {q->id};
        char *arr = id_array((char(*)[JOB_ID_LEN + 1]) q->id, 0, 1);
        const char *nv[2] = {s->chan_done, arr};
        g->ps.n = 3;
        failed = !arr ||
                 pg_conn_send(&s->pc, pg_sql_cancel, p.n, p.values, p.lengths, p.formats, 0) ||
                 pg_conn_send(&s->pc, pg_sql_status, 1, one, NULL, NULL, 0) ||
                 pg_conn_send(&s->pc, pg_sql_notify_waited, 2, nv, NULL, NULL, 0);
        free(arr);
        break;
    }
    case R_FORGET: {
        const char *one[1] = {q->id};
        g->ps.n = 2;
        failed = pg_conn_send(&s->pc, pg_sql_forget, 1, one, NULL, NULL, 0) ||
                 pg_conn_send(&s->pc, pg_sql_status, 1, one, NULL, NULL, 0);
        break;
    }
    case R_WATCH: {
        const char *one[1] = {q->id};
        char *arr = id_array((char(*)[JOB_ID_LEN + 1]) q->id, 0, 1);
        const char *fv[1] = {arr};
        g->ps.n = 2;
        failed = !arr || pg_conn_send(&s->pc, pg_sql_watch, 1, one, NULL, NULL, 0) ||
                 pg_conn_send(&s->pc, pg_sql_fetch_done, 1, fv, NULL, NULL, 1);
        free(arr);
        break;
    }
    }
    send_or_lose(s, g, failed);
}

/* --- the thread ---------------------------------------------------------------------------- */

static void fail_requests(struct pg_store *s, int rc)
{
    pthread_mutex_lock(&s->lock);
    struct req *q = s->rh;
    s->rh = s->rt = NULL;
    pthread_mutex_unlock(&s->lock);
    while (q) {
        struct req *n = q->next_req;
        req_finish(s, q, rc);
        q = n;
    }
}

static void on_ready(void *ctx)
{
    struct pg_store *s = ctx;
    s->registered = 0;
    s->writes_inflight = s->claim_inflight = s->hb_inflight = s->reap_inflight = 0;
    s->recheck_inflight = s->ret_inflight = 0;
    if (!s->connected_before) {
        send_register(s);
    } else {
        /* Still a member? The heartbeat says (and re-registers us if so). */
        log_info("store: reconnected to the database");
        round_heartbeat(s, now_ms());
        s->adopt_needed = 1;
    }
    s->connected_before = 1;
}

static void on_lost(void *ctx)
{
    struct pg_store *s = ctx;
    pthread_mutex_lock(&s->lock);
    s->ready = 0;
    pthread_mutex_unlock(&s->lock);
    s->registered = 0;
}

static void on_notify(void *ctx, const char *channel, const char *payload)
{
    struct pg_store *s = ctx;
    (void)payload;
    pthread_mutex_lock(&s->lock);
    if (strcmp(channel, s->chan_queued) == 0)
        s->claim_now = 1;
    else if (strcmp(channel, s->chan_done) == 0)
        s->recheck_now = 1;
    pthread_mutex_unlock(&s->lock);
}

/* Sends what is due, one segment per concern, while nothing of the same kind is in
 * flight. */
static void send_round(struct pg_store *s, int64_t now)
{
    if (!s->registered)
        return; /* the register / heartbeat in flight decides */
    if (s->adopt_needed)
        round_adopt(s);
    if (!s->writes_inflight)
        round_writes(s);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct req *q = s->rh;
        if (q) {
            s->rh = q->next_req;
            if (!s->rh)
                s->rt = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        if (!q || s->pc.state != PG_READY) {
            if (q)
                req_finish(s, q, -ENOTCONN);
            break;
        }
        round_request(s, q);
    }
    if (s->pc.state != PG_READY)
        return;
    if (!s->claim_inflight)
        round_claim(s, now);
    if (!s->hb_inflight && now >= s->next_hb_ms)
        round_heartbeat(s, now);
    if (!s->reap_inflight && now >= s->next_reap_ms)
        round_reap(s, now);
    if (!s->recheck_inflight)
        round_recheck(s, now);
    if (s->ttl_ms > 0 && !s->ret_inflight && now >= s->next_ret_ms)
        round_retention(s, now);
}

static int64_t next_timer(struct pg_store *s)
{
    int64_t t = s->next_hb_ms;
    if (s->next_reap_ms < t)
        t = s->next_reap_ms;
    if (s->next_recheck_ms < t)
        t = s->next_recheck_ms;
    pthread_mutex_lock(&s->lock);
    if (s->want && s->next_claim_ms < t)
        t = s->next_claim_ms;
    pthread_mutex_unlock(&s->lock);
    if (s->ttl_ms > 0 && s->next_ret_ms < t)
        t = s->next_ret_ms;
    return t;
}

/* On stop: the queued jobs this node claimed go back to the queue for the others, and
 * the node leaves the membership. */
static void release_done(struct pg_store *s, struct seg *g, int ok)
{
    s->released = 1;
    if (ok == 1 && g->ps.res[0] && PQntuples(g->ps.res[0]) == 1 &&
        atol(PQgetvalue(g->ps.res[0], 0, 0)) > 0)
        log_info("store: %s queued jobs claimed by this node were handed back to the queue",
                 PQgetvalue(g->ps.res[0], 0, 0));
}

static void send_release(struct pg_store *s)
{
    struct seg *g = seg_new(s, release_done);
    if (!g) {
        s->released = 1;
        return;
    }
    const char *vals[1] = {s->node_id};
    g->ps.n = 2;
    int failed = pg_conn_send(&s->pc, pg_sql_release, 1, vals, NULL, NULL, 0) ||
                 send_notify(s, s->chan_queued, "");
    send_or_lose(s, g, failed);
}

static void *pg_main(void *arg)
{
    struct pg_store *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int64_t stop_deadline = 0;
    int release_sent = 0;
    for (;;) {
        int64_t now = now_ms();
        pthread_mutex_lock(&s->lock);
        int stopping = s->stopping, writes_pending = s->wh != NULL;
        if (s->pc.state != PG_READY && !s->open_result && s->pc.setup_failed)
            s->open_result = -1; /* e.g. a newer schema: retrying will not help */
        if (s->pc.error[0])
            snprintf(s->last_error, sizeof(s->last_error), "%s", s->pc.error);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (stopping) {
            if (!stop_deadline)
                stop_deadline = now + 3000;
            if (s->released || now >= stop_deadline)
                break;
            if (s->pc.state == PG_READY && s->registered && !writes_pending &&
                !s->writes_inflight && !release_sent) {
                release_sent = 1;
                send_release(s);
            }
        }
        if (s->pc.state != PG_READY)
            fail_requests(s, -ENOTCONN);
        else if (!release_sent)
            send_round(s, now);
        short events = 0;
        int64_t timeout;
        int fd = pg_conn_pollfd(&s->pc, &events, now, &timeout);
        if (s->pc.state == PG_READY && s->registered) {
            int64_t t = next_timer(s) - now;
            t = t < 0 ? 0 : t;
            timeout = timeout < 0 || t < timeout ? t : timeout;
        }
        if (stopping && (timeout < 0 || timeout > 50))
            timeout = 50;
        struct pollfd pf[2] = {{.fd = s->wakefd, .events = POLLIN}, {.fd = fd, .events = events}};
        int n =
            poll(pf, fd >= 0 ? 2 : 1, timeout < 0 ? -1 : (int)(timeout > 60000 ? 60000 : timeout));
        if (n > 0 && (pf[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t r = read(s->wakefd, &v, sizeof(v));
            (void)r;
        }
        pg_conn_step(&s->pc, fd >= 0 && n > 0 ? pf[1].revents : 0, now_ms());
    }
    pg_conn_close(&s->pc);
    fail_requests(s, -ENOTCONN);
    pthread_mutex_lock(&s->lock);
    size_t lost = 0;
    for (struct wop *w = s->wh; w; w = w->next)
        lost++;
    if (lost)
        log_error("store: %zu writes could not reach the database before the stop", lost);
    s->committed = s->next_ticket;
    s->failed_upto = s->next_ticket;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- the store's calls --------------------------------------------------------------------- */

static uint64_t enqueue(struct pg_store *s, struct wop *w)
{
    pthread_mutex_lock(&s->lock);
    w->ticket = ++s->next_ticket;
    memcpy(w->node, s->node_id, sizeof(w->node));
    if (s->wt)
        s->wt->next = w;
    else
        s->wh = w;
    s->wt = w;
    uint64_t t = w->ticket;
    pthread_mutex_unlock(&s->lock);
    poke(s);
    return t;
}

static uint64_t pg_put(struct store *base, const struct job_view *v, const struct job_spec *spec,
                       uint64_t seq, unsigned flags)
{
    struct pg_store *s = (struct pg_store *)base;
    (void)seq;
    struct wop *w = calloc(1, sizeof(*w));
    if (!w || job_view_copy(&w->v, v) != 0) {
        free(w);
        log_error("store: out of memory queueing job %s", v->id);
        return 0;
    }
    if (flags & STORE_NEW) {
        w->kind = W_INSERT;
        w->claimed = (flags & STORE_CLAIMED) != 0;
        w->spec.callable = blob_ref(spec->callable);
        w->spec.args = blob_ref(spec->args);
        w->spec.kwargs = blob_ref(spec->kwargs);
        w->spec.json_args = blob_ref(spec->json_args);
        w->spec.json_kwargs = blob_ref(spec->json_kwargs);
        w->spec.result_json = spec->result_json;
        w->spec.retry_on_timeout = spec->retry_on_timeout;
    } else {
        w->kind = job_status_is_terminal(v->status) ? W_FINISH : W_UPDATE;
    }
    return enqueue(s, w);
}

static uint64_t pg_delete(struct store *base, const char *id)
{
    struct wop *w = calloc(1, sizeof(*w));
    if (!w)
        return 0;
    w->kind = W_DELETE;
    snprintf(w->v.id, sizeof(w->v.id), "%s", id);
    return enqueue((struct pg_store *)base, w);
}

static int64_t deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
    return ms;
}

static int pg_sync(struct store *base, uint64_t ticket)
{
    struct pg_store *s = (struct pg_store *)base;
    if (!ticket)
        return -ENOMEM;
    struct timespec until;
    deadline_in(&until, SYNC_WAIT_MS);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    while (s->committed < ticket && rc == 0)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    if (s->committed >= ticket)
        rc = s->failed_upto >= ticket ? -EIO : 0;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static const char *pg_describe(const struct store *base)
{
    return ((const struct pg_store *)base)->describe;
}

static int pg_load(struct store *base, store_load_cb cb, void *arg, char *err, size_t errlen)
{
    (void)base, (void)cb, (void)arg, (void)err, (void)errlen;
    return 0;
}

static void pg_close(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        s->want = 0;
        pthread_mutex_unlock(&s->lock);
        poke(s);
        pthread_join(s->thread, NULL);
    }
    while (s->wh) {
        struct wop *n = s->wh->next;
        wop_free(s->wh);
        s->wh = n;
    }
    if (s->wakefd >= 0)
        close(s->wakefd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->uri);
    free(s->schema);
    free(s->setup_sql);
    free(s->describe);
    free(s);
}

static const struct store_ops pg_ops = {
    .close = pg_close,
    .load = pg_load,
    .put = pg_put,
    .del = pg_delete,
    .sync = pg_sync,
    .describe = pg_describe,
    .shared = 1,
};

/* --- shared-store calls ----------------------------------------------------------------- */

static struct pg_store *as_pg(struct store *base)
{
    return base && base->ops == &pg_ops ? (struct pg_store *)base : NULL;
}

void store_set_events(struct store *base, const struct store_events *ev, void *arg)
{
    struct pg_store *s = as_pg(base);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->ev = *ev;
    s->ev_arg = arg;
    pthread_mutex_unlock(&s->lock);
}

void store_want(struct store *base, unsigned n)
{
    struct pg_store *s = as_pg(base);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    int more = n > s->want;
    s->want = s->stopping ? 0 : n;
    if (more)
        s->claim_now = 1;
    pthread_mutex_unlock(&s->lock);
    if (more)
        poke(s);
}

int store_available(struct store *base)
{
    struct pg_store *s = as_pg(base);
    if (!s)
        return 1;
    pthread_mutex_lock(&s->lock);
    int up = s->ready;
    pthread_mutex_unlock(&s->lock);
    return up;
}

int store_lease_fresh(struct store *base)
{
    struct pg_store *s = as_pg(base);
    return !s || now_ms() - atomic_load(&s->last_hb_ok_ms) < s->lease_ms;
}

const char *store_node_id(struct store *base)
{
    struct pg_store *s = as_pg(base);
    return s ? s->node_id : "";
}

/* Queues a request and waits for its answer (or abandons it to the thread). */
static int request(struct pg_store *s, struct req *q)
{
    struct timespec until;
    deadline_in(&until, REQUEST_WAIT_MS);
    pthread_mutex_lock(&s->lock);
    if (!s->ready || s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return -ENOTCONN;
    }
    if (s->rt)
        s->rt->next_req = q;
    else
        s->rh = q;
    s->rt = q;
    pthread_mutex_unlock(&s->lock);
    poke(s);
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

static void req_free(struct req *q)
{
    for (size_t i = 0; i < q->n; i++)
        job_view_release(&q->views[i]);
    free(q->views);
    free(q);
}

static struct req *req_new(enum rkind kind, const char *id)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q) {
        q->kind = kind;
        if (id)
            snprintf(q->id, sizeof(q->id), "%s", id);
    }
    return q;
}

int store_fetch(struct store *base, const char *id, struct job_view *out)
{
    struct pg_store *s = as_pg(base);
    struct req *q = s ? req_new(R_FETCH, id) : NULL;
    if (!q)
        return s ? -ENOMEM : -ENOENT;
    int rc = request(s, q);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0 && q->n == 1) {
        *out = q->views[0];
        q->n = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    req_free(q);
    return rc;
}

int store_list(struct store *base, const struct pool_list_query *lq, struct job_view **out,
               size_t *n, uint64_t *next)
{
    struct pg_store *s = as_pg(base);
    struct req *q = s ? req_new(R_LIST, NULL) : NULL;
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
    req_free(q);
    return rc;
}

static int simple_request(struct store *base, enum rkind kind, const char *id)
{
    struct pg_store *s = as_pg(base);
    struct req *q = s ? req_new(kind, id) : NULL;
    if (!q)
        return -ENOMEM;
    int rc = request(s, q);
    if (rc != -ETIMEDOUT)
        req_free(q);
    return rc;
}

int store_cancel(struct store *base, const char *id)
{
    return simple_request(base, R_CANCEL, id);
}

int store_forget(struct store *base, const char *id)
{
    return simple_request(base, R_FORGET, id);
}

void store_watch(struct store *base, const char *id)
{
    struct pg_store *s = as_pg(base);
    struct req *q = s ? req_new(R_WATCH, id) : NULL;
    if (!q)
        return;
    q->abandoned = 1; /* nobody waits: the answer comes as events.updated */
    pthread_mutex_lock(&s->lock);
    if (!s->ready || s->stopping) {
        pthread_mutex_unlock(&s->lock);
        free(q);
        return; /* the periodic re-check covers it once connected */
    }
    if (s->rt)
        s->rt->next_req = q;
    else
        s->rh = q;
    s->rt = q;
    pthread_mutex_unlock(&s->lock);
    poke(s);
}

/* --- opening ------------------------------------------------------------------------------- */

static int describe_uri(struct pg_store *s, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->uri, &perr);
    if (!opts) {
        snprintf(err, errlen, "--store %s is not a valid PostgreSQL connection URI: %s",
                 strncmp(s->uri, "postgres", 8) == 0 ? "postgresql://..." : s->uri,
                 perr ? perr : "out of memory");
        size_t n = strlen(err);
        while (n && err[n - 1] == '\n')
            err[--n] = 0;
        PQfreemem(perr);
        return -1;
    }
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
    }
    /* Never the password: this is shown in /v1/info and the log. */
    int rc = asprintf(&s->describe, "postgresql://%s%s%s%s%s/%s (schema %s)", user ? user : "",
                      user ? "@" : "", host ? host : "localhost", port ? ":" : "", port ? port : "",
                      db ? db : "", s->schema);
    PQconninfoFree(opts);
    if (rc < 0) {
        s->describe = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

struct store *store_open_pg(const struct store_pg_options *o, char *err, size_t errlen)
{
    struct pg_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &pg_ops;
    s->wakefd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->uri = strdup(o->uri);
    s->schema = strdup(o->schema && *o->schema ? o->schema : "pyjobd");
    s->lease_ms = (int64_t)((o->lease > 0 ? o->lease : 10) * 1000);
    s->poll_ms = (int64_t)((o->poll > 0 ? o->poll : 1) * 1000);
    s->ttl_ms = (int64_t)(o->result_ttl * 1000);
    snprintf(s->node_name, sizeof(s->node_name), "%s", o->node_name ? o->node_name : "node");
    new_node_id(s);
    snprintf(s->chan_queued, sizeof(s->chan_queued), "%.80s.queued", s->schema);
    snprintf(s->chan_done, sizeof(s->chan_done), "%.80s.done", s->schema);
    if (!s->uri || !s->schema || describe_uri(s, err, errlen) != 0)
        goto fail;
    /* Quoting needs a connection object; an unconnected one will do. */
    PGconn *q = PQconnectStart("host=/nonexistent connect_timeout=1");
    s->setup_sql = q ? pg_setup_sql(q, s->schema, s->chan_queued, s->chan_done) : NULL;
    PQfinish(q);
    if (!s->setup_sql) {
        snprintf(err, errlen, "--pg-schema %s: cannot be used as a schema name", s->schema);
        goto fail;
    }
    /* Ours first: what the URI says wins (the last value of a keyword counts). */
    int k = 0;
    s->kw[k] = "application_name", s->vals[k++] = "pyjobd";
    s->kw[k] = "keepalives_idle", s->vals[k++] = "5";
    s->kw[k] = "keepalives_interval", s->vals[k++] = "2";
    s->kw[k] = "keepalives_count", s->vals[k++] = "3";
    s->kw[k] = "dbname", s->vals[k++] = s->uri;
    s->kw[k] = NULL, s->vals[k] = NULL;
    s->pc.keywords = s->kw;
    s->pc.values = s->vals;
    s->pc.setup_sql = s->setup_sql;
    s->pc.ctx = s;
    s->pc.on_ready = on_ready;
    s->pc.on_lost = on_lost;
    s->pc.on_notify = on_notify;
    s->pc.stall_ms = STALL_MS;
    s->pc.connect_timeout_ms = 5000;
    s->pc.backoff_ms = 100;
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wakefd < 0 || pthread_create(&s->thread, NULL, pg_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store thread");
        goto fail;
    }
    s->thread_started = 1;
    struct timespec until;
    deadline_in(&until, (int64_t)((o->connect_wait > 0 ? o->connect_wait : 10) * 1000));
    pthread_mutex_lock(&s->lock);
    int timed_out = 0;
    while (!s->open_result && !timed_out)
        timed_out = pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT;
    int ok = s->open_result == 1;
    if (!ok)
        snprintf(err, errlen, "cannot use the database %s: %s", s->describe,
                 s->last_error[0] ? s->last_error : "no answer");
    pthread_mutex_unlock(&s->lock);
    if (!ok)
        goto fail;
    log_info("store: %s, this node is %s (lease %g s)", s->describe, s->node_id,
             (double)s->lease_ms / 1000);
    return &s->base;
fail:
    pg_close(&s->base);
    return NULL;
}
