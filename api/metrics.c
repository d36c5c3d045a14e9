/*
 * metrics.c — GET /metrics, Prometheus text exposition format 0.0.4, and the HTTP
 * response counters behind pyjobd_http_requests_total.
 *
 * Job and worker numbers come from one pool_get_stats() snapshot; the HTTP counters
 * are relaxed atomics in struct api (a scrape may miss a response in flight, which
 * Prometheus counters tolerate). Every family has HELP and TYPE lines; label sets
 * with a fixed domain (status, state, cause) are always all present, at 0 if need be.
 * They are the whole service's numbers, so only an admin reads them (or anyone, with
 * --public-metrics).
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/pool.h"

void api_count_response(struct api *api, int status)
{
    size_t slot = 0;
    if (!api)
        return;
    if (status >= API_STATUS_MIN && status <= API_STATUS_MAX)
        slot = (size_t)(status - API_STATUS_MIN) + 1;
    atomic_fetch_add_explicit(&api->http_responses[slot], 1, memory_order_relaxed);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The shortest decimal that reads back as x ("0.005", not "0.0050000000000000001"). */
static void format_bound(double x, char *buf, size_t len)
{
    if (isinf(x)) {
        snprintf(buf, len, "+Inf");
        return;
    }
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(buf, len, "%.*f", prec, x);
        if (strtod(buf, NULL) == x)
            return;
    }
    snprintf(buf, len, "%.17g", x);
}

static void write_metrics(FILE *f, const struct api *api, const struct pool_stats *st)
{
    family(f, "pyjobd_jobs_submitted_total", "counter", "Jobs accepted since the server started.");
    fprintf(f, "pyjobd_jobs_submitted_total %" PRIu64 "\n", st->submitted);

    family(f, "pyjobd_jobs_finished_total", "counter",
           "Jobs that reached a terminal state, by status.");
    for (int s = JOB_SUCCEEDED; s <= JOB_CANCELLED; s++)
        fprintf(f, "pyjobd_jobs_finished_total{status=\"%s\"} %" PRIu64 "\n",
                job_status_name((enum job_status)s), st->finished[s]);

    family(f, "pyjobd_queue_depth", "gauge", "Jobs waiting for a worker.");
    fprintf(f, "pyjobd_queue_depth %zu\n", st->queued);
    family(f, "pyjobd_jobs_scheduled", "gauge", "Jobs waiting for their run_at (delay).");
    fprintf(f, "pyjobd_jobs_scheduled %zu\n", st->scheduled);
    family(f, "pyjobd_jobs_running", "gauge", "Jobs running on a worker.");
    fprintf(f, "pyjobd_jobs_running %zu\n", st->running);
    family(f, "pyjobd_jobs_retained", "gauge", "Job records kept by the server.");
    fprintf(f, "pyjobd_jobs_retained %zu\n", st->jobs_retained);

    static const char *const states[] = {"starting", "idle", "busy", "exiting"};
    family(f, "pyjobd_workers", "gauge", "Worker processes, by state.");
    for (size_t s = 0; s < sizeof(states) / sizeof(*states); s++) {
        size_t n = 0;
        for (size_t i = 0; i < st->nworkers; i++)
            n += st->workers[i].state && strcmp(st->workers[i].state, states[s]) == 0;
        fprintf(f, "pyjobd_workers{state=\"%s\"} %zu\n", states[s], n);
    }
    family(f, "pyjobd_workers_target", "gauge", "Worker processes the pool is asked to keep.");
    fprintf(f, "pyjobd_workers_target %u\n", st->workers_target);

    family(f, "pyjobd_worker_restarts_total", "counter", "Workers replaced, by cause.");
    fprintf(f,
            "pyjobd_worker_restarts_total{cause=\"crash\"} %" PRIu64 "\n"
            "pyjobd_worker_restarts_total{cause=\"timeout\"} %" PRIu64 "\n"
            "pyjobd_worker_restarts_total{cause=\"recycle\"} %" PRIu64 "\n"
            "pyjobd_worker_restarts_total{cause=\"cancel\"} %" PRIu64 "\n"
            "pyjobd_worker_restarts_total{cause=\"tenant\"} %" PRIu64 "\n",
            st->restarts_crash, st->restarts_timeout, st->restarts_recycle, st->restarts_cancel,
            st->restarts_tenant);
    family(f, "pyjobd_worker_boot_failures_total", "counter", "Workers that failed to boot.");
    fprintf(f, "pyjobd_worker_boot_failures_total %" PRIu64 "\n", st->boot_failures);

    family(f, "pyjobd_job_duration_seconds", "histogram",
           "Run time of jobs that ran on a worker (started to finished).");
    uint64_t cumulative = 0;
    int saw_inf = 0;
    for (size_t b = 0; b < POOL_DURATION_BUCKETS; b++) {
        char le[32];
        cumulative += st->duration_buckets[b];
        format_bound(pool_duration_bounds[b], le, sizeof(le));
        saw_inf |= isinf(pool_duration_bounds[b]);
        fprintf(f, "pyjobd_job_duration_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", le, cumulative);
    }
    if (!saw_inf)
        fprintf(f, "pyjobd_job_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                st->duration_count);
    fprintf(f, "pyjobd_job_duration_seconds_sum %.17g\n", st->duration_sum);
    fprintf(f, "pyjobd_job_duration_seconds_count %" PRIu64 "\n", st->duration_count);

    family(f, "pyjobd_http_requests_total", "counter", "HTTP responses sent, by status code.");
    size_t nslots = sizeof(api->http_responses) / sizeof(*api->http_responses);
    for (size_t slot = 1; slot < nslots; slot++) {
        uint64_t n = atomic_load_explicit(&api->http_responses[slot], memory_order_relaxed);
        if (n)
            fprintf(f, "pyjobd_http_requests_total{code=\"%zu\"} %" PRIu64 "\n",
                    slot - 1 + API_STATUS_MIN, n);
    }
    uint64_t other = atomic_load_explicit(&api->http_responses[0], memory_order_relaxed);
    if (other)
        fprintf(f, "pyjobd_http_requests_total{code=\"other\"} %" PRIu64 "\n", other);
}

void api__get_metrics(struct api *api, const struct api_request *req, struct api_response *resp)
{
    /* The whole service's numbers: an operator's, unless --public-metrics opens them. */
    if (!api->public_metrics &&
        api__forbid_non_admin(req, resp, "read /metrics",
                              "or serve /metrics to every caller with --public-metrics"))
        return;
    struct pool_stats st;
    memset(&st, 0, sizeof(st));
    int rc = pool_get_stats(api->pool, &st);
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read the pool: %s",
                    strerror(-rc));
        return;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        write_metrics(f, api, &st);
        if (fclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    pool_stats_release(&st);
    if (!text) {
        api_problem(resp, 503, NULL, "out of memory; retry later");
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = text;
    resp->body_len = len;
}
