/*
 * pg_membership.c — the node's lease: registering, the heartbeat (which also finds
 * out that other nodes reaped this one), reaping nodes whose lease ran out, and the
 * retention of finished jobs in the database.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- membership: register, heartbeat, reap ------------------------------------------- */

static void register_done(struct pg_store *s, struct seg *g, int ok)
{
    s->reg_inflight = 0;
    if (ok != 1) {
        if (ok == 0)
            log_error("store: registering this node failed: %s", g->ps.errmsg);
        return;
    }
    s->registered = 1;
    s->joined = 1;
    s->last_hb_ok_ms = clock_now_ms();
    pthread_mutex_lock(&s->lock);
    s->ready = 1;
    s->claim_now = 1;
    s->recheck_now = 1;
    if (!s->open_result)
        s->open_result = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void pgs__send_register(struct pg_store *s)
{
    struct seg *g = pgs__seg_new(s, register_done);
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
    s->reg_inflight = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_register, 2, vals, NULL, NULL, 0) != 0);
}

static void heartbeat_done(struct pg_store *s, struct seg *g, int ok)
{
    s->hb_inflight = 0;
    if (ok != 1)
        return;
    if (g->ps.res[0] && PQntuples(g->ps.res[0]) == 1) {
        s->last_hb_ok_ms = clock_now_ms();
        if (!s->registered)
            register_done(s, g, 1); /* reconnected and still a member */
        return;
    }
    /* Our row is gone: other nodes presumed us dead and took our jobs. */
    pthread_mutex_lock(&s->lock);
    char old[JOB_NODE_MAX];
    memcpy(old, s->node_id, sizeof(old));
    pgs__new_node_id(s);
    struct store_events ev = s->ev;
    void *arg = s->ev_arg;
    s->in_events++;
    s->ready = 0;
    pthread_mutex_unlock(&s->lock);
    log_warn("store: this node (%s) missed its lease and was reaped by another node: its jobs "
             "were re-queued or failed there; stopping what it still runs and joining again as "
             "%s",
             old, s->node_id);
    if (ev.reaped)
        ev.reaped(arg);
    pgs__events_done(s);
    s->registered = 0;
    s->joined = 0; /* send_round registers the new id */
}

void pgs__round_heartbeat(struct pg_store *s, int64_t now)
{
    s->next_hb_ms = now + s->lease_ms / 3;
    struct seg *g = pgs__seg_new(s, heartbeat_done);
    if (!g)
        return;
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[1] = {node};
    g->ps.n = 1;
    s->hb_inflight = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_heartbeat, 1, vals, NULL, NULL, 0) != 0);
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

void pgs__round_reap(struct pg_store *s, int64_t now)
{
    s->next_reap_ms = now + (s->lease_ms / 2 > 100 ? s->lease_ms / 2 : 100);
    struct seg *g = pgs__seg_new(s, reap_done);
    if (!g)
        return;
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)clock_real_us());
    pthread_mutex_lock(&s->lock);
    char node[JOB_NODE_MAX];
    memcpy(node, s->node_id, sizeof(node));
    pthread_mutex_unlock(&s->lock);
    const char *vals[4] = {t, s->chan_queued, s->chan_done, node};
    g->ps.n = 1;
    s->reap_inflight = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_reap, 4, vals, NULL, NULL, 0) != 0);
}

static void retention_done(struct pg_store *s, struct seg *g, int ok)
{
    s->ret_inflight = 0;
    if (ok == 1 && g->ps.res[0] && PQntuples(g->ps.res[0]) == 1 &&
        atol(PQgetvalue(g->ps.res[0], 0, 0)) >= 1000)
        s->next_ret_ms = 0; /* more to delete: go on next round */
}

void pgs__round_retention(struct pg_store *s, int64_t now)
{
    s->next_ret_ms = now + RETENTION_EVERY_MS;
    struct seg *g = pgs__seg_new(s, retention_done);
    if (!g)
        return;
    char before[24];
    snprintf(before, sizeof(before), "%lld", (long long)(clock_real_us() - s->ttl_ms * 1000));
    const char *vals[1] = {before};
    g->ps.n = 1;
    s->ret_inflight = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_retention, 1, vals, NULL, NULL, 0) != 0);
}
