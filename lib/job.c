/*
 * job.c — helpers over the plain job data of include/pyjobd/job.h: names of states
 * and error types, and releasing/copying the memory a spec or a view owns.
 */
#include "pyjobd/job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *job_status_name(enum job_status s)
{
    switch (s) {
    case JOB_QUEUED:
        return "queued";
    case JOB_RUNNING:
        return "running";
    case JOB_SUCCEEDED:
        return "succeeded";
    case JOB_FAILED:
        return "failed";
    case JOB_CANCELLED:
        return "cancelled";
    case JOB_SCHEDULED:
        return "scheduled";
    }
    return "unknown";
}

const char *job_error_type_name(enum job_error_type t)
{
    switch (t) {
    case JOB_ERR_NONE:
        return NULL;
    case JOB_ERR_EXCEPTION:
        return "exception";
    case JOB_ERR_TIMEOUT:
        return "timeout";
    case JOB_ERR_WORKER_CRASHED:
        return "worker_crashed";
    case JOB_ERR_INVALID_PAYLOAD:
        return "invalid_payload";
    case JOB_ERR_UNPICKLABLE_RESULT:
        return "unpicklable_result";
    case JOB_ERR_CANCELLED:
        return "cancelled";
    case JOB_ERR_INTERRUPTED:
        return "interrupted";
    case JOB_ERR_UNJSONABLE_RESULT:
        return "unjsonable_result";
    case JOB_ERR_NODE_LOST:
        return "node_lost";
    case JOB_ERR_PROTOCOL_VIOLATION:
        return "protocol_violation";
    case JOB_ERR_RESULT_TOO_LARGE:
        return "result_too_large";
    case JOB_ERR_EXPIRED:
        return "expired";
    }
    return NULL;
}

const char *job_bytes_text(uint64_t n, char *buf)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, JOB_BYTES_TEXT, "%llu bytes", (unsigned long long)n);
        return buf;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(buf, JOB_BYTES_TEXT, "%.1f %s", v, units[u]);
    return buf;
}

void job_retry_release(struct job_retry *r)
{
    free(r->on);
    free(r->not_on);
    memset(r, 0, sizeof(*r));
}

int job_retry_copy(struct job_retry *dst, const struct job_retry *src)
{
    *dst = *src;
    dst->on = src->on ? strdup(src->on) : NULL;
    dst->not_on = src->not_on ? strdup(src->not_on) : NULL;
    if ((src->on && !dst->on) || (src->not_on && !dst->not_on)) {
        job_retry_release(dst);
        return -ENOMEM;
    }
    return 0;
}

void job_spec_release(struct job_spec *spec)
{
    blob_unref(spec->callable);
    blob_unref(spec->args);
    blob_unref(spec->kwargs);
    blob_unref(spec->json_args);
    blob_unref(spec->json_kwargs);
    free(spec->metadata);
    free(spec->idem_key);
    job_retry_release(&spec->retry);
    memset(spec, 0, sizeof(*spec));
}

void job_spec_ref_payload(struct job_spec *dst, const struct job_spec *src)
{
    dst->callable = blob_ref(src->callable);
    dst->args = blob_ref(src->args);
    dst->kwargs = blob_ref(src->kwargs);
    dst->json_args = blob_ref(src->json_args);
    dst->json_kwargs = blob_ref(src->json_kwargs);
    dst->result_json = src->result_json;
    dst->retry_on_timeout = src->retry_on_timeout;
    dst->priority = src->priority;
    dst->soft_timeout = src->soft_timeout;
}

void job_error_release(struct job_error *e)
{
    free(e->message);
    free(e->exc_type);
    blob_unref(e->exception);
    free(e->traceback);
    memset(e, 0, sizeof(*e));
    e->exit_code = -1;
    e->max_rss_bytes = -1;
}

void job_view_release(struct job_view *v)
{
    blob_unref(v->result);
    blob_unref(v->result_json);
    free(v->metadata);
    job_error_release(&v->error);
    job_retry_release(&v->retry);
    for (unsigned i = 0; i < v->nhistory; i++)
        free(v->history[i].message);
    free(v->history);
    memset(v, 0, sizeof(*v));
    v->error.exit_code = -1;
    v->error.max_rss_bytes = -1;
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -ENOMEM;
}

int job_view_copy(struct job_view *dst, const struct job_view *src)
{
    *dst = *src;
    dst->result = blob_ref(src->result);
    dst->result_json = blob_ref(src->result_json);
    dst->error.exception = blob_ref(src->error.exception);
    dst->error.message = dst->error.exc_type = dst->error.traceback = NULL;
    dst->metadata = NULL;
    dst->history = NULL;
    dst->nhistory = 0;
    dst->retry = (struct job_retry){0};
    if (src->nhistory && (dst->history = calloc(src->nhistory, sizeof(*dst->history)))) {
        for (unsigned i = 0; i < src->nhistory; i++) {
            dst->history[i] = src->history[i];
            dst->history[i].message = NULL;
        }
        dst->nhistory = src->nhistory;
        for (unsigned i = 0; i < src->nhistory; i++)
            if (dup_str(&dst->history[i].message, src->history[i].message)) {
                job_view_release(dst);
                return -ENOMEM;
            }
    }
    if ((src->nhistory && !dst->history) || job_retry_copy(&dst->retry, &src->retry) ||
        dup_str(&dst->metadata, src->metadata) ||
        dup_str(&dst->error.message, src->error.message) ||
        dup_str(&dst->error.exc_type, src->error.exc_type) ||
        dup_str(&dst->error.traceback, src->error.traceback)) {
        job_view_release(dst);
        return -ENOMEM;
    }
    return 0;
}

int job_id_is_valid(const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (i >= JOB_ID_LEN || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return i == JOB_ID_LEN;
}
