/*
 * schedules.c — recurring jobs (issue 17 item 4):
 *
 *   POST   /v1/schedules {"cron": "*\/5 * * * *" | "every": S, "job": {job request},
 *                         "timezone"?: "Europe/Paris", "missed"?: "skip" | "run_once"}
 *                                          → 201 the schedule, Location
 *   GET    /v1/schedules                   → 200 {"schedules": [...]} (the caller's)
 *   GET    /v1/schedules/{id}              → 200 the schedule
 *   DELETE /v1/schedules/{id}              → 204 (the jobs it made stay)
 *
 * Each tick submits one job whose "schedule" names the schedule. A schedule belongs
 * to its tenant as a job does (another's is unknown, 404). The job request is checked
 * as POST /v1/jobs checks one, without the fields that say when it runs (the schedule
 * does) or its Idempotency-Key (each tick's job has an id of its own). On a shared
 * store (PostgreSQL) any node answers for any schedule, and one node at a time fires
 * them; a job with a retry policy is refused there (501), as POST /v1/jobs does.
 */
#include "internal.h"
#include "input.h"
#include "job_json.h"
#include "job_request.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/clock.h"
#include "pyjobd/cron.h"
#include "pyjobd/pool.h"
#include "pyjobd/tzif.h"

#define SCHEDULES_PREFIX "/v1/schedules/"
/* Shortest "every": a tick per second per schedule at most. */
#define EVERY_MIN_S 1.0
#define EVERY_MAX_S (366.0 * 24 * 3600)

static const char *const schedule_fields[] = {"cron", "every", "job", "timezone", "missed"};
static const char *const timing_fields[] = {"delay", "run_at", "expires_in", "expires_at",
                                            "idempotency_key"};

static json_t *time_or_null(int64_t us)
{
    char buf[API_TIMESTAMP_LEN];
    struct timespec ts = clock_us_ts(us);
    return us > 0 && api__format_timestamp(&ts, buf) == 0 ? json_string(buf) : json_null();
}

static json_t *schedule_json(const struct pool_schedule_info *s)
{
    return json_pack("{s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:o, s:I, s:o}", "id", s->id, "cron",
                     s->cron[0] ? json_string(s->cron) : json_null(), "every",
                     s->cron[0] ? json_null() : json_real(s->every), "timezone", s->timezone,
                     "missed", s->run_once ? "run_once" : "skip", "created_at",
                     time_or_null(s->created_us), "next_run_at", time_or_null(s->next_us),
                     "last_run_at", time_or_null(s->last_tick_us), "runs", (json_int_t)s->runs,
                     "last_job", s->last_job[0] ? json_string(s->last_job) : json_null());
}

/* The body into rq (rq->job to release by the caller on success). 0 or -EINVAL. */
static int parse_schedule(struct api *api, json_t *root, struct pool_schedule_request *rq,
                          char *detail, size_t len)
{
    int rc = api__check_fields(root, schedule_fields, 5, "", detail, len);
    if (rc)
        return rc;
    json_t *cron = json_object_get(root, "cron"), *every = json_object_get(root, "every");
    int has_cron = cron && !json_is_null(cron), has_every = every && !json_is_null(every);
    if (has_cron == has_every)
        return api__failf(detail, len,
                          "give one of 'cron' (\"*/5 * * * *\") or 'every' (seconds): when "
                          "the schedule submits its job");
    if (has_cron) {
        struct cron c;
        char why[200];
        if (!json_is_string(cron))
            return api__failf(detail, len, "field 'cron' must be a string such as \"0 3 * * *\"");
        if (cron_parse(json_string_value(cron), &c, why, sizeof(why)) != 0)
            return api__failf(detail, len, "field 'cron': %s", why);
        rq->cron = json_string_value(cron);
    } else {
        double s = json_is_number(every) ? json_number_value(every) : NAN;
        if (!isfinite(s) || s < EVERY_MIN_S || s > EVERY_MAX_S)
            return api__failf(detail, len,
                              "field 'every' must be a number of seconds from %g to %.0f (366 "
                              "days)",
                              EVERY_MIN_S, EVERY_MAX_S);
        rq->every = s;
    }
    json_t *tz = json_object_get(root, "timezone");
    if (tz && !json_is_null(tz)) {
        char why[200];
        struct tz *z = NULL;
        if (!json_is_string(tz))
            return api__failf(detail, len,
                              "field 'timezone' must be a name of the tz database such as "
                              "\"Europe/Paris\" or \"UTC\"");
        if (strcmp(json_string_value(tz), "UTC") != 0 &&
            tz_load(json_string_value(tz), NULL, &z, why, sizeof(why)) != 0)
            return api__failf(detail, len, "field 'timezone': %s", why);
        tz_free(z);
        if (has_every)
            return api__failf(detail, len,
                              "field 'timezone' goes with 'cron' only ('every' counts seconds)");
        rq->timezone = json_string_value(tz);
    }
    json_t *missed = json_object_get(root, "missed");
    if (missed && !json_is_null(missed)) {
        const char *m = json_is_string(missed) ? json_string_value(missed) : "";
        if (strcmp(m, "run_once") != 0 && strcmp(m, "skip") != 0)
            return api__failf(detail, len,
                              "field 'missed' must be \"skip\" (ticks missed while the server "
                              "was down make no job) or \"run_once\" (one job at start)");
        rq->run_once = strcmp(m, "run_once") == 0;
    }
    json_t *job = json_object_get(root, "job");
    if (!json_is_object(job))
        return api__failf(detail, len,
                          "field 'job' is required: the job request each tick submits, as for "
                          "POST /v1/jobs ({\"callable\": \"<base64>\", ...})");
    for (size_t i = 0; i < sizeof(timing_fields) / sizeof(*timing_fields); i++) {
        json_t *v = json_object_get(job, timing_fields[i]);
        if (v && !json_is_null(v))
            return api__failf(detail, len,
                              "job: field '%s' has no place in a schedule's job: the schedule "
                              "says when it runs, and each tick's job has an id of its own",
                              timing_fields[i]);
    }
    struct api__job_limits lim;
    api__job_limits_get(api, &lim);
    return api__job_request_from_json(job, &lim, "job: ", &rq->job, detail, len);
}

static void create(struct api *api, const struct api_request *req, struct api_response *resp)
{
    if (api__reject_non_json(req, resp))
        return;
    char detail[512];
    json_t *root;
    int rc = api__body_parse(req->body, req->body_len,
                             "{\"every\": 60, \"job\": {\"callable\": \"<base64>\"}}", &root,
                             detail, sizeof(detail));
    struct pool_schedule_request rq;
    memset(&rq, 0, sizeof(rq));
    if (rc == 0)
        rc = parse_schedule(api, root, &rq, detail, sizeof(detail));
    if (rc < 0) {
        json_decref(root);
        api__request_problem(resp, rc, detail);
        return;
    }
    if (req->tenant)
        snprintf(rq.job.owner, sizeof(rq.job.owner), "%s", req->tenant);
    struct pool_schedule_info info;
    rc = pool_schedule_create(api->pool, &rq, &info, detail, sizeof(detail));
    job_spec_release(&rq.job);
    json_decref(root); /* after: rq.cron and rq.timezone point into it */
    if (rc == -EAGAIN || rc == -EDQUOT)
        api_problem(resp, 429, NULL,
                    "this server keeps at most %d schedules, and %d of one tenant; delete "
                    "some first (GET /v1/schedules lists yours)",
                    POOL_MAX_SCHEDULES, POOL_MAX_SCHEDULES_PER_TENANT);
    else if (rc == -EINVAL)
        api_problem(resp, 400, NULL, "%s", detail);
    else if (rc < 0 && api__store_problem(api, resp, rc))
        ; /* the database: 503 */
    else if (rc < 0)
        api_problem(resp, api__status_from_errno(rc), NULL, "cannot make the schedule: %s",
                    strerror(-rc));
    if (rc < 0)
        return;
    api__respond_json(resp, 201, schedule_json(&info), "application/json");
    if (resp->status == 201 && asprintf(&resp->location, SCHEDULES_PREFIX "%s", info.id) < 0)
        resp->location = NULL;
}

static void list(struct api *api, const struct api_request *req, struct api_response *resp)
{
    struct pool_schedule_info *all;
    size_t n;
    int rc = pool_schedule_list(api->pool, req->tenant, &all, &n);
    if (rc != 0) {
        if (!api__store_problem(api, resp, rc))
            api_problem(resp, 503, NULL, "cannot list the schedules: %s; retry later",
                        strerror(-rc));
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, schedule_json(&all[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    free(all);
    api__respond_json(resp, 200, arr ? json_pack("{s:o}", "schedules", arr) : NULL,
                      "application/json");
}

static void not_found(struct api_response *resp, const char *id)
{
    api_problem(resp, 404, NULL,
                "no schedule %.64s here (an id is 32 hex digits, as POST /v1/schedules "
                "answered; GET /v1/schedules lists yours)",
                id);
}

int api__route_schedules(struct api *api, const struct api_request *req, const char *method,
                         const char *path, struct api_response *resp)
{
    if (strcmp(path, "/v1/schedules") == 0) {
        if (strcmp(method, "GET") == 0)
            list(api, req, resp);
        else if (strcmp(method, "POST") == 0)
            create(api, req, resp);
        else
            api__method_not_allowed(resp, method, path, "GET, POST");
        return 1;
    }
    if (strncmp(path, SCHEDULES_PREFIX, sizeof(SCHEDULES_PREFIX) - 1) != 0)
        return 0;
    const char *id = path + sizeof(SCHEDULES_PREFIX) - 1;
    int get = strcmp(method, "GET") == 0;
    if (!get && strcmp(method, "DELETE") != 0) {
        api__method_not_allowed(resp, method, path, "GET, DELETE");
        return 1;
    }
    struct pool_schedule_info info;
    int rc = !job_id_is_valid(id) ? -ENOENT
             : get                ? pool_schedule_get(api->pool, id, req->tenant, &info)
                                  : pool_schedule_delete(api->pool, id, req->tenant);
    if (rc == -ENOENT) {
        not_found(resp, id);
        return 1;
    }
    if (rc != 0) {
        if (!api__store_problem(api, resp, rc))
            api_problem(resp, api__status_from_errno(rc), NULL, "cannot %s the schedule: %s",
                        get ? "read" : "delete", strerror(-rc));
        return 1;
    }
    if (get)
        api__respond_json(resp, 200, schedule_json(&info), "application/json");
    else
        resp->status = 204;
    return 1;
}
