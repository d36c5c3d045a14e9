/*
 * internal.h — what the files of api/ share with each other and nothing else.
 *
 *   router.c         the api object, dispatch by (method, path), long-poll dispatch
 *   jobs.c           POST /v1/jobs, GET/DELETE /v1/jobs/{id}, cancel, GET /v1/jobs
 *   job_result.c     GET /v1/jobs/{id}/result
 *   jobs_batch.c     POST /v1/jobs/batch
 *   jobs_wait.c      POST /v1/jobs/wait (many ids, one suspended request)
 *   wait.c           the long-poll records (api_wait, the refcounted multi-waiter)
 *   pool_resource.c  GET/PATCH /v1/pool
 *   service.c        /healthz, /readyz, /v1/info
 *   metrics.c        /metrics and the HTTP response counters
 *   input.c          pure helpers: JSON bodies, field checks, query values
 *   python_match.c   the client/worker Python version rule (pure)
 *   cursor.c         opaque list cursors: SipHash-2-4, a keyed permutation (pure)
 *   job_request.c    a job request object → struct job_spec (pure)
 *   job_json.c       struct job_view → the job object (pure)
 *   problem.c        JSON answers, problem+json, errno → status
 */
#ifndef PYJOBD_API_INTERNAL_H
#define PYJOBD_API_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "pyjobd/api.h"
#include "pyjobd/job.h"
#include "job_request.h"
#include "python_match.h"

#define API_JOBS_PREFIX "/v1/jobs/"

/* HTTP statuses counted one by one; others land in the slot of 0 ("other"). */
#define API_STATUS_MIN 100
#define API_STATUS_MAX 599

struct api {
    struct pool *pool;
    double max_wait;
    size_t max_request_bytes;
    double default_timeout;
    char *version;
    char *store;
    enum api_python_match python_match;
    unsigned max_retries_limit;
    size_t max_batch;
    size_t max_queue;
    size_t tenant_max_queued;
    size_t max_jobs;
    double result_ttl;
    double idempotency_ttl; /* seconds (24 h when the config says 0) */
    unsigned max_connections;
    double http_header_timeout;
    size_t max_buffered_bytes;
    size_t min_transfer_rate;
    double transfer_grace;
    size_t max_result_bytes;
    size_t max_results_memory;
    json_t *allowed_hosts, *cors_origins; /* arrays of strings, for /v1/info */
    int public_metrics;
    int cursor_keyed; /* 1: cursors go through the permutation keyed by cursor_key */
    uint8_t cursor_key[API_CURSOR_KEY_BYTES];
    /* Responses by status, for /metrics; [0] counts statuses out of range. */
    atomic_uint_least64_t http_responses[API_STATUS_MAX - API_STATUS_MIN + 2];
};

enum api_wait_kind {
    API_WAIT_JOB,    /* render the job (GET /v1/jobs/{id}, POST /v1/jobs) */
    API_WAIT_RESULT, /* render the result (GET /v1/jobs/{id}/result) */
    API_WAIT_MANY,   /* render done / not_done (POST /v1/jobs/wait) */
};

struct api__multiwait;

/*
 * A pending long-poll. For API_WAIT_JOB and API_WAIT_RESULT it is plain data: the
 * pool only ever sees the server's wake callback. API_WAIT_MANY holds one reference
 * to a multi-waiter that the pool's watch callbacks share (see wait.c), so freeing an
 * api_wait is always api__wait_free(), whether it was started, woken, or neither.
 */
struct api_wait {
    enum api_wait_kind kind;
    char id[JOB_ID_LEN + 1];
    int64_t deadline_ms; /* clock_now_ms() clock */
    int status;          /* API_WAIT_JOB: what to answer once woken, 201 (Location) or 200 */
    int replayed;        /* API_WAIT_JOB: an Idempotency-Key's job (Idempotent-Replayed) */
    struct api__multiwait *many;
};

/*
 * The waiter of POST /v1/jobs/wait. refs: one for the api_wait (dropped by
 * api__wait_free), one per registered pool watch (dropped at the end of its callback)
 * and one held by api__multiwait_start while it registers. pending (ALL_COMPLETED):
 * watches not yet fired, plus one guard while registering. woken makes the server's
 * wake run once. ids/n are immutable after creation, so renderers read them freely.
 */
struct api__multiwait {
    atomic_size_t refs;
    atomic_size_t pending;
    atomic_int woken;
    int first_completed;
    void (*wake)(void *arg);
    void *wake_arg;
    int64_t deadline_ms;
    size_t n;
    char (*ids)[JOB_ID_LEN + 1];
    unsigned char *watch;       /* watch[i]: ids[i] was unfinished, so it gets a pool watch */
    char tenant[JOB_OWNER_MAX]; /* "" without authentication */
    int has_tenant;
};

/* New multi-waiter for n ids (copied; watch[] all 0), refs = 1. NULL when out of memory. */
struct api__multiwait *api__multiwait_new(char (*ids)[JOB_ID_LEN + 1], size_t n,
                                          int first_completed, int64_t deadline_ms);
void api__multiwait_unref(struct api__multiwait *m);

/* Calls the server's wake unless it already ran (or the wait was released). */
void api__multiwait_wake(struct api__multiwait *m);

/* The pool_watch callback of a multi-waiter: counts the firing, wakes when due. */
void api__multiwait_fired_cb(void *arg);

/* Frees a wait of any kind (drops the multi-waiter reference). Accepts NULL. */
void api__wait_free(struct api_wait *w);

/* The answer to a request body a parser refused: 400 with the parser's detail for
 * -EINVAL, else the errno's status (e.g. 503 for -ENOMEM). */
void api__request_problem(struct api_response *resp, int rc, const char *detail);

/* The HTTP status for a negative errno from the pool or a parser (the one mapping). */
int api__status_from_errno(int err);

/* Standard reason phrase for an HTTP status ("Not Found"). */
const char *api__reason_phrase(int status);

/*
 * Fills resp with obj serialized (compact, then "\n") as content_type, with status.
 * Steals the reference to obj (NULL is treated as out of memory: a 500 problem).
 */
void api__respond_json(struct api_response *resp, int status, json_t *obj,
                       const char *content_type);

/* api_problem() with extension members: the members of ext (stolen, may be NULL) are
 * added to the problem object. */
void api__problem_ext(struct api_response *resp, int status, json_t *ext, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * 403 unless the caller is an admin: the detail names the tenant, what it may not do
 * (`action`, e.g. "resize the pool") and how to get the role, plus `hint` when not
 * NULL. Returns 1 when it answered.
 */
int api__forbid_non_admin(const struct api_request *req, struct api_response *resp,
                          const char *action, const char *hint);

/* 405 with Allow. allow is static. */
void api__method_not_allowed(struct api_response *resp, const char *method, const char *path,
                             const char *allow);

/*
 * Answers the problem for a failed lookup of job id: 404 for -ENOENT, 404 with the
 * retention limits for -ESTALE, else the mapped status.
 */
/* 503 problems for a shared store's -ENOTCONN / -ETIMEDOUT: 1 when rc was one. */
int api__store_problem(const struct api *api, struct api_response *resp, int rc);
/* Answers pool_submit_keyed's errors about a request's own fields: its key
 * (-EKEYREJECTED: 422, -ESTALE: 404), naming where (e.g. "jobs[3]: ", "" for none) and the key: 1
 * when it answered, 0 for any other rc. */
/* Answers a submission's refusals by the queue (-EAGAIN: 429 with Retry-After, -EDQUOT:
 * the tenant's limit), -ESHUTDOWN (503), the store's, or any other error, naming what
 * was to be queued ("job", "jobs"): 1 when it answered, 0 for rc >= 0. */
int api__queue_problem(struct api *api, const char *tenant, struct api_response *resp, int rc,
                       const char *what);
int api__submit_problem(const struct api *api, struct api_response *resp, int rc, const char *where,
                        const char *key);
void api__job_lookup_problem(const struct api *api, struct api_response *resp, const char *id,
                             int rc);

/* 404 for a path segment that is not a job id. Returns 1 (and answers) when id is bad. */
int api__reject_bad_path_id(struct api_response *resp, const char *id);

/* 415 unless the request's Content-Type is application/json. Returns 1 when it answered. */
int api__reject_non_json(const struct api_request *req, struct api_response *resp);

/* Reads query parameter ?wait= (0..max_wait). Returns 0, or -EINVAL with a 400 answered. */
int api__query_wait(const struct api *api, const struct api_request *req, double *wait,
                    struct api_response *resp);

/* Deadline (clock_now_ms clock) of a wait of `seconds`, rounded up to the millisecond. */
int64_t api__deadline_ms(double seconds);

/* Resources. Each fills resp; none blocks. */
void api__create_job(struct api *api, const struct api_request *req, struct api_response *resp);
void api__get_job(struct api *api, const struct api_request *req, const char *id,
                  struct api_response *resp);
void api__delete_job(struct api *api, const char *id, struct api_response *resp);
/* schedules.c: /v1/schedules and /v1/schedules/{id}; 1 when path was one of them
 * (answered), 0 otherwise. */
int api__route_schedules(struct api *api, const struct api_request *req, const char *method,
                         const char *path, struct api_response *resp);
/* jobs_rerun.c: POST /v1/jobs/{id}/rerun and POST /v1/jobs/rerun. */
void api__rerun_job(struct api *api, const struct api_request *req, const char *id,
                    struct api_response *resp);
void api__rerun_jobs(struct api *api, const struct api_request *req, struct api_response *resp);
void api__cancel_job(struct api *api, const struct api_request *req, const char *id,
                     struct api_response *resp);
void api__list_jobs(struct api *api, const struct api_request *req, struct api_response *resp);
/* Makes resp a long-poll on one job (kind API_WAIT_JOB or API_WAIT_RESULT) until wait
 * seconds pass; status is what a later api_wait_finish() answers with. 503 on ENOMEM. */
void api__wait_for_job(struct api_response *resp, int kind, const char *id, double wait,
                       int status);

/* pool_job_get() as seen by a tenant: another tenant's job answers -ENOENT, so that
 * its existence does not leak. tenant NULL: no authentication, every job is seen. */

int api__job_get_as(struct api *api, const char *tenant, const char *id, struct job_view *v);
/* api__job_get_as for n ids at once (one database round trip with a shared store):
 * rcs[i] and views[i] as for each id. 0 or -ENOMEM. */
int api__jobs_get_as(struct api *api, const char *tenant, char (*ids)[JOB_ID_LEN + 1], size_t n,
                     struct job_view *views, int *rcs);

/* GET /v1/jobs/{id}/output */
void api__get_output(struct api *api, const char *id, struct api_response *resp);

void api__get_result(struct api *api, const struct api_request *req, const char *id,
                     struct api_response *resp);
void api__create_batch(struct api *api, const struct api_request *req, struct api_response *resp);
void api__wait_jobs(struct api *api, const struct api_request *req, struct api_response *resp);
void api__get_pool(struct api *api, const struct api_request *req, struct api_response *resp);
void api__patch_pool(struct api *api, const struct api_request *req, struct api_response *resp);
void api__get_info(struct api *api, const struct api_request *req, struct api_response *resp);
void api__get_readyz(struct api *api, struct api_response *resp);
void api__get_metrics(struct api *api, const struct api_request *req, struct api_response *resp);

/* Renders the job (or, wait > 0 and unfinished, a wait of kind API_WAIT_JOB). */
void api__respond_job(struct api *api, const char *id, int status, double wait,
                      struct api_response *resp);

/* Renders the result of the job (or a wait of kind API_WAIT_RESULT). */
void api__respond_result(struct api *api, const char *id, double wait, struct api_response *resp);

/* Registers a multi-waiter's watches (api_wait_start for API_WAIT_MANY). */
void api__multiwait_start(struct api *api, struct api__multiwait *m, void (*wake)(void *arg),
                          void *arg);

/* Renders {"done", "not_done", "unknown"} for a multi-waiter's ids. */
void api__respond_many(struct api *api, const struct api__multiwait *m, struct api_response *resp);

/* The limits a job request is checked against, as this api is configured now (asks
 * the pool for the workers' Python version). */
void api__job_limits_get(const struct api *api, struct api__job_limits *lim);

#endif
