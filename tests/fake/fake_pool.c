/*
 * fake_pool.c — see fake_pool.h. Linked ahead of the layer archives (the api tests)
 * or instead of pool/'s sources (the fuzzers), its pool_* definitions are the ones
 * api/ resolves against; no pool/ code is linked. It holds no thread and no lock:
 * its users call the api from one thread. Every view it hands out is a fresh copy
 * that the caller releases, as the real pool's are.
 */
#include "fake_pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/blob.h"
#include "pyjobd/job.h"

struct fake_job fake_jobs[FAKE_JOBS];
struct fake_pool fake;

const char *fake_id(size_t i)
{
    static char ids[FAKE_JOBS][JOB_ID_LEN + 1];
    if (!ids[i][0])
        snprintf(ids[i], sizeof(ids[i]), "%032zx", i + 0xa0);
    return ids[i];
}

/* The slot of id, or -ENOENT / -ESTALE as pool_job_get answers. */
static int fake_find(const char *id)
{
    size_t slot = FAKE_JOBS;
    for (size_t i = 0; i < FAKE_JOBS && slot == FAKE_JOBS; i++)
        if (strcmp(id, fake_id(i)) == 0)
            slot = i;
    if (fake.any_id && (slot == FAKE_JOBS || (!fake_jobs[slot].exists && !fake_jobs[slot].stale)))
        slot = 0;
    if (slot == FAKE_JOBS)
        return -ENOENT;
    return fake_jobs[slot].stale ? -ESTALE : fake_jobs[slot].exists ? (int)slot : -ENOENT;
}

void fake_reset(void)
{
    job_spec_release(&fake.last);
    for (size_t i = 0; i < FAKE_JOBS; i++)
        free(fake_jobs[i].metadata);
    memset(&fake, 0, sizeof(fake));
    memset(fake_jobs, 0, sizeof(fake_jobs));
    fake.info.workers = 4;
    fake.info.workers_ready = 3;
    strcpy(fake.info.cloudpickle_version, "3.0.0");
    fake.info.queued = 2;
    fake.info.running = 1;
    fake.err_dropped = 7;
    fake.now_ms = FAKE_NOW_MS;
}

size_t fake_add(enum job_status st)
{
    for (size_t i = 0; i < FAKE_JOBS; i++)
        if (!fake_jobs[i].exists && !fake_jobs[i].stale) {
            free(fake_jobs[i].metadata); /* a slot a test set up but left free */
            memset(&fake_jobs[i], 0, sizeof(fake_jobs[i]));
            fake_jobs[i].exists = 1;
            fake_jobs[i].status = st;
            return i;
        }
    abort();
}

void fake_fire_watches(size_t from, size_t to)
{
    for (size_t i = from; i < to && i < fake.nwatches; i++)
        fake.watches[i].cb(fake.watches[i].arg);
}

int64_t __wrap_clock_now_ms(void)
{
    return fake.now_ms;
}

/* Copies of the C strings a view owns: 0, or -ENOMEM. src NULL leaves *dst NULL. */
static int fake_strdup(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -ENOMEM : 0;
}

static int fake_blob(struct blob **dst, const char *src)
{
    *dst = src ? blob_new_copy(src, strlen(src)) : NULL;
    return src && !*dst ? -ENOMEM : 0;
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    int i = fake_find(id);
    if (i < 0)
        return i;
    const struct fake_job *j = &fake_jobs[i];
    snprintf(out->id, sizeof(out->id), "%.*s", JOB_ID_LEN, id);
    out->status = j->status;
    out->created_at = (struct timespec){1795636800, 0};
    if (j->ran) {
        out->started_at = (struct timespec){1795636801, 0};
        out->worker_pid = 4242;
        out->attempts = 1;
        if (job_status_is_terminal(j->status))
            out->finished_at = (struct timespec){1795636802, 999999999};
    }
    out->timeout = j->timeout;
    out->max_retries = j->max_retries;
    memcpy(out->owner, j->owner, sizeof(out->owner));
    out->error.exit_code = -1;
    out->error.max_rss_bytes = j->max_rss_bytes ? j->max_rss_bytes : -1;
    int rc = fake_strdup(&out->metadata, j->metadata);
    if (j->status == JOB_SUCCEEDED && j->result_json)
        rc |= fake_blob(&out->result_json, j->result_json);
    else if (j->status == JOB_SUCCEEDED)
        rc |= fake_blob(&out->result, j->result ? j->result : "foobar");
    if (j->err) {
        out->error.type = j->err;
        out->error.signal = j->signal;
        rc |= fake_strdup(&out->error.message, j->message ? j->message : "");
        rc |= fake_strdup(&out->error.exc_type, j->exc_type);
        rc |= fake_blob(&out->error.exception, j->exception);
        rc |= fake_strdup(&out->error.traceback, j->traceback);
    }
    if (rc) {
        job_view_release(out);
        return -ENOMEM;
    }
    return 0;
}

int pool_job_get_many(struct pool *p, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                      int *rcs)
{
    for (size_t i = 0; i < n; i++)
        rcs[i] = pool_job_get(p, ids[i], &out[i]);
    return 0;
}

int pool_job_peek(struct pool *p, const char *id, struct job_view *out)
{
    return pool_job_get(p, id, out);
}

/* Queues one job in a new slot; *view_out is its view, as pool_submit answers. */
static int fake_submit_one(const struct job_spec *spec, struct job_view *view_out)
{
    size_t i = fake_add(JOB_QUEUED);
    fake_jobs[i].max_retries = spec->max_retries;
    fake_jobs[i].timeout = spec->timeout;
    memcpy(fake_jobs[i].owner, spec->owner, sizeof(spec->owner));
    job_spec_release(&fake.last);
    fake.last = *spec;
    blob_ref(fake.last.callable);
    blob_ref(fake.last.args);
    blob_ref(fake.last.kwargs);
    blob_ref(fake.last.json_args);
    blob_ref(fake.last.json_kwargs);
    if (fake_strdup(&fake.last.idem_key, spec->idem_key) || /* the caller's otherwise */
        fake_strdup(&fake.last.metadata, spec->metadata) ||
        fake_strdup(&fake_jobs[i].metadata, spec->metadata))
        return -ENOMEM;
    return pool_job_get(NULL, fake_id(i), view_out);
}

int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out)
{
    (void)p;
    fake.submits++;
    if (fake.submit_rc)
        return fake.submit_rc;
    return fake_submit_one(spec, view_out);
}

int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out)
{
    (void)p;
    fake.batch_n = n;
    if (fake.batch_rc)
        return fake.batch_rc;
    for (size_t i = 0; i < n; i++) {
        int rc = fake_submit_one(&specs[i], &views_out[i]);
        if (rc) {
            while (i--)
                job_view_release(&views_out[i]);
            return rc;
        }
    }
    return 0;
}

/* Keys are the real pool's business: one spec is a pool_submit, more a batch, and
 * nothing is ever a replay. */
int pool_submit_keyed(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out, unsigned char *replayed, size_t *bad_index)
{
    *bad_index = 0;
    memset(replayed, 0, n);
    /* A single keyed POST is a submit; a batch (keyed or not, the api sends every batch
     * here) is a batch. */
    return n == 1 && specs[0].idem_key ? pool_submit(p, specs, views_out)
                                       : pool_submit_batch(p, specs, n, views_out);
}

/* An interrupt is recorded like a cancel (force 0), its grace kept for the test. */
int pool_interrupt(struct pool *p, const char *id, double grace)
{
    fake.interrupt_grace = grace;
    return pool_cancel(p, id, 0);
}

int pool_cancel(struct pool *p, const char *id, int force)
{
    (void)p;
    fake.cancels++;
    fake.cancel_force = force;
    int i = fake_find(id);
    if (i < 0)
        return i;
    if (fake.cancel_rc)
        return fake.cancel_rc;
    fake_jobs[i].status = JOB_CANCELLED;
    fake_jobs[i].err = JOB_ERR_CANCELLED;
    return 0;
}

int pool_delete(struct pool *p, const char *id)
{
    (void)p;
    fake.deletes++;
    int i = fake_find(id);
    if (i < 0)
        return i;
    if (fake.delete_rc)
        return fake.delete_rc;
    free(fake_jobs[i].metadata);
    memset(&fake_jobs[i], 0, sizeof(fake_jobs[i]));
    return 0;
}

int pool_list(struct pool *p, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next)
{
    (void)p;
    fake.list_q = *q;
    *out = NULL;
    *n = 0;
    *next = fake.list_next;
    size_t want = fake.list_n < q->limit ? fake.list_n : q->limit;
    if (!want)
        return 0;
    if (!(*out = calloc(want, sizeof(**out))))
        return -ENOMEM;
    for (size_t i = 0; i < want; i++)
        pool_job_get(NULL, fake_id(i), &(*out)[i]);
    *n = want;
    return 0;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    (void)p;
    if (fake.watch_rc)
        return fake.watch_rc;
    int i = fake_find(id);
    if (i < 0)
        return -ENOENT;
    if (fake.watch_calls_back || job_status_is_terminal(fake_jobs[i].status)) {
        cb(arg);
        return 0;
    }
    if (fake.nwatches == FAKE_WATCHES)
        abort();
    struct fake_watch *w = &fake.watches[fake.nwatches++];
    memcpy(w->id, id, JOB_ID_LEN + 1);
    w->cb = cb;
    w->arg = arg;
    w->deadline = deadline_ms;
    return 0;
}

/* Output: every known job printed "out\n" on stdout and invalid UTF-8 on stderr. */
int pool_job_output(struct pool *p, const char *id, struct job_output *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    int i = fake_find(id);
    if (i < 0)
        return i;
    out->out = blob_new_copy("out\n", 4);
    out->err = blob_new_copy("\xff!", 2);
    out->out_dropped = fake.out_dropped;
    out->err_dropped = fake.err_dropped;
    if (!out->out || !out->err) {
        job_output_release(out);
        return -ENOMEM;
    }
    return 0;
}

void job_output_release(struct job_output *o)
{
    blob_unref(o->out);
    blob_unref(o->err);
    memset(o, 0, sizeof(*o));
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    (void)p;
    *out = fake.info;
}

const char *pool_isolation_of(const struct pool *p, const char *tenant)
{
    (void)p;
    (void)tenant;
    return fake.info.isolation ? fake.info.isolation : "tenant";
}

const double pool_duration_bounds[POOL_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, __builtin_inf()};

int pool_get_stats(struct pool *p, struct pool_stats *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    if (fake.stats_rc)
        return fake.stats_rc;
    if (!(out->workers = calloc(2, sizeof(*out->workers))))
        return -ENOMEM;
    out->workers_target = 2;
    out->nworkers = 2;
    out->workers[0] = (struct pool_worker_info){.pid = 101,
                                                .state = "busy",
                                                .jobs_done = 7,
                                                .started_at = {1795636800, 500000000},
                                                .rss_bytes = 123456,
                                                .uid = 64001,
                                                .retiring = 0};
    memcpy(out->workers[0].job_id, fake_id(0), JOB_ID_LEN + 1);
    memcpy(out->workers[0].job_owner, fake_jobs[0].owner, JOB_OWNER_MAX);
    out->workers[1] = (struct pool_worker_info){
        .pid = 102, .state = "idle", .rss_bytes = -1, .uid = -1, .retiring = 1};
    if (fake.worker2_job) {
        size_t slot = fake.worker2_job - 1;
        out->workers[1].state = "busy";
        memcpy(out->workers[1].job_id, fake_id(slot), JOB_ID_LEN + 1);
        memcpy(out->workers[1].job_owner, fake_jobs[slot].owner, JOB_OWNER_MAX);
    }
    out->queued = 3;
    out->running = 1;
    out->submitted = 42;
    out->finished[JOB_SUCCEEDED] = 30;
    out->finished[JOB_FAILED] = 5;
    out->finished[JOB_CANCELLED] = 2;
    out->restarts_crash = 1;
    out->restarts_timeout = 2;
    out->restarts_recycle = 3;
    out->restarts_cancel = 4;
    out->boot_failures = 0;
    out->duration_buckets[0] = 1;
    out->duration_buckets[6] = 2;
    out->duration_buckets[11] = 1;
    out->duration_sum = 400.5;
    out->duration_count = 4;
    out->jobs_retained = 37;
    return 0;
}

void pool_stats_release(struct pool_stats *s)
{
    free(s->workers);
    memset(s, 0, sizeof(*s));
}

size_t pool_tenant_queued(struct pool *p, const char *tenant)
{
    (void)p;
    (void)tenant;
    return fake.tenant_queued;
}

int pool_resize(struct pool *p, unsigned workers)
{
    (void)p;
    fake.resized_to = workers;
    return fake.resize_rc;
}

/* Reruns: not exercised through the fake (the integration tests run them). */
int pool_rerun(struct pool *p, const char *id, struct job_view *out)
{
    (void)p, (void)id, (void)out;
    return -EOPNOTSUPP;
}

int pool_rerun_many(struct pool *p, const struct pool_rerun_filter *f, struct job_view *out,
                    size_t max, size_t *n)
{
    (void)p, (void)f, (void)out, (void)max;
    *n = 0;
    return -EOPNOTSUPP;
}

/* Schedules: not exercised through the fake (the integration tests run them). */
int pool_schedule_create(struct pool *p, const struct pool_schedule_request *rq,
                         struct pool_schedule_info *out, char *err, size_t errlen)
{
    (void)p, (void)rq, (void)out, (void)err, (void)errlen;
    return -EOPNOTSUPP;
}

int pool_schedule_get(struct pool *p, const char *id, const char *tenant,
                      struct pool_schedule_info *out)
{
    (void)p, (void)id, (void)tenant, (void)out;
    return -ENOENT;
}

int pool_schedule_list(struct pool *p, const char *tenant, struct pool_schedule_info **out,
                       size_t *n)
{
    (void)p, (void)tenant;
    *out = NULL;
    *n = 0;
    return 0;
}

int pool_schedule_delete(struct pool *p, const char *id, const char *tenant)
{
    (void)p, (void)id, (void)tenant;
    return -ENOENT;
}
