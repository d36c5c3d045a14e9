/*
 * job_request.h — validation of a job request (the body of POST /v1/jobs, or one
 * element of POST /v1/jobs/batch) into a job_spec (api-internal, pure).
 */
#ifndef PYJOBD_API_JOB_REQUEST_H
#define PYJOBD_API_JOB_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pyjobd/job.h"
#include "python_match.h"

/* Largest accepted "timeout", seconds (30 days). */
#define API_JOB_TIMEOUT_MAX (30.0 * 24 * 3600)

/* Largest "metadata" object, in bytes of compact JSON. */
#define API_METADATA_MAX_BYTES 4096

/* max_retries_limit when no limits are given. */
#define API_DEFAULT_MAX_RETRIES_LIMIT 3

/* The range of "priority" (higher runs first among one tenant's queued jobs). */
#define API_PRIORITY_MIN (-100)
#define API_PRIORITY_MAX 100

/* What a request is checked against besides its own shape. */
struct api__job_limits {
    unsigned max_retries_limit;
    enum api_python_match python_match;
    char workers_python[32]; /* the workers' platform.python_version(); "" = unknown */
    double default_timeout;  /* --default-timeout, for a request without one; 0 = none */
};

/*
 * Validates one job request object. where prefixes every detail (e.g. "jobs[17]: ";
 * "" for none). lim may be NULL: max_retries up to API_DEFAULT_MAX_RETRIES_LIMIT, no
 * Python version check and no default timeout (soft_timeout is then checked against
 * the request's own timeout only). A pure function: no pool, no globals.
 * On success returns 0 and fills *spec (new blob references and a malloc'd metadata;
 * the caller releases it with job_spec_release). On failure *spec is left zeroed and
 * returns -EINVAL with one sentence in detail[0..detail_len) (what is wrong and how to
 * fix it), or -ENOMEM.
 */
int api__job_request_from_json(json_t *obj, const struct api__job_limits *lim, const char *where,
                               struct job_spec *spec, char *detail, size_t detail_len);

/* Parses body[0..len) as JSON, then api__job_request_from_json(…, "", …). */
int api__job_request_parse(const uint8_t *body, size_t len, const struct api__job_limits *lim,
                           struct job_spec *spec, char *detail, size_t detail_len);

/* api__job_request_parse with the Idempotency-Key header's value (NULL: none, already
 * checked with api__idem_key_check): it is attached as api__idem_attach does; a body's
 * own "idempotency_key" must then be the same key (-EINVAL). */
int api__job_request_parse_keyed(const uint8_t *body, size_t len, const struct api__job_limits *lim,
                                 const char *key, struct job_spec *spec, char *detail,
                                 size_t detail_len);

#endif
