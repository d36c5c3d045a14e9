/*
 * body.h — building a response body in parts (struct api_body_part): JSON text made
 * with jansson, and between the texts the results themselves, as references to their
 * blobs. A job's result of size S served to N clients costs S (the job's own blob)
 * plus what each connection has in flight, never a copy per client.
 */
#ifndef PYJOBD_API_BODY_H
#define PYJOBD_API_BODY_H

#include <stddef.h>

#include "pyjobd/api.h"
#include "pyjobd/job.h"

struct api__body {
    struct api_body_part *parts;
    size_t n, cap;
    int failed; /* out of memory: finish answers 503 */
};

void api__body_text(struct api__body *b, const char *text, size_t len);
static inline void api__body_str(struct api__body *b, const char *s);
/* A blob's bytes (takes a reference), as they are or in base64. */
void api__body_blob(struct api__body *b, struct blob *blob, enum api_part_kind kind);

/* The job's JSON object, with its result ("result": base64 of the pickle, or
 * "result_json": the JSON text, checked) when with_result and it has one. */
void api__body_job(struct api__body *b, const struct job_view *v, int with_result);

/* The body becomes resp's (status, content type): 503 problem if anything failed. */
void api__body_finish(struct api__body *b, struct api_response *resp, int status,
                      const char *content_type);
void api__body_release(struct api__body *b); /* after an error, instead of finish */

/* Frees parts[0..n) and the array. */
void api__parts_free(struct api_body_part *parts, size_t n);

static inline void api__body_str(struct api__body *b, const char *s)
{
    api__body_text(b, s, __builtin_strlen(s));
}

#endif
