/*
 * persist.c — the pool's side of the durable store: every transition of a job is
 * queued to the store (pool__persist, called with the pool lock held, so writes
 * reach the store in the order they happened), and on start the stored jobs come
 * back (pool__recover): queued ones queued again in their order, running ones
 * re-queued if they have retries left and otherwise failed as "interrupted",
 * finished ones kept for the rest of their retention.
 */
#include "internal.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"
#include "pyjobd/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pool__persist(struct pool *p, struct job *j)
{
    if (p->cfg.store)
        j->store_ticket = store_put(p->cfg.store, &j->v, &j->spec, j->seq);
}

void pool__unpersist(struct pool *p, struct job *j)
{
    if (p->cfg.store)
        store_delete(p->cfg.store, j->v.id);
}

struct recovery {
    struct pool *p;
    struct job **done; /* finished jobs, sorted by end time afterwards */
    size_t ndone, cap;
    size_t queued, requeued, interrupted;
};

static int64_t realtime_ms(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int recover_one(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    struct recovery *r = arg;
    struct pool *p = r->p;
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        job_view_release(v);
        job_spec_release(spec);
        return -ENOMEM;
    }
    j->v = *v;
    j->spec = *spec;
    j->seq = seq;
    if (registry_insert(p->jobs, j->v.id, j) != 0) {
        pool__job_free(j);
        return -ENOMEM;
    }
    if (seq > p->next_seq)
        p->next_seq = seq;
    pool__all_append(p, j);

    if (j->v.status == JOB_RUNNING) {
        /* It was on a worker when the server went away. */
        if (j->v.attempts <= j->spec.max_retries) {
            j->v.status = JOB_QUEUED;
            r->requeued++;
        } else {
            job_error_release(&j->v.error);
            j->v.error.type = JOB_ERR_INTERRUPTED;
            if (asprintf(&j->v.error.message,
                         "The server stopped while this job was running (attempt %u) and it "
                         "has no retries left (max_retries %u). Submit it again.",
                         j->v.attempts, j->spec.max_retries) < 0)
                j->v.error.message = NULL;
            j->v.status = JOB_FAILED;
            clock_gettime(CLOCK_REALTIME, &j->v.finished_at);
            job_spec_release(&j->spec);
            p->finished[JOB_FAILED]++;
            r->interrupted++;
        }
        pool__persist(p, j);
    }
    if (j->v.status == JOB_QUEUED) {
        pool__queue_push(p, j);
        r->queued++;
    } else {
        if (r->ndone == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 1024;
            struct job **d = realloc(r->done, cap * sizeof(*d));
            if (!d)
                return -ENOMEM;
            r->done = d;
            r->cap = cap;
        }
        r->done[r->ndone++] = j;
    }
    return 0;
}

static int by_finish(const void *a, const void *b)
{
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    int64_t dx = realtime_ms(x->v.finished_at), dy = realtime_ms(y->v.finished_at);
    return (dx > dy) - (dx < dy);
}

int pool__recover(struct pool *p)
{
    struct recovery r = {.p = p};
    char err[256];
    int64_t t0 = pool_now_ms();
    int rc = store_load(p->cfg.store, recover_one, &r, err, sizeof(err));
    if (rc != 0) {
        log_error("cannot recover jobs: %s", rc == -ENOMEM ? "out of memory" : err);
        free(r.done);
        errno = rc == -ENOMEM ? ENOMEM : EIO;
        return -1;
    }
    /* Finished jobs join the retention list in the order they finished, with their
     * age carried over from the wall clock. */
    qsort(r.done, r.ndone, sizeof(*r.done), by_finish);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t mono = pool_now_ms(), real = realtime_ms(now);
    for (size_t i = 0; i < r.ndone; i++) {
        pool__retention_add(p, r.done[i]);
        r.done[i]->finished_ms = mono - (real - realtime_ms(r.done[i]->v.finished_at));
    }
    free(r.done);
    pool__retention_enforce(p, mono);
    if (r.queued || r.ndone)
        log_info("recovered %zu jobs from %s in %lld ms: %zu queued (%zu of them re-queued "
                 "after running when the server stopped), %zu finished (%zu interrupted)",
                 r.queued + r.ndone, store_describe(p->cfg.store), (long long)(pool_now_ms() - t0),
                 r.queued, r.requeued, r.ndone, r.interrupted);
    return 0;
}
