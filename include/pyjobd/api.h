/*
 * api.h — the REST resources of pyjobd, independent of any HTTP library.
 *
 * server/http.c turns each HTTP request into a struct api_request, calls
 * api_handle(), and writes the struct api_response back. Long-polls (?wait=S) are
 * two-step: api_handle() may answer with resp->wait set instead of a body; the
 * server then suspends the connection and calls api_wait_start() with a wake-up
 * callback, and when that callback has run it calls api_wait_finish() to get the
 * final response. The api never blocks a thread while waiting.
 *
 * Every error answer is application/problem+json (RFC 9457).
 */
#ifndef PYJOBD_API_H
#define PYJOBD_API_H

#include <stddef.h>
#include <stdint.h>

struct pool;
struct api;

#define API_CURSOR_KEY_BYTES 16

struct api_config {
    struct pool *pool;        /* borrowed; outlives the api */
    double max_wait;          /* largest accepted ?wait= and wait "timeout", seconds (60) */
    size_t max_request_bytes; /* reported in /v1/info; enforced by the server */
    double default_timeout;   /* reported in /v1/info */
    const char *version;      /* server version string */
    /* How a job's "python" must match the workers' interpreter: "minor" (major.minor,
     * the default when NULL), "exact" or "none". api_new() fails (EINVAL) otherwise. */
    const char *python_match;
    unsigned max_retries_limit; /* largest accepted "max_retries" (server default 3) */
    size_t max_batch;           /* jobs per POST /v1/jobs/batch; 0 means 10000 */
    /* Reported in /v1/info and in the detail of 404s for expired jobs (0 = unlimited /
     * forever); enforced by the pool. */
    const char *store; /* "memory" or "sqlite:PATH", for /v1/info (copied) */
    /* Transport limits (enforced by the server), reported in /v1/info. */
    unsigned max_connections;
    double http_header_timeout;
    size_t max_buffered_bytes;
    size_t min_transfer_rate;
    double transfer_grace;
    /* Enforced by the pool; reported in /v1/info (max_result_bytes also bounds a
     * listing's page with ?include=result). */
    size_t max_result_bytes;
    size_t max_results_memory;
    /* --allowed-hosts and --cors-origin as given (comma-separated; NULL: none), for
     * /v1/info (copied; enforced by the server). */
    const char *allowed_hosts, *cors_origins;
    size_t max_queue;
    size_t tenant_max_queued; /* --tenant-max-queued (0: none), named in its 429 */
    size_t max_jobs;
    double result_ttl;
    double idempotency_ttl; /* --idempotency-ttl seconds, for /v1/info (enforced by the pool) */
    int public_metrics;     /* 1: /metrics answers every caller (--public-metrics) */
    /* The key of list cursors (API_CURSOR_KEY_BYTES, copied), or NULL: cursors are
     * the pool's seq in plain hex. See api_cursor_key_derive(). */
    const uint8_t *cursor_key;
};

/*
 * What a caller may do besides its own jobs. An admin resizes the pool, reads /metrics
 * and sees every worker in GET /v1/pool; a user sees only the workers running its own
 * jobs. 0 is the least privilege, so a request that says nothing is a user's.
 */
enum api_role { API_ROLE_USER = 0, API_ROLE_ADMIN = 1 };

struct api_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path without the query, e.g. "/v1/jobs/abc" */
    /* Returns the value of query argument key, or NULL when absent. */
    const char *(*query)(void *query_ctx, const char *key);
    void *query_ctx;
    const char *content_type; /* Content-Type header or NULL */
    const uint8_t *body;      /* request body (may be NULL when body_len == 0) */
    size_t body_len;
    /* The authenticated tenant, or NULL when the server runs without tokens. Jobs of
     * other tenants answer 404 and are left out of listings. */
    const char *tenant;
    /* The server sets API_ROLE_ADMIN for a token with the role admin, and when it
     * runs without tokens (the one user administers the service). */
    enum api_role role;
    /* The Idempotency-Key header as sent (NULL when absent); the api checks it. */
    const char *idempotency_key;
};

/* What api_handle() asks the server to wait for. Owned by the api. */
struct api_wait;
struct blob;

/* A part of a body in parts: text, or a blob's bytes as they are (a pickled result,
 * a JSON result already checked) or in base64, produced as the body is read. */
enum api_part_kind { API_PART_TEXT, API_PART_RAW, API_PART_BASE64 };
struct api_body_part {
    enum api_part_kind kind;
    char *text;        /* TEXT: owned */
    size_t len;        /* TEXT: its length */
    struct blob *blob; /* RAW, BASE64: a reference */
};

struct api_response {
    int status;               /* HTTP status */
    const char *content_type; /* static string */
    char *body;               /* malloc'd, owned by the response (api_response_release) */
    size_t body_len;
    char *location;        /* Location header value or NULL (malloc'd) */
    const char *allow;     /* Allow header value or NULL (static) */
    int retry_after;       /* > 0: send "Retry-After: <seconds>" (429, 202) */
    int replayed;          /* 1: send "Idempotent-Replayed: true" (a key's job again) */
    struct api_wait *wait; /* non-NULL: suspend and call api_wait_start() */
    /* Or (body NULL) a body in parts, read with api_response_read: a result is sent
     * from the job's own blob, never copied whole nor encoded whole. */
    struct api_body_part *parts;
    size_t nparts;
};

/* Where a reader of a body in parts is (zero it before the first read). */
struct api_body_cursor {
    size_t part;
    unsigned long long start; /* the body offset where that part starts */
};

struct api *api_new(const struct api_config *cfg);
void api_free(struct api *api);

/*
 * Handles one complete request. Always fills *resp (a body or a wait). The body may
 * be binary (application/octet-stream): use body_len, not strlen. A 204 has no body
 * (body NULL, body_len 0, content_type NULL).
 */
void api_handle(struct api *api, const struct api_request *req, struct api_response *resp);

/*
 * Registers resp->wait with the pool. wake(arg) is called exactly once, from any
 * thread, possibly before this function returns; the server must already have
 * suspended the connection. After wake, call api_wait_finish().
 */
void api_wait_start(struct api *api, struct api_response *resp, void (*wake)(void *arg), void *arg);

/* Replaces resp->wait with the final response (and frees the wait). */
void api_wait_finish(struct api *api, struct api_response *resp);

/* Fills resp with a problem+json error. detail is formatted like printf. */
void api_problem(struct api_response *resp, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Counts a response the server produced without api_handle() (the 413 of an oversized
 * body) in pyjobd_http_requests_total. api_handle() and api_wait_finish() count their
 * own answers. Safe from any thread.
 */
void api_count_response(struct api *api, int status);

/* The body's length in bytes (body_len, or the parts' total). */
unsigned long long api_response_length(const struct api_response *resp);

/* Copies up to max bytes of the body from offset pos into buf; returns how many (0
 * at its end). Reads in increasing order of pos are O(max) with the same cursor. */
size_t api_response_read(const struct api_response *resp, struct api_body_cursor *c,
                         unsigned long long pos, char *buf, size_t max);

/* Frees what the response owns (body, location, a pending wait) and zeroes it. */
void api_response_release(struct api_response *resp);

/*
 * Derives the key of list cursors from secret material (the token file's tokens): the
 * same material gives the same key, so every node of a cluster that shares the token
 * file reads the others' cursors. The caller clears the material after the call.
 */
void api_cursor_key_derive(const void *material, size_t len, uint8_t key[API_CURSOR_KEY_BYTES]);

#endif
