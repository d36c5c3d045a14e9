/*
 * pool_admin.c — the pool's administrative calls: cancel, delete, list, stats and
 * resize. Like pool.c, each runs under the pool lock and leaves anything slow (a
 * worker's exit, a replacement's start) to the supervisor thread.
 */
#include "pool_results.h"
#include "pyjobd/blob.h"
#include "pyjobd/log.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CANCEL_CONFIRM_MS 3000

int pool__cancel_elsewhere(struct pool *p, const char *id, int force, double grace)
{
    int status;
    char node[JOB_NODE_MAX];
    int rc = store_cancel(p->cfg.store, id, &status, node);
    if (rc != -EXDEV)
        return rc;
    if (status == JOB_RUNNING && !force && !(grace > 0))
        return -EBUSY;
    store_ask_cancel(p->cfg.store, node, id, force, grace);
    /* An interrupted job has its grace to end: its node kills it then, or its lease
     * runs out. Nothing to wait for here. */
    if (status == JOB_RUNNING && grace > 0)
        return 0;
    for (int64_t until = clock_now_ms() + CANCEL_CONFIRM_MS; clock_now_ms() < until;) {
        struct timespec pause = {.tv_nsec = 20 * 1000000};
        nanosleep(&pause, NULL);
        struct job_view v;
        if ((rc = store_fetch(p->cfg.store, id, &v)) != 0)
            return rc;
        int end = job_status_is_terminal(v.status), cancelled = v.status == JOB_CANCELLED;
        int running = v.status == JOB_RUNNING;
        job_view_release(&v);
        if (end)
            return cancelled ? 0 : -EALREADY;
        if (running && !force)
            return -EBUSY; /* it started before its node got the request */
    }
    return -EXDEV; /* its node did not answer (unreachable, or presumed dead soon) */
}

int pool_cancel(struct pool *p, const char *id, int force)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__table_find(&p->lc.jobs, id, &rc);
    if (pool__elsewhere(p, j)) {
        pthread_mutex_unlock(&p->lock);
        return pool__cancel_elsewhere(p, id, force, 0);
    }
    uint64_t ticket = 0;
    if (j && (rc = pool__cancel_here(p, j, force)) == 0)
        ticket = j->store_ticket;
    pthread_mutex_unlock(&p->lock);
    if (rc == 0)
        pool__wake(p);
    /* With a shared store, other nodes see the cancellation once it is committed. */
    if (rc == 0 && pool__shared(p))
        rc = store_sync(p->cfg.store, ticket);
    return rc;
}

int pool_delete(struct pool *p, const char *id)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__table_find(&p->lc.jobs, id, &rc);
    if (pool__elsewhere(p, j)) {
        if (j && LIST_EMPTY(&j->waiters))
            pool__job_forget(&p->lc, j, 0); /* a mirror: forget the copy too */
        pthread_mutex_unlock(&p->lock);
        return store_forget(p->cfg.store, id);
    }
    if (j && !job_status_is_terminal(j->v.status))
        rc = -EBUSY;
    else if (j)
        pool__job_forget(&p->lc, j, 0);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pool_list(struct pool *p, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next)
{
    if (pool__shared(p))
        return store_list(p->cfg.store, q, out, n, next); /* every node's jobs */
    size_t limit = q->limit ? q->limit : 100;
    struct job_view *views = calloc(limit, sizeof(*views));
    if (!views)
        return -ENOMEM;
    size_t got = 0, results = 0;
    int rc = 0;
    uint64_t last = 0;
    *next = 0;
    pthread_mutex_lock(&p->lock);
    /* Newest first. The cursor is the seq of the last job of the previous page, so a
     * page stays right while jobs are added or removed around it. */
    struct job *j;
    TAILQ_FOREACH_REVERSE(j, &p->lc.jobs.all, job_list, all_link)
    {
        if (q->cursor && j->seq >= q->cursor)
            continue;
        if (q->status >= 0 && (int)j->v.status != q->status)
            continue;
        if (q->owner && strcmp(j->v.owner, q->owner) != 0)
            continue;
        /* With what left memory (--max-results-memory): it is read back below. */
        size_t size = (j->v.result ? blob_len(j->v.result) : 0) +
                      (j->v.result_json ? blob_len(j->v.result_json) : 0) + j->results_out;
        if (got == limit || (q->result_budget && got && size > q->result_budget - results)) {
            *next = last; /* there is at least one more */
            break;
        }
        if (q->result_budget) /* saturates: a first job past the budget ends the page */
            results = size < q->result_budget - results ? results + size : q->result_budget;
        if ((rc = job_view_copy(&views[got], &j->v)) != 0)
            break;
        got++;
        last = j->seq;
    }
    pthread_mutex_unlock(&p->lock);
    /* Results that left memory come back from the store only when results are asked
     * for: a page of summaries needs none of them. */
    if (rc == 0 && q->result_budget)
        rc = pool__results_fill_views(p, views, NULL, got);
    if (rc != 0) {
        for (size_t i = 0; i < got; i++)
            job_view_release(&views[i]);
        free(views);
        return rc;
    }
    *out = got ? views : NULL;
    if (!got)
        free(views);
    *n = got;
    return 0;
}

int pool_get_stats(struct pool *p, struct pool_stats *out)
{
    static const char *const names[] = {"empty", "starting", "idle", "busy", "exiting"};
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    out->workers = calloc(p->nslots ? p->nslots : 1, sizeof(*out->workers));
    if (!out->workers) {
        pthread_mutex_unlock(&p->lock);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state == WORKER_EMPTY)
            continue;
        struct pool_worker_info *wi = &out->workers[out->nworkers++];
        wi->pid = w->pid;
        wi->state = names[w->state];
        if (w->job) {
            memcpy(wi->job_id, w->job->v.id, JOB_ID_LEN + 1);
            memcpy(wi->job_owner, w->job->v.owner, JOB_OWNER_MAX);
        }
        wi->jobs_done = w->jobs_done;
        wi->started_at = w->started_at;
        wi->rss_bytes = pool__worker_rss(w->pid);
        wi->uid = pool__worker_uid(w->pid);
        wi->retiring = !w->active || w->ending != END_NONE;
    }
    out->workers_target = p->target;
    out->queued = p->lc.jobs.nqueued;
    out->scheduled = p->lc.jobs.nscheduled;
    out->running = p->lc.running;
    out->submitted = p->lc.submitted;
    memcpy(out->finished, p->lc.finished, sizeof(out->finished));
    out->restarts_crash = p->restarts[END_CRASH];
    out->restarts_timeout = p->restarts[END_TIMEOUT];
    out->restarts_recycle = p->restarts[END_RECYCLE];
    out->restarts_cancel = p->restarts[END_CANCEL];
    out->restarts_tenant = p->restarts[END_TENANT];
    out->boot_failures = p->boot_failures;
    memcpy(out->boot_error, p->boot_error, sizeof(out->boot_error));
    memcpy(out->duration_buckets, p->lc.duration_buckets, sizeof(out->duration_buckets));
    out->duration_sum = p->lc.duration_sum;
    out->duration_count = p->lc.duration_count;
    out->jobs_retained = pool__table_count(&p->lc.jobs);
    out->results_memory_bytes = pool__results_memory_bytes(p);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void pool_stats_release(struct pool_stats *s)
{
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
}

/* Order in which slots are given up when shrinking: cheapest to lose first. */
static int retire_rank(const struct worker *w)
{
    switch (w->state) {
    case WORKER_EMPTY:
    case WORKER_EXITING:
        return 0;
    case WORKER_STARTING:
        return 1;
    case WORKER_IDLE:
        return 2;
    case WORKER_BUSY:
        return 3;
    }
    return 4;
}

static int grow(struct pool *p, unsigned want)
{
    /* Take back slots that are still retiring first: no kill, no spawn. */
    for (unsigned i = 0; i < p->nslots && p->target < want; i++) {
        struct worker *w = p->workers[i];
        if (!w->active && w->state != WORKER_EMPTY && w->ending == END_NONE) {
            w->active = 1;
            p->target++;
        }
    }
    for (unsigned i = 0; i < p->nslots && p->target < want; i++) {
        struct worker *w = p->workers[i];
        if (!w->active && w->state == WORKER_EMPTY) {
            w->active = 1;
            w->respawn_at_ms = 0;
            p->target++;
        }
    }
    while (p->target < want) {
        struct worker **slots = realloc(p->workers, (p->nslots + 1) * sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        p->workers = slots;
        struct worker *w = pool__worker_new(p->nslots);
        if (!w)
            return -ENOMEM;
        p->workers[p->nslots++] = w;
        p->target++;
    }
    return 0;
}

static void shrink(struct pool *p, unsigned want)
{
    for (int rank = 0; rank <= 3 && p->target > want; rank++) {
        for (unsigned i = 0; i < p->nslots && p->target > want; i++) {
            struct worker *w = p->workers[i];
            if (!w->active || retire_rank(w) != rank)
                continue;
            w->active = 0;
            p->target--;
            /* Idle and starting workers go now; a busy one finishes its job first
             * (the supervisor retires it when the result arrives). */
            if (w->state == WORKER_IDLE || w->state == WORKER_STARTING)
                pool__end_worker(p, w, END_RETIRE);
        }
    }
}

int pool_resize(struct pool *p, unsigned workers)
{
    if (workers < 1 || workers > 1024)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->draining)
        rc = -ESHUTDOWN;
    else if (workers > p->target)
        rc = grow(p, workers);
    else if (workers < p->target)
        shrink(p, workers);
    if (rc == 0)
        log_info("pool resized to %u workers", p->target);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
    return rc;
}
