/*
 * lifecycle.c — every job transition (see lifecycle.h). The only place that writes a
 * job's status, keeps the queued/running/finished counters, queues store writes for
 * a job, and moves records between the table's lists.
 */
#include "lifecycle.h"
#include "pyjobd/clock.h"
#include "pyjobd/format.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"

#include <errno.h>
#include <sys/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double pool_duration_bounds[POOL_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, __builtin_inf()};

int pool__lifecycle_init(struct lifecycle *lc, struct store *store, size_t tombstones)
{
    memset(lc, 0, sizeof(*lc));
    lc->store = store;
    lc->shared = store_is_shared(store);
    return pool__table_init(&lc->jobs, tombstones);
}

void pool__lifecycle_free(struct lifecycle *lc)
{
    pool__table_free(&lc->jobs);
    pool__waiters_free(&lc->waiters);
}

/* --- the store's copy ---------------------------------------------------------------- */

/* Queues the job's current state (mirrors are the database's, never written back). */
static void persist(struct lifecycle *lc, struct job *j)
{
    if (lc->store && !j->mirror)
        j->store_ticket = store_put(lc->store, &j->v, &j->spec, j->seq, 0);
}

/* Mirrors are not ours to delete; neither, on a shared store, are the records that
 * only left this node's memory (the database keeps them for --result-ttl). */
static void unpersist(struct lifecycle *lc, struct job *j, int expired)
{
    if (lc->store && !j->mirror && !(expired && lc->shared))
        store_delete(lc->store, j->v.id);
}

/* The running counts, the pool's and the job's tenant's (--tenant-max-running). */
static void running_add(struct lifecycle *lc, struct job *j)
{
    struct tenant *tn = pool__tenant_of(&lc->jobs, j);
    lc->running++;
    if (tn)
        tn->running++;
}

static void running_sub(struct lifecycle *lc, struct job *j)
{
    lc->running--;
    if (j->tenant)
        j->tenant->running--;
}

/* --- waiting for a time ------------------------------------------------------------- */

/* When a scheduled job may be queued: its retry's backoff, else its run_at. */
static int64_t due_us(const struct job *j)
{
    return j->v.next_attempt_us ? j->v.next_attempt_us : j->v.run_at_us;
}

/* A job that is not running yet takes its place: scheduled ones wait for their time on
 * a timer, queued ones join the queue (a retry at the head of its level) with a timer
 * for their expires_at, if any (only a job that never started expires). */
static void pending(struct lifecycle *lc, struct job *j, int front)
{
    if (j->v.status == JOB_SCHEDULED) {
        lc->jobs.nscheduled++;
        j->counted_scheduled = 1;
        if (pool__timer_set(&lc->jobs, j, due_us(j)) != 0)
            log_error("job %s: out of memory for its timer", j->v.id);
        return;
    }
    if (front)
        pool__queue_push_front(&lc->jobs, j);
    else
        pool__queue_push(&lc->jobs, j);
    if (j->v.expires_at_us && !j->v.attempts &&
        pool__timer_set(&lc->jobs, j, j->v.expires_at_us) != 0)
        log_error("job %s: out of memory for its expires_at timer", j->v.id);
}

/* No longer waiting: its timer and its place among the scheduled go. */
static void not_pending(struct lifecycle *lc, struct job *j)
{
    pool__timer_clear(&lc->jobs, j);
    pool__scheduled_uncount(&lc->jobs, j);
}

void pool__job_due(struct lifecycle *lc, struct job *j)
{
    int64_t now = clock_real_us();
    pool__timer_clear(&lc->jobs, j);
    if (j->v.expires_at_us && !j->v.attempts && now >= j->v.expires_at_us) {
        char when[CLOCK_TEXT_LEN];
        struct timespec at = clock_us_ts(j->v.expires_at_us);
        if (clock_format(&at, when) != 0)
            snprintf(when, sizeof(when), "%s", "?");
        pool__job_fail(lc, j, JOB_ERR_EXPIRED,
                       str_format("The job had not started by its expires_at (%s): it was "
                                  "not run. Give it more time (expires_in, expires_at) or more "
                                  "workers to the queue it waits in.",
                                  when));
        return;
    }
    if (j->v.status != JOB_SCHEDULED)
        return;
    if (now < due_us(j)) {
        /* Early by the clocks' difference (the wall clock stepped back): wait again. */
        if (pool__timer_set(&lc->jobs, j, due_us(j)) != 0)
            log_error("job %s: out of memory for its timer", j->v.id);
        return;
    }
    pool__scheduled_uncount(&lc->jobs, j);
    int retry = j->v.next_attempt_us != 0;
    j->v.next_attempt_us = 0;
    j->v.status = JOB_QUEUED;
    pending(lc, j, retry);
    persist(lc, j);
}

/* --- entering ----------------------------------------------------------------------- */

int pool__job_admit(struct lifecycle *lc, struct job *j)
{
    return pool__table_insert(&lc->jobs, j);
}

void pool__job_withdraw(struct lifecycle *lc, struct job *j)
{
    pool__table_remove(&lc->jobs, j, JOB_GONE_FORGOTTEN);
}

uint64_t pool__job_submitted(struct lifecycle *lc, struct job *j, int here)
{
    lc->submitted++;
    uint64_t ticket = 0;
    if (lc->store)
        ticket = j->store_ticket =
            store_put(lc->store, &j->v, &j->spec, j->seq, STORE_NEW | (here ? STORE_CLAIMED : 0));
    if (here) {
        pending(lc, j, 0);
    } else {
        pool__table_remove(&lc->jobs, j, JOB_GONE_FORGOTTEN);
        pool__job_free(j);
    }
    return ticket;
}

int pool__job_claimed(struct lifecycle *lc, struct job_view *v, struct job_spec *spec)
{
    int err;
    struct job *j = pool__table_find(&lc->jobs, v->id, &err);
    if (j && !j->mirror) {
        job_view_release(v);
        job_spec_release(spec);
        return -EEXIST;
    }
    if (!j) {
        j = pool__job_new(v->id);
        if (!j || pool__table_insert(&lc->jobs, j) != 0) {
            pool__job_free(j);
            job_view_release(v);
            job_spec_release(spec);
            return -ENOMEM;
        }
    }
    /* A mirror that was waited for is now ours to run: its waiters stay. */
    pool__done_remove(&lc->jobs, j);
    pool__job_adopt(j, v, spec);
    j->results_out = 0;
    j->mirror = 0;
    /* Queued (armed for its expires_at, if any), or, taken up again after a reconnect, a
     * retry still waiting for its backoff. */
    if (j->v.status != JOB_SCHEDULED)
        j->v.status = JOB_QUEUED;
    j->v.worker_pid = 0;
    pending(lc, j, 0);
    return 0;
}

int pool__job_restored(struct lifecycle *lc, struct job *j)
{
    int rc = pool__table_insert(&lc->jobs, j);
    if (rc != 0)
        return rc;
    if (job_status_is_pending(j->v.status))
        pending(lc, j, 0);
    else if (j->v.status == JOB_RUNNING)
        running_add(lc, j); /* as far as its record says: the caller decides what now */
    return 0;
}

void pool__job_restored_done(struct lifecycle *lc, struct job *j, int64_t finished_ms)
{
    if (job_status_is_terminal(j->v.status))
        pool__done_add(&lc->jobs, j, finished_ms);
}

/* --- running and ending ------------------------------------------------------------- */

void pool__job_arm_deadline(struct job *j)
{
    /* + 1: clock_now_ms() truncates, so the job may have started up to 1 ms before it
     * says; it gets its whole timeout, never a little less. */
    j->deadline_ms =
        j->v.timeout > 0 ? clock_now_ms() + (int64_t)(j->v.timeout * 1000.0 + 0.5) + 1 : 0;
}

void pool__job_start(struct lifecycle *lc, struct job *j, pid_t pid)
{
    not_pending(lc, j);
    pool__queue_remove(&lc->jobs, j);
    j->v.status = JOB_RUNNING;
    clock_gettime(CLOCK_REALTIME, &j->v.started_at);
    j->v.attempts++;
    j->v.worker_pid = pid;
    j->ran_here = 1;
    pool__job_arm_deadline(j);
    running_add(lc, j);
    persist(lc, j); /* "running" is on record before the worker can act */
}

static void count_duration(struct lifecycle *lc, const struct job *j)
{
    double d = (double)(j->v.finished_at.tv_sec - j->v.started_at.tv_sec) +
               (double)(j->v.finished_at.tv_nsec - j->v.started_at.tv_nsec) / 1e9;
    int b = 0;
    while (b < POOL_DURATION_BUCKETS - 1 && d > pool_duration_bounds[b])
        b++;
    lc->duration_buckets[b]++;
    lc->duration_sum += d;
    lc->duration_count++;
}

void pool__job_finish(struct lifecycle *lc, struct job *j, enum job_status status)
{
    int ran = j->v.status == JOB_RUNNING;
    if (ran)
        running_sub(lc, j);
    not_pending(lc, j);
    pool__queue_remove(&lc->jobs, j);
    j->v.status = status;
    clock_gettime(CLOCK_REALTIME, &j->v.finished_at);
    if (ran && j->ran_here)
        count_duration(lc, j);
    lc->finished[status]++;
    j->worker = NULL;
    j->deadline_ms = 0;
    /* The request stays while the record does (POST /v1/jobs/{id}/rerun), unless
     * --max-results-memory drops it with the results (pool__job_drop_results). */
    pool__done_add(&lc->jobs, j, clock_now_ms());
    persist(lc, j);
    if (status == JOB_FAILED)
        log_info("job %s failed: %s: %s", j->v.id, job_error_type_name(j->v.error.type),
                 j->v.error.message ? j->v.error.message : "");
    else
        log_debug("job %s %s", j->v.id, job_status_name(status));
    if (lc->shared && !j->mirror)
        /* Another node could have taken the job over (this one presumed dead): the
         * waiters learn the end once the database accepted it. */
        j->awaiting_commit = 1;
    else
        pool__waiters_fire_job(&lc->waiters, j);
}

void pool__job_fail(struct lifecycle *lc, struct job *j, enum job_error_type type, char *message)
{
    job_error_release(&j->v.error);
    j->v.error.type = type;
    j->v.error.message = message ? message : strdup(job_error_type_name(type));
    pool__job_finish(lc, j, JOB_FAILED);
}

/* The attempt that just ended joins the history (its start, its end now, its worker,
 * why it ended): the job resource shows one entry per attempt. */
static void history_add(struct job *j)
{
    if (j->v.nhistory >= JOB_HISTORY_MAX)
        return;
    struct job_attempt *h = realloc(j->v.history, (j->v.nhistory + 1) * sizeof(*h));
    if (!h) {
        log_error("job %s: out of memory for its history", j->v.id);
        return;
    }
    j->v.history = h;
    h += j->v.nhistory++;
    h->started_us = clock_ts_us(j->v.started_at);
    h->ended_us = clock_real_us();
    h->worker_pid = j->v.worker_pid;
    memcpy(h->node, j->v.node, sizeof(h->node));
    h->error = j->v.error.type;
    h->message = j->v.error.message ? strndup(j->v.error.message, 1024) : NULL;
}

int64_t pool__retry_delay_us(const struct job_retry *r, unsigned attempts, uint64_t rnd)
{
    if (r->initial <= 0 || attempts == 0)
        return 0;
    double d = r->initial;
    for (unsigned k = 1; k < attempts && d < r->max_delay; k++)
        d *= r->factor;
    if (d > r->max_delay)
        d = r->max_delay;
    if (r->jitter)
        d *= (double)(rnd >> 11) / (double)(UINT64_C(1) << 53); /* uniform in [0, d) */
    return (int64_t)(d * 1e6);
}

int pool__job_retry(struct lifecycle *lc, struct job *j, int front)
{
    if (j->v.attempts > j->spec.max_retries)
        return 0;
    const char *why = job_error_type_name(j->v.error.type);
    uint64_t rnd = 0;
    if (j->spec.retry.jitter && getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint64_t)clock_real_us() * UINT64_C(0x9e3779b97f4a7c15); /* never fails, but */
    int64_t delay = pool__retry_delay_us(&j->spec.retry, j->v.attempts, rnd);
    log_info("job %s: attempt %u ended (%s); %s (%u retries allowed)", j->v.id, j->v.attempts,
             why ? why : "the server stopped", delay ? "retried after its backoff" : "re-queued",
             j->spec.max_retries);
    if (j->v.status == JOB_RUNNING) {
        running_sub(lc, j);
        history_add(j);
    }
    /* The attempt's error is in the history now: a job waiting for its next attempt
     * has none (only a failed or cancelled job does). */
    job_error_release(&j->v.error);
    j->worker = NULL;
    j->deadline_ms = 0;
    if (delay > 0) {
        j->v.status = JOB_SCHEDULED;
        j->v.next_attempt_us = clock_real_us() + delay;
    } else {
        j->v.status = JOB_QUEUED;
    }
    pending(lc, j, front);
    persist(lc, j);
    return 1;
}

void pool__job_cancel(struct lifecycle *lc, struct job *j)
{
    job_error_release(&j->v.error);
    j->v.error.type = JOB_ERR_CANCELLED;
    j->v.error.message = strdup(job_status_is_pending(j->v.status)
                                    ? "Cancelled by a client before it started."
                                    : "Cancelled by a client while running: its worker was "
                                      "killed and replaced; no other job was affected.");
    pool__job_finish(lc, j, JOB_CANCELLED);
}

/* --- leaving ----------------------------------------------------------------------- */

void pool__job_forget(struct lifecycle *lc, struct job *j, enum job_gone gone)
{
    pool__waiters_fire_job(&lc->waiters, j);
    unpersist(lc, j, gone != JOB_GONE_FORGOTTEN);
    pool__table_remove(&lc->jobs, j, gone);
    pool__job_free(j);
}

void pool__job_results_out(struct lifecycle *lc, struct job *j)
{
    if (job_status_is_terminal(j->v.status))
        pool__held_drop(&lc->jobs, j);
}

void pool__job_disown(struct lifecycle *lc, struct job *j)
{
    j->worker = NULL;
    if (j->v.status == JOB_RUNNING)
        running_sub(lc, j);
    j->mirror = 1;
    pool__job_forget(lc, j, JOB_GONE_FORGOTTEN);
}

/* --- mirrors ----------------------------------------------------------------------- */

struct job *pool__job_mirror(struct lifecycle *lc, const char *id, int *created)
{
    int err;
    struct job *j = pool__table_find(&lc->jobs, id, &err);
    *created = 0;
    if (j)
        return j;
    if (!(j = pool__job_new(id)))
        return NULL;
    j->mirror = 1;
    if (pool__table_insert(&lc->jobs, j) != 0) {
        pool__job_free(j);
        return NULL;
    }
    *created = 1;
    return j;
}

void pool__job_mirror_update(struct lifecycle *lc, struct job *j, const struct job_view *v)
{
    if (!j->mirror || job_status_is_terminal(j->v.status))
        return;
    struct job_view copy;
    if (job_view_copy(&copy, v) != 0)
        return;
    job_view_release(&j->v);
    j->v = copy;
    if (job_status_is_terminal(j->v.status)) {
        pool__done_add(&lc->jobs, j, clock_now_ms());
        pool__waiters_fire_job(&lc->waiters, j);
    }
}

void pool__job_mirror_release(struct lifecycle *lc, struct job *j)
{
    if (j->mirror && LIST_EMPTY(&j->waiters) && !job_status_is_terminal(j->v.status))
        pool__job_forget(lc, j, JOB_GONE_FORGOTTEN);
}

void pool__job_committed(struct lifecycle *lc, struct job *j)
{
    if (j->mirror || !j->awaiting_commit)
        return;
    j->awaiting_commit = 0;
    j->mirror = 1; /* the database answers for it from now on */
    pool__waiters_fire_job(&lc->waiters, j);
}
