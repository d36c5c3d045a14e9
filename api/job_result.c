/*
 * job_result.c — GET /v1/jobs/{id}/result[?wait=S]: the return value alone.
 *
 *   succeeded, pickle format  200 application/octet-stream, the raw pickle bytes
 *   succeeded, json format    200 application/json, the JSON value
 *   failed or cancelled       409 problem+json with members error_type, job_status
 *   not finished (after wait) 202 application/json, the job object, Retry-After: 1
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "input.h"
#include "job_json.h"
#include "pyjobd/pool.h"

/* The result's own bytes, sent from its blob (never copied). */
static void respond_bytes(struct api_response *resp, struct blob *blob, int add_newline,
                          const char *content_type)
{
    struct api__body b = {0};
    if (blob)
        api__body_blob(&b, blob, API_PART_RAW);
    if (add_newline)
        api__body_str(&b, "\n");
    api__body_finish(&b, resp, 200, content_type);
}

static void respond_failed(struct api_response *resp, const struct job_view *v)
{
    const char *type = job_error_type_name(v->error.type);
    const char *message = v->error.message ? v->error.message : "";
    if (!type) /* cancelled jobs carry JOB_ERR_CANCELLED, but never answer without a type */
        type = v->status == JOB_CANCELLED ? "cancelled" : "exception";
    json_t *ext =
        json_pack("{s:s, s:s}", "error_type", type, "job_status", job_status_name(v->status));
    if (v->status == JOB_CANCELLED)
        api__problem_ext(resp, 409, ext, "job %s was cancelled: it has no result (%s)", v->id,
                         message[0] ? message : "cancelled");
    else
        api__problem_ext(resp, 409, ext, "job %s failed with error %s: %.700s", v->id, type,
                         message);
}

void api__respond_result(struct api *api, const char *id, double wait, struct api_response *resp)
{
    struct job_view view;
    int rc = pool_job_get(api->pool, id, &view);
    if (rc < 0) {
        api__job_lookup_problem(api, resp, id, rc);
        return;
    }
    if (!job_status_is_terminal(view.status) && wait > 0) {
        job_view_release(&view);
        api__wait_for_job(resp, API_WAIT_RESULT, id, wait, 202);
        return;
    }
    switch (view.status) {
    case JOB_QUEUED:
    case JOB_SCHEDULED:
    case JOB_RUNNING:
        api__respond_json(resp, 202, api__job_to_json(&view), "application/json");
        if (resp->status == 202)
            resp->retry_after = 1;
        break;
    case JOB_SUCCEEDED:
        if (view.result_json)
            respond_bytes(resp, view.result_json, 1, "application/json");
        else
            respond_bytes(resp, view.result, 0, "application/octet-stream");
        break;
    case JOB_FAILED:
    case JOB_CANCELLED:
        respond_failed(resp, &view);
        break;
    }
    job_view_release(&view);
}

void api__get_result(struct api *api, const struct api_request *req, const char *id,
                     struct api_response *resp)
{
    if (api__reject_bad_path_id(resp, id))
        return;
    double wait;
    if (api__query_wait(api, req, &wait, resp) < 0)
        return;
    api__respond_result(api, id, wait, resp);
}
