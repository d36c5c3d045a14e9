/*
 * job_request.h — validation of a POST /v1/jobs body into a job_spec (api-internal).
 */
#ifndef PYJOBD_API_JOB_REQUEST_H
#define PYJOBD_API_JOB_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/job.h"

/* Largest accepted "timeout", seconds (30 days). */
#define API_JOB_TIMEOUT_MAX (30.0 * 24 * 3600)

/*
 * Parses and validates body[0..len). A pure function: no pool, no globals.
 * On success returns 0 and fills *spec (new blob references; the caller releases it
 * with job_spec_release). On failure *spec is left zeroed and returns -EINVAL with a
 * one-sentence explanation in detail[0..detail_len) (what is wrong and how to fix
 * it), or -ENOMEM.
 */
int api__job_request_parse(const uint8_t *body, size_t len, struct job_spec *spec, char *detail,
                           size_t detail_len);

#endif
