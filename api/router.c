/*
 * router.c — the api object: maps (method, path) to the REST resources of v1 and
 * runs them against the pool.
 *
 *   GET  /healthz          liveness
 *   GET  /v1/info          versions, pool occupancy, limits
 *   POST /v1/jobs          submit (201 + Location), optional ?wait=S
 *   GET  /v1/jobs/{id}     poll, optional ?wait=S (long-poll)
 *
 * HEAD is answered like GET (the server drops the body). A long-poll never blocks a
 * thread: api_handle() returns a struct api_wait, the pool calls the server's wake
 * callback on the supervisor thread, and api_wait_finish() renders the job as it is
 * then.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "job_json.h"
#include "job_request.h"
#include "pyjobd/pool.h"

#define JOBS_PREFIX "/v1/jobs/"

struct api {
    struct pool *pool;
    double max_wait;
    size_t max_request_bytes;
    double default_timeout;
    char *version;
};

struct api *api_new(const struct api_config *cfg)
{
    struct api *api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    api->pool = cfg->pool;
    api->max_wait = cfg->max_wait >= 0 ? cfg->max_wait : 0; /* also maps NaN to 0 */
    api->max_request_bytes = cfg->max_request_bytes;
    api->default_timeout = cfg->default_timeout;
    api->version = strdup(cfg->version ? cfg->version : "unknown");
    if (!api->version) {
        free(api);
        return NULL;
    }
    return api;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    free(api->version);
    free(api);
}

static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static void method_not_allowed(struct api_response *resp, const char *method, const char *path,
                               const char *allow)
{
    api_problem(resp, 405, NULL, "%s is not allowed on %.64s; allowed: %s", method, path, allow);
    resp->allow = allow;
}

/* A number without sign or exponent: "5", "0.25", "30.". */
static int parse_seconds(const char *s, double *out)
{
    const char *p = s;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    if (*p || digits == 0)
        return -EINVAL;
    *out = strtod(s, NULL);
    return isfinite(*out) ? 0 : -EINVAL;
}

/* Reads ?wait=. Returns 0 (absent means 0) or -EINVAL with a problem in resp. */
static int parse_wait(const struct api *api, const struct api_request *req, double *wait,
                      struct api_response *resp)
{
    const char *s = req->query ? req->query(req->query_ctx, "wait") : NULL;
    *wait = 0;
    if (!s)
        return 0;
    if (parse_seconds(s, wait) < 0 || *wait > api->max_wait) {
        api_problem(resp, 400, NULL,
                    "query parameter 'wait' must be a number of seconds from 0 to %g, got '%.32s'",
                    api->max_wait, s);
        return -EINVAL;
    }
    return 0;
}

/* Answers with the job's JSON, or (wait > 0 and the job still unfinished) with a wait. */
static void respond_job(struct api *api, const char *id, int status, double wait,
                        struct api_response *resp)
{
    struct job_view view;
    int rc = pool_job_get(api->pool, id, &view);
    if (rc == -ENOENT) {
        api_problem(resp, 404, NULL, "no job with id %s", id);
        return;
    }
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read job %s: %s", id,
                    strerror(-rc));
        return;
    }
    if (wait > 0 && !job_status_is_terminal(view.status)) {
        job_view_release(&view);
        struct api_wait *w = calloc(1, sizeof(*w));
        if (!w) {
            api_problem(resp, 503, NULL, "out of memory; retry later");
            return;
        }
        memcpy(w->id, id, JOB_ID_LEN + 1);
        int64_t ms = (int64_t)(wait * 1000.0); /* rounded up, without libm */
        if ((double)ms < wait * 1000.0)
            ms++;
        w->deadline_ms = pool_now_ms() + ms;
        w->status = status;
        resp->status = status;
        resp->wait = w;
        return;
    }
    json_t *obj = api__job_to_json(&view);
    job_view_release(&view);
    api__respond_json(resp, status, obj, "application/json");
    if (status == 201 && resp->status == 201 && asprintf(&resp->location, JOBS_PREFIX "%s", id) < 0)
        resp->location = NULL;
}

/* "application/json", any case, optionally followed by parameters. */
static int is_json_media_type(const char *ct)
{
    static const char json[] = "application/json";
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, json, sizeof(json) - 1) != 0)
        return 0;
    ct += sizeof(json) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static void create_job(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (!req->content_type || !is_json_media_type(req->content_type)) {
        api_problem(resp, 415, NULL, "Content-Type must be application/json, got %s%.64s%s",
                    req->content_type ? "'" : "", req->content_type ? req->content_type : "none",
                    req->content_type ? "'" : "");
        return;
    }
    double wait;
    if (parse_wait(api, req, &wait, resp) < 0)
        return;

    struct job_spec spec;
    char detail[512];
    int rc = api__job_request_parse(req->body, req->body_len, &spec, detail, sizeof(detail));
    if (rc == -EINVAL) {
        api_problem(resp, 400, NULL, "%s", detail);
        return;
    }
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read the request: %s",
                    strerror(-rc));
        return;
    }

    char id[JOB_ID_LEN + 1];
    rc = pool_submit(api->pool, &spec, id);
    job_spec_release(&spec);
    if (rc == -ESHUTDOWN) {
        api_problem(resp, 503, NULL, "server is shutting down; submit the job again elsewhere");
        return;
    }
    if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot queue the job: %s",
                    strerror(-rc));
        return;
    }
    respond_job(api, id, 201, wait, resp);
}

static void get_job(struct api *api, const struct api_request *req, const char *id,
                    struct api_response *resp)
{
    if (!job_id_is_valid(id)) {
        api_problem(resp, 404, NULL,
                    "no job with id '%.64s': job ids are 32 lowercase hexadecimal digits", id);
        return;
    }
    double wait;
    if (parse_wait(api, req, &wait, resp) < 0)
        return;
    respond_job(api, id, 200, wait, resp);
}

static json_t *string_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static void get_info(struct api *api, struct api_response *resp)
{
    struct pool_info info;
    memset(&info, 0, sizeof(info));
    pool_get_info(api->pool, &info);
    info.python_version[sizeof(info.python_version) - 1] = '\0';
    info.cloudpickle_version[sizeof(info.cloudpickle_version) - 1] = '\0';
    json_t *obj = json_pack(
        "{s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:{s:I, s:f, s:o}}", "version", api->version,
        "python_version", string_or_null(info.python_version), "cloudpickle_version",
        string_or_null(info.cloudpickle_version), "workers", (json_int_t)info.workers,
        "workers_ready", (json_int_t)info.workers_ready, "queued", (json_int_t)info.queued,
        "running", (json_int_t)info.running, "limits", "max_request_bytes",
        (json_int_t)api->max_request_bytes, "max_wait_seconds", api->max_wait, "default_timeout",
        api->default_timeout > 0 ? json_real(api->default_timeout) : json_null());
    api__respond_json(resp, 200, obj, "application/json");
}

void api_handle(struct api *api, const struct api_request *req, struct api_response *resp)
{
    const char *method = req->method ? req->method : "";
    const char *path = req->path ? req->path : "";
    const char *job_id = NULL;
    memset(resp, 0, sizeof(*resp));

    if (strncmp(path, JOBS_PREFIX, sizeof(JOBS_PREFIX) - 1) == 0 &&
        !strchr(path + sizeof(JOBS_PREFIX) - 1, '/'))
        job_id = path + sizeof(JOBS_PREFIX) - 1;

    if (strcmp(path, "/healthz") == 0) {
        if (is_get(method))
            api__respond_json(resp, 200, json_pack("{s:s}", "status", "ok"), "application/json");
        else
            method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/v1/info") == 0) {
        if (is_get(method))
            get_info(api, resp);
        else
            method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/v1/jobs") == 0) {
        if (strcmp(method, "POST") == 0)
            create_job(api, req, resp);
        else
            method_not_allowed(resp, method, path, "POST");
    } else if (job_id) {
        if (is_get(method))
            get_job(api, req, job_id, resp);
        else
            method_not_allowed(resp, method, path, "GET, HEAD");
    } else {
        api_problem(resp, 404, NULL,
                    "no resource at '%.64s'; this server has /healthz, /v1/info, /v1/jobs and "
                    "/v1/jobs/{id}",
                    path);
    }
}

void api_wait_start(struct api *api, struct api_response *resp, void (*wake)(void *arg), void *arg)
{
    /* pool_watch never calls back when it fails, so wake here: exactly once either way.
     * -ENOENT means the job went away; api_wait_finish() will answer 404. */
    if (!resp->wait ||
        pool_watch(api->pool, resp->wait->id, resp->wait->deadline_ms, wake, arg) < 0)
        wake(arg);
}

void api_wait_finish(struct api *api, struct api_response *resp)
{
    struct api_wait *w = resp->wait;
    if (!w)
        return;
    resp->wait = NULL;
    respond_job(api, w->id, w->status, 0, resp);
    free(w);
}
