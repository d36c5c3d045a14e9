/*
 * pool_rerun.c — POST /v1/jobs/{id}/rerun and POST /v1/jobs/rerun: a finished job's
 * request, run again as a new job (rerun_of names the original). The request is the
 * one the job was submitted with (callable, arguments, options, retry policy,
 * metadata), kept with the record until retention removes it; when
 * --max-results-memory dropped it from memory with the results, or after a restart,
 * the payload is read back from the SQLite store. Its timing is not repeated (a rerun
 * runs now). On a shared store (PostgreSQL) any node reruns any finished job: the job
 * and its request are read from the database.
 */
#include "pyjobd/pool.h"
#include "sources/sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The options of a rerun of the finished job v into out's zeroed fields (the view
 * keeps them; its timing is not repeated): 0, or -ENOMEM (out released). */
static int options_of(const struct job_view *v, struct job_spec *out)
{
    out->timeout = v->timeout;
    out->max_retries = v->max_retries;
    out->retry_on_timeout = v->retry_on_timeout;
    out->priority = v->priority;
    out->soft_timeout = v->soft_timeout;
    memcpy(out->owner, v->owner, sizeof(out->owner));
    memcpy(out->rerun_of, v->id, sizeof(out->rerun_of));
    if ((v->metadata && !(out->metadata = strdup(v->metadata))) ||
        job_retry_copy(&out->retry, &v->retry) != 0) {
        job_spec_release(out);
        return -ENOMEM;
    }
    return 0;
}

/* A new spec for j's request (lock held): its options from the record, its payload
 * from memory when still there (*from_store = 0) or else to be read from the store
 * (*from_store = 1). 0, -ENODATA (gone), -ENOMEM. */
static int request_of(const struct pool *p, const struct job *j, struct job_spec *out,
                      int *from_store)
{
    memset(out, 0, sizeof(*out));
    *from_store = !j->spec.callable;
    if (*from_store && !p->cfg.store)
        return -ENODATA;
    if (!*from_store)
        job_spec_ref_payload(out, &j->spec);
    return options_of(&j->v, out);
}

/* The payload of a request whose record no longer holds it, from the store (no lock). */
static int request_payload(struct pool *p, struct job_spec *spec)
{
    int rc = store_read_request(p->cfg.store, spec->rerun_of, spec);
    return rc == -ENOENT || rc == -ENOTSUP ? -ENODATA : rc;
}

/* Is j one the filter takes: finished as it says, by tenant, since, error type. */
static int rerun_matches(const struct job *j, const struct pool_rerun_filter *f)
{
    if (!job_status_is_terminal(j->v.status) || j->v.status != f->status || j->mirror)
        return 0;
    if (f->tenant && strcmp(j->v.owner, f->tenant) != 0)
        return 0;
    if (f->error_type != JOB_ERR_NONE && j->v.error.type != f->error_type)
        return 0;
    return !f->since_us || clock_ts_us(j->v.finished_at) >= f->since_us;
}

/* A shared store's finished job, wherever it ran, and its request, from the database. */
static int shared_request(struct pool *p, const char *id, struct job_spec *spec)
{
    struct job_view v;
    memset(spec, 0, sizeof(*spec));
    int rc = pool_job_get(p, id, &v);
    if (rc != 0)
        return rc;
    if (!job_status_is_terminal(v.status))
        rc = -EBUSY;
    else if ((rc = options_of(&v, spec)) == 0 && (rc = request_payload(p, spec)) != 0)
        job_spec_release(spec);
    job_view_release(&v);
    return rc;
}

int pool_rerun(struct pool *p, const char *id, struct job_view *out)
{
    int rc = 0, from_store = 0;
    struct job_spec spec;
    if (pool__shared(p)) {
        if ((rc = shared_request(p, id, &spec)) != 0)
            return rc;
        rc = pool_submit(p, &spec, out);
        job_spec_release(&spec);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__table_find(&p->lc.jobs, id, &rc);
    if (j && !job_status_is_terminal(j->v.status))
        rc = -EBUSY;
    else if (j)
        rc = request_of(p, j, &spec, &from_store);
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && from_store && (rc = request_payload(p, &spec)) != 0)
        job_spec_release(&spec);
    if (rc != 0)
        return rc;
    rc = pool_submit(p, &spec, out);
    job_spec_release(&spec);
    return rc;
}

/* A shared store's bulk rerun: the finished jobs and their requests from the database,
 * each request's options from its job. */
static int rerun_many_shared(struct pool *p, const struct pool_rerun_filter *f,
                             struct job_view *out, size_t max, size_t *n)
{
    struct job_view *views = NULL;
    struct job_spec *specs = NULL;
    size_t m = 0;
    int rc = store_finished_requests(p->cfg.store, f, max, &views, &specs, &m);
    for (size_t i = 0; rc == 0 && i < m; i++) {
        struct job_spec *sp = &specs[i];
        /* Only the payload and the result format come from the row's request. */
        int result_json = sp->result_json;
        struct job_spec payload = *sp;
        memset(sp, 0, sizeof(*sp));
        sp->callable = payload.callable, sp->args = payload.args, sp->kwargs = payload.kwargs;
        sp->json_args = payload.json_args, sp->json_kwargs = payload.json_kwargs;
        sp->result_json = result_json;
        payload.callable = payload.args = payload.kwargs = NULL;
        payload.json_args = payload.json_kwargs = NULL;
        job_spec_release(&payload);
        rc = options_of(&views[i], sp);
    }
    if (rc == 0 && m)
        rc = pool_submit_batch(p, specs, m, out);
    for (size_t i = 0; i < m; i++) {
        job_view_release(&views[i]);
        job_spec_release(&specs[i]);
    }
    free(views);
    free(specs);
    if (rc == 0)
        *n = m;
    return rc;
}

int pool_rerun_many(struct pool *p, const struct pool_rerun_filter *f, struct job_view *out,
                    size_t max, size_t *n)
{
    *n = 0;
    if (pool__shared(p))
        return rerun_many_shared(p, f, out, max, n);
    struct job_spec *specs = calloc(max ? max : 1, sizeof(*specs));
    unsigned char *stored = calloc(max ? max : 1, 1);
    if (!specs || !stored) {
        free(specs);
        free(stored);
        return -ENOMEM;
    }
    size_t m = 0;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    /* Oldest finished first; a job whose request is gone is passed over. */
    for (struct job *j = pool__done_first(&p->lc.jobs); j && m < max && rc == 0;
         j = TAILQ_NEXT(j, done_link)) {
        if (!rerun_matches(j, f))
            continue;
        int from_store = 0, got = request_of(p, j, &specs[m], &from_store);
        if (got == 0)
            stored[m++] = (unsigned char)from_store;
        else if (got == -ENOMEM)
            rc = got;
    }
    pthread_mutex_unlock(&p->lock);
    /* Requests the store keeps are read outside the lock; one it lost is passed over. */
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < m; i++) {
        int got = stored[i] ? request_payload(p, &specs[i]) : 0;
        if (got == -ENOMEM || got == -EIO)
            rc = got;
        if (got != 0) {
            job_spec_release(&specs[i]);
            continue;
        }
        if (kept != i) {
            specs[kept] = specs[i];
            memset(&specs[i], 0, sizeof(specs[i]));
        }
        kept++;
    }
    m = rc == 0 ? kept : m;
    free(stored);
    if (rc == 0 && m)
        rc = pool_submit_batch(p, specs, m, out);
    for (size_t i = 0; i < m; i++)
        job_spec_release(&specs[i]);
    free(specs);
    if (rc == 0)
        *n = m;
    return rc;
}
