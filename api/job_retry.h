/*
 * job_retry.h — the "retry" object of a job request (api-internal; see job_retry.c).
 */
#ifndef PYJOBD_API_JOB_RETRY_H
#define PYJOBD_API_JOB_RETRY_H

#include <stddef.h>

#include <jansson.h>

#include "pyjobd/job.h"

/* Names in "on" / "not_on", and the longest name. */
#define API_RETRY_MAX_NAMES 64
#define API_RETRY_NAME_MAX 200
/* Backoff bounds, seconds. */
#define API_RETRY_INITIAL_MAX 3600.0
#define API_RETRY_DELAY_MAX 86400.0
#define API_RETRY_FACTOR_MAX 10.0
/* "max" when the object has none (capped by the server's --max-retries-limit). */
#define API_RETRY_DEFAULT_MAX 3

/* Reads obj's "retry" (absent or null: nothing changes) into spec->retry,
 * spec->max_retries ("max") and spec->retry_on_timeout ("on_timeout"). limit: the
 * server's --max-retries-limit. 0, -EINVAL with the detail naming the field, -ENOMEM. */
int api__job_retry_from_json(json_t *obj, unsigned limit, const char *where, struct job_spec *spec,
                             char *detail, size_t len);

#endif
