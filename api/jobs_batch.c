/*
 * jobs_batch.c — POST /v1/jobs/batch {"jobs": [<job request>, ...]}.
 *
 * All or nothing: every element is validated first (the 400 names the index of the
 * first bad one), then the pool queues all of them at once or none (429 when the
 * queue has no room for all). 201 answers {"jobs": [job, ...]} in request order.
 * An element may carry "idempotency_key" (each its own): an element whose key its
 * tenant used already is answered with that key's job, made no second time, and its
 * index is listed in "replayed"; when every element is such, the answer is 200 with
 * Idempotent-Replayed: true. A key reused with another request is 422 naming it.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "job_json.h"
#include "pyjobd/pool.h"

static const char *const batch_fields[] = {"jobs"};

/* {"jobs": [...]} from the views of the jobs just queued (and, with replays, their
 * indexes in "replayed"). */
static json_t *render(const struct job_view *views, const unsigned char *replayed, size_t n)
{
    json_t *jobs = json_array(), *again = json_array();
    for (size_t i = 0; jobs && again && i < n; i++) {
        if (json_array_append_new(jobs, api__job_to_json(&views[i])) < 0 ||
            (replayed[i] && json_array_append_new(again, json_integer((json_int_t)i)) < 0)) {
            json_decref(jobs);
            jobs = NULL;
        }
    }
    if (!jobs || !again) {
        json_decref(jobs);
        json_decref(again);
        return NULL;
    }
    if (json_array_size(again))
        return json_pack("{s:o, s:o}", "jobs", jobs, "replayed", again);
    json_decref(again);
    return json_pack("{s:o}", "jobs", jobs);
}

/* Each key of a batch once: 0, or -EINVAL with the detail naming both elements. */
static int distinct_keys(const struct job_spec *specs, size_t n, char *detail, size_t len)
{
    json_t *seen = json_object();
    int rc = seen ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!specs[i].idem_key)
            continue;
        json_t *first = json_object_get(seen, specs[i].idem_key);
        if (first)
            rc = api__failf(detail, len,
                            "jobs[%zu]: idempotency_key '%.200s' is also jobs[%lld]'s; each job "
                            "of a batch needs a key of its own",
                            i, specs[i].idem_key, (long long)json_integer_value(first));
        else if (json_object_set_new(seen, specs[i].idem_key, json_integer((json_int_t)i)) < 0)
            rc = -ENOMEM;
    }
    json_decref(seen);
    return rc;
}

void api__create_batch(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (api__reject_non_json(req, resp))
        return;
    char detail[800];
    json_t *root;
    int rc =
        api__body_parse(req->body, req->body_len, "{\"jobs\": [{\"callable\": \"<base64>\"}, ...]}",
                        &root, detail, sizeof(detail));
    if (rc == 0)
        rc = api__check_fields(root, batch_fields, 1, "", detail, sizeof(detail));
    if (rc < 0) {
        api__request_problem(resp, rc, detail);
        json_decref(root);
        return;
    }
    json_t *jobs = json_object_get(root, "jobs");
    size_t n = json_array_size(jobs);
    if (!json_is_array(jobs) || n == 0 || n > api->max_batch) {
        if (!jobs)
            api_problem(resp, 400, NULL,
                        "field 'jobs' is required: an array of 1 to %zu job requests",
                        api->max_batch);
        else if (!json_is_array(jobs))
            api_problem(resp, 400, NULL,
                        "field 'jobs' must be an array of 1 to %zu job requests, got %s",
                        api->max_batch, api__json_type_name(jobs));
        else
            api_problem(resp, 400, NULL,
                        "field 'jobs' must hold 1 to %zu job requests (--max-batch), got %zu",
                        api->max_batch, n);
        json_decref(root);
        return;
    }

    struct api__job_limits lim;
    api__job_limits_get(api, &lim);
    struct job_spec *specs = calloc(n, sizeof(*specs));
    struct job_view *views = calloc(n, sizeof(*views));
    unsigned char *replayed = NULL;
    size_t parsed = 0;
    if (!specs || !views) {
        api_problem(resp, 503, NULL, "out of memory for %zu jobs; send smaller batches", n);
        goto out;
    }
    for (; parsed < n; parsed++) {
        char where[32];
        snprintf(where, sizeof(where), "jobs[%zu]: ", parsed);
        rc = api__job_request_from_json(json_array_get(jobs, parsed), &lim, where, &specs[parsed],
                                        detail, sizeof(detail));
        if (rc == -EINVAL) {
            api_problem(resp, 400, NULL, "%s", detail);
            goto out;
        }
        if (rc < 0) {
            api_problem(resp, 503, NULL, "out of memory for %zu jobs; send smaller batches", n);
            goto out;
        }
    }
    json_decref(root); /* the payloads now live in the specs' blobs */
    root = NULL;
    if ((rc = distinct_keys(specs, n, detail, sizeof(detail))) != 0) {
        if (rc == -EINVAL)
            api_problem(resp, 400, NULL, "%s", detail);
        else
            api_problem(resp, 503, NULL, "out of memory for %zu jobs; send smaller batches", n);
        goto out;
    }

    for (size_t i = 0; req->tenant && i < n; i++)
        snprintf(specs[i].owner, sizeof(specs[i].owner), "%s", req->tenant);
    if (!(replayed = calloc(n, 1))) {
        api_problem(resp, 503, NULL, "out of memory for %zu jobs; send smaller batches", n);
        goto out;
    }
    size_t bad = 0;
    /* Keyed or not: the refusals of a spec's own fields name it (bad). */
    rc = pool_submit_keyed(api->pool, specs, n, views, replayed, &bad);
    char where[32];
    snprintf(where, sizeof(where), "jobs[%zu]: ", bad);
    if (api__submit_problem(api, resp, rc, where, bad < n ? specs[bad].idem_key : NULL)) {
        /* answered */
    } else if (rc == -EAGAIN) {
        api_problem(resp, 429, NULL,
                    "the job queue has no room for %zu more jobs (--max-queue %zu); nothing was "
                    "queued; retry after a while or send smaller batches",
                    n, api->max_queue);
        resp->retry_after = 1;
    } else if (api__queue_problem(api, req->tenant, resp, rc, "jobs")) {
        /* answered */
    } else {
        size_t again = 0;
        for (size_t i = 0; i < n; i++)
            again += replayed[i];
        api__respond_json(resp, again == n ? 200 : 201, render(views, replayed, n),
                          "application/json");
        resp->replayed = again == n && resp->status == 200;
        for (size_t i = 0; i < n; i++)
            job_view_release(&views[i]);
    }
out:
    free(replayed);
    for (size_t i = 0; specs && i < parsed; i++)
        job_spec_release(&specs[i]);
    free(specs);
    free(views);
    json_decref(root);
}
