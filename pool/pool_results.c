/*
 * pool_results.c — results that left memory (--max-results-memory, see
 * sources/results_memory.c) read back for the public calls that answer with jobs. The
 * record says how many bytes are out (results_out); its view, copied under the lock,
 * then lacks result, result_json and the exception pickle, and gets them from the
 * store (store_read_results, any thread) once the lock is released: a read from disk
 * never holds up the supervisor or other clients. (On a shared store the database
 * answers for finished jobs: nothing is read back here.)
 */
#include "pool_results.h"
#include "pyjobd/store.h"

#include <errno.h>
#include <stdlib.h>

int pool__results_missing(const struct pool *p, const struct job *j)
{
    return j->results_out > 0 && !pool__shared(p) && !j->v.result && !j->v.result_json &&
           !j->v.error.exception;
}

/* Store's results of id into *v (unchanged on failure): 0, or what a lookup says now
 * when the row is gone (-ENOENT, -ESTALE, -ENOBUFS; -EIO if the record is still here),
 * or the store's -EIO / -ENOMEM. */
static int read_back(struct pool *p, const char *id, struct job_view *v)
{
    int rc = store_read_results(p->cfg.store, id, v);
    if (rc == -ENOENT) {
        pthread_mutex_lock(&p->lock);
        int err = 0;
        rc = pool__table_find(&p->lc.jobs, id, &err) ? -EIO : err;
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

int pool__results_fill(struct pool *p, const char *id, struct job_view *v)
{
    int rc = read_back(p, id, v);
    if (rc != 0)
        job_view_release(v);
    return rc;
}

int pool__results_fill_views(struct pool *p, struct job_view *views, int *rcs, size_t n)
{
    if (!n || !p->cfg.store)
        return 0;
    char *missing = calloc(n, 1);
    if (!missing)
        return -ENOMEM;
    size_t count = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        int err;
        struct job *j =
            rcs && rcs[i] != 0 ? NULL : pool__table_find(&p->lc.jobs, views[i].id, &err);
        /* A view copied before its results left memory has them: only one without. */
        if (j && pool__results_missing(p, j) && !views[i].result && !views[i].result_json &&
            !views[i].error.exception)
            missing[i] = 1, count++;
    }
    pthread_mutex_unlock(&p->lock);
    int rc = 0;
    for (size_t i = 0; count && i < n && rc == 0; i++) {
        if (!missing[i])
            continue;
        int got = read_back(p, views[i].id, &views[i]);
        if (got == 0)
            continue;
        if (rcs) {
            job_view_release(&views[i]);
            rcs[i] = got;
        } else if (got == -EIO || got == -ENOMEM) {
            rc = got;
        } /* else: gone meanwhile, the view stays as it was copied */
    }
    free(missing);
    return rc;
}
