/*
 * fuzz_request.c — libFuzzer harness for the POST /v1/jobs body validator
 * (api__job_request_parse in api/job_request.c: JSON → struct job_spec).
 *
 * Input: byte 0 picks the limits (none, or a python_match mode with workers on
 * 3.11.7 and a max_retries limit of 0..7) and the size of the detail buffer; the
 * rest is the request body. Invariants (abort on violation):
 *   - the result is 0, -EINVAL or -ENOMEM;
 *   - on failure the spec is all zero and (for -EINVAL) detail holds one non-empty,
 *     NUL-terminated sentence within its buffer;
 *   - on success the spec is sane: a non-empty callable, args/json_args and
 *     kwargs/json_kwargs never both set, 0 <= timeout <= API_JOB_TIMEOUT_MAX,
 *     max_retries within the limit, metadata (if any) valid JSON of at most
 *     API_METADATA_MAX_BYTES;
 *   - the batch form (api__job_request_from_json with a "where" prefix) agrees.
 * The spec is released on every path (LeakSanitizer checks it).
 */
#include "job_request.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pyjobd/blob.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int spec_is_zero(const struct job_spec *s)
{
    static const struct job_spec zero;
    return memcmp(s, &zero, sizeof(zero)) == 0;
}

static void check_spec(const struct job_spec *s, unsigned retries_limit)
{
    CHECK(s->callable && blob_len(s->callable) > 0);
    CHECK(!(s->args && s->json_args));
    CHECK(!(s->kwargs && s->json_kwargs));
    CHECK(!s->args || blob_len(s->args) > 0);
    CHECK(!s->kwargs || blob_len(s->kwargs) > 0);
    CHECK(isfinite(s->timeout) && s->timeout >= 0 && s->timeout <= API_JOB_TIMEOUT_MAX);
    CHECK(s->max_retries <= retries_limit);
    CHECK(s->retry_on_timeout == 0 || s->retry_on_timeout == 1);
    if (s->metadata) {
        size_t n = strlen(s->metadata);
        CHECK(n <= API_METADATA_MAX_BYTES);
        json_t *m = json_loads(s->metadata, JSON_DECODE_ANY, NULL);
        CHECK(m && json_is_object(m));
        json_decref(m);
    }
}

static void check_failure(int rc, const struct job_spec *spec, const char *detail, size_t len)
{
    CHECK(spec_is_zero(spec));
    CHECK(rc == -EINVAL || rc == -ENOMEM);
    if (rc == -EINVAL && len > 0) {
        CHECK(memchr(detail, '\0', len) != NULL);
        CHECK(len == 1 || detail[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t knobs = data[0];
    const uint8_t *body = data + 1;
    size_t body_len = size - 1;

    struct api__job_limits lim = {.max_retries_limit = knobs & 7,
                                  .python_match = (enum api_python_match)((knobs >> 3) % 3)};
    strcpy(lim.workers_python, (knobs & 0x40) ? "3.11.7" : "");
    const struct api__job_limits *limp = (knobs & 0x80) ? &lim : NULL;
    unsigned retries_limit = limp ? lim.max_retries_limit : API_DEFAULT_MAX_RETRIES_LIMIT;
    /* Mostly the server's size; sometimes tiny, to check truncation. */
    size_t detail_len = (knobs & 0x30) == 0x30 ? (size_t)(knobs & 7) + 1 : 512;

    /* Exact-size copy: a read past the body is caught by ASan. */
    uint8_t *copy = malloc(body_len ? body_len : 1);
    char *detail = malloc(detail_len);
    if (!copy || !detail) {
        free(copy);
        free(detail);
        return 0;
    }
    memcpy(copy, body, body_len);

    struct job_spec spec;
    memset(detail, 0x5A, detail_len);
    int rc = api__job_request_parse(copy, body_len, limp, &spec, detail, detail_len);
    if (rc == 0)
        check_spec(&spec, retries_limit);
    else
        check_failure(rc, &spec, detail, detail_len);
    job_spec_release(&spec);

    /* The same object as one element of a batch. */
    json_t *root = json_loadb((const char *)copy, body_len, JSON_REJECT_DUPLICATES, NULL);
    if (root) {
        struct job_spec spec2;
        memset(detail, 0x5A, detail_len);
        int rc2 = api__job_request_from_json(root, limp, "jobs[7]: ", &spec2, detail, detail_len);
        if (rc == 0)
            CHECK(rc2 == 0 || rc2 == -ENOMEM);
        if (rc2 == 0)
            check_spec(&spec2, retries_limit);
        else
            check_failure(rc2, &spec2, detail, detail_len);
        job_spec_release(&spec2);
        json_decref(root);
    }
    free(detail);
    free(copy);
    return 0;
}
