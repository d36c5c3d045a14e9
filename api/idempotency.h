/*
 * idempotency.h — Idempotency-Keys of job requests (api-internal, pure): what a valid
 * key is, and the digest that says whether two requests are "the same body".
 */
#ifndef PYJOBD_API_IDEMPOTENCY_H
#define PYJOBD_API_IDEMPOTENCY_H

#include <stddef.h>

#include <jansson.h>

#include "pyjobd/job.h"

/* The header a single POST /v1/jobs carries its key in, and a batch item's field. */
#define API_IDEM_HEADER "Idempotency-Key"
#define API_IDEM_FIELD "idempotency_key"

/*
 * Checks a key: 1 to JOB_IDEM_KEY_MAX bytes, each printable ASCII other than the space
 * (0x21-0x7E). what names where it came from in the detail ("header 'Idempotency-Key'",
 * "jobs[3]: field 'idempotency_key'"). 0 or -EINVAL with one sentence in detail.
 */
int api__idem_key_check(const char *key, const char *what, char *detail, size_t len);

/*
 * Gives spec the key (copied into spec->idem_key, which job_spec_release frees) and the
 * SHA-256 of obj, the request as parsed, in canonical JSON (compact, keys sorted)
 * without its "idempotency_key" member: whitespace, member order and whether the key
 * came as the header or the field do not change it. 0 or -ENOMEM.
 */
int api__idem_attach(json_t *obj, const char *key, struct job_spec *spec);

/*
 * A job request's "idempotency_key" member, if any: checked and attached. 0, -EINVAL
 * (detail prefixed with where), -ENOMEM.
 */
int api__idem_from_field(json_t *obj, const char *where, struct job_spec *spec, char *detail,
                         size_t len);

#endif
