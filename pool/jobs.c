/*
 * jobs.c — job records and the lists they sit on: every job by creation order (for
 * listing newest first), the FIFO queue, and removal. Called with the pool lock held.
 */
#include "internal.h"
#include "pyjobd/registry.h"

#include <stdlib.h>
#include <string.h>

struct job *pool__job_new(struct pool *p, const struct job_spec *spec)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    if (spec->metadata && !(j->spec.metadata = strdup(spec->metadata))) {
        free(j);
        return NULL;
    }
    if (spec->metadata && !(j->v.metadata = strdup(spec->metadata))) {
        free(j->spec.metadata);
        free(j);
        return NULL;
    }
    j->v.status = JOB_QUEUED;
    clock_gettime(CLOCK_REALTIME, &j->v.created_at);
    j->v.timeout = spec->timeout > 0 ? spec->timeout : p->cfg.default_timeout;
    j->v.max_retries = spec->max_retries;
    j->v.error.exit_code = -1;
    j->v.error.max_rss_bytes = -1;
    j->spec.callable = blob_ref(spec->callable);
    j->spec.args = blob_ref(spec->args);
    j->spec.kwargs = blob_ref(spec->kwargs);
    j->spec.json_args = blob_ref(spec->json_args);
    j->spec.json_kwargs = blob_ref(spec->json_kwargs);
    j->spec.result_json = spec->result_json;
    j->spec.timeout = j->v.timeout;
    j->spec.max_retries = spec->max_retries;
    j->spec.retry_on_timeout = spec->retry_on_timeout;
    memcpy(j->spec.owner, spec->owner, sizeof(j->spec.owner));
    j->spec.owner[JOB_OWNER_MAX - 1] = 0;
    memcpy(j->v.owner, j->spec.owner, sizeof(j->v.owner));
    return j;
}

void pool__job_free(struct job *j)
{
    if (!j)
        return;
    job_spec_release(&j->spec);
    job_view_release(&j->v);
    pool__output_free(&j->out);
    pool__output_free(&j->err);
    free(j);
}

void pool__all_append(struct pool *p, struct job *j)
{
    j->all_next = NULL;
    j->all_prev = p->all_tail;
    if (p->all_tail)
        p->all_tail->all_next = j;
    else
        p->all_head = j;
    p->all_tail = j;
}

void pool__queue_push(struct pool *p, struct job *j)
{
    j->q_next = NULL;
    j->q_prev = p->queue_tail;
    if (p->queue_tail)
        p->queue_tail->q_next = j;
    else
        p->queue_head = j;
    p->queue_tail = j;
    j->queued = 1;
    p->queued++;
}

void pool__queue_push_front(struct pool *p, struct job *j)
{
    j->q_prev = NULL;
    j->q_next = p->queue_head;
    if (p->queue_head)
        p->queue_head->q_prev = j;
    else
        p->queue_tail = j;
    p->queue_head = j;
    j->queued = 1;
    p->queued++;
}

void pool__queue_remove(struct pool *p, struct job *j)
{
    if (!j->queued)
        return;
    if (j->q_prev)
        j->q_prev->q_next = j->q_next;
    else
        p->queue_head = j->q_next;
    if (j->q_next)
        j->q_next->q_prev = j->q_prev;
    else
        p->queue_tail = j->q_prev;
    j->q_prev = j->q_next = NULL;
    j->queued = 0;
    p->queued--;
}

struct job *pool__queue_pop(struct pool *p)
{
    struct job *j = p->queue_head;
    if (j)
        pool__queue_remove(p, j);
    return j;
}

/* Removes a finished job from every index and frees it. With expired, its id is
 * remembered so that a later lookup can say it expired rather than never existed. */
void pool__forget_job(struct pool *p, struct job *j, int expired)
{
    pool__waiters_fire_job(p, j); /* they read the answer elsewhere (or "gone") */
    registry_remove(p->jobs, j->v.id);
    pool__unpersist(p, j, expired);
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else
        p->all_head = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    else
        p->all_tail = j->all_prev;
    if (j->done_prev)
        j->done_prev->done_next = j->done_next;
    else if (p->done_head == j)
        p->done_head = j->done_next;
    if (j->done_next)
        j->done_next->done_prev = j->done_prev;
    else if (p->done_tail == j)
        p->done_tail = j->done_prev;
    pool__queue_remove(p, j);
    if (expired && p->expired.set) {
        struct expired_ids *e = &p->expired;
        if (e->len == e->cap) {
            registry_remove(e->set, e->ring[e->head]);
            e->head = (e->head + 1) % e->cap;
            e->len--;
        }
        char *slot = e->ring[(e->head + e->len) % e->cap];
        memcpy(slot, j->v.id, JOB_ID_LEN + 1);
        if (registry_insert(e->set, slot, slot) == 0)
            e->len++;
    }
    pool__job_free(j);
}
