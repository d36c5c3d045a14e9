/*
 * job_timing.h — the timing fields of a job request: "delay" | "run_at" and
 * "expires_in" | "expires_at" (api-internal; see job_timing.c).
 */
#ifndef PYJOBD_API_JOB_TIMING_H
#define PYJOBD_API_JOB_TIMING_H

#include <stddef.h>

#include <jansson.h>

#include "pyjobd/job.h"

/* Furthest a job is scheduled or given to start, seconds (366 days). */
#define API_TIMING_MAX_S (366.0 * 24 * 3600)
/* A run_at up to this far in the past means now. */
#define API_RUN_AT_PAST_TOLERANCE_S 5.0

/* Fills spec->run_at_us and spec->expires_at_us (CLOCK_REALTIME us, 0: none) from obj,
 * against the wall clock now. 0, or -EINVAL with the detail naming the field. */
int api__job_timing_from_json(json_t *obj, const char *where, struct job_spec *spec, char *detail,
                              size_t len);

#endif
