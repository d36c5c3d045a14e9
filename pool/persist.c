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
    if (p->cfg.store && !j->mirror)
        j->store_ticket = store_put(p->cfg.store, &j->v, &j->spec, j->seq, 0);
}

/* A job's first write (flags: STORE_CLAIMED when this node runs it). */
void pool__persist_new(struct pool *p, struct job *j, unsigned flags)
{
    if (p->cfg.store)
        j->store_ticket = store_put(p->cfg.store, &j->v, &j->spec, j->seq, STORE_NEW | flags);
}

/* Mirrors are not ours to delete; neither, on a shared store, are the records that
 * only left this node's memory (the database keeps them for --result-ttl). */
void pool__unpersist(struct pool *p, struct job *j, int expired)
{
    if (p->cfg.store && !j->mirror && !(expired && store_is_shared(p->cfg.store)))
        store_delete(p->cfg.store, j->v.id);
}

/* A growable array of jobs. */
struct job_list {
    struct job **items;
    size_t n, cap;
};

static int job_list_push(struct job_list *l, struct job *j)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct job **items = realloc(l->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = j;
    return 0;
}

struct recovery {
    struct pool *p;
    struct job_list done;    /* finished jobs, sorted by end time afterwards */
    struct job_list changed; /* jobs whose state recovery changed: written back after the
                              * load, never during it (one connection, one statement) */
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
    int rc = registry_insert(p->jobs, j->v.id, j);
    if (rc != 0) {
        pool__job_free(j);
        return rc;
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
        if (job_list_push(&r->changed, j) != 0)
            return -ENOMEM;
    }
    if (j->v.status == JOB_QUEUED) {
        pool__queue_push(p, j);
        r->queued++;
    } else if (job_list_push(&r->done, j) != 0) {
        return -ENOMEM;
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
    if (store_is_shared(p->cfg.store))
        return 0; /* jobs are claimed from it, not recovered */
    char err[256];
    int64_t t0 = clock_now_ms();
    int rc = store_load(p->cfg.store, recover_one, &r, err, sizeof(err));
    if (rc != 0) {
        log_error("cannot recover jobs from %s: %s", store_describe(p->cfg.store),
                  rc == -ENOMEM   ? "out of memory"
                  : rc == -EEXIST ? "a job id is stored twice (the file is damaged)"
                                  : err);
        free(r.done.items);
        free(r.changed.items);
        errno = rc == -ENOMEM ? ENOMEM : EIO;
        return -1;
    }
    for (size_t i = 0; i < r.changed.n; i++)
        pool__persist(p, r.changed.items[i]);
    free(r.changed.items);
    /* Finished jobs join the retention list in the order they finished, with their
     * age carried over from the wall clock. */
    if (r.done.n)
        qsort(r.done.items, r.done.n, sizeof(*r.done.items), by_finish);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t mono = clock_now_ms(), real = realtime_ms(now);
    for (size_t i = 0; i < r.done.n; i++) {
        struct job *j = r.done.items[i];
        pool__retention_add(p, j);
        j->finished_ms = mono - (real - realtime_ms(j->v.finished_at));
    }
    free(r.done.items);
    pool__retention_enforce(p, mono);
    if (r.queued || r.done.n)
        log_info("recovered %zu jobs from %s in %lld ms: %zu queued (%zu of them re-queued "
                 "after running when the server stopped), %zu finished (%zu interrupted)",
                 r.queued + r.done.n, store_describe(p->cfg.store),
                 (long long)(clock_now_ms() - t0), r.queued, r.requeued, r.done.n, r.interrupted);
    return 0;
}
