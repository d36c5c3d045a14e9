/*
 * pool.c — the pool's public face for job traffic (include/pyjobd/pool.h):
 * construction and teardown, submit, get and watch. Each call takes the pool lock
 * briefly and pokes the supervisor thread (supervisor.c) through an eventfd; none
 * of them waits for a worker. Administrative calls are in pool_admin.c.
 */
#include "internal.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

/* Ids of expired jobs remembered at most (33 bytes each, touched only when used). */
#define EXPIRED_IDS_MAX 100000

const double pool_duration_bounds[POOL_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, __builtin_inf()};

static void free_job_cb(void *rec, void *arg)
{
    (void)arg;
    pool__job_free(rec);
}

struct pool *pool_new(const struct pool_config *cfg)
{
    if (!cfg->worker_path || cfg->workers == 0) {
        errno = EINVAL;
        return NULL;
    }
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cfg = *cfg;
    /* Absolute, because workers may start in another directory (--worker-cwd). */
    p->worker_path = realpath(cfg->worker_path, NULL);
    if (p->worker_path)
        p->cfg.worker_path = p->worker_path;
    if (!p->cfg.max_output_bytes)
        p->cfg.max_output_bytes = 1u << 20;
    if (!p->cfg.min_workers)
        p->cfg.min_workers = 1;
    p->epfd = p->wakefd = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->jobs = registry_new();
    p->workers = calloc(cfg->workers, sizeof(*p->workers));
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    size_t expired_cap =
        cfg->max_jobs && cfg->max_jobs < EXPIRED_IDS_MAX ? cfg->max_jobs : EXPIRED_IDS_MAX;
    if (!p->jobs || !p->workers || p->epfd < 0 || p->wakefd < 0 ||
        pool__expired_init(&p->expired, expired_cap) != 0 || pool__worker_env_init(p) != 0)
        goto err;
    for (unsigned i = 0; i < cfg->workers; i++) {
        struct worker *w = calloc(1, sizeof(*w));
        if (!w)
            goto err;
        w->slot = i;
        w->active = 1;
        w->state = WORKER_EMPTY;
        w->pidfd = w->sock = w->out_fd = w->err_fd = -1;
        w->respawn_at_ms = 0; /* the supervisor starts every slot on its first turn */
        p->workers[i] = w;
        p->nslots++;
    }
    p->target = cfg->workers;
    if (cfg->store && pool__recover(p) != 0)
        goto err;
    pool__cluster_init(p);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0)
        goto err;
    int rc = pthread_create(&p->thread, NULL, pool__supervisor_main, p);
    if (rc != 0) {
        errno = rc;
        goto err;
    }
    p->thread_started = 1;
    return p;
err : {
    int saved = errno ? errno : ENOMEM;
    pool_free(p);
    errno = saved;
    return NULL;
}
}

void pool_stop(struct pool *p)
{
    if (!p || !p->thread_started || p->stopped)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
    pthread_join(p->thread, NULL);
    p->stopped = 1;
}

void pool_drain(struct pool *p, double grace)
{
    pthread_mutex_lock(&p->lock);
    if (!p->draining && !p->stopping) {
        p->draining = 1;
        p->drain_deadline_ms = clock_now_ms() + (int64_t)(grace * 1000.0);
    }
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
}

int pool_drained(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    int done = p->stopping || p->running == 0 || clock_now_ms() >= p->drain_deadline_ms;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_stop(p);
    if (p->jobs) {
        registry_foreach(p->jobs, free_job_cb, NULL);
        registry_free(p->jobs);
    }
    pool__expired_free(&p->expired);
    pool__worker_env_free(p);
    free(p->worker_path);
    for (unsigned i = 0; i < p->nslots; i++) {
        free(p->workers[i]->in);
        free(p->workers[i]->out);
        free(p->workers[i]);
    }
    free(p->workers);
    free(p->waiters.items);
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->wakefd >= 0)
        close(p->wakefd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void new_job_id(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            abort(); /* the kernel's CSPRNG is not optional: ids must be unguessable */
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[JOB_ID_LEN] = 0;
}

int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out)
{
    if (n == 0)
        return 0;
    int shared = pool__shared(p);
    if (shared && !store_available(p->cfg.store))
        return -ENOTCONN; /* nothing could be recorded: refuse now rather than lose it */
    /* Build every record before taking the lock: allocation is the slow part. */
    struct job **jobs = calloc(n, sizeof(*jobs));
    if (!jobs)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        jobs[i] = pool__job_new(p, &specs[i]);
        if (!jobs[i])
            rc = -ENOMEM;
        else
            new_job_id(jobs[i]->v.id);
    }
    uint64_t ticket = 0;
    size_t kept = n; /* jobs[0..kept) stay in this node's memory */
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        if (p->stopping || p->draining)
            rc = -ESHUTDOWN;
        else if (p->cfg.max_queue && p->queued + n > p->cfg.max_queue)
            rc = -EAGAIN;
        else if (shared && p->cfg.max_queue &&
                 store_queued(p->cfg.store) + p->queued + n > p->cfg.max_queue)
            rc = -EAGAIN; /* the shared queue: every node's unclaimed jobs */
        size_t inserted = 0;
        for (; rc == 0 && inserted < n; inserted++) {
            struct job *j = jobs[inserted];
            while ((rc = registry_insert(p->jobs, j->v.id, j)) == -EEXIST)
                new_job_id(j->v.id);
        }
        /* Shared store: this node runs what its idle workers can take at once and
         * leaves the rest in the database's queue, for any node to claim. */
        if (rc == 0 && shared) {
            unsigned idle = pool__idle_workers(p);
            kept = idle > p->queued ? idle - p->queued : 0;
            kept = kept < n ? kept : n;
            for (size_t i = 0; i < kept; i++)
                store_node_id(p->cfg.store, jobs[i]->v.node);
        }
        /* The caller's copies, before anything is queued: all or none. */
        size_t copied = 0;
        for (; rc == 0 && copied < n; copied++)
            rc = job_view_copy(&views_out[copied], &jobs[copied]->v);
        if (rc != 0) {
            for (size_t i = 0; i + 1 < copied; i++)
                job_view_release(&views_out[i]);
            /* Take back what went in (only -ENOMEM gets here mid-way). */
            for (size_t i = 0; i < inserted; i++)
                if (registry_find(p->jobs, jobs[i]->v.id) == jobs[i])
                    registry_remove(p->jobs, jobs[i]->v.id);
        } else {
            for (size_t i = 0; i < n; i++) {
                struct job *j = jobs[i];
                if (i >= kept) {
                    pool__persist_new(p, j, 0);
                    registry_remove(p->jobs, j->v.id);
                    continue;
                }
                j->seq = ++p->next_seq;
                pool__all_append(p, j);
                pool__queue_push(p, j);
                pool__persist_new(p, j, STORE_CLAIMED);
            }
            ticket = jobs[n - 1]->store_ticket;
            p->submitted += n;
            pool__retention_enforce(p, clock_now_ms()); /* keeps --max-jobs a bound */
        }
        pthread_mutex_unlock(&p->lock);
    }
    for (size_t i = rc != 0 ? 0 : kept; i < n; i++)
        pool__job_free(jobs[i]);
    free(jobs);
    if (rc == 0)
        pool__wake(p);
    /* A 201 means the jobs are on disk: wait for their group commit. */
    if (rc == 0 && p->cfg.store && (rc = store_sync(p->cfg.store, ticket)) != 0)
        for (size_t i = 0; i < n; i++)
            job_view_release(&views_out[i]);
    return rc;
}

int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out)
{
    return pool_submit_batch(p, spec, 1, view_out);
}

/* The job, or NULL with *err = -ENOENT or -ESTALE. Lock held. */
struct job *pool__lookup(struct pool *p, const char *id, int *err)
{
    struct job *j = registry_find(p->jobs, id);
    if (!j)
        *err = pool__expired_contains(&p->expired, id) ? -ESTALE : -ENOENT;
    return j;
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__lookup(p, id, &rc);
    if (j && pool__answers_locally(p, j)) {
        rc = job_view_copy(out, &j->v);
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    pthread_mutex_unlock(&p->lock);
    if (!pool__shared(p))
        return rc;
    rc = store_fetch(p->cfg.store, id, out);
    if (rc == -ENOTCONN || rc == -ETIMEDOUT) {
        /* The database is out of reach: a final state committed from here is still
         * right (only a deletion elsewhere could have happened since). */
        pthread_mutex_lock(&p->lock);
        struct job *done = registry_find(p->jobs, id);
        if (done && done->mirror && done->ran_here && job_status_is_terminal(done->v.status))
            rc = job_view_copy(out, &done->v);
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

/* Lock held. Attaches a waiter to j (a finished job or a stopping pool: fires now). */
static int add_waiter(struct pool *p, struct job *j, int64_t deadline_ms, pool_watch_cb cb,
                      void *arg, int *earliest)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (w) {
        w->cb = cb;
        w->arg = arg;
        w->deadline_ms = deadline_ms;
        w->job = j;
    }
    if (!w || pool__waiter_heap_push(&p->waiters, w) != 0) {
        free(w);
        return -ENOMEM;
    }
    w->next = j->waiters;
    if (j->waiters)
        j->waiters->prev = w;
    j->waiters = w;
    *earliest = pool__waiter_heap_top(&p->waiters) == w;
    return 0;
}

/* Multi-waits ask for the same unfinished jobs again and again (a client's
 * FIRST_COMPLETED loop): unfinished jobs of other nodes read from the database stay
 * watched here for a while (a mirror, a waiter that only holds it), so that the next
 * asks need no round trip and their end is notified. */
#define MIRROR_HOLD_MS 30000

static void hold_cb(void *arg)
{
    (void)arg;
}

static void keep_watching(struct pool *p, char (*ids)[JOB_ID_LEN + 1], const struct job_view *views,
                          const int *found, size_t n)
{
    int64_t until = clock_now_ms() + MIRROR_HOLD_MS;
    for (size_t k = 0; k < n; k++) {
        if (!found[k] || job_status_is_terminal(views[k].status))
            continue;
        int created = 0, earliest = 0, hold = 0;
        pthread_mutex_lock(&p->lock);
        struct job *j = p->stopping ? NULL : pool__mirror_for(p, ids[k], &created);
        if (j && j->mirror && !job_status_is_terminal(j->v.status) && !j->waiters) {
            struct job_view copy;
            if (job_view_copy(&copy, &views[k]) == 0) {
                job_view_release(&j->v);
                j->v = copy;
            }
            hold = add_waiter(p, j, until, hold_cb, NULL, &earliest) == 0;
        }
        if (created && !hold)
            pool__mirror_release(p, j);
        pthread_mutex_unlock(&p->lock);
        if (hold && created)
            store_watch(p->cfg.store, ids[k]);
    }
}

int pool_job_get_many(struct pool *p, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                      int *rcs)
{
    size_t remote = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct job *j = pool__lookup(p, ids[i], &rcs[i]);
        /* A watched mirror is as fresh as the database's notifications: "not finished
         * yet" needs no round trip (its end arrives as a final view). Only its status
         * is meaningful until then, which is what multi-waits use. */
        int watched = j && j->mirror && j->waiters;
        if (j && (pool__answers_locally(p, j) || watched))
            rcs[i] = job_view_copy(&out[i], &j->v);
        else if (pool__shared(p))
            rcs[i] = 1, remote++; /* ask the database */
    }
    pthread_mutex_unlock(&p->lock);
    if (!remote)
        return 0;
    /* One round trip for all the others. */
    char(*ask)[JOB_ID_LEN + 1] = calloc(remote, sizeof(*ask));
    struct job_view *views = calloc(remote, sizeof(*views));
    int *found = calloc(remote, sizeof(*found));
    int rc = ask && views && found ? 0 : -ENOMEM;
    for (size_t i = 0, k = 0; rc == 0 && i < n; i++)
        if (rcs[i] == 1)
            memcpy(ask[k++], ids[i], JOB_ID_LEN + 1);
    if (rc == 0)
        rc = store_fetch_many(p->cfg.store, ask, remote, views, found);
    if (rc == 0)
        keep_watching(p, ask, views, found, remote);
    for (size_t i = 0, k = 0; i < n; i++) {
        if (rcs[i] != 1)
            continue;
        if (rc != 0)
            rcs[i] = rc;
        else if (found[k])
            rcs[i] = 0, out[i] = views[k];
        else
            rcs[i] = -ENOENT;
        k++;
    }
    free(ask);
    free(views);
    free(found);
    return rc == -ENOMEM ? rc : 0;
}

int pool_job_peek(struct pool *p, const char *id, struct job_view *out)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__lookup(p, id, &rc);
    if (j)
        rc = job_view_copy(out, &j->v);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* A watch on a job this node does not run. The callers have just read it (unfinished),
 * so no round trip here: a mirror carries the waiter, the database is told someone
 * waits (its end then notifies) and re-read once, in case it ended meanwhile. */
static int watch_remote(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb,
                        void *arg)
{
    int rc = 0, earliest = 0, created = 0, now_done = deadline_ms <= clock_now_ms();
    if (!now_done) {
        pthread_mutex_lock(&p->lock);
        /* The record may be ours by now (claimed meanwhile): then it is the one to
         * wait on, like any local job. */
        struct job *j = p->stopping ? NULL : pool__mirror_for(p, id, &created);
        if (!j || (job_status_is_terminal(j->v.status) && !j->awaiting_commit))
            now_done = 1; /* stopping, out of memory, or finished meanwhile: answer now */
        else
            rc = add_waiter(p, j, deadline_ms, cb, arg, &earliest);
        pthread_mutex_unlock(&p->lock);
    }
    if (rc != 0)
        return rc;
    if (now_done) {
        cb(arg);
        return 0;
    }
    if (created) /* a mirror that already existed is being watched */
        store_watch(p->cfg.store, id);
    if (earliest)
        pool__wake(p);
    return 0;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__lookup(p, id, &rc);
    if (pool__elsewhere(p, j)) {
        pthread_mutex_unlock(&p->lock);
        return watch_remote(p, id, deadline_ms, cb, arg);
    }
    if (!j) {
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    if ((job_status_is_terminal(j->v.status) && !j->awaiting_commit) || p->stopping ||
        deadline_ms <= clock_now_ms()) {
        pthread_mutex_unlock(&p->lock);
        cb(arg);
        return 0;
    }
    int earliest = 0;
    rc = add_waiter(p, j, deadline_ms, cb, arg, &earliest);
    pthread_mutex_unlock(&p->lock);
    if (earliest)
        pool__wake(p); /* the supervisor must shorten its sleep */
    return rc;
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    out->workers = p->target;
    out->workers_ready = p->workers_ready;
    snprintf(out->python_version, sizeof(out->python_version), "%s", p->python_version);
    snprintf(out->cloudpickle_version, sizeof(out->cloudpickle_version), "%s",
             p->cloudpickle_version);
    snprintf(out->boot_error, sizeof(out->boot_error), "%s", p->boot_error);
    out->queued = p->queued;
    out->running = p->running;
    out->stopping = p->stopping || p->draining;
    pthread_mutex_unlock(&p->lock);
    if (pool__shared(p)) {
        store_node_id(p->cfg.store, out->node);
        out->store_down = !store_available(p->cfg.store);
    }
}
