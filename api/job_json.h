/*
 * job_json.h — the JSON form of a job (the v1 wire contract), api-internal.
 */
#ifndef PYJOBD_API_JOB_JSON_H
#define PYJOBD_API_JOB_JSON_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "pyjobd/job.h"

/* Room for "2026-11-25T20:00:00.123456Z" and a NUL (and for years past 9999). */
#define API_TIMESTAMP_LEN 40 /* >= CLOCK_TEXT_LEN */

/*
 * Writes ts as RFC 3339 UTC with microseconds ("2026-11-25T20:00:00.123456Z").
 * Returns 0, or -EINVAL when ts is {0,0} ("never") or cannot be represented.
 */
int api__format_timestamp(const struct timespec *ts, char buf[API_TIMESTAMP_LEN]);

/* "SIGSEGV", "SIGRTMIN+3", ...; buf holds at least 16 bytes. Returns buf. */
const char *api__signal_name(int sig, char *buf, size_t len);

/* The job object of GET /v1/jobs/{id}, its result included. New reference, or NULL
 * when out of memory. A response sends the result from its blob instead (body.c). */
json_t *api__job_to_json(const struct job_view *v);

/* The same object in two halves, the keys before the result and those after it:
 * 0, or -ENOMEM. */
int api__job_json_halves(const struct job_view *v, json_t **head, json_t **tail);

#endif
