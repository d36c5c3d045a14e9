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

struct api_config {
    struct pool *pool;         /* borrowed; outlives the api */
    double max_wait;           /* largest accepted ?wait=, seconds (60) */
    size_t max_request_bytes;  /* reported in /v1/info; enforced by the server */
    double default_timeout;    /* reported in /v1/info */
    const char *version;       /* server version string */
};

struct api_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path without the query, e.g. "/v1/jobs/abc" */
    /* Returns the value of query argument key, or NULL when absent. */
    const char *(*query)(void *query_ctx, const char *key);
    void *query_ctx;
    const char *content_type; /* Content-Type header or NULL */
    const uint8_t *body;      /* request body (may be NULL when body_len == 0) */
    size_t body_len;
};

/* What api_handle() asks the server to wait for. Owned by the api. */
struct api_wait;

struct api_response {
    int status;               /* HTTP status */
    const char *content_type; /* static string */
    char *body;               /* malloc'd, owned by the response (api_response_release) */
    size_t body_len;
    char *location;           /* Location header value or NULL (malloc'd) */
    const char *allow;        /* Allow header value or NULL (static) */
    struct api_wait *wait;    /* non-NULL: suspend and call api_wait_start() */
};

struct api *api_new(const struct api_config *cfg);
void api_free(struct api *api);

/* Handles one complete request. Always fills *resp (a body or a wait). */
void api_handle(struct api *api, const struct api_request *req, struct api_response *resp);

/*
 * Registers resp->wait with the pool. wake(arg) is called exactly once, from any
 * thread, possibly before this function returns; the server must already have
 * suspended the connection. After wake, call api_wait_finish().
 */
void api_wait_start(struct api *api, struct api_response *resp, void (*wake)(void *arg),
                    void *arg);

/* Replaces resp->wait with the final response (and frees the wait). */
void api_wait_finish(struct api *api, struct api_response *resp);

/* Fills resp with a problem+json error. detail is formatted like printf. */
void api_problem(struct api_response *resp, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Frees what the response owns (body, location, a pending wait) and zeroes it. */
void api_response_release(struct api_response *resp);

#endif
