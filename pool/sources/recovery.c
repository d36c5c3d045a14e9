/*
 * recovery.c — the jobs a single-node store (SQLite) holds when the server starts,
 * taken up again through the lifecycle's own transitions: queued ones queued again in
 * their order, running ones (the server went away under them) re-queued if they have
 * retries left and otherwise failed as "interrupted", finished ones kept for the rest
 * of their retention, their age carried over from the wall clock (with
 * --max-results-memory, their results left in the store until asked for). Nothing is written
 * back while the store is still reading (one connection, one statement): the load
 * only gathers, the transitions come after it. A shared store's jobs are claimed, not
 * recovered.
 */
#include "sources.h"
#include "pyjobd/format.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stored jobs, in the order they were loaded (seq). */
struct loaded {
    struct job **items;
    size_t n, cap;
    int drop_results; /* --max-results-memory: finished jobs' results stay in the store */
};

static int load_one(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq)
{
    struct loaded *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct job **items = realloc(l->items, cap * sizeof(*items));
        if (!items) {
            job_view_release(v);
            job_spec_release(spec);
            return -ENOMEM;
        }
        l->items = items;
        l->cap = cap;
    }
    struct job *j = pool__job_new(v->id);
    if (!j) {
        job_view_release(v);
        job_spec_release(spec);
        return -ENOMEM;
    }
    pool__job_adopt(j, v, spec);
    /* Read back when asked for (pool_jobs.c): the memory they take at start is then
     * one row's, whatever the store holds. */
    if (l->drop_results && job_status_is_terminal(j->v.status))
        pool__job_drop_results(j);
    j->seq = seq;
    l->items[l->n++] = j;
    return 0;
}

static int64_t realtime_ms(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int by_finish(const void *a, const void *b)
{
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    int64_t dx = realtime_ms(x->v.finished_at), dy = realtime_ms(y->v.finished_at);
    return (dx > dy) - (dx < dy);
}

static int by_seq(const void *a, const void *b)
{
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* One stored Idempotency-Key back into the pool's map. */
static int load_key(void *arg, const char *owner, const char *key, const uint8_t *digest,
                    const char *job_id, int64_t expires_us)
{
    struct pool *p = arg;
    struct idem_entry *e = pool__idem_entry_new(owner, key, digest, job_id, expires_us);
    if (!e)
        return -ENOMEM;
    pool__idem_insert(&p->idem, e);
    return 0;
}

int pool__recover(struct pool *p)
{
    if (store_is_shared(p->cfg.store))
        return 0;
    struct loaded l = {.drop_results = p->cfg.max_results_memory > 0};
    char err[256];
    int64_t t0 = clock_now_ms();
    int rc = store_load(p->cfg.store, load_one, &l, err, sizeof(err));
    /* The keys too, before anything is written (both read on the writer's connection,
     * which the store's thread uses from the first write on). A key whose job was
     * removed by retention since answers "gone". */
    if (rc == 0 && (rc = store_load_keys(p->cfg.store, load_key, p)) != 0)
        snprintf(err, sizeof(err), "cannot read the idempotency keys");
    size_t queued = 0, requeued = 0, finished = 0, interrupted = 0, indexed = 0, scheduled = 0;
    /* Indexed in creation order (listing and its cursors rely on it). */
    if (rc == 0 && l.n) /* qsort's array may not be NULL, even for no items */
        qsort(l.items, l.n, sizeof(*l.items), by_seq);
    for (; rc == 0 && indexed < l.n; indexed++)
        rc = pool__job_restored(&p->lc, l.items[indexed]);
    if (rc != 0) {
        log_error("cannot recover jobs from %s: %s", store_describe(p->cfg.store),
                  rc == -ENOMEM   ? "out of memory"
                  : rc == -EEXIST ? "a job id is stored twice (the file is damaged)"
                                  : err);
        for (size_t i = indexed ? indexed - 1 : 0; i < l.n; i++)
            pool__job_free(l.items[i]); /* not in the table */
        free(l.items);
        errno = rc == -ENOMEM ? ENOMEM : EIO;
        return -1;
    }
    /* Finished jobs join the done list in the order they finished, their age carried
     * over from the wall clock. */
    if (l.n)
        qsort(l.items, l.n, sizeof(*l.items), by_finish);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t mono = clock_now_ms(), real = realtime_ms(now);
    for (size_t i = 0; i < l.n; i++) {
        struct job *j = l.items[i];
        pool__job_restored_done(&p->lc, j, mono - (real - realtime_ms(j->v.finished_at)));
        finished += job_status_is_terminal(j->v.status);
    }
    /* Then what was on a worker when the server went away, in creation order. */
    if (l.n)
        qsort(l.items, l.n, sizeof(*l.items), by_seq);
    for (size_t i = 0; i < l.n; i++) {
        struct job *j = l.items[i];
        if (j->v.status == JOB_QUEUED) {
            queued++;
        } else if (j->v.status == JOB_SCHEDULED) {
            scheduled++;
        } else if (j->v.status == JOB_RUNNING && pool__job_retry(&p->lc, j, 0)) {
            queued++;
            requeued++;
        } else if (j->v.status == JOB_RUNNING) {
            pool__job_fail(&p->lc, j, JOB_ERR_INTERRUPTED,
                           str_format("The server stopped while this job was running (attempt "
                                      "%u) and it has no retries left (max_retries %u). Submit "
                                      "it again.",
                                      j->v.attempts, j->spec.max_retries));
            finished++;
            interrupted++;
        }
    }
    free(l.items);
    pool__retention_enforce(p, mono);
    if (pool__idem_count(&p->idem))
        log_info("recovered %zu idempotency keys", pool__idem_count(&p->idem));
    if (queued || finished || scheduled)
        log_info("recovered %zu jobs from %s in %lld ms: %zu queued (%zu of them re-queued "
                 "after running when the server stopped), %zu scheduled, %zu finished (%zu "
                 "interrupted)",
                 queued + scheduled + finished, store_describe(p->cfg.store),
                 (long long)(clock_now_ms() - t0), queued, requeued, scheduled, finished,
                 interrupted);
    return 0;
}
