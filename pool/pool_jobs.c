/*
 * pool_jobs.c — the pool's public calls for job traffic (include/pyjobd/pool.h):
 * get, watch and output (submissions are in pool_submit.c). Each takes the pool lock briefly and
 * pokes the supervisor thread through its eventfd; none of them waits for a worker. With a shared
 * store, what this node does not hold is read from the database, outside the lock; so are, from a
 * single-node store, results that left memory (pool_results.c).
 */
#include "pool_results.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job, or NULL with *err = -ENOENT or -ESTALE. Lock held. */
static struct job *lookup(struct pool *p, const char *id, int *err)
{
    return pool__table_find(&p->lc.jobs, id, err);
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = lookup(p, id, &rc);
    if (j && pool__answers_locally(p, j)) {
        int missing = pool__results_missing(p, j);
        rc = job_view_copy(out, &j->v);
        pthread_mutex_unlock(&p->lock);
        if (rc == 0 && missing)
            rc = pool__results_fill(p, id, out); /* from the store, outside the lock */
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
        struct job *done = lookup(p, id, &(int){0});
        if (done && done->mirror && done->ran_here && job_status_is_terminal(done->v.status) &&
            !done->results_out) /* not when its results left memory */
            rc = job_view_copy(out, &done->v);
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

/* Lock held. Attaches a waiter to j. */
static int add_waiter(struct pool *p, struct job *j, int64_t deadline_ms, pool_watch_cb cb,
                      void *arg, int *earliest)
{
    return pool__waiter_add(&p->lc.waiters, j, deadline_ms, cb, arg, earliest);
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
        struct job *j = p->stopping ? NULL : pool__job_mirror(&p->lc, ids[k], &created);
        if (j && j->mirror && !job_status_is_terminal(j->v.status) && LIST_EMPTY(&j->waiters)) {
            pool__job_mirror_update(&p->lc, j, &views[k]);
            hold = add_waiter(p, j, until, hold_cb, NULL, &earliest) == 0;
        }
        if (created && !hold)
            pool__job_mirror_release(&p->lc, j);
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
        struct job *j = lookup(p, ids[i], &rcs[i]);
        /* A watched mirror is as fresh as the database's notifications: "not finished
         * yet" needs no round trip (its end arrives as a final view). Only its status
         * is meaningful until then, which is what multi-waits use. */
        int watched = j && j->mirror && !LIST_EMPTY(&j->waiters);
        if (j && (pool__answers_locally(p, j) || watched))
            rcs[i] = job_view_copy(&out[i], &j->v);
        else if (pool__shared(p))
            rcs[i] = 1, remote++; /* ask the database */
    }
    pthread_mutex_unlock(&p->lock);
    if (!remote)
        return pool__results_fill_views(p, out, rcs, n) == -ENOMEM ? -ENOMEM : 0;
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
    struct job *j = lookup(p, id, &rc);
    int missing = j && pool__results_missing(p, j);
    if (j)
        rc = job_view_copy(out, &j->v);
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && missing)
        rc = pool__results_fill(p, id, out);
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
        struct job *j = p->stopping ? NULL : pool__job_mirror(&p->lc, id, &created);
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
    struct job *j = lookup(p, id, &rc);
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

int pool_job_output(struct pool *p, const char *id, struct job_output *out)
{
    int rc = 0;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    struct job *j = lookup(p, id, &rc);
    if (pool__elsewhere(p, j) && !(j && j->ran_here)) {
        /* Output is kept by the node that ran the job, in its memory. */
        pthread_mutex_unlock(&p->lock);
        struct job_view v;
        rc = store_fetch(p->cfg.store, id, &v);
        if (rc == 0) {
            job_view_release(&v);
            rc = -EREMOTE;
        }
        return rc;
    }
    if (j) {
        out->out = blob_new_copy(j->out.data, j->out.len);
        out->err = blob_new_copy(j->err.data, j->err.len);
        out->out_dropped = j->out.dropped;
        out->err_dropped = j->err.dropped;
        if (!out->out || !out->err)
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != 0)
        job_output_release(out);
    return rc;
}

void job_output_release(struct job_output *o)
{
    blob_unref(o->out);
    blob_unref(o->err);
    memset(o, 0, sizeof(*o));
}
