/*
 * test_api_fake.h — a fake of every pool_* function api/ calls, and request helpers, for the api
 * unit tests (test_router.c, test_jobs.c, test_jobs_wait.c, test_pool_resource.c). Included by
 * exactly one .c per test binary: the definitions replace the real pool at link time, so the
 * archive's pool objects are never pulled in.
 *
 * Jobs live in fake_jobs[]; fake_id(i) is the id of slot i. Watches are recorded and
 * fired later by fake_fire_watches() unless fake.watch_calls_back says to call back
 * at once, which is how the pool answers for a finished job.
 */
#ifndef PYJOBD_TEST_API_FAKE_H
#define PYJOBD_TEST_API_FAKE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pyjobd/api.h"
#include "pyjobd/pool.h"

#define UNUSED __attribute__((unused))

#define FAKE_JOBS 16
#define FAKE_WATCHES 64

struct fake_job {
    int exists;
    int stale; /* lookups answer -ESTALE */
    enum job_status status;
    unsigned max_retries;
    char *metadata;
    const char *result;      /* pickle bytes when succeeded (pickle format) */
    const char *result_json; /* JSON text when succeeded (json format) */
    enum job_error_type err;
    const char *message;
    char owner[JOB_OWNER_MAX]; /* tenant that submitted it */
};

struct fake_watch {
    char id[JOB_ID_LEN + 1];
    pool_watch_cb cb;
    void *arg;
    int64_t deadline;
};

static struct fake_job fake_jobs[FAKE_JOBS];

static struct {
    int submit_rc;
    int submits;
    int batch_rc;
    size_t batch_n;
    struct job_spec last; /* copy of the last submitted spec (blob refs held) */
    int cancel_rc, cancel_force, cancels;
    int delete_rc, deletes;
    struct pool_list_query list_q;
    size_t list_n;
    uint64_t list_next;
    int watch_rc;         /* pool_watch answers this for every id */
    int watch_calls_back; /* call cb before returning */
    size_t nwatches;
    struct fake_watch watches[FAKE_WATCHES];
    struct pool_info info;
    int stats_rc;
    int resize_rc;
    unsigned resized_to;
} fake;

UNUSED static const char *fake_id(size_t i)
{
    static char ids[FAKE_JOBS][JOB_ID_LEN + 1];
    snprintf(ids[i], sizeof(ids[i]), "%032zx", i + 0xa0);
    return ids[i];
}

static int fake_find(const char *id)
{
    for (size_t i = 0; i < FAKE_JOBS; i++)
        if (strcmp(id, fake_id(i)) == 0)
            return fake_jobs[i].stale ? -ESTALE : fake_jobs[i].exists ? (int)i : -ENOENT;
    return -ENOENT;
}

static void fake_reset(void)
{
    job_spec_release(&fake.last);
    for (size_t i = 0; i < FAKE_JOBS; i++)
        free(fake_jobs[i].metadata);
    memset(&fake, 0, sizeof(fake));
    memset(fake_jobs, 0, sizeof(fake_jobs));
    fake.info.workers = 4;
    fake.info.workers_ready = 3;
    strcpy(fake.info.cloudpickle_version, "3.0.0");
    fake.info.queued = 2;
    fake.info.running = 1;
}

UNUSED static size_t fake_add(enum job_status st)
{
    for (size_t i = 0; i < FAKE_JOBS; i++)
        if (!fake_jobs[i].exists && !fake_jobs[i].stale) {
            fake_jobs[i].exists = 1;
            fake_jobs[i].status = st;
            return i;
        }
    abort();
}

/* Fires the recorded watches [from, to) in order (like the supervisor would). */
UNUSED static void fake_fire_watches(size_t from, size_t to)
{
    for (size_t i = from; i < to && i < fake.nwatches; i++)
        fake.watches[i].cb(fake.watches[i].arg);
}

static int fake_submit_one(const struct job_spec *spec, struct job_view *view_out)
{
    size_t i = fake_add(JOB_QUEUED);
    fake_jobs[i].max_retries = spec->max_retries;
    memcpy(fake_jobs[i].owner, spec->owner, sizeof(spec->owner));
    fake_jobs[i].metadata = spec->metadata ? strdup(spec->metadata) : NULL;
    job_spec_release(&fake.last);
    fake.last = *spec;
    fake.last.metadata = spec->metadata ? strdup(spec->metadata) : NULL;
    blob_ref(fake.last.callable);
    blob_ref(fake.last.args);
    blob_ref(fake.last.kwargs);
    blob_ref(fake.last.json_args);
    blob_ref(fake.last.json_kwargs);
    return pool_job_get(NULL, fake_id(i), view_out); /* the view of the job just queued */
}

int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out)
{
    (void)p;
    fake.submits++;
    if (fake.submit_rc)
        return fake.submit_rc;
    return fake_submit_one(spec, view_out);
}

int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out)
{
    (void)p;
    fake.batch_n = n;
    if (fake.batch_rc)
        return fake.batch_rc;
    for (size_t i = 0; i < n; i++)
        fake_submit_one(&specs[i], &views_out[i]);
    return 0;
}

/* Output: every known job printed "out\n" on stdout and invalid UTF-8 on stderr. */
int pool_job_output(struct pool *p, const char *id, struct job_output *out)
{
    (void)p;
    int i = fake_find(id);
    if (i < 0)
        return i;
    out->out = blob_new_copy("out\n", 4);
    out->err = blob_new_copy("\xff!", 2);
    out->out_dropped = 0;
    out->err_dropped = 7;
    return 0;
}

void job_output_release(struct job_output *o)
{
    blob_unref(o->out);
    blob_unref(o->err);
    memset(o, 0, sizeof(*o));
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    (void)p;
    int i = fake_find(id);
    if (i < 0)
        return i;
    const struct fake_job *j = &fake_jobs[i];
    memset(out, 0, sizeof(*out));
    memcpy(out->id, id, JOB_ID_LEN + 1);
    out->status = j->status;
    out->created_at = (struct timespec){1795636800, 0};
    out->max_retries = j->max_retries;
    memcpy(out->owner, j->owner, sizeof(out->owner));
    out->metadata = j->metadata ? strdup(j->metadata) : NULL;
    out->error.exit_code = -1;
    out->error.max_rss_bytes = -1;
    if (j->status == JOB_SUCCEEDED && j->result_json)
        out->result_json = blob_new_copy(j->result_json, strlen(j->result_json));
    else if (j->status == JOB_SUCCEEDED)
        out->result =
            blob_new_copy(j->result ? j->result : "foobar", j->result ? strlen(j->result) : 6);
    if (j->err) {
        out->error.type = j->err;
        out->error.message = strdup(j->message ? j->message : "");
    }
    return 0;
}

int pool_job_get_many(struct pool *p, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                      int *rcs)
{
    for (size_t i = 0; i < n; i++)
        rcs[i] = pool_job_get(p, ids[i], &out[i]);
    return 0;
}

int pool_job_peek(struct pool *p, const char *id, struct job_view *out)
{
    return pool_job_get(p, id, out);
}

int pool_cancel(struct pool *p, const char *id, int force)
{
    (void)p;
    fake.cancels++;
    fake.cancel_force = force;
    int i = fake_find(id);
    if (i < 0)
        return i;
    if (fake.cancel_rc)
        return fake.cancel_rc;
    fake_jobs[i].status = JOB_CANCELLED;
    fake_jobs[i].err = JOB_ERR_CANCELLED;
    return 0;
}

int pool_delete(struct pool *p, const char *id)
{
    (void)p;
    fake.deletes++;
    int i = fake_find(id);
    if (i < 0)
        return i;
    if (fake.delete_rc)
        return fake.delete_rc;
    free(fake_jobs[i].metadata);
    memset(&fake_jobs[i], 0, sizeof(fake_jobs[i]));
    return 0;
}

int pool_list(struct pool *p, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next)
{
    (void)p;
    fake.list_q = *q;
    *out = NULL;
    *n = 0;
    *next = fake.list_next;
    if (!fake.list_n)
        return 0;
    *out = calloc(fake.list_n, sizeof(**out));
    for (size_t i = 0; i < fake.list_n; i++)
        pool_job_get(NULL, fake_id(i), &(*out)[i]);
    *n = fake.list_n;
    return 0;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    (void)p;
    if (fake.watch_rc)
        return fake.watch_rc;
    int i = fake_find(id);
    if (i < 0)
        return -ENOENT;
    if (fake.watch_calls_back || job_status_is_terminal(fake_jobs[i].status)) {
        cb(arg);
        return 0;
    }
    if (fake.nwatches == FAKE_WATCHES)
        abort();
    struct fake_watch *w = &fake.watches[fake.nwatches++];
    memcpy(w->id, id, JOB_ID_LEN + 1);
    w->cb = cb;
    w->arg = arg;
    w->deadline = deadline_ms;
    return 0;
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    (void)p;
    *out = fake.info;
}

const double pool_duration_bounds[POOL_DURATION_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, __builtin_inf()};

int pool_get_stats(struct pool *p, struct pool_stats *out)
{
    (void)p;
    memset(out, 0, sizeof(*out));
    if (fake.stats_rc)
        return fake.stats_rc;
    out->workers_target = 2;
    out->nworkers = 2;
    out->workers = calloc(2, sizeof(*out->workers));
    out->workers[0] = (struct pool_worker_info){.pid = 101,
                                                .state = "busy",
                                                .jobs_done = 7,
                                                .started_at = {1795636800, 500000000},
                                                .rss_bytes = 123456,
                                                .retiring = 0};
    memcpy(out->workers[0].job_id, fake_id(0), JOB_ID_LEN + 1);
    out->workers[1] =
        (struct pool_worker_info){.pid = 102, .state = "idle", .rss_bytes = -1, .retiring = 1};
    out->queued = 3;
    out->running = 1;
    out->submitted = 42;
    out->finished[JOB_SUCCEEDED] = 30;
    out->finished[JOB_FAILED] = 5;
    out->finished[JOB_CANCELLED] = 2;
    out->restarts_crash = 1;
    out->restarts_timeout = 2;
    out->restarts_recycle = 3;
    out->restarts_cancel = 4;
    out->boot_failures = 0;
    out->duration_buckets[0] = 1;
    out->duration_buckets[6] = 2;
    out->duration_buckets[11] = 1;
    out->duration_sum = 400.5;
    out->duration_count = 4;
    out->jobs_retained = 37;
    return 0;
}

void pool_stats_release(struct pool_stats *s)
{
    free(s->workers);
    memset(s, 0, sizeof(*s));
}

int pool_resize(struct pool *p, unsigned workers)
{
    (void)p;
    fake.resized_to = workers;
    return fake.resize_rc;
}

int64_t clock_now_ms(void)
{
    return 1000000;
}

/* --- request helpers ------------------------------------------------------------- */

static const char *query_keys[8], *query_vals[8];
static size_t nquery;

UNUSED static void set_query(const char *key, const char *value)
{
    query_keys[nquery] = key;
    query_vals[nquery++] = value;
}

static const char *query_cb(void *ctx, const char *key)
{
    (void)ctx;
    for (size_t i = 0; i < nquery; i++)
        if (query_keys[i] && strcmp(query_keys[i], key) == 0)
            return query_vals[i];
    return NULL;
}

static struct api *api;
static struct api_response resp;
static json_t *body;
static struct api_config cfg;

/* The api as configured for tests; a test may change cfg and call api_reopen(). */
UNUSED static void api_reopen(void)
{
    api_free(api);
    api = api_new(&cfg);
    assert_non_null(api);
}

UNUSED static int setup(void **state)
{
    (void)state;
    fake_reset();
    nquery = 0;
    cfg = (struct api_config){.pool = (struct pool *)&fake,
                              .max_wait = 60,
                              .max_request_bytes = 1 << 20,
                              .default_timeout = 0,
                              .version = "0.1.0",
                              .max_retries_limit = 3,
                              .max_batch = 4,
                              .max_queue = 100,
                              .max_jobs = 1000,
                              .result_ttl = 3600};
    api = api_new(&cfg);
    return api ? 0 : -1;
}

UNUSED static int teardown(void **state)
{
    (void)state;
    json_decref(body);
    body = NULL;
    api_response_release(&resp);
    api_free(api);
    api = NULL;
    fake_reset();
    return 0;
}

/* Parses resp's body into body when it is JSON. */
static void load_body(void)
{
    json_decref(body);
    body = NULL;
    if (resp.body && resp.content_type && strstr(resp.content_type, "json")) {
        assert_int_equal(resp.body[resp.body_len - 1], '\n');
        body = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, NULL);
        assert_non_null(body);
    }
}

static const char *tenant; /* the authenticated tenant of request(), NULL: no auth */

UNUSED static void request(const char *method, const char *path, const char *ctype,
                           const char *text)
{
    struct api_request req = {
        .tenant = tenant,
        .method = method,
        .path = path,
        .query = query_cb,
        .content_type = ctype,
        .body = (const uint8_t *)text,
        .body_len = text ? strlen(text) : 0,
    };
    api_response_release(&resp);
    api_handle(api, &req, &resp);
    load_body();
}

UNUSED static void post_json(const char *path, const char *text)
{
    request("POST", path, "application/json", text);
}

UNUSED static void finish_wait(void)
{
    api_wait_finish(api, &resp);
    assert_null(resp.wait);
    load_body();
}

UNUSED static void assert_problem(int status, const char *detail_part)
{
    if (resp.status != status)
        fail_msg("status %d, want %d (%.*s)", resp.status, status, (int)resp.body_len,
                 resp.body ? resp.body : "");
    assert_string_equal(resp.content_type, "application/problem+json");
    assert_null(resp.wait);
    assert_string_equal(json_string_value(json_object_get(body, "type")), "about:blank");
    assert_non_null(json_string_value(json_object_get(body, "title")));
    assert_int_equal(json_integer_value(json_object_get(body, "status")), status);
    const char *detail = json_string_value(json_object_get(body, "detail"));
    assert_non_null(detail);
    if (!strstr(detail, detail_part))
        fail_msg("detail '%s' lacks '%s'", detail, detail_part);
}

UNUSED static void assert_status(int status)
{
    if (resp.status != status)
        fail_msg("status %d, want %d (%.*s)", resp.status, status, (int)resp.body_len,
                 resp.body ? resp.body : "");
}

UNUSED static void wake_cb(void *arg)
{
    ++*(int *)arg;
}

UNUSED static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

UNUSED static long long jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("'%s' is not an integer", key);
    return json_integer_value(v);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

#endif
