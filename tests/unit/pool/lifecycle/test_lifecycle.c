/*
 * test_lifecycle.c — pool/lifecycle/lifecycle.c: every job transition against the
 * records, the waiters and a recording store, with no worker and no supervisor: what
 * each one counts, what it writes to the store (and when it writes nothing), which
 * list the record ends on, and when its waiters fire (at once, or on a shared store
 * only once the database has committed the end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/lifecycle/lifecycle.h"
#include "pool/store/store_impl.h"
#include "pyjobd/clock.h"

/* --- a store that records what it is told ------------------------------------------- */

#define MAX_WRITES 64

struct write {
    char id[JOB_ID_LEN + 1];
    int del;
    unsigned flags;
    enum job_status status;
};

struct rec_store {
    struct store base;
    struct write w[MAX_WRITES];
    size_t n;
};

static uint64_t rec_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                        uint64_t seq, unsigned flags)
{
    struct rec_store *r = (struct rec_store *)s;
    (void)spec, (void)seq;
    assert_true(r->n < MAX_WRITES);
    struct write *w = &r->w[r->n++];
    memcpy(w->id, v->id, sizeof(w->id));
    w->del = 0;
    w->flags = flags;
    w->status = v->status;
    return r->n;
}

static uint64_t rec_del(struct store *s, const char *id)
{
    struct rec_store *r = (struct rec_store *)s;
    assert_true(r->n < MAX_WRITES);
    struct write *w = &r->w[r->n++];
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->del = 1;
    return r->n;
}

static const struct store_ops single_ops = {.put = rec_put, .del = rec_del, .shared = 0};
static const struct store_ops shared_ops = {.put = rec_put, .del = rec_del, .shared = 1};

struct fixture {
    struct rec_store store;
    struct lifecycle lc;
};

static int setup_with(void **state, const struct store_ops *ops)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->store.base.ops = ops;
    assert_int_equal(pool__lifecycle_init(&f->lc, &f->store.base, 8), 0);
    *state = f;
    return 0;
}

static int setup_single(void **state)
{
    return setup_with(state, &single_ops);
}

static int setup_shared(void **state)
{
    return setup_with(state, &shared_ops);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pool__waiters_fire_all(&f->lc.waiters);
    pool__lifecycle_free(&f->lc);
    free(f);
    return 0;
}

static const char *id_of(int n)
{
    static char ids[8][JOB_ID_LEN + 1];
    snprintf(ids[n], sizeof(ids[n]), "%032x", 0x100 + n);
    return ids[n];
}

/* An admitted, submitted (queued here) job with a payload. */
static struct job *queued_job(struct fixture *f, int n, unsigned max_retries)
{
    struct job_spec spec = {0};
    spec.callable = blob_new_copy("fn", 2);
    spec.max_retries = max_retries;
    spec.timeout = 5;
    struct job *j = pool__job_from_spec(&spec, 0);
    job_spec_release(&spec);
    assert_non_null(j);
    memcpy(j->v.id, id_of(n), JOB_ID_LEN + 1);
    assert_int_equal(pool__job_admit(&f->lc, j), 0);
    pool__job_submitted(&f->lc, j, 1);
    return j;
}

static void count_cb(void *arg)
{
    ++*(int *)arg;
}

static struct job *find(struct fixture *f, int n, int *err)
{
    *err = 0;
    return pool__table_find(&f->lc.jobs, id_of(n), err);
}

/* --- tests ------------------------------------------------------------------------ */

static void submitted__here__queued_counted_and_written_new(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_int_equal(f->lc.submitted, 1);
    assert_int_equal(f->lc.jobs.nqueued, 1);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j);
    assert_int_equal(f->store.n, 1);
    assert_int_equal(f->store.w[0].flags, STORE_NEW | STORE_CLAIMED);
    assert_int_equal(j->store_ticket, 1);
    assert_int_equal(j->v.error.exit_code, -1); /* the constructor's defaults */
    assert_int_equal(j->v.error.max_rss_bytes, -1);
}

static void submitted__elsewhere__written_unclaimed_and_not_kept(void **state)
{
    struct fixture *f = *state;
    struct job *j = pool__job_new(id_of(1));
    assert_non_null(j);
    assert_int_equal(pool__job_admit(&f->lc, j), 0);
    struct job *twin = pool__job_new(id_of(1));
    assert_int_equal(pool__job_admit(&f->lc, twin), -EEXIST); /* ids are unique */
    pool__job_free(twin);
    assert_int_equal(pool__job_submitted(&f->lc, j, 0), 1);
    int err;
    assert_null(find(f, 1, &err));
    assert_int_equal(err, -ENOENT);
    assert_int_equal(f->lc.jobs.nqueued, 0);
    assert_int_equal(f->lc.submitted, 1);
    assert_int_equal(f->store.w[0].flags, STORE_NEW);
}

static void start__running_counted_attempt_deadline_and_written(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    int64_t before = clock_now_ms();
    pool__job_start(&f->lc, j, 4242);
    assert_int_equal(j->v.status, JOB_RUNNING);
    assert_int_equal(f->lc.running, 1);
    assert_int_equal(f->lc.jobs.nqueued, 0);
    assert_null(pool__queue_first(&f->lc.jobs));
    assert_int_equal(j->v.attempts, 1);
    assert_int_equal(j->v.worker_pid, 4242);
    assert_true(j->ran_here);
    /* The whole timeout, and the 1 ms that clock_now_ms() may have truncated. */
    assert_true(j->deadline_ms >= before + 5001 && j->deadline_ms <= clock_now_ms() + 5001);
    assert_int_equal(f->store.n, 2);
    assert_int_equal(f->store.w[1].status, JOB_RUNNING);
    assert_int_equal(f->store.w[1].flags, 0);
}

static void finish__single_store__waiters_fire_request_kept_done_list(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    int fired = 0, earliest = 0;
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, j, clock_now_ms() + 60000, count_cb, &fired, &earliest),
        0);
    assert_true(earliest);
    pool__job_start(&f->lc, j, 1);
    pool__job_finish(&f->lc, j, JOB_SUCCEEDED);
    assert_int_equal(fired, 1);
    assert_int_equal(j->v.status, JOB_SUCCEEDED);
    assert_int_equal(f->lc.running, 0);
    assert_int_equal(f->lc.finished[JOB_SUCCEEDED], 1);
    assert_int_equal(f->lc.duration_count, 1);
    /* The request stays for a rerun, until the results leave memory with it. */
    assert_non_null(j->spec.callable);
    assert_ptr_equal(pool__done_first(&f->lc.jobs), j);
    assert_false(j->awaiting_commit);
    assert_int_equal(f->store.w[f->store.n - 1].status, JOB_SUCCEEDED);
    assert_int_equal(pool__waiters_next_deadline(&f->lc.waiters), INT64_MAX);
    pool__job_drop_results(j);
    assert_null(j->spec.callable);
}

static void finish__shared_store__waiters_fire_only_once_committed(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    int fired = 0, earliest;
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, j, clock_now_ms() + 60000, count_cb, &fired, &earliest),
        0);
    pool__job_start(&f->lc, j, 1);
    pool__job_fail(&f->lc, j, JOB_ERR_EXCEPTION, NULL);
    assert_int_equal(fired, 0);
    assert_true(j->awaiting_commit);
    assert_string_equal(j->v.error.message, "exception"); /* the type's name by default */
    pool__job_committed(&f->lc, j);
    assert_int_equal(fired, 1);
    assert_true(j->mirror);
    assert_false(j->awaiting_commit);
    pool__job_committed(&f->lc, j); /* a second notification changes nothing */
    assert_int_equal(fired, 1);
}

static void retry__retries_left__requeued_at_the_head_error_in_history(void **state)
{
    struct fixture *f = *state;
    struct job *other = queued_job(f, 1, 0);
    struct job *j = queued_job(f, 0, 1);
    pool__job_start(&f->lc, j, 1);
    j->v.error.type = JOB_ERR_WORKER_CRASHED;
    j->v.error.message = strdup("it crashed");
    assert_int_equal(pool__job_retry(&f->lc, j, 1), 1);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_int_equal(f->lc.running, 0);
    assert_int_equal(f->lc.jobs.nqueued, 2);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j); /* ahead of the older job */
    assert_ptr_not_equal(pool__queue_first(&f->lc.jobs), other);
    /* The attempt's error went to its history: a waiting job has none of its own. */
    assert_int_equal(j->v.nhistory, 1);
    assert_int_equal(j->v.history[0].error, JOB_ERR_WORKER_CRASHED);
    assert_string_equal(j->v.history[0].message, "it crashed");
    assert_int_equal(j->v.error.type, JOB_ERR_NONE);
    assert_null(j->v.error.message);
    assert_int_equal(f->store.w[f->store.n - 1].status, JOB_QUEUED);
    /* The second attempt has no retry left. */
    pool__job_start(&f->lc, j, 2);
    size_t writes = f->store.n;
    assert_int_equal(pool__job_retry(&f->lc, j, 1), 0);
    assert_int_equal(j->v.status, JOB_RUNNING);
    assert_int_equal(f->lc.running, 1);
    assert_int_equal(f->store.n, writes); /* nothing changed, nothing written */
}

static void cancel__queued__cancelled_off_the_queue(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    pool__job_cancel(&f->lc, j);
    assert_int_equal(j->v.status, JOB_CANCELLED);
    assert_int_equal(j->v.error.type, JOB_ERR_CANCELLED);
    assert_string_equal(j->v.error.message, "Cancelled by a client before it started.");
    assert_int_equal(f->lc.jobs.nqueued, 0);
    assert_int_equal(f->lc.finished[JOB_CANCELLED], 1);
    assert_int_equal(f->lc.duration_count, 0); /* it never ran */
}

static void forget__expired__tombstone_and_stored_copy_deleted(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    pool__job_fail(&f->lc, j, JOB_ERR_INTERRUPTED, strdup("stopped"));
    pool__job_forget(&f->lc, j, 1);
    int err;
    assert_null(find(f, 0, &err));
    assert_int_equal(err, -ESTALE);
    assert_true(f->store.w[f->store.n - 1].del);
    assert_string_equal(f->store.w[f->store.n - 1].id, id_of(0));
    assert_null(pool__done_first(&f->lc.jobs));
}

static void forget__shared_store_expired__database_keeps_it(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    pool__job_finish(&f->lc, j, JOB_SUCCEEDED);
    pool__job_committed(&f->lc, j);
    size_t writes = f->store.n;
    pool__job_forget(&f->lc, j, 1);
    assert_int_equal(f->store.n, writes);
    int err;
    assert_null(find(f, 0, &err));
    assert_int_equal(err, -ESTALE);
}

static void disown__running__uncounted_waiters_fire_nothing_written(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 0, 0);
    int fired = 0, earliest;
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, j, clock_now_ms() + 60000, count_cb, &fired, &earliest),
        0);
    pool__job_start(&f->lc, j, 1);
    size_t writes = f->store.n;
    pool__job_disown(&f->lc, j);
    assert_int_equal(fired, 1);
    assert_int_equal(f->lc.running, 0);
    assert_int_equal(f->store.n, writes);
    int err;
    assert_null(find(f, 0, &err));
    assert_int_equal(err, -ENOENT);
}

static void mirror__update_until_final__then_done_and_fired(void **state)
{
    struct fixture *f = *state;
    int created = 0, fired = 0, earliest;
    struct job *m = pool__job_mirror(&f->lc, id_of(2), &created);
    assert_non_null(m);
    assert_true(created && m->mirror);
    assert_ptr_equal(pool__job_mirror(&f->lc, id_of(2), &created), m);
    assert_false(created);
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, m, clock_now_ms() + 60000, count_cb, &fired, &earliest),
        0);
    struct job_view v = {0};
    memcpy(v.id, id_of(2), JOB_ID_LEN + 1);
    v.status = JOB_RUNNING;
    pool__job_mirror_update(&f->lc, m, &v);
    assert_int_equal(m->v.status, JOB_RUNNING);
    assert_int_equal(fired, 0);
    v.status = JOB_SUCCEEDED;
    pool__job_mirror_update(&f->lc, m, &v);
    assert_int_equal(fired, 1);
    assert_ptr_equal(pool__done_first(&f->lc.jobs), m);
    assert_int_equal(f->store.n, 0);                    /* mirrors are never written */
    assert_int_equal(f->lc.finished[JOB_SUCCEEDED], 0); /* nor counted: not ours */
    v.status = JOB_FAILED;
    pool__job_mirror_update(&f->lc, m, &v); /* final stays final */
    assert_int_equal(m->v.status, JOB_SUCCEEDED);
}

static void mirror_release__unwatched_unfinished__forgotten(void **state)
{
    struct fixture *f = *state;
    int created, fired = 0, earliest;
    struct job *m = pool__job_mirror(&f->lc, id_of(3), &created);
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, m, clock_now_ms() - 1, count_cb, &fired, &earliest), 0);
    pool__job_mirror_release(&f->lc, m); /* still watched: kept */
    int err;
    assert_non_null(find(f, 3, &err));
    assert_ptr_equal(pool__waiters_expire_one(&f->lc.waiters, clock_now_ms()), m);
    assert_int_equal(fired, 1);
    pool__job_mirror_release(&f->lc, m);
    assert_null(find(f, 3, &err));
    assert_int_equal(err, -ENOENT); /* no tombstone: it never expired */
}

static void claimed__over_a_mirror__record_kept_with_its_waiters(void **state)
{
    struct fixture *f = *state;
    int created, fired = 0, earliest;
    struct job *m = pool__job_mirror(&f->lc, id_of(4), &created);
    assert_int_equal(
        pool__waiter_add(&f->lc.waiters, m, clock_now_ms() + 60000, count_cb, &fired, &earliest),
        0);
    struct job_view v = {0};
    memcpy(v.id, id_of(4), JOB_ID_LEN + 1);
    v.status = JOB_RUNNING; /* claimed jobs are queued here whatever the view said */
    v.worker_pid = 99;
    struct job_spec spec = {.callable = blob_new_copy("fn", 2)};
    assert_int_equal(pool__job_claimed(&f->lc, &v, &spec), 0);
    int err;
    struct job *j = find(f, 4, &err);
    assert_ptr_equal(j, m);
    assert_false(j->mirror);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_int_equal(j->v.worker_pid, 0);
    assert_non_null(j->spec.callable);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j);
    assert_false(LIST_EMPTY(&j->waiters));
    assert_int_equal(fired, 0);
    /* The same job handed over again (a reconnect): it is ours already. */
    struct job_view again = {0};
    memcpy(again.id, id_of(4), JOB_ID_LEN + 1);
    struct job_spec spec2 = {.callable = blob_new_copy("fn", 2)};
    assert_int_equal(pool__job_claimed(&f->lc, &again, &spec2), -EEXIST);
    assert_int_equal(f->lc.jobs.nqueued, 1);
}

static void restored__each_state_where_recovery_expects_it(void **state)
{
    struct fixture *f = *state;
    struct job *q = pool__job_new(id_of(0)), *r = pool__job_new(id_of(1)),
               *d = pool__job_new(id_of(2));
    q->seq = 10, r->seq = 11, d->seq = 7;
    r->v.status = JOB_RUNNING;
    r->v.attempts = 1;
    r->spec.max_retries = 1;
    d->v.status = JOB_SUCCEEDED;
    assert_int_equal(pool__job_restored(&f->lc, d), 0);
    assert_int_equal(pool__job_restored(&f->lc, q), 0);
    assert_int_equal(pool__job_restored(&f->lc, r), 0);
    assert_ptr_equal(TAILQ_FIRST(&f->lc.jobs.all), d); /* creation order for listing */
    assert_ptr_equal(TAILQ_LAST(&f->lc.jobs.all, job_list), r);
    assert_null(pool__done_first(&f->lc.jobs));
    pool__job_restored_done(&f->lc, q, 1); /* not finished: stays off the done list */
    pool__job_restored_done(&f->lc, d, 12345);
    assert_ptr_equal(pool__done_first(&f->lc.jobs), d);
    assert_null(TAILQ_NEXT(d, done_link));
    assert_int_equal(d->finished_ms, 12345);
    assert_int_equal(f->lc.running, 1);
    assert_int_equal(f->lc.jobs.next_seq, 11); /* new jobs come after the stored ones */
    assert_int_equal(pool__job_retry(&f->lc, r, 0), 1);
    assert_int_equal(f->lc.running, 0);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), q); /* stored order kept */
    assert_ptr_equal(TAILQ_NEXT(q, queue_link), r);
    assert_int_equal(f->store.n, 1); /* only the change is written back */
    assert_int_equal(f->store.w[0].status, JOB_QUEUED);
}

/* A submitted job with run_at / expires_at (CLOCK_REALTIME us; 0: none). */
static struct job *timed_job(struct fixture *f, int n, int64_t run_at, int64_t expires_at)
{
    struct job_spec spec = {0};
    spec.callable = blob_new_copy("fn", 2);
    spec.run_at_us = run_at;
    spec.expires_at_us = expires_at;
    struct job *j = pool__job_from_spec(&spec, 0);
    job_spec_release(&spec);
    assert_non_null(j);
    memcpy(j->v.id, id_of(n), JOB_ID_LEN + 1);
    assert_int_equal(pool__job_admit(&f->lc, j), 0);
    pool__job_submitted(&f->lc, j, 1);
    return j;
}

static void scheduled__waits_off_the_queue_then_queued_when_due(void **state)
{
    struct fixture *f = *state;
    int64_t in_1s = clock_real_us() + 1000000;
    struct job *j = timed_job(f, 0, in_1s, 0);
    assert_int_equal(j->v.status, JOB_SCHEDULED);
    assert_int_equal(f->lc.jobs.nscheduled, 1);
    assert_int_equal(f->lc.jobs.nqueued, 0);
    assert_null(pool__queue_first(&f->lc.jobs));
    assert_int_equal(f->store.w[0].status, JOB_SCHEDULED); /* on record as scheduled */
    int64_t now = clock_now_ms();
    assert_null(pool__timer_due(&f->lc.jobs, now));
    int64_t due = pool__timer_next_ms(&f->lc.jobs);
    assert_true(due >= now + 999 && due <= now + 1001);
    /* Its time: queued (and written so), the timer gone. */
    j->v.run_at_us = clock_real_us() - 1;
    assert_ptr_equal(pool__timer_due(&f->lc.jobs, due), j);
    pool__job_due(&f->lc, j);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_int_equal(f->lc.jobs.nscheduled, 0);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j);
    assert_int_equal(f->store.w[f->store.n - 1].status, JOB_QUEUED);
    assert_true(pool__timer_next_ms(&f->lc.jobs) == INT64_MAX);
}

static void expiring__not_started_in_time__failed_expired_off_the_queue(void **state)
{
    struct fixture *f = *state;
    struct job *j = timed_job(f, 1, 0, clock_real_us() + 50000);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j);
    assert_true(pool__timer_next_ms(&f->lc.jobs) < INT64_MAX); /* its expiry */
    j->v.expires_at_us = clock_real_us() - 1;
    pool__job_due(&f->lc, j);
    assert_int_equal(j->v.status, JOB_FAILED);
    assert_int_equal(j->v.error.type, JOB_ERR_EXPIRED);
    assert_non_null(strstr(j->v.error.message, "had not started by its expires_at"));
    assert_null(pool__queue_first(&f->lc.jobs));
    assert_true(pool__timer_next_ms(&f->lc.jobs) == INT64_MAX);
    /* One that starts in time has no timer left to fire. */
    struct job *k = timed_job(f, 2, 0, clock_real_us() + 60000000);
    k->worker = NULL;
    pool__job_start(&f->lc, k, 4242);
    assert_true(pool__timer_next_ms(&f->lc.jobs) == INT64_MAX);
}

static void scheduled__cancelled_or_forgotten__timer_and_count_gone(void **state)
{
    struct fixture *f = *state;
    struct job *a = timed_job(f, 3, clock_real_us() + 5000000, 0);
    struct job *b = timed_job(f, 4, clock_real_us() + 6000000, clock_real_us() + 9000000);
    assert_int_equal(f->lc.jobs.nscheduled, 2);
    pool__job_cancel(&f->lc, a);
    assert_int_equal(a->v.status, JOB_CANCELLED);
    assert_string_equal(a->v.error.message, "Cancelled by a client before it started.");
    assert_int_equal(f->lc.jobs.nscheduled, 1);
    pool__job_forget(&f->lc, b, JOB_GONE_FORGOTTEN);
    assert_int_equal(f->lc.jobs.nscheduled, 0);
    assert_true(pool__timer_next_ms(&f->lc.jobs) == INT64_MAX);
}

static void retry_delay__exponential_capped_jittered(void **state)
{
    (void)state;
    struct job_retry r = {.initial = 1.0, .factor = 2.0, .max_delay = 5.0};
    assert_true(pool__retry_delay_us(&r, 1, 0) == 1000000);
    assert_true(pool__retry_delay_us(&r, 2, 0) == 2000000);
    assert_true(pool__retry_delay_us(&r, 3, 0) == 4000000);
    assert_true(pool__retry_delay_us(&r, 4, 0) == 5000000); /* capped */
    assert_true(pool__retry_delay_us(&r, 60, 0) == 5000000);
    r.jitter = 1;
    assert_true(pool__retry_delay_us(&r, 2, 0) == 0);
    int64_t half = pool__retry_delay_us(&r, 2, UINT64_MAX / 2); /* half of 2 s */
    assert_true(half > 999990 && half <= 1000000);
    int64_t top = pool__retry_delay_us(&r, 2, UINT64_MAX);
    assert_true(top < 2000000 && top > 1999000); /* below the delay, never at it */
    struct job_retry none = {0};
    assert_true(pool__retry_delay_us(&none, 3, 12345) == 0);
}

static void retry__backoff__scheduled_with_next_attempt_and_history(void **state)
{
    struct fixture *f = *state;
    struct job *j = queued_job(f, 5, 2);
    j->spec.retry.initial = 0.5;
    j->spec.retry.factor = 2;
    j->spec.retry.max_delay = 10;
    pool__job_start(&f->lc, j, 4242);
    j->v.error.type = JOB_ERR_EXCEPTION;
    j->v.error.message = strdup("ConnectionError: down");
    int64_t before = clock_real_us();
    assert_int_equal(pool__job_retry(&f->lc, j, 1), 1);
    assert_int_equal(j->v.status, JOB_SCHEDULED);
    assert_true(j->v.next_attempt_us >= before + 500000 && j->v.next_attempt_us < before + 600000);
    assert_int_equal(f->lc.jobs.nscheduled, 1);
    assert_null(pool__queue_first(&f->lc.jobs));
    assert_int_equal(j->v.nhistory, 1);
    assert_int_equal(j->v.history[0].worker_pid, 4242);
    assert_int_equal(j->v.history[0].error, JOB_ERR_EXCEPTION);
    assert_string_equal(j->v.history[0].message, "ConnectionError: down");
    assert_int_equal(f->store.w[f->store.n - 1].status, JOB_SCHEDULED);
    /* Its time: queued at the head, next_attempt cleared. */
    j->v.next_attempt_us = clock_real_us() - 1;
    pool__job_due(&f->lc, j);
    assert_int_equal(j->v.status, JOB_QUEUED);
    assert_true(j->v.next_attempt_us == 0);
    assert_ptr_equal(pool__queue_first(&f->lc.jobs), j);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup_single, teardown)
#define S(name) cmocka_unit_test_setup_teardown(name, setup_shared, teardown)
    const struct CMUnitTest tests[] = {
        T(submitted__here__queued_counted_and_written_new),
        S(submitted__elsewhere__written_unclaimed_and_not_kept),
        T(start__running_counted_attempt_deadline_and_written),
        T(finish__single_store__waiters_fire_request_kept_done_list),
        S(finish__shared_store__waiters_fire_only_once_committed),
        T(retry__retries_left__requeued_at_the_head_error_in_history),
        T(cancel__queued__cancelled_off_the_queue),
        T(forget__expired__tombstone_and_stored_copy_deleted),
        S(forget__shared_store_expired__database_keeps_it),
        S(disown__running__uncounted_waiters_fire_nothing_written),
        S(mirror__update_until_final__then_done_and_fired),
        S(mirror_release__unwatched_unfinished__forgotten),
        S(claimed__over_a_mirror__record_kept_with_its_waiters),
        T(restored__each_state_where_recovery_expects_it),
        T(scheduled__waits_off_the_queue_then_queued_when_due),
        T(expiring__not_started_in_time__failed_expired_off_the_queue),
        T(scheduled__cancelled_or_forgotten__timer_and_count_gone),
        T(retry_delay__exponential_capped_jittered),
        T(retry__backoff__scheduled_with_next_attempt_and_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
