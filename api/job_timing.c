/*
 * job_timing.c — when a job may run: "delay" or "run_at" (scheduled until then),
 * "expires_in" or "expires_at" (failed as expired if not started by then).
 *
 * Times are the wall clock's (CLOCK_REALTIME, read here): a run_at more than
 * API_RUN_AT_PAST_TOLERANCE_S in the past is refused (a client's clock, or a stale
 * request), one within it runs now; nothing is scheduled more than API_TIMING_MAX_S
 * ahead. An expiry must come after the job's earliest start.
 */
#include "job_timing.h"

#include <math.h>
#include <stdio.h>

#include "input.h"
#include "pyjobd/clock.h"

/* A number of seconds in [min_excl, API_TIMING_MAX_S] (> min_excl), or absent. */
static int timing_seconds(json_t *obj, const char *field, double min_excl, const char *what,
                          const char *where, double *out, char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    double s = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || !isfinite(s) || s <= min_excl || s > API_TIMING_MAX_S)
        return api__failf(detail, len,
                          "%sfield '%s' must be a number of seconds %s and at most %.0f (366 "
                          "days): %s; got %s",
                          where, field, min_excl < 0 ? ">= 0" : "> 0", API_TIMING_MAX_S, what,
                          json_is_number(v) ? "a number out of range" : api__json_type_name(v));
    *out = s;
    return 0;
}

/* An RFC 3339 time, or absent (*out 0). */
static int timing_time(json_t *obj, const char *field, const char *where, int64_t *out,
                       char *detail, size_t len)
{
    json_t *v = json_object_get(obj, field);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return api__failf(detail, len,
                          "%sfield '%s' must be an RFC 3339 time such as "
                          "\"2026-12-01T17:30:00Z\", got %s",
                          where, field, api__json_type_name(v));
    size_t pos = 0;
    if (clock_parse(json_string_value(v), out, &pos) != 0)
        return api__failf(detail, len,
                          "%sfield '%s' is not an RFC 3339 time (such as "
                          "\"2026-12-01T17:30:00Z\" or \"2026-12-01T18:30:00+01:00\"): wrong at "
                          "character %zu of \"%.64s\"",
                          where, field, pos + 1, json_string_value(v));
    return 0;
}

static int timing_exclusive(json_t *obj, const char *a, const char *b, const char *where,
                            char *detail, size_t len)
{
    json_t *x = json_object_get(obj, a), *y = json_object_get(obj, b);
    if (x && !json_is_null(x) && y && !json_is_null(y))
        return api__failf(detail, len,
                          "%sfields '%s' and '%s' are mutually exclusive: give the time "
                          "either relative (seconds from now) or absolute (RFC 3339)",
                          where, a, b);
    return 0;
}

int api__job_timing_from_json(json_t *obj, const char *where, struct job_spec *spec, char *detail,
                              size_t len)
{
    double delay, expires_in;
    int64_t run_at, expires_at, now = clock_real_us();
    int rc;
    if ((rc = timing_exclusive(obj, "delay", "run_at", where, detail, len)) ||
        (rc = timing_exclusive(obj, "expires_in", "expires_at", where, detail, len)) ||
        (rc = timing_seconds(obj, "delay", -1, "how long the job waits before it is queued", where,
                             &delay, detail, len)) ||
        (rc = timing_seconds(obj, "expires_in", 0, "how long the job may wait to start", where,
                             &expires_in, detail, len)) ||
        (rc = timing_time(obj, "run_at", where, &run_at, detail, len)) ||
        (rc = timing_time(obj, "expires_at", where, &expires_at, detail, len)))
        return rc;
    int64_t limit = now + (int64_t)(API_TIMING_MAX_S * 1e6);
    if (delay > 0)
        run_at = now + (int64_t)(delay * 1e6 + 0.5);
    if (run_at && run_at < now - (int64_t)(API_RUN_AT_PAST_TOLERANCE_S * 1e6))
        return api__failf(detail, len,
                          "%sfield 'run_at' is %.3f s in the past (the server's clock is the "
                          "judge; up to %g s is taken as now): send a time to come, or none to "
                          "run the job now",
                          where, (double)(now - run_at) / 1e6, API_RUN_AT_PAST_TOLERANCE_S);
    if (run_at > limit)
        return api__failf(
            detail, len, "%sfield 'run_at' is more than 366 days ahead: schedule it closer", where);
    if (run_at && run_at <= now)
        run_at = 0; /* within the tolerance: now */
    if (expires_in > 0)
        expires_at = now + (int64_t)(expires_in * 1e6 + 0.5);
    if (expires_at && expires_at <= now)
        return api__failf(detail, len,
                          "%sfield 'expires_at' is not in the future (%.3f s ago): a job that "
                          "must start by then could never run",
                          where, (double)(now - expires_at) / 1e6);
    if (expires_at > limit + (int64_t)(API_TIMING_MAX_S * 1e6))
        return api__failf(detail, len, "%sfield 'expires_at' is too far ahead", where);
    if (expires_at && run_at && expires_at <= run_at)
        return api__failf(detail, len,
                          "%sthe job expires (%s) before it may run (%s): its expiry must come "
                          "after its run_at or delay",
                          where, expires_in > 0 ? "expires_in" : "expires_at",
                          delay > 0 ? "delay" : "run_at");
    spec->run_at_us = run_at;
    spec->expires_at_us = expires_at;
    return 0;
}
