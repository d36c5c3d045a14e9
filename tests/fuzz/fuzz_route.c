/*
 * fuzz_route.c — libFuzzer harness for the REST surface: api_handle() with any
 * method, path, query, Content-Type and body, over the fake pool of the api unit
 * tests (tests/fake/fake_pool.c), so no supervisor thread or worker is involved.
 *
 * Input layout (all optional; missing parts are empty):
 *   byte 0, byte 1   knobs: the fake pool's answers (fake_from_knobs below), the tenant,
 *                    python_match
 *   then lines       method \n path \n query \n content-type \n body (the rest, binary)
 * The query is "k=v&k2=v2" (already percent-decoded, as the server hands it over);
 * the first value of a key wins. The path reaches api_handle() as it is (decoded,
 * up to the first NUL). A long-poll answer is driven to its end the way the server
 * does it: api_wait_start(), then api_wait_finish() once woken.
 *
 * Invariants (abort on violation): every answer has a status in 100..599; a body
 * has a length and a content type; a JSON body ends with "\n" and parses; a
 * problem+json body has type/title/status/detail with status equal to the HTTP
 * status; 405 comes with Allow; a Location only with 201 and a job path; wake runs exactly once per
 * wait. Everything is released on every path (LeakSanitizer checks it).
 */
#include "pyjobd/api.h"
#include "tests/fake/fake_pool.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_QUERY 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct query {
    size_t n;
    char *keys[MAX_QUERY];
    char *vals[MAX_QUERY];
};

static const char *query_cb(void *ctx, const char *key)
{
    const struct query *q = ctx;
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->keys[i], key) == 0)
            return q->vals[i];
    return NULL;
}

/* Splits s (modified in place) on '&' and the first '='; "k" alone means "k=". */
static void query_parse(char *s, struct query *q)
{
    q->n = 0;
    while (s && *s && q->n < MAX_QUERY) {
        char *amp = strchr(s, '&');
        if (amp)
            *amp = '\0';
        char *eq = strchr(s, '=');
        if (eq)
            *eq = '\0';
        q->keys[q->n] = s;
        q->vals[q->n++] = eq ? eq + 1 : s + strlen(s);
        s = amp ? amp + 1 : NULL;
    }
}

/* Cuts the next '\n'-terminated line out of [*p, end) as a NUL-terminated copy. */
static char *next_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    CHECK(s);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl ? 1 : 0);
    return s;
}

static void check_response(const struct api_response *r)
{
    if (r->wait)
        return;
    CHECK(r->status >= 100 && r->status <= 599);
    if (r->status == 405)
        CHECK(r->allow != NULL);
    /* One created job has a Location (a batch's 201 has none). */
    if (r->location)
        CHECK(r->status == 201 && strncmp(r->location, "/v1/jobs/", 9) == 0);
    if (r->status == 204) {
        CHECK(r->body == NULL && r->body_len == 0);
        return;
    }
    if (!r->body) {
        CHECK(r->body_len == 0);
        return;
    }
    CHECK(r->content_type != NULL);
    if (!strstr(r->content_type, "json"))
        return;
    CHECK(r->body_len > 0 && r->body[r->body_len - 1] == '\n');
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr);
    CHECK(j != NULL);
    if (strcmp(r->content_type, "application/problem+json") == 0) {
        CHECK(json_is_string(json_object_get(j, "type")));
        CHECK(json_is_string(json_object_get(j, "title")));
        CHECK(json_is_string(json_object_get(j, "detail")));
        CHECK(json_integer_value(json_object_get(j, "status")) == r->status);
    }
    json_decref(j);
}

/*
 * Sets what the fake pool answers for this input, from scratch (fake_reset), so an
 * input cannot leave state behind for the next one. Every job id is found as job 0
 * (fake.any_id), which exists (or expired, or is unknown), has some status, owner and
 * error; submit, cancel, delete and resize return one of rcs[]; pool_watch either
 * calls back at once for a job it finds (as for a finished job or a passed deadline)
 * or fails.
 */
static void fake_from_knobs(uint8_t k0, uint8_t k1)
{
    /* The last four: a shared store (database unreachable or slow, job on another node). */
    static const int rcs[] = {0,       -EAGAIN, -ESHUTDOWN, -ENOMEM,    -EBUSY, -EALREADY,
                              -ENOENT, -ESTALE, -ENOTCONN,  -ETIMEDOUT, -EXDEV, -EREMOTE};
    static const size_t nrcs = sizeof(rcs) / sizeof(*rcs);
    static const char *const owners[] = {"", "alice", "bob", ""};
    int exists = k0 & 1, stale = (k0 >> 1) & 1, calls_back = (k0 >> 2) & 1;

    fake_reset();
    fake.any_id = 1;
    struct fake_job *j = &fake_jobs[0];
    j->exists = exists;
    j->stale = !exists && stale;
    j->status = (enum job_status)(k1 % (JOB_CANCELLED + 1));
    j->ran = j->status != JOB_QUEUED;
    j->timeout = k1 & 8 ? 30.5 : 0;
    j->max_retries = k1 >> 4;
    snprintf(j->owner, sizeof(j->owner), "%s", owners[k1 & 3]);
    if (k1 & 16)
        CHECK((j->metadata = strdup("{\"k\":[1,\"\\u00e9\"]}")));
    if (j->status == JOB_SUCCEEDED && k1 & 32)
        j->result_json = "{\"a\":1}";
    else if (j->status == JOB_SUCCEEDED)
        j->result = "\x80\x05K\x01.";
    if (j->status == JOB_FAILED || j->status == JOB_CANCELLED) {
        j->err = j->status == JOB_CANCELLED ? JOB_ERR_CANCELLED
                                            : (enum job_error_type)(1 + (k0 >> 5) % 8);
        j->message = "it went wrong \"badly\"\n\x01";
        if (j->err == JOB_ERR_EXCEPTION) {
            j->exc_type = "ValueError";
            j->exception = "\x80\x05N.";
            j->traceback = "Traceback (most recent call last):\n";
        } else if (j->err == JOB_ERR_WORKER_CRASHED) {
            j->signal = 11;
            j->max_rss_bytes = 1 << 20;
        }
    }

    fake.submit_rc = fake.batch_rc = (k0 >> 3) & 3 ? 0 : rcs[(k0 >> 5) % nrcs];
    fake.cancel_rc = fake.resize_rc = rcs[(k0 >> 2) % nrcs];
    fake.delete_rc = rcs[(k0 >> 5) % nrcs];
    fake.watch_calls_back = calls_back;
    fake.watch_rc = calls_back ? 0 : exists ? -ENOMEM : -ENOENT;
    fake.list_n = exists ? 3 : 0;
    fake.list_next = k1 & 64 ? 77 : 0;
    fake.out_dropped = k1 & 1 ? 1000 : 0;
    fake.err_dropped = 0;
    fake.stats_rc = k1 & 128 ? -ENOMEM : 0;

    struct pool_info *info = &fake.info;
    memset(info, 0, sizeof(*info));
    info->workers = 2;
    info->workers_ready = k1 & 1;
    snprintf(info->python_version, sizeof(info->python_version), "%s", k1 & 2 ? "3.11.7" : "");
    snprintf(info->cloudpickle_version, sizeof(info->cloudpickle_version), "2.2.1");
    info->queued = 3;
    info->running = 1;
    info->stopping = (k1 & 4) != 0;
    if (k1 & 128)
        snprintf(info->boot_error, sizeof(info->boot_error), "exited with code 3: \"bad\"");
}

static void wake_cb(void *arg)
{
    (*(int *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t k0 = data[0], k1 = data[1];
    fake_from_knobs(k0, k1);
    static const char *const tenants[] = {NULL, "alice", "bob", NULL};
    static const char *const matches[] = {NULL, "minor", "exact", "none"};
    struct api_config cfg = {.pool = (struct pool *)&fake,
                             .max_wait = 60,
                             .max_request_bytes = 1 << 20,
                             .default_timeout = 0,
                             .version = "0.1.0-fuzz",
                             .python_match = matches[(k1 >> 2) & 3],
                             .max_retries_limit = 3,
                             .max_batch = 4,
                             .max_queue = 100,
                             .max_jobs = 1000,
                             .result_ttl = 3600};
    struct api *api = api_new(&cfg);
    CHECK(api);

    const uint8_t *p = data + 2, *end = data + size;
    char *method = next_line(&p, end);
    char *path = next_line(&p, end);
    char *qs = next_line(&p, end);
    char *ctype = next_line(&p, end);
    size_t body_len = (size_t)(end - p);
    uint8_t *body = body_len ? malloc(body_len) : NULL;
    if (body_len) {
        CHECK(body);
        memcpy(body, p, body_len);
    }
    struct query q;
    query_parse(qs, &q);

    struct api_request req = {.method = method,
                              .path = path,
                              .query = query_cb,
                              .query_ctx = &q,
                              .content_type = ctype[0] ? ctype : NULL,
                              .body = body,
                              .body_len = body_len,
                              .tenant = tenants[(k1 >> 4) & 3],
                              /* both sides of the admin-only routes (PATCH /v1/pool, /metrics) */
                              .role = k1 & 4 ? API_ROLE_ADMIN : API_ROLE_USER};
    struct api_response resp;
    api_handle(api, &req, &resp);
    check_response(&resp);
    if (resp.wait) {
        int woken = 0;
        api_wait_start(api, &resp, wake_cb, &woken);
        /* The fake pool's watches call back at once or fail: either way the api
         * must have woken the connection exactly once by now. */
        CHECK(woken == 1);
        api_wait_finish(api, &resp);
        CHECK(resp.wait == NULL);
        check_response(&resp);
    }
    if (getenv("FUZZ_ROUTE_DEBUG"))
        fprintf(stderr, "%s %s -> %d %.*s\n", method, path, resp.status,
                (int)(resp.body_len < 160 ? resp.body_len : 160), resp.body ? resp.body : "");
    api_response_release(&resp);

    free(body);
    free(method);
    free(path);
    free(qs);
    free(ctype);
    api_free(api);
    fake_reset();
    return 0;
}
