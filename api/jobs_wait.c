/*
 * jobs_wait.c — POST /v1/jobs/wait, concurrent.futures.wait() over HTTP:
 *
 *   {"ids": [id, ...], "timeout": S, "return_when": "FIRST_COMPLETED" | "ALL_COMPLETED"}
 *   → 200 {"done": [job, ...], "not_done": [id, ...], "unknown": [id, ...]}
 *
 * "unknown" lists ids the server does not know (never seen, deleted, or removed by
 * retention), so one expired id does not fail a wait on thousands. Lists keep the
 * order of "ids". The request is answered at once when the condition already holds
 * (or timeout is 0); otherwise it is suspended with one pool watch per unfinished id
 * on a shared, reference-counted waiter (wait.c) and answered with the state of all
 * ids when the condition holds or the deadline passes.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "input.h"
#include "job_json.h"
#include "pyjobd/pool.h"

#define WAIT_IDS_MAX 10000

static const char *const wait_fields[] = {"ids", "timeout", "return_when"};

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, JOB_ID_LEN);
}

/* Fills ids[0..*n) from the "ids" member. 0, -EINVAL (detail), -ENOMEM. */
static int parse_ids(json_t *root, char (**ids)[JOB_ID_LEN + 1], size_t *n, char *detail,
                     size_t len)
{
    json_t *arr = json_object_get(root, "ids");
    *ids = NULL;
    *n = 0;
    if (!arr)
        return api__failf(detail, len, "field 'ids' is required: an array of 1 to %d job ids",
                          WAIT_IDS_MAX);
    if (!json_is_array(arr))
        return api__failf(detail, len, "field 'ids' must be an array of 1 to %d job ids, got %s",
                          WAIT_IDS_MAX, api__json_type_name(arr));
    size_t count = json_array_size(arr);
    if (count == 0 || count > WAIT_IDS_MAX)
        return api__failf(detail, len, "field 'ids' must hold 1 to %d job ids, got %zu",
                          WAIT_IDS_MAX, count);
    char(*out)[JOB_ID_LEN + 1] = malloc(count * sizeof(*out));
    char(*sorted)[JOB_ID_LEN + 1] = malloc(count * sizeof(*sorted));
    if (!out || !sorted) {
        free(out);
        free(sorted);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        json_t *v = json_array_get(arr, i);
        const char *s = json_string_value(v);
        char buf[64];
        if (!s)
            rc = api__failf(detail, len, "ids[%zu] must be a job id (a string), got %s", i,
                            api__json_type_name(v));
        else if (!job_id_is_valid(s))
            rc = api__failf(detail, len,
                            "ids[%zu] is not a job id: '%s'; job ids are 32 lowercase "
                            "hexadecimal digits",
                            i, api__short_text(s, buf, sizeof(buf)));
        else
            memcpy(out[i], s, JOB_ID_LEN + 1);
    }
    if (rc == 0) {
        memcpy(sorted, out, count * sizeof(*out));
        qsort(sorted, count, sizeof(*sorted), cmp_id);
        for (size_t i = 1; i < count && rc == 0; i++)
            if (memcmp(sorted[i - 1], sorted[i], JOB_ID_LEN) == 0)
                rc = api__failf(detail, len, "field 'ids' lists %s more than once", sorted[i]);
    }
    free(sorted);
    if (rc) {
        free(out);
        return rc;
    }
    *ids = out;
    *n = count;
    return 0;
}

static int parse_options(const struct api *api, json_t *root, double *timeout, int *first,
                         char *detail, size_t len)
{
    json_t *v = json_object_get(root, "timeout");
    *timeout = 0;
    *first = 0;
    if (v && !json_is_null(v)) {
        double t = json_is_number(v) ? json_number_value(v) : NAN;
        if (!json_is_number(v))
            return api__failf(detail, len,
                              "field 'timeout' must be a number of seconds from 0 to %g, got %s",
                              api->max_wait, api__json_type_name(v));
        if (!(t >= 0 && t <= api->max_wait))
            return api__failf(detail, len,
                              "field 'timeout' must be a number of seconds from 0 to %g, got %g",
                              api->max_wait, t);
        *timeout = t;
    }
    v = json_object_get(root, "return_when");
    if (v && !json_is_null(v)) {
        const char *s = json_string_value(v);
        char buf[64];
        if (s && strcmp(s, "FIRST_COMPLETED") == 0)
            *first = 1;
        else if (s && strcmp(s, "ALL_COMPLETED") == 0)
            *first = 0;
        else if (s)
            return api__failf(detail, len,
                              "field 'return_when' must be \"FIRST_COMPLETED\" or "
                              "\"ALL_COMPLETED\", got '%s'",
                              api__short_text(s, buf, sizeof(buf)));
        else
            return api__failf(detail, len,
                              "field 'return_when' must be \"FIRST_COMPLETED\" or "
                              "\"ALL_COMPLETED\", got %s",
                              api__json_type_name(v));
    }
    return 0;
}

/* {"done": [jobs, with their results], "not_done": [ids], "unknown": [ids]}: the
 * results are sent from their blobs (body.h). */
void api__respond_many(struct api *api, const struct api__multiwait *m, struct api_response *resp)
{
    json_t *not_done = json_array(), *unknown = json_array();
    struct job_view *views = calloc(m->n ? m->n : 1, sizeof(*views));
    int *rcs = calloc(m->n ? m->n : 1, sizeof(*rcs));
    struct api__body b = {0};
    int ok = not_done && unknown && views && rcs &&
             api__jobs_get_as(api, m->has_tenant ? m->tenant : NULL, m->ids, m->n, views, rcs) == 0;
    size_t ndone = 0;
    api__body_str(&b, "{\"done\":[");
    for (size_t i = 0; ok && i < m->n; i++) {
        if (rcs[i] == -ENOMEM) {
            ok = 0;
        } else if (rcs[i] < 0) {
            ok = json_array_append_new(unknown, json_string(m->ids[i])) == 0;
        } else if (job_status_is_terminal(views[i].status)) {
            if (ndone++)
                api__body_str(&b, ",");
            api__body_job(&b, &views[i], 1);
        } else {
            ok = json_array_append_new(not_done, json_string(m->ids[i])) == 0;
        }
    }
    for (size_t i = 0; views && rcs && i < m->n; i++)
        if (rcs[i] == 0)
            job_view_release(&views[i]);
    free(views);
    free(rcs);
    char *nd = ok ? json_dumps(not_done, JSON_COMPACT) : NULL;
    char *un = ok ? json_dumps(unknown, JSON_COMPACT) : NULL;
    json_decref(not_done);
    json_decref(unknown);
    if (!nd || !un)
        b.failed = 1;
    api__body_str(&b, "],\"not_done\":");
    if (nd)
        api__body_str(&b, nd);
    api__body_str(&b, ",\"unknown\":");
    if (un)
        api__body_str(&b, un);
    api__body_str(&b, "}\n");
    free(nd);
    free(un);
    api__body_finish(&b, resp, 200, "application/json");
}

void api__multiwait_start(struct api *api, struct api__multiwait *m, void (*wake)(void *arg),
                          void *arg)
{
    m->wake = wake;
    m->wake_arg = arg;
    atomic_fetch_add(&m->refs, 1); /* ours, while registering */
    atomic_store(&m->pending, 1);  /* the guard: ALL_COMPLETED cannot fire before the end */
    size_t registered = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->watch[i])
            continue;
        atomic_fetch_add(&m->pending, 1);
        atomic_fetch_add(&m->refs, 1); /* the watch's */
        if (pool_watch(api->pool, m->ids[i], m->deadline_ms, api__multiwait_fired_cb, m) == 0) {
            registered++;
            continue;
        }
        /* The callback will never run. The job was unfinished a moment ago, so it can
         * only have finished and gone since: count it as fired. */
        atomic_fetch_sub(&m->refs, 1); /* never the last: ours is held */
        if (m->first_completed || atomic_fetch_sub(&m->pending, 1) == 1)
            api__multiwait_wake(m);
    }
    if (m->first_completed ? registered == 0 : atomic_fetch_sub(&m->pending, 1) == 1)
        api__multiwait_wake(m);
    api__multiwait_unref(m);
}

void api__wait_jobs(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (api__reject_non_json(req, resp))
        return;
    char detail[512];
    json_t *root;
    char(*ids)[JOB_ID_LEN + 1] = NULL;
    size_t n = 0;
    double timeout = 0;
    int first = 0;
    int rc = api__body_parse(req->body, req->body_len,
                             "{\"ids\": [\"<job id>\", ...], \"timeout\": 30, \"return_when\": "
                             "\"ALL_COMPLETED\"}",
                             &root, detail, sizeof(detail));
    if (rc == 0 &&
        (rc = api__check_fields(root, wait_fields, 3, "", detail, sizeof(detail))) == 0 &&
        (rc = parse_ids(root, &ids, &n, detail, sizeof(detail))) == 0)
        rc = parse_options(api, root, &timeout, &first, detail, sizeof(detail));
    json_decref(root);
    if (rc < 0) {
        api__request_problem(resp, rc, detail);
        free(ids);
        return;
    }

    struct api__multiwait *m = api__multiwait_new(ids, n, first, api__deadline_ms(timeout));
    free(ids);
    if (!m) {
        api_problem(resp, 503, NULL, "out of memory; retry later");
        return;
    }
    if (req->tenant) {
        m->has_tenant = 1;
        snprintf(m->tenant, sizeof(m->tenant), "%s", req->tenant);
    }
    size_t finished = 0, unfinished = 0;
    struct job_view *views = calloc(n, sizeof(*views));
    int *rcs = calloc(n, sizeof(*rcs));
    if (!views || !rcs || api__jobs_get_as(api, req->tenant, m->ids, n, views, rcs) != 0) {
        free(views);
        free(rcs);
        api__multiwait_unref(m);
        api_problem(resp, 503, NULL, "out of memory; retry later");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] < 0)
            continue;
        if (job_status_is_terminal(views[i].status))
            finished++;
        else
            m->watch[i] = 1, unfinished++;
        job_view_release(&views[i]);
    }
    free(views);
    free(rcs);
    int ready = timeout <= 0 || unfinished == 0 || (first && finished > 0);
    struct api_wait *w = ready ? NULL : calloc(1, sizeof(*w));
    if (!ready && w) {
        w->kind = API_WAIT_MANY;
        w->many = m;
        w->deadline_ms = m->deadline_ms;
        resp->status = 200;
        resp->wait = w;
        return;
    }
    if (ready)
        api__respond_many(api, m, resp);
    else
        api_problem(resp, 503, NULL, "out of memory; retry later");
    api__multiwait_unref(m);
}
