/*
 * pg_schedules.c — recurring schedules on the PostgreSQL store: which node fires them,
 * what they are, and each tick's commit (store_shared.h).
 *
 * The leader is the node whose connection holds a session advisory lock of the schema
 * (pg_sql_schedule_lead): every other node tries to take it at the poll interval.
 * The lock goes with the connection: a node killed, or whose connection drops, leads
 * no more at once (its ticks, committed on that connection, can no longer commit), and
 * the server frees the lock when it sees the connection end; TCP keepalives set by
 * the same statement bound that for a client that vanished without closing it.
 *
 * The leader reads every schedule with its job when it takes the lead, then re-reads
 * the list (without the jobs) at the poll interval and when a NOTIFY says one was
 * created or deleted, and reads the jobs of the ones it did not have. The pool fires
 * the ticks (pool/sources/schedules.c); each tick is one transaction here
 * (pg_sql_schedule_tick): the job, unless one has its id, and the schedule's
 * progress, so a tick is never recorded without its job.
 */
#include "pg_sched.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pgs__sched_new(struct pg_store *s)
{
    struct pg_sched *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->cb_lock, NULL);
    STAILQ_INIT(&c->reqs);
    STAILQ_INIT(&c->sent_reqs);
    STAILQ_INIT(&c->ticks);
    STAILQ_INIT(&c->sent_ticks);
    s->sched = c;
    return 0;
}

void pgs__stick_free(struct stick *t)
{
    job_view_release(&t->v);
    job_spec_release(&t->spec);
    free(t);
}

static void free_ticks(struct stick_list *l)
{
    struct stick *t;
    while ((t = STAILQ_FIRST(l))) {
        STAILQ_REMOVE_HEAD(l, link);
        pgs__stick_free(t);
    }
}

void pgs__sched_free(struct pg_store *s)
{
    struct pg_sched *c = s->sched;
    if (!c)
        return;
    pgs__sched_fail(s, -ENOTCONN);
    free_ticks(&c->ticks);
    free_ticks(&c->sent_ticks);
    free(c->want_ids);
    pthread_mutex_destroy(&c->cb_lock);
    free(c);
    s->sched = NULL;
}

/* --- the pool's events ------------------------------------------------------------------ */

void pgs__set_schedule_events(struct store *base, const struct store_schedule_events *ev, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_sched *c = s->sched;
    pthread_mutex_lock(&c->cb_lock); /* waits for a call in progress */
    memset(&c->ev, 0, sizeof(c->ev));
    if (ev)
        c->ev = *ev;
    c->ev_arg = arg;
    atomic_store(&c->has_events, ev != NULL);
    pthread_mutex_unlock(&c->cb_lock);
    pgs__poke(s);
}

static size_t call_loaded(struct pg_sched *c, enum store_schedules_how how,
                          const struct store_schedule *rows, size_t n,
                          char (*unknown)[JOB_ID_LEN + 1])
{
    pthread_mutex_lock(&c->cb_lock);
    size_t k = c->ev.loaded ? c->ev.loaded(c->ev_arg, how, rows, n, unknown) : 0;
    pthread_mutex_unlock(&c->cb_lock);
    return k;
}

/* --- leading ---------------------------------------------------------------------------- */

static void set_leading(struct pg_store *s, int leading)
{
    struct pg_sched *c = s->sched;
    struct stick_list dropped = STAILQ_HEAD_INITIALIZER(dropped);
    c->leader = leading;
    c->loaded = 0;
    c->next_read_ms = 0;
    pthread_mutex_lock(&s->lock);
    c->leading = leading;
    if (!leading)
        STAILQ_CONCAT(&dropped, &c->ticks);
    pthread_mutex_unlock(&s->lock);
    free_ticks(&dropped);
}

void pgs__sched_lost(struct pg_store *s)
{
    struct pg_sched *c = s->sched;
    int was = c->leader;
    set_leading(s, 0);
    c->next_lead_ms = 0; /* try again as soon as connected */
    if (!was)
        return;
    log_warn("store: the connection to the database was lost, and with it this node's lead of "
             "the schedules: it fires none until it leads again (another node may)");
    pthread_mutex_lock(&c->cb_lock);
    if (c->ev.lost)
        c->ev.lost(c->ev_arg);
    pthread_mutex_unlock(&c->cb_lock);
}

void pgs__sched_reread(struct pg_store *s)
{
    s->sched->reread = 1;
}

static void lead_done(struct pg_store *s, struct seg *g, int ok)
{
    struct pg_sched *c = s->sched;
    c->lead_inflight = 0;
    PGresult *r = g->ps.res[0];
    if (ok == 0)
        log_error("store: trying to lead the schedules failed: %s", g->ps.errmsg);
    if (ok != 1 || !r || PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        return;
    set_leading(s, 1);
    log_info("store: this node leads the schedules now: it fires their ticks");
}

static void send_lead(struct pg_store *s, int64_t now)
{
    struct pg_sched *c = s->sched;
    c->next_lead_ms = now + s->poll_ms;
    struct seg *g = pgs__seg_new(s, lead_done);
    if (!g)
        return;
    /* The server sees a vanished client within about a lease: idle + 3 probes. */
    char idle[24], interval[24];
    int64_t lease_s = s->lease_ms / 1000 > 2 ? s->lease_ms / 1000 : 2;
    snprintf(idle, sizeof(idle), "%lld", (long long)(lease_s / 2));
    snprintf(interval, sizeof(interval), "%lld", (long long)(lease_s / 6 > 1 ? lease_s / 6 : 1));
    const char *vals[3] = {s->schema, idle, interval};
    g->ps.n = 1;
    c->lead_inflight = 1;
    pgs__send_or_lose(s, g,
                      pg_conn_send(&s->pc, &pg_sql_schedule_lead, 3, vals, NULL, NULL, 0) != 0);
}

/* --- reading the schedules --------------------------------------------------------------- */

static void read_done(struct pg_store *s, struct seg *g, int ok)
{
    struct pg_sched *c = s->sched;
    c->read_inflight = 0;
    if (ok == 0)
        log_error("store: reading the schedules failed: %s", g->ps.errmsg);
    if (ok != 1 || !c->leader)
        return;
    struct store_schedule *rows = NULL;
    size_t n = 0;
    if (pg_schedule_rows(g->ps.res[0], &rows, &n) != 0) {
        log_error("store: out of memory reading the schedules");
        return;
    }
    char(*unknown)[JOB_ID_LEN + 1] = NULL;
    if (c->read_how == STORE_SCHEDULES_LISTING && n && !(unknown = calloc(n, sizeof(*unknown)))) {
        store_schedules_free(rows, n);
        return; /* the next re-read tries again */
    }
    size_t k = call_loaded(c, c->read_how, rows, n, unknown);
    if (c->read_how == STORE_SCHEDULES_LEAD) {
        c->loaded = 1;
        if (n)
            log_info("store: %zu schedules to fire", n);
    }
    if (k) {
        free(c->want_ids);
        c->want_ids = pgs__id_array(unknown, 0, k); /* read with their jobs next round */
    }
    free(unknown);
    store_schedules_free(rows, n);
}

/* how: LEAD every schedule with its job; LISTING every one without; ADDED those of
 * c->want_ids with their jobs. */
static void send_read(struct pg_store *s, enum store_schedules_how how, int64_t now)
{
    struct pg_sched *c = s->sched;
    if (how != STORE_SCHEDULES_ADDED)
        c->next_read_ms = now + s->poll_ms;
    struct seg *g = pgs__seg_new(s, read_done);
    if (!g)
        return;
    char *ids = how == STORE_SCHEDULES_ADDED ? c->want_ids : NULL;
    const char *vals[3] = {how == STORE_SCHEDULES_LISTING ? "f" : "t", ids, NULL};
    g->ps.n = 1;
    c->read_how = how;
    c->read_inflight = 1;
    int failed = pg_conn_send(&s->pc, &pg_sql_schedule_read, 3, vals, NULL, NULL, 1) != 0;
    free(c->want_ids);
    c->want_ids = NULL;
    pgs__send_or_lose(s, g, failed);
}

/* --- ticks -------------------------------------------------------------------------------- */

static void tick_done(struct pg_store *s, struct seg *g, int ok)
{
    struct pg_sched *c = s->sched;
    struct stick *t = STAILQ_FIRST(&c->sent_ticks);
    if (!t)
        return;
    STAILQ_REMOVE_HEAD(&c->sent_ticks, link);
    PGresult *r = g->ps.res[0];
    if (ok == 0)
        log_error("schedule %s: the tick at %lld could not be committed: %s", t->id,
                  (long long)(t->tick_us / 1000000), g->ps.errmsg);
    if (ok == 1 && r && PQntuples(r) == 1 && PQnfields(r) >= 5) {
        int locked = atoi(PQgetvalue(r, 0, 0)) == 1, exists = atoi(PQgetvalue(r, 0, 4)) == 1;
        if (locked && atoi(PQgetvalue(r, 0, 1)) == 0)
            log_warn("schedule %s: the job of its tick at %lld existed already", t->id,
                     (long long)(t->tick_us / 1000000));
        pthread_mutex_lock(&c->cb_lock);
        if (c->ev.ticked && (locked || !exists))
            c->ev.ticked(c->ev_arg, t->id, !exists,
                         locked ? strtoull(PQgetvalue(r, 0, 2), NULL, 10) : 0,
                         locked ? PQgetvalue(r, 0, 3) : "");
        pthread_mutex_unlock(&c->cb_lock);
    }
    pgs__stick_free(t);
}

static int send_tick(struct pg_store *s, struct stick *t)
{
    const struct job_view *v = &t->v;
    const struct job_spec *sp = &t->spec;
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_text(&p, t->id);
    pg_param_i64(&p, t->tick_us);
    pg_param_text(&p, v->id);
    pg_param_text(&p, v->owner);
    pg_param_i64(&p, clock_ts_us(v->created_at));
    pg_param_f64(&p, v->timeout);
    pg_param_i64(&p, v->max_retries);
    pg_param_text(&p, sp->retry_on_timeout ? "t" : "f");
    pg_param_text(&p, sp->result_json ? "t" : "f");
    pg_param_text(&p, v->metadata);
    pg_param_i64(&p, v->priority);
    pg_param_f64(&p, v->soft_timeout);
    pg_param_payload(&p, sp);
    pg_param_text(&p, s->chan_queued);
    pg_param_retry(&p, v);
    return pg_conn_send(&s->pc, &pg_sql_schedule_tick, p.n, p.values, p.lengths, p.formats, 0);
}

static void send_ticks(struct pg_store *s)
{
    struct pg_sched *c = s->sched;
    struct stick_list todo = STAILQ_HEAD_INITIALIZER(todo);
    pthread_mutex_lock(&s->lock);
    STAILQ_CONCAT(&todo, &c->ticks);
    pthread_mutex_unlock(&s->lock);
    struct stick *t;
    while ((t = STAILQ_FIRST(&todo)) && s->pc.state == PG_READY && c->leader) {
        STAILQ_REMOVE_HEAD(&todo, link);
        struct seg *g = pgs__seg_new(s, tick_done);
        if (!g) {
            log_error("schedule %s: out of memory committing a tick", t->id);
            pgs__stick_free(t);
            continue;
        }
        STAILQ_INSERT_TAIL(&c->sent_ticks, t, link);
        g->ps.n = 1;
        pgs__send_or_lose(s, g, send_tick(s, t) != 0);
    }
    free_ticks(&todo); /* not leading any more: the next leader fires them */
}

int pgs__schedule_tick(struct store *base, const char *id, int64_t tick_us,
                       const struct job_view *v, const struct job_spec *spec)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_sched *c = s->sched;
    struct stick *t = calloc(1, sizeof(*t));
    if (!t || job_view_copy(&t->v, v) != 0) {
        free(t);
        return -ENOMEM;
    }
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->tick_us = tick_us;
    job_spec_ref_payload(&t->spec, spec);
    pthread_mutex_lock(&s->lock);
    int leading = c->leading && !s->stopping;
    if (leading)
        STAILQ_INSERT_TAIL(&c->ticks, t, link);
    pthread_mutex_unlock(&s->lock);
    if (!leading) {
        pgs__stick_free(t);
        return -ENOTCONN;
    }
    pgs__poke(s);
    return 0;
}

/* --- the round ---------------------------------------------------------------------------- */

void pgs__round_schedules(struct pg_store *s, int64_t now)
{
    struct pg_sched *c = s->sched;
    pgs__sched_send_requests(s);
    if (s->pc.state != PG_READY || !atomic_load(&c->has_events))
        return;
    if (!c->leader) {
        if (!c->lead_inflight && now >= c->next_lead_ms)
            send_lead(s, now);
        return;
    }
    send_ticks(s);
    if (c->read_inflight || s->pc.state != PG_READY)
        return;
    if (!c->loaded) {
        if (now >= c->next_read_ms) /* a failed read is tried again at the poll interval */
            send_read(s, STORE_SCHEDULES_LEAD, now);
        return;
    }
    if (c->want_ids) {
        send_read(s, STORE_SCHEDULES_ADDED, now);
        return;
    }
    pthread_mutex_lock(&s->lock);
    int reread = c->reread;
    c->reread = 0;
    pthread_mutex_unlock(&s->lock);
    if (reread || now >= c->next_read_ms)
        send_read(s, STORE_SCHEDULES_LISTING, now);
}

int64_t pgs__sched_next_ms(struct pg_store *s)
{
    struct pg_sched *c = s->sched;
    if (!atomic_load(&c->has_events))
        return INT64_MAX;
    return c->leader ? c->next_read_ms : c->next_lead_ms;
}
