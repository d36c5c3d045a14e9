/*
 * service.c — the server as a whole:
 *
 *   GET /healthz   liveness: 200 {"status": "ok"} while the process serves HTTP
 *   GET /readyz    readiness: 200 {"status": "ready"} when a worker is ready (or, with
 *                  --min-workers 0, workers can be started: one booted before and none
 *                  fails to boot now) and the server is not stopping; else 503
 *                  problem+json saying why
 *   GET /v1/info   versions, pool occupancy and every limit a client may hit
 */
#include "internal.h"

#include <string.h>

#include "pyjobd/pool.h"

static json_t *string_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *size_or_null(size_t n)
{
    return n ? json_integer((json_int_t)n) : json_null();
}

/* "isolation" is the caller's: --isolation, or isolation=job on its token-file line. */
void api__get_info(struct api *api, const struct api_request *req, struct api_response *resp)
{
    struct pool_info info;
    memset(&info, 0, sizeof(info));
    pool_get_info(api->pool, &info);
    info.python_version[sizeof(info.python_version) - 1] = '\0';
    info.cloudpickle_version[sizeof(info.cloudpickle_version) - 1] = '\0';
    json_t *obj = json_pack(
        "{s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:s, s:o, s:s, "
        "s:{s:I, s:f, s:o, s:I, s:o, s:o, s:o, s:I, s:s, s:I, s:f, s:I, s:I, s:f, s:I, s:o, "
        "s:O, s:O}}",
        "version", api->version, "python_version", string_or_null(info.python_version),
        "cloudpickle_version", string_or_null(info.cloudpickle_version), "workers",
        (json_int_t)info.workers, "workers_ready", (json_int_t)info.workers_ready, "queued",
        (json_int_t)info.queued, "running", (json_int_t)info.running, "store", api->store, "node",
        string_or_null(info.node), "isolation", pool_isolation_of(api->pool, req->tenant), "limits",
        "max_request_bytes", (json_int_t)api->max_request_bytes, "max_wait_seconds", api->max_wait,
        "default_timeout", api->default_timeout > 0 ? json_real(api->default_timeout) : json_null(),
        "max_batch", (json_int_t)api->max_batch, "max_queue", size_or_null(api->max_queue),
        "max_jobs", size_or_null(api->max_jobs), "result_ttl",
        api->result_ttl > 0 ? json_real(api->result_ttl) : json_null(), "max_retries_limit",
        (json_int_t)api->max_retries_limit, "python_match",
        api__python_match_name(api->python_match), "max_connections",
        (json_int_t)api->max_connections, "http_header_timeout", api->http_header_timeout,
        "max_buffered_bytes", (json_int_t)api->max_buffered_bytes, "min_transfer_rate",
        (json_int_t)api->min_transfer_rate, "transfer_grace", api->transfer_grace,
        "max_result_bytes", (json_int_t)api->max_result_bytes, "max_results_memory",
        size_or_null(api->max_results_memory), "allowed_hosts", api->allowed_hosts, "cors_origins",
        api->cors_origins);
    if (obj) /* seconds an Idempotency-Key is remembered */
        json_object_set_new(json_object_get(obj, "limits"), "idempotency_ttl",
                            json_real(api->idempotency_ttl));
    api__respond_json(resp, 200, obj, "application/json");
}

void api__get_readyz(struct api *api, struct api_response *resp)
{
    struct pool_info info;
    memset(&info, 0, sizeof(info));
    pool_get_info(api->pool, &info);
    info.boot_error[sizeof(info.boot_error) - 1] = '\0';
    if (info.stopping)
        api_problem(resp, 503, NULL, "not ready: the server is shutting down");
    else if (info.store_down)
        api_problem(resp, 503, NULL,
                    "not ready: the job database (%s) is unreachable; this node is reconnecting",
                    api->store);
    else if (info.workers_ready >= 1 ||
             (info.scales_to_zero && info.python_version[0] && !info.boot_error[0]))
        /* Scaled to zero on purpose: a worker has booted before and none fails to now,
         * so the next job starts one. */
        api__respond_json(resp, 200, json_pack("{s:s}", "status", "ready"), "application/json");
    else if (info.boot_error[0])
        api_problem(resp, 503, NULL, "not ready: no worker is ready; workers fail to boot: %s",
                    info.boot_error);
    else
        api_problem(resp, 503, NULL, "not ready: no worker is ready yet (%u starting)",
                    info.workers);
}
