/*
 * cluster.c — the pool's side of a shared store (store_shared.h): several nodes, one
 * queue. The pool holds the jobs this node runs ("owned": queued here, running here,
 * or finished here) and, for long-polls, copies of other nodes' jobs ("mirrors",
 * never written back). Everything else is read from the database.
 *
 *  - capacity: after each supervisor turn the pool tells the store how many jobs to
 *    claim (two per idle worker, minus its own queue); claimed jobs arrive here;
 *  - a waiter on another node's job gets a mirror record; the store updates it
 *    (completion NOTIFY or periodic re-check) and the waiters fire as usual;
 *  - a fenced write or a reaped node: the job is not ours any more, its worker is
 *    stopped and the record dropped, so reads go to the database.
 */
#include "internal.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pool__shared(const struct pool *p)
{
    return store_is_shared(p->cfg.store);
}

unsigned pool__idle_workers(const struct pool *p)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        const struct worker *w = p->workers[i];
        if (w->active && w->state == WORKER_IDLE)
            n++;
    }
    return n;
}

void pool__cluster_want(struct pool *p)
{
    if (!pool__shared(p))
        return;
    /* A node with idle workers claims one job for each, and one more each to start
     * without a round trip when the first ends; a busy node claims nothing, so long
     * jobs are not hoarded while other nodes idle. */
    unsigned idle = pool__idle_workers(p);
    unsigned want = 0;
    if (!p->draining && !p->stopping && idle > p->queued)
        want = 2 * idle - (unsigned)p->queued;
    store_want(p->cfg.store, want);
}

/* A record the database now answers for: stop its worker, forget it here. */
static void drop_owned(struct pool *p, struct job *j)
{
    if (j->worker) {
        struct worker *w = j->worker;
        w->job = NULL;
        j->worker = NULL;
        pool__end_worker(p, w, END_CANCEL);
    }
    if (j->v.status == JOB_RUNNING)
        p->running--;
    j->mirror = 1;
    pool__waiters_fire_job(p, j); /* they read the database's answer */
    pool__forget_job(p, j, 0);
}

/* From memory: what runs here (while this node's lease is surely its own); the rest,
 * finished jobs included, from the database, which has the last word on them. */
int pool__answers_locally(const struct pool *p, const struct job *j)
{
    if (!pool__shared(p))
        return 1;
    return !j->mirror && !job_status_is_terminal(j->v.status) && store_lease_fresh(p->cfg.store);
}

int pool__elsewhere(const struct pool *p, const struct job *j)
{
    return pool__shared(p) && !(j && !j->mirror);
}

void pool__mirror_release(struct pool *p, struct job *j)
{
    if (j->mirror && !j->waiters && !job_status_is_terminal(j->v.status))
        pool__forget_job(p, j, 0);
}

static void on_claimed(void *arg, struct job_view *v, struct job_spec *spec)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, v->id);
    if (j && !j->mirror) {
        /* Already ours (found again after a reconnect). */
        pthread_mutex_unlock(&p->lock);
        job_view_release(v);
        job_spec_release(spec);
        return;
    }
    if (!j) {
        j = calloc(1, sizeof(*j));
        if (!j || registry_insert(p->jobs, v->id, j) != 0) {
            pthread_mutex_unlock(&p->lock);
            free(j);
            log_error("out of memory taking job %s; it stays claimed by this node until it "
                      "reconnects or stops (then it is taken up again or handed back)",
                      v->id);
            job_view_release(v);
            job_spec_release(spec);
            return;
        }
        j->seq = ++p->next_seq;
        pool__all_append(p, j);
    } else {
        /* A job we mirrored for a waiter is now ours to run: its waiters stay. */
        job_view_release(&j->v);
        job_spec_release(&j->spec);
        if (j->done_prev || p->done_head == j) {
            if (j->done_prev)
                j->done_prev->done_next = j->done_next;
            else
                p->done_head = j->done_next;
            if (j->done_next)
                j->done_next->done_prev = j->done_prev;
            else
                p->done_tail = j->done_prev;
            j->done_prev = j->done_next = NULL;
        }
    }
    j->mirror = 0;
    j->v = *v;
    j->spec = *spec;
    j->v.status = JOB_QUEUED;
    j->v.worker_pid = 0;
    pool__queue_push(p, j);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
}

static void on_updated(void *arg, const struct job_view *v)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, v->id);
    if (j && j->mirror && !job_status_is_terminal(j->v.status)) {
        struct job_view copy;
        if (job_view_copy(&copy, v) == 0) {
            job_view_release(&j->v);
            j->v = copy;
            if (job_status_is_terminal(j->v.status)) {
                pool__retention_add(p, j);
                pool__waiters_fire_job(p, j);
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
}

static void on_committed(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct job *j = registry_find(p->jobs, ids[i]);
        if (!j || j->mirror || !j->awaiting_commit)
            continue;
        j->awaiting_commit = 0;
        j->mirror = 1; /* the database answers for it from now on */
        pool__waiters_fire_job(p, j);
    }
    pthread_mutex_unlock(&p->lock);
}

/* Another node relays a client's cancel of a job this node has. */
static void on_cancel(void *arg, const char *id, int force)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, id);
    int rc = j && !j->mirror ? pool__cancel_here(p, j, force) : -ENOENT;
    pthread_mutex_unlock(&p->lock);
    if (rc == 0) {
        log_info("job %s cancelled at the request of another node", id);
        pool__wake(p);
    }
}

static void on_fenced(void *arg, const char *id)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, id);
    if (j && !j->mirror)
        drop_owned(p, j);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
}

struct drop_list {
    struct job **items;
    size_t n, cap;
};

static void collect_unfinished(void *rec, void *arg)
{
    struct job *j = rec;
    struct drop_list *l = arg;
    if (j->mirror || job_status_is_terminal(j->v.status))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct job **items = realloc(l->items, cap * sizeof(*items));
        if (!items)
            return;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = j;
}

static void on_reaped(void *arg)
{
    struct pool *p = arg;
    struct drop_list l = {0};
    pthread_mutex_lock(&p->lock);
    registry_foreach(p->jobs, collect_unfinished, &l);
    for (size_t i = 0; i < l.n; i++)
        drop_owned(p, l.items[i]);
    pthread_mutex_unlock(&p->lock);
    free(l.items);
    if (l.n)
        log_warn("stopped %zu jobs that other nodes took over", l.n);
    pool__wake(p);
}

/* Keeps, of ids, those a local waiter waits for on another node. */
static size_t on_keep_waited(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n)
{
    struct pool *p = arg;
    size_t kept = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct job *j = registry_find(p->jobs, ids[i]);
        if (j && j->mirror && j->waiters && !job_status_is_terminal(j->v.status))
            memmove(ids[kept++], ids[i], JOB_ID_LEN + 1);
    }
    pthread_mutex_unlock(&p->lock);
    return kept;
}

static size_t on_waited(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t max)
{
    struct pool *p = arg;
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->waiters.len && n < max; i++) {
        struct job *j = p->waiters.items[i]->job;
        if (j->mirror && !job_status_is_terminal(j->v.status))
            memcpy(ids[n++], j->v.id, JOB_ID_LEN + 1);
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pool__cluster_init(struct pool *p)
{
    if (!pool__shared(p))
        return;
    struct store_events ev = {
        .claimed = on_claimed,
        .updated = on_updated,
        .fenced = on_fenced,
        .committed = on_committed,
        .cancel = on_cancel,
        .reaped = on_reaped,
        .waited = on_waited,
        .keep_waited = on_keep_waited,
    };
    store_set_events(p->cfg.store, &ev, p);
}

/* A watch on a job this node does not hold: a mirror carries the waiter (its view
 * stays a placeholder until the database's final one arrives). Lock held. */
struct job *pool__mirror_for(struct pool *p, const char *id, int *created)
{
    struct job *j = registry_find(p->jobs, id);
    *created = 0;
    if (j)
        return j;
    j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    snprintf(j->v.id, sizeof(j->v.id), "%s", id);
    j->v.status = JOB_QUEUED;
    j->v.error.exit_code = -1;
    j->v.error.max_rss_bytes = -1;
    if (registry_insert(p->jobs, j->v.id, j) != 0) {
        free(j);
        return NULL;
    }
    j->mirror = 1;
    j->seq = ++p->next_seq;
    pool__all_append(p, j);
    *created = 1;
    return j;
}
