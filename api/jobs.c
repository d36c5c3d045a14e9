/*
 * jobs.c — the job collection and the job resource:
 *
 *   POST   /v1/jobs[?wait=S]               submit one job: 201 + Location (429 when full);
 *                                           with an Idempotency-Key already used, 200 and
 *                                           that key's job (Idempotent-Replayed: true)
 *   GET    /v1/jobs?status=&limit=&cursor= a page of jobs, newest first (api/cursor.c)
 *   GET    /v1/jobs/{id}[?wait=S]          the job (long-poll with wait)
 *   DELETE /v1/jobs/{id}                   forget a finished job: 204
 *   POST   /v1/jobs/{id}/cancel[?force=]   Future.cancel(), plus force for running jobs
 *
 * A long-poll never blocks a thread: with wait > 0 and the job unfinished, the answer
 * is a struct api_wait and router.c's api_wait_finish() renders the job again later.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "idempotency.h"
#include "body.h"
#include "input.h"
#include "job_json.h"
#include "pyjobd/pool.h"

#define LIST_LIMIT_MAX 1000
#define LIST_LIMIT_DEFAULT 100

void api__job_limits_get(const struct api *api, struct api__job_limits *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->max_retries_limit = api->max_retries_limit;
    lim->python_match = api->python_match;
    lim->default_timeout = api->default_timeout;
    if (api->python_match == API_PYTHON_MATCH_NONE)
        return;
    struct pool_info info;
    memset(&info, 0, sizeof(info));
    pool_get_info(api->pool, &info);
    snprintf(lim->workers_python, sizeof(lim->workers_python), "%.*s",
             (int)sizeof(info.python_version) - 1, info.python_version);
}

int64_t api__deadline_ms(double seconds)
{
    int64_t ms = (int64_t)(seconds * 1000.0); /* rounded up, without libm */
    if ((double)ms < seconds * 1000.0)
        ms++;
    return clock_now_ms() + ms;
}

int api__query_wait(const struct api *api, const struct api_request *req, double *wait,
                    struct api_response *resp)
{
    const char *s = req->query ? req->query(req->query_ctx, "wait") : NULL;
    *wait = 0;
    if (!s)
        return 0;
    if (api__parse_seconds(s, wait) < 0 || *wait > api->max_wait) {
        api_problem(resp, 400, NULL,
                    "query parameter 'wait' must be a number of seconds from 0 to %g, got '%.32s'",
                    api->max_wait, s);
        return -EINVAL;
    }
    return 0;
}

void api__wait_for_job(struct api_response *resp, int kind, const char *id, double wait, int status)
{
    struct api_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        api_problem(resp, 503, NULL, "out of memory; retry later");
        return;
    }
    w->kind = kind;
    memcpy(w->id, id, JOB_ID_LEN + 1);
    w->deadline_ms = api__deadline_ms(wait);
    w->status = status;
    resp->status = status;
    resp->wait = w;
}

int api__jobs_get_as(struct api *api, const char *tenant, char (*ids)[JOB_ID_LEN + 1], size_t n,
                     struct job_view *views, int *rcs)
{
    int rc = pool_job_get_many(api->pool, ids, n, views, rcs);
    if (rc != 0)
        return rc;
    for (size_t i = 0; tenant && i < n; i++)
        if (rcs[i] == 0 && strcmp(views[i].owner, tenant) != 0) {
            job_view_release(&views[i]);
            rcs[i] = -ENOENT;
        }
    return 0;
}

int api__job_get_as(struct api *api, const char *tenant, const char *id, struct job_view *v)
{
    int rc = pool_job_get(api->pool, id, v);
    if (rc == 0 && tenant && strcmp(v->owner, tenant) != 0) {
        job_view_release(v);
        return -ENOENT;
    }
    return rc;
}

/* Answers with the job (or, with wait, waits for its end first). Releases *view. */
static void respond_view(struct job_view *view, int status, double wait, struct api_response *resp)
{
    if (wait > 0 && !job_status_is_terminal(view->status)) {
        api__wait_for_job(resp, API_WAIT_JOB, view->id, wait, status);
        job_view_release(view);
        return;
    }
    struct api__body b = {0};
    api__body_job(&b, view, 1);
    api__body_str(&b, "\n");
    api__body_finish(&b, resp, status, "application/json");
    if (status == 201 && resp->status == 201 &&
        asprintf(&resp->location, API_JOBS_PREFIX "%s", view->id) < 0)
        resp->location = NULL;
    job_view_release(view);
}

void api__respond_job(struct api *api, const char *id, int status, double wait,
                      struct api_response *resp)
{
    struct job_view view;
    int rc = pool_job_get(api->pool, id, &view);
    if (rc < 0) {
        api__job_lookup_problem(api, resp, id, rc);
        return;
    }
    respond_view(&view, status, wait, resp);
}

void api__create_job(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (api__reject_non_json(req, resp))
        return;
    double wait;
    if (api__query_wait(api, req, &wait, resp) < 0)
        return;

    char detail[700];
    const char *key = req->idempotency_key;
    if (key && api__idem_key_check(key, "header '" API_IDEM_HEADER "'", detail, sizeof(detail))) {
        api_problem(resp, 400, NULL, "%s", detail);
        return;
    }
    struct api__job_limits lim;
    api__job_limits_get(api, &lim);
    struct job_spec spec;
    int rc = api__job_request_parse_keyed(req->body, req->body_len, &lim, key, &spec, detail,
                                          sizeof(detail));
    if (rc < 0) {
        api__request_problem(resp, rc, detail);
        return;
    }

    if (req->tenant)
        snprintf(spec.owner, sizeof(spec.owner), "%s", req->tenant);
    struct job_view view;
    unsigned char replayed = 0;
    size_t bad = 0;
    rc = spec.idem_key ? pool_submit_keyed(api->pool, &spec, 1, &view, &replayed, &bad)
                       : pool_submit(api->pool, &spec, &view);
    int answered = api__submit_problem(api, resp, rc, "", spec.idem_key);
    job_spec_release(&spec);
    if (answered)
        return;
    if (api__queue_problem(api, req->tenant, resp, rc, "job"))
        return;
    /* A key's job again: 200, the job as it is now, never a second one. */
    respond_view(&view, replayed ? 200 : 201, wait, resp);
    if (replayed && resp->wait)
        resp->wait->replayed = 1;
    else if (replayed)
        resp->replayed = resp->status == 200;
}

void api__get_job(struct api *api, const struct api_request *req, const char *id,
                  struct api_response *resp)
{
    if (api__reject_bad_path_id(resp, id))
        return;
    double wait;
    if (api__query_wait(api, req, &wait, resp) < 0)
        return;
    api__respond_job(api, id, 200, wait, resp);
}

void api__delete_job(struct api *api, const char *id, struct api_response *resp)
{
    if (api__reject_bad_path_id(resp, id))
        return;
    int rc = pool_delete(api->pool, id);
    if (rc == -EBUSY) {
        api_problem(resp, 409, NULL, "job %s is not finished; cancel it first", id);
        return;
    }
    if (rc < 0) {
        api__job_lookup_problem(api, resp, id, rc);
        return;
    }
    resp->status = 204;
}

void api__cancel_job(struct api *api, const struct api_request *req, const char *id,
                     struct api_response *resp)
{
    if (api__reject_bad_path_id(resp, id))
        return;
    const char *s = req->query ? req->query(req->query_ctx, "force") : NULL;
    int force = 0;
    if (s && api__parse_bool(s, &force) < 0) {
        api_problem(resp, 400, NULL,
                    "query parameter 'force' must be true, false, 1 or 0, got '%.32s'", s);
        return;
    }
    /* interrupt=S: pyjobd.Cancelled in the running job, its worker killed S s later. */
    const char *is = req->query ? req->query(req->query_ctx, "interrupt") : NULL;
    double interrupt = 0;
    if (is && (api__parse_seconds(is, &interrupt) < 0 || !(interrupt > 0) || interrupt > 3600)) {
        api_problem(resp, 400, NULL,
                    "query parameter 'interrupt' must be a number of seconds, more than 0 and at "
                    "most 3600 (how long the job has to end after pyjobd.Cancelled is raised in "
                    "it), got '%.32s'",
                    is);
        return;
    }
    if (is && force) {
        api_problem(resp, 400, NULL,
                    "query parameters 'force' and 'interrupt' exclude each other: 'force=true' "
                    "kills the worker at once, 'interrupt=S' raises pyjobd.Cancelled first");
        return;
    }
    int rc = is ? pool_interrupt(api->pool, id, interrupt) : pool_cancel(api->pool, id, force);
    if (rc == -EBUSY) {
        api_problem(resp, 409, NULL,
                    "job %s is running; cancel with ?force=true to kill its worker (only this "
                    "job is affected)",
                    id);
        return;
    }
    if (rc == -EXDEV) {
        api_problem(resp, 409, NULL,
                    "job %s is on another node (see its \"node\"), which was asked to cancel it "
                    "but did not confirm within 3 s (unreachable?); retry, or wait until its "
                    "lease runs out and the job is re-queued or failed",
                    id);
        return;
    }
    if (rc == -EALREADY) {
        struct job_view view;
        const char *status = "unknown";
        int got = pool_job_get(api->pool, id, &view) == 0;
        if (got)
            status = job_status_name(view.status);
        api_problem(resp, 409, NULL, "job %s already finished (status %s)", id, status);
        if (got)
            job_view_release(&view);
        return;
    }
    if (rc < 0) {
        api__job_lookup_problem(api, resp, id, rc);
        return;
    }
    api__respond_job(api, id, 200, 0, resp);
}

static int parse_status(const char *s, int *out)
{
    for (int st = JOB_QUEUED; st <= JOB_STATUS_MAX; st++)
        if (strcmp(s, job_status_name((enum job_status)st)) == 0) {
            *out = st;
            return 0;
        }
    return -EINVAL;
}

void api__list_jobs(struct api *api, const struct api_request *req, struct api_response *resp)
{
    struct pool_list_query q = {
        .status = -1, .cursor = 0, .limit = LIST_LIMIT_DEFAULT, .owner = req->tenant};
    const char *s;
    s = req->query ? req->query(req->query_ctx, "status") : NULL;
    if (s && parse_status(s, &q.status) < 0) {
        api_problem(resp, 400, NULL,
                    "query parameter 'status' must be one of queued, running, succeeded, "
                    "failed, cancelled; got '%.32s'",
                    s);
        return;
    }
    /* Summaries by default: a page of results is asked for, and bounded. */
    s = req->query ? req->query(req->query_ctx, "include") : NULL;
    int with_results = s && strcmp(s, "result") == 0;
    if (s && !with_results) {
        api_problem(resp, 400, NULL,
                    "query parameter 'include' may only be 'result' (each finished job with "
                    "its result; a page holds up to %zu bytes of results), got '%.32s'",
                    api->max_result_bytes, s);
        return;
    }
    if (with_results)
        q.result_budget = api->max_result_bytes ? api->max_result_bytes : (size_t)64 << 20;
    s = req->query ? req->query(req->query_ctx, "limit") : NULL;
    uint64_t limit;
    if (s) {
        if (api__parse_uint(s, &limit) < 0 || limit < 1 || limit > LIST_LIMIT_MAX) {
            api_problem(resp, 400, NULL,
                        "query parameter 'limit' must be an integer from 1 to %d, got '%.32s'",
                        LIST_LIMIT_MAX, s);
            return;
        }
        q.limit = (size_t)limit;
    }
    s = req->query ? req->query(req->query_ctx, "cursor") : NULL;
    const uint8_t *key = api->cursor_keyed ? api->cursor_key : NULL;
    if (s && api__cursor_decode(key, s, &q.cursor) < 0) {
        api_problem(resp, 400, NULL,
                    "query parameter 'cursor' is not a cursor this server made, got '%.32s' "
                    "(altered, or made by a server with other tokens); pass the 'next_cursor' "
                    "of the previous page unchanged, or start again from the first page, "
                    "without 'cursor'",
                    s);
        return;
    }

    struct job_view *views = NULL;
    size_t n = 0;
    uint64_t next = 0;
    int rc = pool_list(api->pool, &q, &views, &n, &next);
    if (api__store_problem(api, resp, rc))
        return;
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot list jobs: %s", strerror(-rc));
        return;
    }
    struct api__body b = {0};
    api__body_str(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            api__body_str(&b, ",");
        api__body_job(&b, &views[i], with_results);
        job_view_release(&views[i]);
    }
    free(views);
    char cursor[API_CURSOR_LEN + 1];
    if (next && api__cursor_encode(key, next, cursor) < 0) {
        api__body_release(&b);
        api_problem(resp, 500, NULL,
                    "cannot make a cursor: job sequence number %" PRIu64
                    " is beyond 2^48, which a cursor cannot carry",
                    next);
        return;
    }
    api__body_str(&b, "],\"next_cursor\":");
    if (next) { /* a cursor is [0-9a-zA-Z_-]: no escaping needed */
        api__body_str(&b, "\"");
        api__body_str(&b, cursor);
        api__body_str(&b, "\"");
    } else {
        api__body_str(&b, "null");
    }
    api__body_str(&b, "}\n");
    api__body_finish(&b, resp, 200, "application/json");
}
