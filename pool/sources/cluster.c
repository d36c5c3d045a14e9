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
#include "sources.h"
#include "pyjobd/log.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pool__shared(const struct pool *p)
{
    return store_is_shared(p->cfg.store);
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
    if (!p->draining && !p->stopping && idle > p->lc.jobs.nqueued)
        want = 2 * idle - (unsigned)p->lc.jobs.nqueued;
    store_want(p->cfg.store, want);
}

/* A record the database now answers for: stop its worker, forget it here. */
static void drop_owned(struct pool *p, struct job *j)
{
    if (j->worker) {
        struct worker *w = j->worker;
        pool__take_job(w);
        pool__end_worker(p, w, END_CANCEL);
    }
    pool__job_disown(&p->lc, j); /* its waiters read the database's answer */
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

static struct job *find(struct pool *p, const char *id)
{
    int err;
    return pool__table_find(&p->lc.jobs, id, &err);
}

static void on_claimed(void *arg, struct job_view *v, struct job_spec *spec)
{
    struct pool *p = arg;
    char id[JOB_ID_LEN + 1];
    memcpy(id, v->id, sizeof(id));
    pthread_mutex_lock(&p->lock);
    int rc = pool__job_claimed(&p->lc, v, spec);
    pthread_mutex_unlock(&p->lock);
    if (rc == -ENOMEM)
        log_error("out of memory taking job %s; it stays claimed by this node until it "
                  "reconnects or stops (then it is taken up again or handed back)",
                  id);
    if (rc == 0)
        pool__wake(p);
}

static void on_updated(void *arg, const struct job_view *v)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = find(p, v->id);
    if (j)
        pool__job_mirror_update(&p->lc, j, v);
    pool__results_memory_enforce(p); /* a final view brings its results */
    pthread_mutex_unlock(&p->lock);
}

static void on_committed(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct job *j = find(p, ids[i]);
        if (j)
            pool__job_committed(&p->lc, j);
    }
    pool__results_memory_enforce(p); /* the database answers for these now */
    pthread_mutex_unlock(&p->lock);
}

/* Another node relays a client's cancel of a job this node has (grace > 0: an
 * interrupt, as pool_interrupt's here). */
static void on_cancel(void *arg, const char *id, int force, double grace)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = find(p, id);
    int rc = -ENOENT, interrupted = 0;
    if (j && !j->mirror && grace > 0 && j->v.status == JOB_RUNNING && j->worker &&
        pool__interrupt_running(j, grace) == 0)
        rc = 0, interrupted = 1;
    else if (j && !j->mirror)
        rc = pool__cancel_here(p, j, force || grace > 0);
    pthread_mutex_unlock(&p->lock);
    if (rc == 0) {
        log_info("job %s %s at the request of another node", id,
                 interrupted ? "interrupted" : "cancelled");
        pool__wake(p);
    }
}

static void on_fenced(void *arg, const char *id)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct job *j = find(p, id);
    if (j && !j->mirror)
        drop_owned(p, j);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
}

static void on_reaped(void *arg)
{
    struct pool *p = arg;
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (struct job *j = TAILQ_FIRST(&p->lc.jobs.all), *next; j; j = next) {
        next = TAILQ_NEXT(j, all_link); /* dropping j frees it */
        if (j->mirror || job_status_is_terminal(j->v.status))
            continue;
        drop_owned(p, j);
        n++;
    }
    pthread_mutex_unlock(&p->lock);
    if (n)
        log_warn("stopped %zu jobs that other nodes took over", n);
    pool__wake(p);
}

/* Keeps, of ids, those a local waiter waits for on another node. */
static size_t on_keep_waited(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n)
{
    struct pool *p = arg;
    size_t kept = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct job *j = find(p, ids[i]);
        if (j && j->mirror && !LIST_EMPTY(&j->waiters) && !job_status_is_terminal(j->v.status))
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
    for (size_t i = 0; i < p->lc.waiters.heap.len && n < max; i++) {
        struct job *j = pool__waiter_of(p->lc.waiters.heap.items[i])->job;
        if (j->mirror && !job_status_is_terminal(j->v.status))
            memcpy(ids[n++], j->v.id, JOB_ID_LEN + 1);
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pool__cluster_stop(struct pool *p)
{
    if (pool__shared(p))
        store_set_events(p->cfg.store, &(struct store_events){0}, NULL); /* waits for a call */
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
