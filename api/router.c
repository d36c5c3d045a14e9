/*
 * router.c — the api object: maps (method, path) to the REST resources of v1, counts
 * every answer for /metrics, and dispatches the second step of long-polls.
 *
 *   GET          /healthz                  service.c
 *   GET          /readyz                   service.c
 *   GET          /metrics                  metrics.c
 *   GET          /v1/info                  service.c
 *   GET, PATCH   /v1/pool                  pool_resource.c
 *   GET, POST    /v1/jobs                  jobs.c
 *   POST         /v1/jobs/batch            jobs_batch.c
 *   POST         /v1/jobs/wait             jobs_wait.c
 *   GET, DELETE  /v1/jobs/{id}             jobs.c
 *   GET          /v1/jobs/{id}/result      job_result.c
 *   POST         /v1/jobs/{id}/cancel      jobs.c
 *   POST         /v1/jobs/{id}/rerun       jobs_rerun.c
 *   POST         /v1/jobs/rerun            jobs_rerun.c
 *   GET, POST    /v1/schedules             schedules.c
 *   GET, DELETE  /v1/schedules/{id}        schedules.c
 *
 * HEAD is answered like GET (the server drops the body). Any other method gets 405
 * with Allow; any other path 404. "batch", "wait" and "rerun" can never be job ids (those are
 * 32 hex digits), so the fixed paths and /v1/jobs/{id} cannot collide.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/pool.h"

#define DEFAULT_MAX_BATCH 10000

/* "a,b" -> ["a", "b"] (NULL or "": []); NULL on ENOMEM. */
static json_t *split_list(const char *list)
{
    json_t *arr = json_array();
    for (const char *s = list; arr && s && *s;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (n && json_array_append_new(arr, json_stringn(s, n)) != 0) {
            json_decref(arr);
            return NULL;
        }
        s += n + (comma != NULL);
    }
    return arr;
}

struct api *api_new(const struct api_config *cfg)
{
    enum api_python_match match;
    if (api__python_match_parse(cfg->python_match, &match) < 0) {
        errno = EINVAL;
        return NULL;
    }
    struct api *api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    api->pool = cfg->pool;
    api->max_wait = cfg->max_wait >= 0 ? cfg->max_wait : 0; /* also maps NaN to 0 */
    api->max_request_bytes = cfg->max_request_bytes;
    api->default_timeout = cfg->default_timeout;
    api->python_match = match;
    api->max_retries_limit = cfg->max_retries_limit;
    api->max_batch = cfg->max_batch ? cfg->max_batch : DEFAULT_MAX_BATCH;
    api->max_queue = cfg->max_queue;
    api->tenant_max_queued = cfg->tenant_max_queued;
    api->max_jobs = cfg->max_jobs;
    api->result_ttl = cfg->result_ttl > 0 ? cfg->result_ttl : 0;
    api->idempotency_ttl = cfg->idempotency_ttl > 0 ? cfg->idempotency_ttl : 24.0 * 3600;
    api->max_connections = cfg->max_connections;
    api->http_header_timeout = cfg->http_header_timeout;
    api->max_buffered_bytes = cfg->max_buffered_bytes;
    api->min_transfer_rate = cfg->min_transfer_rate;
    api->transfer_grace = cfg->transfer_grace;
    api->max_result_bytes = cfg->max_result_bytes;
    api->max_results_memory = cfg->max_results_memory;
    api->allowed_hosts = split_list(cfg->allowed_hosts);
    api->cors_origins = split_list(cfg->cors_origins);
    if (!api->allowed_hosts || !api->cors_origins) {
        api_free(api);
        return NULL;
    }
    api->public_metrics = cfg->public_metrics;
    if (cfg->cursor_key) {
        api->cursor_keyed = 1;
        memcpy(api->cursor_key, cfg->cursor_key, sizeof(api->cursor_key));
    }
    for (size_t i = 0; i < sizeof(api->http_responses) / sizeof(*api->http_responses); i++)
        atomic_init(&api->http_responses[i], 0);
    api->version = strdup(cfg->version ? cfg->version : "unknown");
    api->store = strdup(cfg->store ? cfg->store : "memory");
    if (!api->version || !api->store) {
        free(api->version);
        free(api->store);
        free(api);
        return NULL;
    }
    return api;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    free(api->store);
    free(api->version);
    json_decref(api->allowed_hosts);
    json_decref(api->cors_origins);
    explicit_bzero(api->cursor_key, sizeof(api->cursor_key));
    free(api);
}

static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static int is(const char *method, const char *want)
{
    return strcmp(method, want) == 0;
}

/* /v1/jobs/{id}[/sub]: sets *id (NUL-terminated copy) and *sub ("" for none). */
static int split_job_path(const char *path, char *id, size_t idlen, const char **sub)
{
    if (strncmp(path, API_JOBS_PREFIX, sizeof(API_JOBS_PREFIX) - 1) != 0)
        return 0;
    const char *start = path + sizeof(API_JOBS_PREFIX) - 1;
    const char *slash = strchr(start, '/');
    if (slash && slash[1] == '\0')
        return 0; /* "/v1/jobs/{id}/" names nothing */
    size_t n = slash ? (size_t)(slash - start) : strlen(start);
    if (n >= idlen)
        n = idlen - 1;
    memcpy(id, start, n);
    id[n] = '\0';
    *sub = slash ? slash + 1 : "";
    return 1;
}

/* With authentication, another tenant's job is answered exactly like an unknown one.
 * Malformed ids are left to the resource (its own 404 says what an id looks like). */
static int job_visible(struct api *api, const struct api_request *req, const char *id,
                       struct api_response *resp)
{
    if (!req->tenant || !job_id_is_valid(id))
        return 1;
    struct job_view v;
    int rc = api__job_get_as(api, req->tenant, id, &v);
    if (rc == 0) {
        job_view_release(&v);
        return 1;
    }
    api__job_lookup_problem(api, resp, id, rc);
    return 0;
}

/* /v1/jobs/{id}[/sub]. The method is checked before the job is looked up, so a 405
 * says nothing about whether the job exists. Returns 0 for an unknown sub-resource. */
static int route_job(struct api *api, const struct api_request *req, const char *method,
                     const char *path, const char *id, const char *sub, struct api_response *resp)
{
    const char *allow;
    int allowed;
    if (sub[0] == '\0') {
        allow = "GET, HEAD, DELETE";
        allowed = is_get(method) || is(method, "DELETE");
    } else if (strcmp(sub, "result") == 0 || strcmp(sub, "output") == 0) {
        allow = "GET, HEAD";
        allowed = is_get(method);
    } else if (strcmp(sub, "cancel") == 0 || strcmp(sub, "rerun") == 0) {
        allow = "POST";
        allowed = is(method, "POST");
    } else {
        return 0;
    }
    if (!allowed)
        api__method_not_allowed(resp, method, path, allow);
    else if (!job_visible(api, req, id, resp))
        ; /* answered 404 */
    else if (sub[0] == '\0' && is_get(method))
        api__get_job(api, req, id, resp);
    else if (sub[0] == '\0')
        api__delete_job(api, id, resp);
    else if (strcmp(sub, "result") == 0)
        api__get_result(api, req, id, resp);
    else if (strcmp(sub, "output") == 0)
        api__get_output(api, id, resp);
    else if (strcmp(sub, "rerun") == 0)
        api__rerun_job(api, req, id, resp);
    else
        api__cancel_job(api, req, id, resp);
    return 1;
}

static void route(struct api *api, const struct api_request *req, const char *method,
                  const char *path, struct api_response *resp)
{
    char id[80];
    const char *sub;

    if (strcmp(path, "/healthz") == 0) {
        if (is_get(method))
            api__respond_json(resp, 200, json_pack("{s:s}", "status", "ok"), "application/json");
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/readyz") == 0) {
        if (is_get(method))
            api__get_readyz(api, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/metrics") == 0) {
        if (is_get(method))
            api__get_metrics(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/v1/info") == 0) {
        if (is_get(method))
            api__get_info(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD");
    } else if (strcmp(path, "/v1/pool") == 0) {
        if (is_get(method))
            api__get_pool(api, req, resp);
        else if (is(method, "PATCH"))
            api__patch_pool(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD, PATCH");
    } else if (strcmp(path, "/v1/jobs") == 0) {
        if (is_get(method))
            api__list_jobs(api, req, resp);
        else if (is(method, "POST"))
            api__create_job(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, HEAD, POST");
    } else if (strcmp(path, "/v1/jobs/batch") == 0) {
        if (is(method, "POST"))
            api__create_batch(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "POST");
    } else if (strcmp(path, "/v1/jobs/wait") == 0) {
        if (is(method, "POST"))
            api__wait_jobs(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "POST");
    } else if (strcmp(path, "/v1/jobs/rerun") == 0) {
        if (is(method, "POST"))
            api__rerun_jobs(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "POST");
    } else if (api__route_schedules(api, req, method, path, resp)) {
        /* answered */
    } else if (split_job_path(path, id, sizeof(id), &sub) && !strchr(sub, '/')) {
        if (!route_job(api, req, method, path, id, sub, resp))
            goto not_found;
    } else {
        goto not_found;
    }
    return;
not_found:
    api_problem(resp, 404, NULL,
                "no resource at '%.64s'; this server has /healthz, /readyz, /metrics, /v1/info, "
                "/v1/pool, /v1/jobs, /v1/jobs/batch, /v1/jobs/wait, /v1/jobs/rerun, /v1/schedules, "
                "/v1/jobs/{id}, "
                "/v1/jobs/{id}/result, /v1/jobs/{id}/output and /v1/jobs/{id}/cancel",
                path);
}

void api_handle(struct api *api, const struct api_request *req, struct api_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    route(api, req, req->method ? req->method : "", req->path ? req->path : "", resp);
    if (!resp->wait)
        api_count_response(api, resp->status);
}

void api_wait_start(struct api *api, struct api_response *resp, void (*wake)(void *arg), void *arg)
{
    struct api_wait *w = resp->wait;
    if (w && w->kind == API_WAIT_MANY) {
        api__multiwait_start(api, w->many, wake, arg);
        return;
    }
    /* pool_watch never calls back when it fails, so wake here: exactly once either way.
     * -ENOENT means the job went away; api_wait_finish() will answer 404. */
    if (!w || pool_watch(api->pool, w->id, w->deadline_ms, wake, arg) < 0)
        wake(arg);
}

void api_wait_finish(struct api *api, struct api_response *resp)
{
    struct api_wait *w = resp->wait;
    if (!w)
        return;
    resp->wait = NULL;
    switch (w->kind) {
    case API_WAIT_JOB:
        api__respond_job(api, w->id, w->status, 0, resp);
        resp->replayed = w->replayed && resp->status == 200;
        break;
    case API_WAIT_RESULT:
        api__respond_result(api, w->id, 0, resp);
        break;
    case API_WAIT_MANY:
        api__respond_many(api, w->many, resp);
        break;
    }
    api__wait_free(w);
    api_count_response(api, resp->status);
}
