/*
 * jobs_rerun.c — running finished jobs again:
 *
 *   POST /v1/jobs/{id}/rerun  → 201 the new job (same request; "rerun_of": id)
 *   POST /v1/jobs/rerun {"status": "failed", "error_type"?, "since"?, "limit"?}
 *                            → 201 {"jobs": [new job, ...]} (oldest finished first)
 *
 * Only the caller's own jobs (another tenant's are unknown here as everywhere). A
 * job's request is kept while its record is (--result-ttl, --max-jobs) unless
 * --max-results-memory dropped it with its results: 410 then. On a shared store any
 * node reruns any finished job (the pool reads it from the database).
 */
#include "internal.h"
#include "input.h"
#include "job_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/clock.h"
#include "pyjobd/pool.h"

#define RERUN_LIMIT_MAX 1000
#define RERUN_LIMIT_DEFAULT 100

static const char *const rerun_fields[] = {"status", "error_type", "since", "limit"};

/* What a submission's errors say, for reruns as for any submission. 1 if answered. */
static int rerun_problem(struct api *api, const struct api_request *req, const char *id, int rc,
                         struct api_response *resp)
{
    if (rc == -EBUSY)
        api_problem(resp, 409, NULL,
                    "job %s has not finished: only a finished job is rerun (wait for it, or "
                    "cancel it first)",
                    id);
    else if (rc == -ENODATA)
        api_problem(resp, 410, NULL,
                    "the request of job %s is no longer kept (the server dropped it with the "
                    "job's results to stay within --max-results-memory): submit it again",
                    id);
    else if (rc == -ENOENT || rc == -ESTALE || rc == -ENOBUFS)
        api__job_lookup_problem(api, resp, id, rc);
    else
        return api__queue_problem(api, req->tenant, resp, rc, "job");
    return 1;
}

void api__rerun_job(struct api *api, const struct api_request *req, const char *id,
                    struct api_response *resp)
{
    if (!job_id_is_valid(id)) {
        api__job_lookup_problem(api, resp, id, -ENOENT);
        return;
    }
    struct job_view view;
    int rc = pool_rerun(api->pool, id, &view);
    if (rerun_problem(api, req, id, rc, resp))
        return;
    api__respond_json(resp, 201, api__job_to_json(&view), "application/json");
    if (resp->status == 201 && asprintf(&resp->location, API_JOBS_PREFIX "%s", view.id) < 0)
        resp->location = NULL;
    job_view_release(&view);
}

static int parse_filter(json_t *root, struct pool_rerun_filter *f, size_t *limit, char *detail,
                        size_t len)
{
    int rc = api__check_fields(root, rerun_fields, 4, "", detail, len);
    if (rc)
        return rc;
    json_t *v = json_object_get(root, "status");
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strcmp(s, "failed") == 0)
        f->status = JOB_FAILED;
    else if (strcmp(s, "cancelled") == 0)
        f->status = JOB_CANCELLED;
    else if (strcmp(s, "succeeded") == 0)
        f->status = JOB_SUCCEEDED;
    else
        return api__failf(detail, len,
                          "field 'status' is required: \"failed\", \"cancelled\" or "
                          "\"succeeded\" (the finished jobs to run again)");
    v = json_object_get(root, "error_type");
    if (v && !json_is_null(v)) {
        f->error_type = JOB_ERR_NONE;
        for (int t = JOB_ERR_EXCEPTION; json_is_string(v) && t <= JOB_ERR_MAX; t++)
            if (strcmp(json_string_value(v), job_error_type_name((enum job_error_type)t)) == 0)
                f->error_type = (enum job_error_type)t;
        if (f->error_type == JOB_ERR_NONE || f->status != JOB_FAILED)
            return api__failf(detail, len,
                              "field 'error_type' must be an error type of the API "
                              "(\"exception\", \"timeout\", \"worker_crashed\", …), with status "
                              "\"failed\"");
    }
    v = json_object_get(root, "since");
    if (v && !json_is_null(v)) {
        size_t pos = 0;
        if (!json_is_string(v) || clock_parse(json_string_value(v), &f->since_us, &pos) != 0)
            return api__failf(detail, len,
                              "field 'since' must be an RFC 3339 time such as "
                              "\"2026-12-01T17:30:00Z\" (jobs finished at or after it)");
    }
    v = json_object_get(root, "limit");
    *limit = RERUN_LIMIT_DEFAULT;
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > RERUN_LIMIT_MAX)
            return api__failf(detail, len, "field 'limit' must be an integer from 1 to %d",
                              RERUN_LIMIT_MAX);
        *limit = (size_t)json_integer_value(v);
    }
    return 0;
}

void api__rerun_jobs(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (api__reject_non_json(req, resp))
        return;
    char detail[512];
    json_t *root;
    int rc = api__body_parse(req->body, req->body_len,
                             "{\"status\": \"failed\", \"error_type\": \"exception\", \"since\": "
                             "\"2026-12-01T00:00:00Z\", \"limit\": 100}",
                             &root, detail, sizeof(detail));
    struct pool_rerun_filter f = {.tenant = req->tenant};
    size_t limit = 0, n = 0;
    if (rc == 0)
        rc = parse_filter(root, &f, &limit, detail, sizeof(detail));
    json_decref(root);
    if (rc < 0) {
        api__request_problem(resp, rc, detail);
        return;
    }
    struct job_view *views = calloc(limit, sizeof(*views));
    rc = views ? pool_rerun_many(api->pool, &f, views, limit, &n) : -ENOMEM;
    if (rerun_problem(api, req, "", rc, resp)) {
        free(views);
        return;
    }
    json_t *jobs = json_array();
    for (size_t i = 0; i < n; i++) {
        if (jobs && json_array_append_new(jobs, api__job_to_json(&views[i])) < 0) {
            json_decref(jobs);
            jobs = NULL;
        }
        job_view_release(&views[i]);
    }
    free(views);
    api__respond_json(resp, 201, jobs ? json_pack("{s:o}", "jobs", jobs) : NULL,
                      "application/json");
}
