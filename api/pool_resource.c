/*
 * pool_resource.c — the worker pool as a resource:
 *
 *   GET   /v1/pool                 workers, queue, restarts by cause, boot failures
 *   PATCH /v1/pool {"workers": N}  resize (1..1024), then the same body as GET; admin only
 *
 * Shape: {"workers_target", "workers": [{"pid", "state", "job_id" | null, "jobs_done",
 * "started_at" | null, "rss_bytes" | null, "retiring"}], "queued", "scheduled", "running",
 * "restarts": {"crash", "timeout", "recycle", "cancel", "tenant"}, "boot_failures",
 * "boot_error" | null}.
 *
 * An admin sees every worker; a user only the workers running its own jobs (another
 * tenant's worker would show its pid, memory and activity), and the counts, which
 * are the whole pool's.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

#include "input.h"
#include "job_json.h"
#include "pyjobd/pool.h"

#define POOL_WORKERS_MAX 1024

static const char *const patch_fields[] = {"workers"};

static json_t *timestamp_or_null(const struct timespec *ts)
{
    char buf[API_TIMESTAMP_LEN];
    return api__format_timestamp(ts, buf) < 0 ? json_null() : json_string(buf);
}

/* A worker as `tenant` may see it: another tenant's job id is not shown (it would
 * tell that the job exists). */
static json_t *worker_json(const struct pool_worker_info *w, const char *tenant)
{
    char id[JOB_ID_LEN + 1];
    memcpy(id, w->job_id, JOB_ID_LEN);
    id[JOB_ID_LEN] = '\0';
    int visible = w->job_id[0] && (!tenant || strcmp(w->job_owner, tenant) == 0);
    return json_pack("{s:I, s:s, s:o, s:I, s:o, s:o, s:b, s:o}", "pid", (json_int_t)w->pid, "state",
                     w->state ? w->state : "starting", "job_id",
                     visible ? json_string(id) : json_null(), "jobs_done", (json_int_t)w->jobs_done,
                     "started_at", timestamp_or_null(&w->started_at), "rss_bytes",
                     w->rss_bytes >= 0 ? json_integer(w->rss_bytes) : json_null(), "retiring",
                     w->retiring != 0, "uid", w->uid >= 0 ? json_integer(w->uid) : json_null());
}

void api__get_pool(struct api *api, const struct api_request *req, struct api_response *resp)
{
    struct pool_stats st;
    memset(&st, 0, sizeof(st));
    int rc = pool_get_stats(api->pool, &st);
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read the pool: %s",
                    strerror(-rc));
        return;
    }
    st.boot_error[sizeof(st.boot_error) - 1] = '\0';
    json_t *workers = json_array();
    for (size_t i = 0; workers && i < st.nworkers; i++) {
        const struct pool_worker_info *w = &st.workers[i];
        if (req->role != API_ROLE_ADMIN &&
            !(req->tenant && w->job_id[0] && strcmp(w->job_owner, req->tenant) == 0))
            continue;
        if (json_array_append_new(workers, worker_json(w, req->tenant)) < 0) {
            json_decref(workers);
            workers = NULL;
        }
    }
    json_t *obj = json_pack(
        "{s:I, s:o, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:o}", "workers_target",
        (json_int_t)st.workers_target, "workers", workers, "queued", (json_int_t)st.queued,
        "scheduled", (json_int_t)st.scheduled, "running", (json_int_t)st.running, "restarts",
        "crash", (json_int_t)st.restarts_crash, "timeout", (json_int_t)st.restarts_timeout,
        "recycle", (json_int_t)st.restarts_recycle, "cancel", (json_int_t)st.restarts_cancel,
        "tenant", (json_int_t)st.restarts_tenant, "boot_failures", (json_int_t)st.boot_failures,
        "boot_error", st.boot_error[0] ? json_string(st.boot_error) : json_null());
    pool_stats_release(&st);
    api__respond_json(resp, 200, obj, "application/json");
}

void api__patch_pool(struct api *api, const struct api_request *req, struct api_response *resp)
{
    /* Before the body is looked at: a user learns nothing from a PATCH. */
    if (api__forbid_non_admin(req, resp, "resize the pool", NULL))
        return;
    if (api__reject_non_json(req, resp))
        return;
    char detail[512];
    json_t *root;
    int rc = api__body_parse(req->body, req->body_len, "{\"workers\": 4}", &root, detail,
                             sizeof(detail));
    if (rc == 0)
        rc = api__check_fields(root, patch_fields, 1, "", detail, sizeof(detail));
    json_int_t n = 0;
    if (rc == 0) {
        json_t *v = json_object_get(root, "workers");
        if (!v)
            rc = api__failf(detail, sizeof(detail),
                            "field 'workers' is required: the number of worker processes, 1 to %d",
                            POOL_WORKERS_MAX);
        else if (!json_is_integer(v))
            rc = api__failf(detail, sizeof(detail),
                            "field 'workers' must be an integer from 1 to %d, got %s",
                            POOL_WORKERS_MAX, api__json_type_name(v));
        else if ((n = json_integer_value(v)) < 1 || n > POOL_WORKERS_MAX)
            rc = api__failf(detail, sizeof(detail),
                            "field 'workers' must be an integer from 1 to %d, got %lld",
                            POOL_WORKERS_MAX, (long long)n);
    }
    json_decref(root);
    if (rc < 0) {
        api__request_problem(resp, rc, detail);
        return;
    }
    rc = pool_resize(api->pool, (unsigned)n);
    if (rc == -ESHUTDOWN) {
        api_problem(resp, 503, NULL, "server is shutting down; the pool cannot be resized");
        return;
    }
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot resize the pool to %lld: %s",
                    (long long)n, strerror(-rc));
        return;
    }
    api__get_pool(api, req, resp);
}
