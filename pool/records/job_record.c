/*
 * job_record.c — one job's record: the one constructor (every default in one place)
 * and its release. Whoever makes a record (a submission, a claim, a mirror for a
 * waiter, recovery) starts from pool__job_new.
 */
#include "records.h"
#include "pyjobd/clock.h"

#include <stdlib.h>
#include <string.h>

struct job *pool__job_new(const char *id)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    if (id)
        memcpy(j->v.id, id, JOB_ID_LEN + 1);
    j->v.status = JOB_QUEUED;
    j->v.error.exit_code = -1;
    j->v.error.max_rss_bytes = -1;
    LIST_INIT(&j->waiters);
    return j;
}

struct job *pool__job_from_spec(const struct job_spec *spec, double default_timeout)
{
    struct job *j = pool__job_new(NULL);
    if (!j)
        return NULL;
    if (spec->metadata && (!(j->spec.metadata = strdup(spec->metadata)) ||
                           !(j->v.metadata = strdup(spec->metadata)))) {
        pool__job_free(j);
        return NULL;
    }
    if (spec->idem_key && !(j->spec.idem_key = strdup(spec->idem_key))) {
        pool__job_free(j);
        return NULL;
    }
    if (job_retry_copy(&j->spec.retry, &spec->retry) != 0 ||
        job_retry_copy(&j->v.retry, &spec->retry) != 0) {
        pool__job_free(j);
        return NULL;
    }
    memcpy(j->spec.idem_digest, spec->idem_digest, sizeof(j->spec.idem_digest));
    j->spec.idem_expires_us = spec->idem_expires_us;
    clock_gettime(CLOCK_REALTIME, &j->v.created_at);
    j->v.timeout = spec->timeout > 0 ? spec->timeout : default_timeout;
    j->v.max_retries = spec->max_retries;
    j->v.retry_on_timeout = spec->retry_on_timeout;
    memcpy(j->v.rerun_of, spec->rerun_of, sizeof(j->v.rerun_of));
    j->v.rerun_of[JOB_ID_LEN] = 0;
    j->v.priority = spec->priority;
    j->v.soft_timeout = spec->soft_timeout;
    j->v.run_at_us = spec->run_at_us;
    j->v.expires_at_us = spec->expires_at_us;
    if (j->v.run_at_us > 0 && j->v.run_at_us > clock_real_us())
        j->v.status = JOB_SCHEDULED;
    job_spec_ref_payload(&j->spec, spec);
    j->spec.timeout = j->v.timeout;
    j->spec.max_retries = spec->max_retries;
    memcpy(j->spec.owner, spec->owner, sizeof(j->spec.owner));
    j->spec.owner[JOB_OWNER_MAX - 1] = 0;
    memcpy(j->v.owner, j->spec.owner, sizeof(j->v.owner));
    return j;
}

void pool__job_adopt(struct job *j, struct job_view *v, struct job_spec *spec)
{
    job_view_release(&j->v);
    job_spec_release(&j->spec);
    j->v = *v;
    j->spec = *spec;
    memset(v, 0, sizeof(*v));
    memset(spec, 0, sizeof(*spec));
}

void pool__job_free(struct job *j)
{
    if (!j)
        return;
    job_spec_release(&j->spec);
    job_view_release(&j->v);
    pool__outbuf_free(&j->out);
    pool__outbuf_free(&j->err);
    free(j);
}

size_t pool__job_result_bytes(const struct job *j)
{
    const struct job_view *v = &j->v;
    return (v->result ? blob_len(v->result) : 0) + (v->result_json ? blob_len(v->result_json) : 0) +
           (v->error.exception ? blob_len(v->error.exception) : 0);
}

void pool__job_drop_results(struct job *j)
{
    j->results_out += pool__job_result_bytes(j);
    blob_unref(j->v.result);
    blob_unref(j->v.result_json);
    blob_unref(j->v.error.exception);
    j->v.result = j->v.result_json = j->v.error.exception = NULL;
    /* A finished job's request (kept for a rerun) goes with its results. */
    if (job_status_is_terminal(j->v.status))
        job_spec_release(&j->spec);
}
