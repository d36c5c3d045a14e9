/*
 * pool_results.h — the public calls' side of --max-results-memory (pool_results.c):
 * a view copied from a record whose results left memory is completed from the store,
 * outside the pool lock.
 */
#ifndef PYJOBD_POOL_RESULTS_H
#define PYJOBD_POOL_RESULTS_H

#include "sources/sources.h"

/* Lock held: 1 when a view just copied from j must be completed (pool__results_fill). */
int pool__results_missing(const struct pool *p, const struct job *j);

/* Lock not held: reads the results of job id from the store into *v. 0; else *v is
 * released and the error is the job's now (-ENOENT, -ESTALE or -ENOBUFS once it is
 * gone meanwhile) or the store's (-EIO, -ENOMEM). */
int pool__results_fill(struct pool *p, const char *id, struct job_view *v);

/* Lock not held: pool__results_fill for each of n views copied from records (those with
 * rcs[i] == 0; rcs NULL: all of them) whose results are not in memory; a view whose job
 * is gone meanwhile stays as copied. With rcs, a failed view gets its error in rcs[i]
 * (and is released); without, the first failure is returned (views untouched after
 * it) and the others are left as they are. 0, -ENOMEM, or that failure. */
int pool__results_fill_views(struct pool *p, struct job_view *views, int *rcs, size_t n);

#endif
