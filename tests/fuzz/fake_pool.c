/*
 * fake_pool.c — a stateless stand-in for every pool_* function api/ calls, for the
 * fuzz harnesses that drive api_handle() (fuzz_route.c). Linked instead of the real
 * pool objects, so no supervisor thread or worker is involved.
 *
 * What each call answers is chosen per input by fake_pool_set() from a few bytes
 * of the fuzz input: whether jobs exist (or expired), their status, owner and
 * error, what submit/cancel/delete/resize return, and whether pool_watch calls
 * back at once (as for a finished job or a passed deadline) or fails. Nothing is
 * stored between calls, so an input cannot leave state behind for the next one.
 */
#include "fake_pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/blob.h"

static struct fake_pool_knobs knobs;

void fake_pool_set(const struct fake_pool_knobs *k)
{
    knobs = *k;
}

/* The last four: a shared store (database unreachable or slow, job on another node). */
static const int rcs[] = {0,       -EAGAIN, -ESHUTDOWN, -ENOMEM,    -EBUSY, -EALREADY,
                          -ENOENT, -ESTALE, -ENOTCONN,  -ETIMEDOUT, -EXDEV, -EREMOTE};

static int fake_rc(unsigned sel)
{
    return rcs[sel % (sizeof(rcs) / sizeof(*rcs))];
}

static void fake_id(unsigned n, char *out)
{
    snprintf(out, JOB_ID_LEN + 1, "%032x", 0xa0 + n);
}

/* The view of a job just queued. */
static int queued_view(unsigned n, const struct job_spec *spec, struct job_view *out)
{
    memset(out, 0, sizeof(*out));
    fake_id(n, out->id);
    out->status = JOB_QUEUED;
    out->created_at = (struct timespec){1795636800, 123456000};
    out->timeout = spec->timeout;
    out->error.exit_code = -1;
    out->error.max_rss_bytes = -1;
    if (spec->metadata && !(out->metadata = strdup(spec->metadata)))
        return -ENOMEM;
    return 0;
}

int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out)
{
    return pool_submit_batch(p, spec, 1, view_out);
}

int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out)
{
    (void)p;
    int rc = fake_rc(knobs.submit_rc);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = queued_view((unsigned)i, &specs[i], &views_out[i]);
    return rc;
}

static int fake_view(const char *id, struct job_view *out)
{
    memset(out, 0, sizeof(*out));
    if (!knobs.jobs_exist)
        return knobs.jobs_stale ? -ESTALE : -ENOENT;
    snprintf(out->id, sizeof(out->id), "%.*s", JOB_ID_LEN, id);
    out->status = (enum job_status)(knobs.status % (JOB_CANCELLED + 1));
    out->created_at = (struct timespec){1795636800, 123456000};
    if (out->status != JOB_QUEUED) {
        out->started_at = (struct timespec){1795636801, 0};
        out->worker_pid = 4242;
        out->attempts = 1;
    }
    if (job_status_is_terminal(out->status))
        out->finished_at = (struct timespec){1795636802, 999999999};
    out->timeout = knobs.status & 8 ? 30.5 : 0;
    out->max_retries = knobs.status >> 4;
    snprintf(out->owner, sizeof(out->owner), "%s", knobs.owner);
    out->error.exit_code = -1;
    out->error.max_rss_bytes = -1;
    if (knobs.status & 16)
        out->metadata = strdup("{\"k\":[1,\"\\u00e9\"]}");
    if (out->status == JOB_SUCCEEDED) {
        if (knobs.status & 32)
            out->result_json = blob_new_copy("{\"a\":1}", 7);
        else
            out->result = blob_new_copy("\x80\x05K\x01.", 5);
    } else if (out->status == JOB_FAILED || out->status == JOB_CANCELLED) {
        out->error.type = out->status == JOB_CANCELLED
                              ? JOB_ERR_CANCELLED
                              : (enum job_error_type)(1 + knobs.error_type % 8);
        out->error.message = strdup("it went wrong \"badly\"\n\x01");
        if (out->error.type == JOB_ERR_EXCEPTION) {
            out->error.exc_type = strdup("ValueError");
            out->error.exception = blob_new_copy("\x80\x05N.", 4);
            out->error.traceback = strdup("Traceback (most recent call last):\n");
        } else if (out->error.type == JOB_ERR_WORKER_CRASHED) {
            out->error.signal = 11;
            out->error.max_rss_bytes = 1 << 20;
        }
    }
    return 0;
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    (void)p;
    return fake_view(id, out);
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

int pool_cancel(struct pool *p, const char *id, int force)
{
    (void)p;
    (void)id;
    (void)force;
    return knobs.jobs_exist ? fake_rc(knobs.cancel_rc) : knobs.jobs_stale ? -ESTALE : -ENOENT;
}

int pool_delete(struct pool *p, const char *id)
{
    (void)p;
    (void)id;
    return knobs.jobs_exist ? fake_rc(knobs.cancel_rc >> 3) : knobs.jobs_stale ? -ESTALE : -ENOENT;
}

int pool_list(struct pool *p, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next)
{
    (void)p;
    *out = NULL;
    *n = 0;
    *next = knobs.status & 64 ? 77 : 0;
    size_t want = knobs.jobs_exist ? 3 : 0;
    if (want > q->limit)
        want = q->limit;
    if (!want)
        return 0;
    *out = calloc(want, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    for (size_t i = 0; i < want; i++) {
        char id[JOB_ID_LEN + 1];
        fake_id((unsigned)i, id);
        fake_view(id, &(*out)[i]);
    }
    *n = want;
    return 0;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    (void)p;
    (void)id;
    (void)deadline_ms;
    if (!knobs.watch_calls_back)
        return knobs.jobs_exist ? -ENOMEM : -ENOENT;
    cb(arg);
    return 0;
}

int pool_job_output(struct pool *p, const char *id, struct job_output *out)
{
    (void)p;
    (void)id;
    memset(out, 0, sizeof(*out));
    if (!knobs.jobs_exist)
        return knobs.jobs_stale ? -ESTALE : -ENOENT;
    out->out = blob_new_copy("hello\n", 6);
    out->err = blob_new_copy("\xff\xfe warn\n", 8);
    out->out_dropped = knobs.status & 1 ? 1000 : 0;
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
    memset(out, 0, sizeof(*out));
    out->workers = 2;
    out->workers_ready = knobs.status & 1;
    snprintf(out->python_version, sizeof(out->python_version), "%s",
             knobs.status & 2 ? "3.11.7" : "");
    snprintf(out->cloudpickle_version, sizeof(out->cloudpickle_version), "2.2.1");
    out->queued = 3;
    out->running = 1;
    out->stopping = (knobs.status & 4) != 0;
    if (knobs.status & 128)
        snprintf(out->boot_error, sizeof(out->boot_error), "exited with code 3: \"bad\"");
}

const double pool_duration_bounds[POOL_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, __builtin_inf()};

int pool_get_stats(struct pool *p, struct pool_stats *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    if (knobs.status & 128)
        return -ENOMEM;
    out->workers_target = 2;
    out->nworkers = 2;
    out->workers = calloc(2, sizeof(*out->workers));
    if (!out->workers)
        return -ENOMEM;
    out->workers[0] =
        (struct pool_worker_info){.pid = 101, .state = "busy", .jobs_done = 7, .rss_bytes = 123456};
    fake_id(0, out->workers[0].job_id);
    out->workers[1] =
        (struct pool_worker_info){.pid = 102, .state = "idle", .rss_bytes = -1, .retiring = 1};
    out->queued = 3;
    out->running = 1;
    out->submitted = 42;
    out->finished[JOB_SUCCEEDED] = 30;
    out->duration_buckets[3] = 2;
    out->duration_sum = 0.5;
    out->duration_count = 2;
    return 0;
}

void pool_stats_release(struct pool_stats *s)
{
    free(s->workers);
    memset(s, 0, sizeof(*s));
}

int pool_resize(struct pool *p, unsigned workers)
{
    (void)p;
    (void)workers;
    return fake_rc(knobs.cancel_rc);
}

int64_t clock_now_ms(void)
{
    return 1000000;
}
