/*
 * internal.h — what the files of api/ share with each other and nothing else.
 */
#ifndef PYJOBD_API_INTERNAL_H
#define PYJOBD_API_INTERNAL_H

#include <stdint.h>

#include <jansson.h>

#include "pyjobd/api.h"
#include "pyjobd/job.h"

/*
 * A pending long-poll. Plain data (no pool references), so freeing it is always a
 * free(): api_response_release() can drop one that was never started or whose wake
 * already ran.
 */
struct api_wait {
    char id[JOB_ID_LEN + 1];
    int64_t deadline_ms; /* pool_now_ms() clock */
    int status;          /* what to answer once woken: 201 (with Location) or 200 */
};

/* The HTTP status for a negative errno from the pool or a parser (the one mapping). */
int api__status_from_errno(int err);

/* Standard reason phrase for an HTTP status ("Not Found"). */
const char *api__reason_phrase(int status);

/*
 * Fills resp with obj serialized (compact, then "\n") as content_type, with status.
 * Steals the reference to obj (NULL is treated as out of memory: a 500 problem).
 */
void api__respond_json(struct api_response *resp, int status, json_t *obj,
                       const char *content_type);

#endif
