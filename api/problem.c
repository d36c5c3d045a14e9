/*
 * problem.c — every answer's final form: JSON serialization of responses, RFC 9457
 * problem+json errors (and the ones several resources share), the errno → HTTP
 * status mapping and response cleanup.
 *
 * Problems use "type": "about:blank", so (RFC 9457 §4.2.1) the title is the
 * status's reason phrase and the detail carries what went wrong and how to fix it.
 */
#include "internal.h"
#include "pyjobd/pool.h"
#include "input.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int api__status_from_errno(int err)
{
    switch (err) {
    case 0:
        return 200;
    case -EINVAL:
        return 400;
    case -ENOENT:
    case -ESTALE:
        return 404;
    case -EBUSY:
    case -EALREADY:
        return 409;
    case -EAGAIN:
        return 429;
    case -EMSGSIZE:
        return 413;
    case -EXDEV:
        return 409;
    case -EREMOTE:
        return 404;
    case -ESHUTDOWN:
    case -ENOMEM:
    case -ENOTCONN:
    case -ETIMEDOUT:
        return 503;
    default:
        return 500;
    }
}

const char *api__reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 409:
        return "Conflict";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Last resort when even building the error fails. */
static void respond_oom(struct api_response *resp)
{
    static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
                               "\"status\":500,\"detail\":\"out of memory\"}\n";
    resp->status = 500;
    resp->content_type = "application/problem+json";
    resp->body = strdup(body);
    resp->body_len = resp->body ? sizeof(body) - 1 : 0;
}

void api__respond_json(struct api_response *resp, int status, json_t *obj, const char *content_type)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    size_t len = text ? strlen(text) : 0;
    char *body = text ? realloc(text, len + 2) : NULL;
    if (!body) {
        free(text);
        free(resp->body);
        resp->body = NULL;
        respond_oom(resp);
        return;
    }
    body[len] = '\n';
    body[len + 1] = '\0';
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len + 1;
}

/* Details may quote client input; make sure they are valid UTF-8 for jansson. */
static json_t *string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    for (unsigned char *p = (unsigned char *)buf; *p; p++)
        if (*p >= 0x80)
            *p = '?';
    return json_string(buf);
}

static void problem_v(struct api_response *resp, int status, const char *title, json_t *ext,
                      const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void problem_v(struct api_response *resp, int status, const char *title, json_t *ext,
                      const char *fmt, va_list ap)
{
    char detail[1024];
    vsnprintf(detail, sizeof(detail), fmt, ap);

    free(resp->location);
    resp->location = NULL;
    resp->retry_after = 0;
    json_t *obj = json_pack("{s:s, s:o?, s:i, s:o?}", "type", "about:blank", "title",
                            string_lossy(title ? title : api__reason_phrase(status)), "status",
                            status, "detail", string_lossy(detail));
    /* Extension members never replace the standard ones. */
    if (obj && ext && json_object_update_missing(obj, ext) < 0) {
        json_decref(obj);
        obj = NULL;
    }
    json_decref(ext);
    api__respond_json(resp, status, obj, "application/problem+json");
}

void api_problem(struct api_response *resp, int status, const char *title, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_v(resp, status, title, NULL, fmt, ap);
    va_end(ap);
}

void api__problem_ext(struct api_response *resp, int status, json_t *ext, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_v(resp, status, NULL, ext, fmt, ap);
    va_end(ap);
}

void api__request_problem(struct api_response *resp, int rc, const char *detail)
{
    if (rc == -EINVAL)
        api_problem(resp, 400, NULL, "%s", detail);
    else
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read the request: %s",
                    strerror(-rc));
}

void api__method_not_allowed(struct api_response *resp, const char *method, const char *path,
                             const char *allow)
{
    api_problem(resp, 405, NULL, "%.16s is not allowed on %.64s; allowed: %s", method, path, allow);
    resp->allow = allow;
}

int api__store_problem(const struct api *api, struct api_response *resp, int rc)
{
    if (rc == -ENOTCONN)
        api_problem(resp, 503, NULL,
                    "the job database (%s) is unreachable and this node is reconnecting; "
                    "nothing was changed: retry in a moment",
                    api->store);
    else if (rc == -ETIMEDOUT)
        api_problem(resp, 503, NULL,
                    "the job database (%s) did not answer in time; retry in a moment (a "
                    "submission that timed out this way may still be recorded and run)",
                    api->store);
    else
        return 0;
    resp->retry_after = 1;
    return 1;
}

int api__submit_problem(const struct api *api, struct api_response *resp, int rc, const char *where,
                        const char *key)
{
    if (rc == -EKEYREJECTED)
        api_problem(resp, 422, "Idempotency-Key reused with another request",
                    "%sIdempotency-Key '%.200s' was first sent with a different job request "
                    "(keys are remembered for %g s); resend that request unchanged, or use a "
                    "new key for a new job",
                    where, key ? key : "", api->idempotency_ttl);
    else if (rc == -ESTALE)
        api_problem(resp, 404, NULL,
                    "%sthe job of Idempotency-Key '%.200s' is gone: it was removed since (by "
                    "retention, --result-ttl / --max-jobs, or DELETE) and the key stays used "
                    "until it expires (%g s after its first use); use a new key for a new job",
                    where, key ? key : "", api->idempotency_ttl);
    else
        return 0;
    return 1;
}

/* A tenant at its --tenant-max-queued: 429, how many it has. */
static void tenant_full_problem(struct api *api, const char *tenant, struct api_response *resp)
{
    const char *name = tenant ? tenant : "";
    api_problem(resp, 429, NULL,
                "tenant '%s' has %zu jobs queued and may have at most %zu "
                "(--tenant-max-queued); retry once some have started",
                name, pool_tenant_queued(api->pool, name), api->tenant_max_queued);
    resp->retry_after = 1;
}

int api__queue_problem(struct api *api, const char *tenant, struct api_response *resp, int rc,
                       const char *what)
{
    if (rc == -EAGAIN) {
        api_problem(resp, 429, NULL,
                    "the job queue is full (--max-queue %zu jobs); retry after a while",
                    api->max_queue);
        resp->retry_after = 1;
    } else if (rc == -EDQUOT) {
        tenant_full_problem(api, tenant, resp);
    } else if (rc == -ESHUTDOWN) {
        api_problem(resp, 503, NULL, "server is shutting down; submit the %s again elsewhere",
                    what);
    } else if (api__store_problem(api, resp, rc)) {
        /* answered */
    } else if (rc < 0) {
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot queue the %s: %s", what,
                    strerror(-rc));
    } else {
        return 0;
    }
    return 1;
}

void api__job_lookup_problem(const struct api *api, struct api_response *resp, const char *id,
                             int rc)
{
    if (api__store_problem(api, resp, rc))
        return;
    if (rc == -EREMOTE)
        api_problem(resp, 404, NULL,
                    "the output of job %s is kept by the node that ran it (see the job's "
                    "\"node\"), in memory; ask that node",
                    id);
    else if (rc == -ENOENT)
        api_problem(resp, 404, NULL, "no job with id %s", id);
    else if (rc == -ENOBUFS)
        api_problem(resp, 404, NULL,
                    "job %s finished and was removed from memory, result and all, because "
                    "finished jobs' results exceeded --max-results-memory (%zu bytes) and this "
                    "server has no store to keep them in (--store sqlite:PATH keeps them on disk "
                    "instead); fetch results sooner, or ask the operator to raise the limit",
                    id, api->max_results_memory);
    else if (rc == -ESTALE && api->result_ttl > 0)
        api_problem(resp, 404, NULL,
                    "job %s finished and was removed after the retention period (--result-ttl / "
                    "--max-jobs); results are kept for %g s",
                    id, api->result_ttl);
    else if (rc == -ESTALE)
        api_problem(resp, 404, NULL,
                    "job %s finished and was removed after the retention period (--result-ttl / "
                    "--max-jobs); at most %zu jobs are kept",
                    id, api->max_jobs);
    else
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot read job %s: %s", id,
                    strerror(-rc));
}

int api__forbid_non_admin(const struct api_request *req, struct api_response *resp,
                          const char *action, const char *hint)
{
    if (req->role == API_ROLE_ADMIN)
        return 0;
    /* Tenant names are [A-Za-z0-9_.-] or generated ("line:N"): safe to quote. */
    if (req->tenant)
        api_problem(resp, 403, NULL,
                    "tenant '%s' may not %s: that needs the role admin in the token file "
                    "(a line 'name:TOKEN admin'), and '%s' has the role user%s%s",
                    req->tenant, action, req->tenant, hint ? "; " : "", hint ? hint : "");
    else
        api_problem(resp, 403, NULL,
                    "a caller without a token may not %s: that needs a token with the role admin "
                    "in the token file (a line 'name:TOKEN admin')%s%s",
                    action, hint ? "; " : "", hint ? hint : "");
    return 1;
}

int api__reject_bad_path_id(struct api_response *resp, const char *id)
{
    if (job_id_is_valid(id))
        return 0;
    api_problem(resp, 404, NULL,
                "no job with id '%.64s': job ids are 32 lowercase hexadecimal digits", id);
    return 1;
}

int api__reject_non_json(const struct api_request *req, struct api_response *resp)
{
    if (api__is_json_media_type(req->content_type))
        return 0;
    api_problem(resp, 415, NULL, "Content-Type must be application/json, got %s%.64s%s",
                req->content_type ? "'" : "", req->content_type ? req->content_type : "none",
                req->content_type ? "'" : "");
    return 1;
}
