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
 *
 * This file, the top of pool/store/pg/ (see pgstore.h): the thread and its loop, opening
 * and closing, the store's calls. The rounds live in pg_writes.c, pg_claims.c,
 * pg_membership.c and pg_requests.c, the helpers they share in pg_seg.c.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/utf8.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* --- the thread ---------------------------------------------------------------------------- */

static void fail_requests(struct pg_store *s, int rc)
{
    struct req_list all = STAILQ_HEAD_INITIALIZER(all);
    pthread_mutex_lock(&s->lock);
    STAILQ_CONCAT(&all, &s->requests);
    s->watch_req = NULL;
    pthread_mutex_unlock(&s->lock);
    struct req *q;
    while ((q = STAILQ_FIRST(&all))) {
        STAILQ_REMOVE_HEAD(&all, link);
        pgs__req_finish(s, q, rc); /* may free q */
    }
    pgs__sched_fail(s, rc);
}

static void on_ready(void *ctx)
{
    struct pg_store *s = ctx;
    s->registered = 0;
    s->writes_inflight = s->claim_inflight = s->hb_inflight = s->reap_inflight = 0;
    s->recheck_inflight = s->ret_inflight = s->reg_inflight = 0;
    s->keys_inflight = 0;
    s->next_reg_ms = 0; /* send_round registers, or checks the membership by a heartbeat */
    /* After an outage every heartbeat is stale: give the other nodes one lease to
     * reconnect before presuming any of them dead. */
    s->next_reap_ms = clock_now_ms() + s->lease_ms;
    if (s->connected_before) {
        log_info("store: reconnected to the database");
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
    pgs__sched_lost(s); /* the lead of the schedules went with the connection */
}

/* Lock held. A completion notification: "id,id,..." (or "" for "re-check all"). */
static void note_done(struct pg_store *s, const char *payload)
{
    const size_t most = 4096; /* beyond, re-checking everything is cheaper */
    for (const char *p = payload; *p && !s->recheck_now; p += *p == ',') {
        size_t len = strcspn(p, ",");
        if (len != JOB_ID_LEN || s->ndone >= most) {
            s->recheck_now = 1;
            break;
        }
        if (s->ndone == s->capdone) {
            size_t cap = s->capdone ? s->capdone * 2 : 64;
            void *more = realloc(s->done_ids, cap * sizeof(*s->done_ids));
            if (!more) {
                s->recheck_now = 1;
                break;
            }
            s->done_ids = more;
            s->capdone = cap;
        }
        memcpy(s->done_ids[s->ndone], p, JOB_ID_LEN);
        s->done_ids[s->ndone++][JOB_ID_LEN] = 0;
        p += len;
    }
    if (!*payload)
        s->recheck_now = 1;
}

static void on_notify(void *ctx, const char *channel, const char *payload)
{
    struct pg_store *s = ctx;
    if (strcmp(channel, s->chan_cancel) == 0) {
        /* "node id force [grace_ms]": for us? */
        char node[JOB_NODE_MAX], id[JOB_ID_LEN + 1];
        int force = 0;
        long long grace_ms = 0;
        int got = sscanf(payload, "%79s %32s %d %lld", node, id, &force, &grace_ms);
        if (got < 3 || !job_id_is_valid(id) || grace_ms < 0 || grace_ms > 3600 * 1000)
            return;
        pthread_mutex_lock(&s->lock);
        int mine = strcmp(node, s->node_id) == 0;
        struct store_events ev = s->ev;
        void *arg = s->ev_arg;
        s->in_events++;
        pthread_mutex_unlock(&s->lock);
        if (mine && ev.cancel)
            ev.cancel(arg, id, force, (double)grace_ms / 1000.0);
        pgs__events_done(s);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (strcmp(channel, s->chan_queued) == 0 && strcmp(payload, PG_SCHEDULES_PAYLOAD) == 0)
        pgs__sched_reread(s);
    else if (strcmp(channel, s->chan_queued) == 0)
        s->claim_now = 1;
    else if (strcmp(channel, s->chan_done) == 0)
        note_done(s, payload);
    pthread_mutex_unlock(&s->lock);
}

/* Sends what is due, one segment per concern, while nothing of the same kind is in
 * flight. */
static void send_round(struct pg_store *s, int64_t now)
{
    if (!s->registered) {
        /* Nothing else until this node is a member: a new one registers; one that was
         * already (before a reconnect) learns by a heartbeat whether it still is. */
        if (!s->hb_inflight && !s->reg_inflight && now >= s->next_reg_ms) {
            s->next_reg_ms = now + 1000;
            if (s->joined)
                pgs__round_heartbeat(s, now);
            else
                pgs__send_register(s);
        }
        return;
    }
    if (s->adopt_needed)
        pgs__round_adopt(s);
    if (!s->writes_inflight)
        pgs__round_writes(s);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct req *q = STAILQ_FIRST(&s->requests);
        if (q) {
            STAILQ_REMOVE_HEAD(&s->requests, link);
            if (q == s->watch_req)
                s->watch_req = NULL; /* being sent: later watches start a new one */
        }
        pthread_mutex_unlock(&s->lock);
        if (!q || s->pc.state != PG_READY) {
            if (q)
                pgs__req_finish(s, q, -ENOTCONN);
            break;
        }
        pgs__round_request(s, q);
    }
    if (s->pc.state != PG_READY)
        return;
    pgs__round_schedules(s, now);
    if (!s->claim_inflight)
        pgs__round_claim(s, now);
    pgs__round_count(s, now);
    if (!s->hb_inflight && now >= s->next_hb_ms)
        pgs__round_heartbeat(s, now);
    if (!s->reap_inflight && now >= s->next_reap_ms)
        pgs__round_reap(s, now);
    if (!s->recheck_inflight)
        pgs__round_recheck(s, now);
    if (s->ttl_ms > 0 && !s->ret_inflight && now >= s->next_ret_ms)
        pgs__round_retention(s, now);
    if (!s->keys_inflight && now >= s->next_keys_ms)
        pgs__round_keys_expire(s, now);
}

static int64_t next_timer(struct pg_store *s)
{
    int64_t t = s->next_hb_ms;
    if (s->next_reap_ms < t)
        t = s->next_reap_ms;
    if (s->next_recheck_ms < t)
        t = s->next_recheck_ms;
    if (s->next_count_ms < t)
        t = s->next_count_ms;
    pthread_mutex_lock(&s->lock);
    if (s->want && s->next_claim_ms < t)
        t = s->next_claim_ms;
    if (s->want && !s->claim_inflight && pgs__due_next(s) < t) /* else: when it answers */
        t = pgs__due_next(s);
    pthread_mutex_unlock(&s->lock);
    if (s->ttl_ms > 0 && s->next_ret_ms < t)
        t = s->next_ret_ms;
    int64_t sched = pgs__sched_next_ms(s);
    return sched < t ? sched : t;
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
    struct seg *g = pgs__seg_new(s, release_done);
    if (!g) {
        s->released = 1;
        return;
    }
    const char *vals[1] = {s->node_id};
    g->ps.n = 2;
    int failed = pg_conn_send(&s->pc, &pg_sql_release, 1, vals, NULL, NULL, 0) ||
                 pgs__send_notify(s, s->chan_queued, "");
    pgs__send_or_lose(s, g, failed);
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
        int64_t now = clock_now_ms();
        pthread_mutex_lock(&s->lock);
        int stopping = s->stopping, writes_pending = !STAILQ_EMPTY(&s->writes);
        if (s->pc.error[0])
            snprintf(s->last_error, sizeof(s->last_error), "%s", s->pc.error);
        if (s->pc.state != PG_READY && !s->open_result && s->pc.setup_failed) {
            s->open_result = -1; /* e.g. a newer schema: retrying will not help */
            pthread_cond_broadcast(&s->cond);
        }
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
        if (s->pc.state == PG_READY) {
            int64_t t = (s->registered ? next_timer(s) : s->next_reg_ms) - now;
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
        pg_conn_step(&s->pc, fd >= 0 && n > 0 ? pf[1].revents : 0, clock_now_ms());
    }
    pg_conn_close(&s->pc);
    fail_requests(s, -ENOTCONN);
    pthread_mutex_lock(&s->lock);
    size_t lost = 0;
    struct wop *w;
    STAILQ_FOREACH(w, &s->writes, link)
    lost++;
    if (lost)
        log_error("store: %zu writes could not reach the database before the stop", lost);
    s->committed = s->next_ticket;
    s->failed_upto = s->next_ticket;
    pthread_cond_broadcast(&s->cond);
    void (*on_commit)(void *) = s->on_commit;
    void *on_commit_arg = s->on_commit_arg;
    pthread_mutex_unlock(&s->lock);
    if (on_commit)
        on_commit(on_commit_arg);
    return NULL;
}

/* --- the store's calls --------------------------------------------------------------------- */

static uint64_t enqueue(struct pg_store *s, struct wop *w)
{
    pthread_mutex_lock(&s->lock);
    w->ticket = ++s->next_ticket;
    memcpy(w->node, s->node_id, sizeof(w->node));
    STAILQ_INSERT_TAIL(&s->writes, w, link);
    uint64_t t = w->ticket;
    pthread_mutex_unlock(&s->lock);
    pgs__poke(s);
    return t;
}

static uint64_t pg_put(struct store *base, const struct job_view *v, const struct job_spec *spec,
                       uint64_t seq, unsigned flags)
{
    struct pg_store *s = (struct pg_store *)base;
    (void)seq;
    if (flags & STORE_NEW)
        atomic_fetch_add(&s->inserted, 1);
    uint64_t inserted = flags & STORE_NEW ? pgs__keyed_put(s, v->id, flags & STORE_CLAIMED) : 0;
    if (inserted)
        return inserted;
    struct wop *w = calloc(1, sizeof(*w));
    if (!w || job_view_copy(&w->v, v) != 0) {
        free(w);
        log_error("store: out of memory queueing job %s", v->id);
        return 0;
    }
    if (flags & STORE_NEW) {
        w->kind = W_INSERT;
        w->claimed = (flags & STORE_CLAIMED) != 0;
        if (!w->claimed)
            atomic_fetch_add(&s->queue_added, 1);
        job_spec_ref_payload(&w->spec, spec);
    } else {
        w->kind = job_status_is_terminal(v->status) ? W_FINISH : W_UPDATE;
    }
    /* Text columns must be valid UTF-8, or the whole transaction fails: what a job's
     * Python said is not always (surrogate escapes). */
    utf8_scrub(w->v.error.message);
    utf8_scrub(w->v.error.exc_type);
    utf8_scrub(w->v.error.traceback);
    for (unsigned i = 0; i < w->v.nhistory; i++)
        utf8_scrub(w->v.history[i].message);
    if (w->kind == W_INSERT && v->status == JOB_SCHEDULED) {
        /* Claim when it is due rather than at the next poll (if this node has room). */
        int64_t in_us = (v->run_at_us > 0 ? v->run_at_us : 0) - clock_real_us();
        int64_t due = clock_now_ms() + (in_us > 0 ? in_us / 1000 + 1 : 0);
        pthread_mutex_lock(&s->lock);
        pgs__due_add(s, due);
        pthread_mutex_unlock(&s->lock);
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

static int pg_sync(struct store *base, uint64_t ticket)
{
    struct pg_store *s = (struct pg_store *)base;
    if (!ticket)
        return -ENOMEM;
    struct timespec until;
    clock_deadline_in(&until, SYNC_WAIT_MS);
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

static int pg_committed(struct store *base, uint64_t ticket)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int done = s->committed >= ticket;
    pthread_mutex_unlock(&s->lock);
    return done;
}

static void pg_on_commit(struct store *base, void (*fn)(void *arg), void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    s->on_commit = fn;
    s->on_commit_arg = arg;
    while (s->in_events) /* a call of the old one may be under way */
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
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
        pgs__poke(s);
        pthread_join(s->thread, NULL);
    }
    struct wop *w;
    while ((w = STAILQ_FIRST(&s->writes))) {
        STAILQ_REMOVE_HEAD(&s->writes, link);
        pgs__wop_free(w);
    }
    if (s->wakefd >= 0)
        close(s->wakefd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->uri);
    free(s->schema);
    free(s->setup_sql);
    free(s->describe);
    free(s->done_ids);
    free(s->due);
    pgs__keyed_ids_free(s);
    pgs__sched_free(s);
    free(s);
}

/* --- shared-store calls ----------------------------------------------------------------- */

static void pg_set_events(struct store *base, const struct store_events *ev, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    s->ev = *ev;
    s->ev_arg = arg;
    while (s->in_events) /* a call of the old ones may be under way */
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static void pg_want(struct store *base, unsigned n)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int more = n > s->want;
    s->want = s->stopping ? 0 : n;
    if (more)
        s->claim_now = 1;
    pthread_mutex_unlock(&s->lock);
    if (more)
        pgs__poke(s);
}

static int pg_available(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock);
    int up = s->ready;
    pthread_mutex_unlock(&s->lock);
    return up;
}

static size_t pg_queued(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    int64_t n = atomic_load(&s->queue_counted) + atomic_load(&s->queue_added);
    return n > 0 ? (size_t)n : 0;
}

static int pg_lease_fresh(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    return clock_now_ms() - atomic_load(&s->last_hb_ok_ms) < s->lease_ms;
}

static void pg_node_id(struct store *base, char out[JOB_NODE_MAX])
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->lock); /* a reaped node takes a new id */
    memcpy(out, s->node_id, JOB_NODE_MAX);
    pthread_mutex_unlock(&s->lock);
}

/* Reads, cancels and watches are requests to the thread (pg_requests.c). */
static const struct store_ops pg_ops = {
    .close = pg_close,
    .load = pg_load,
    .put = pg_put,
    .del = pg_delete,
    .sync = pg_sync,
    .committed = pg_committed,
    .on_commit = pg_on_commit,
    .describe = pg_describe,
    .shared = 1,
    .set_events = pg_set_events,
    .want = pg_want,
    .available = pg_available,
    .queued = pg_queued,
    .lease_fresh = pg_lease_fresh,
    .node_id = pg_node_id,
    .fetch = pgs__fetch,
    .fetch_many = pgs__fetch_many,
    .list = pgs__list,
    .cancel = pgs__cancel,
    .ask_cancel = pgs__ask_cancel,
    .forget = pgs__forget,
    .watch = pgs__watch,
    .read_request = pgs__read_request,
    .finished_requests = pgs__finished_requests,
    .submit_keyed = pgs__submit_keyed,
    .set_schedule_events = pgs__set_schedule_events,
    .schedule_tick = pgs__schedule_tick,
    .schedule_create = pgs__schedule_create,
    .schedule_read = pgs__schedule_read,
    .schedule_delete = pgs__schedule_delete,
};

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
    STAILQ_INIT(&s->writes);
    STAILQ_INIT(&s->sent);
    STAILQ_INIT(&s->requests);
    STAILQ_INIT(&s->pc.segs);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->uri = strdup(o->uri);
    s->schema = strdup(o->schema && *o->schema ? o->schema : "pyjobd");
    s->lease_ms = (int64_t)((o->lease > 0 ? o->lease : 10) * 1000);
    s->poll_ms = (int64_t)((o->poll > 0 ? o->poll : 1) * 1000);
    s->ttl_ms = (int64_t)(o->result_ttl * 1000);
    snprintf(s->node_name, sizeof(s->node_name), "%s", o->node_name ? o->node_name : "node");
    pgs__new_node_id(s);
    if (pgs__sched_new(s) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(s->chan_queued, sizeof(s->chan_queued), "%.80s.queued", s->schema);
    snprintf(s->chan_done, sizeof(s->chan_done), "%.80s.done", s->schema);
    snprintf(s->chan_cancel, sizeof(s->chan_cancel), "%.80s.cancel", s->schema);
    const char *const channels[3] = {s->chan_queued, s->chan_done, s->chan_cancel};
    if (!s->uri || !s->schema || describe_uri(s, err, errlen) != 0)
        goto fail;
    /* A plain identifier: it is also spliced into the setup script's DO blocks. */
    size_t len = strlen(s->schema);
    if (len > 63 || strspn(s->schema, "abcdefghijklmnopqrstuvwxyz0123456789_") != len ||
        (s->schema[0] >= '0' && s->schema[0] <= '9')) {
        snprintf(err, errlen,
                 "--pg-schema '%.80s': use 1 to 63 lowercase letters, digits and underscores, "
                 "not starting with a digit",
                 s->schema);
        goto fail;
    }
    /* Quoting needs a connection object; an unconnected one will do. */
    PGconn *q = PQconnectStart("host=/nonexistent connect_timeout=1");
    s->setup_sql = q ? pg_setup_sql(q, s->schema, channels) : NULL;
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
    clock_deadline_in(&until, (int64_t)((o->connect_wait > 0 ? o->connect_wait : 10) * 1000));
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
