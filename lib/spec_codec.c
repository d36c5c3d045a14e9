/*
 * spec_codec.c — see include/pyjobd/spec_codec.h.
 */
#include "pyjobd/spec_codec.h"
#include "pyjobd/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_FRAME_TYPE 0x53504543u /* "SPEC" */

enum spec_tag {
    T_CALLABLE = 1,
    T_ARGS,
    T_KWARGS,
    T_JSON_ARGS,
    T_JSON_KWARGS,
    T_RESULT_JSON,
    T_TIMEOUT,
    T_MAX_RETRIES,
    T_RETRY_ON_TIMEOUT,
    T_PRIORITY,
    T_SOFT_TIMEOUT,
    T_METADATA,
    T_RETRY_ON,
    T_RETRY_NOT_ON,
    T_RETRY_BACKOFF,
    T_RETRY_FLAGS,
    T_OWNER,
};

static void add_blob(struct frame_builder *b, uint32_t tag, const struct blob *x)
{
    if (x)
        frame_builder_add(b, tag, blob_data(x), blob_len(x));
}

static void add_i64(struct frame_builder *b, uint32_t tag, int64_t v)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)v >> (8 * i));
    frame_builder_add(b, tag, le, 8);
}

static void add_double(struct frame_builder *b, uint32_t tag, double d)
{
    int64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    add_i64(b, tag, bits);
}

int spec_encode(const struct job_spec *spec, uint8_t **out, size_t *len)
{
    struct frame_builder b;
    frame_builder_init(&b, SPEC_FRAME_TYPE);
    add_blob(&b, T_CALLABLE, spec->callable);
    add_blob(&b, T_ARGS, spec->args);
    add_blob(&b, T_KWARGS, spec->kwargs);
    add_blob(&b, T_JSON_ARGS, spec->json_args);
    add_blob(&b, T_JSON_KWARGS, spec->json_kwargs);
    add_i64(&b, T_RESULT_JSON, spec->result_json);
    add_double(&b, T_TIMEOUT, spec->timeout);
    add_i64(&b, T_MAX_RETRIES, spec->max_retries);
    add_i64(&b, T_RETRY_ON_TIMEOUT, spec->retry_on_timeout);
    add_i64(&b, T_PRIORITY, spec->priority);
    add_double(&b, T_SOFT_TIMEOUT, spec->soft_timeout);
    if (spec->metadata)
        frame_builder_add_str(&b, T_METADATA, spec->metadata);
    if (spec->retry.on)
        frame_builder_add_str(&b, T_RETRY_ON, spec->retry.on);
    if (spec->retry.not_on)
        frame_builder_add_str(&b, T_RETRY_NOT_ON, spec->retry.not_on);
    double backoff[3] = {spec->retry.initial, spec->retry.factor, spec->retry.max_delay};
    for (int i = 0; i < 3; i++)
        add_double(&b, T_RETRY_BACKOFF, backoff[i]);
    add_i64(&b, T_RETRY_FLAGS,
            (spec->retry.jitter ? 1 : 0) | (spec->retry.no_crash ? 2 : 0) |
                (spec->retry.no_node_lost ? 4 : 0) | (spec->retry.given ? 8 : 0));
    frame_builder_add_str(&b, T_OWNER, spec->owner);
    return frame_builder_finish(&b, out, len) == 0 ? 0 : -ENOMEM;
}

static int64_t get_i64(const struct frame_field *f)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)f->data[i] << (8 * i);
    return (int64_t)v;
}

static double get_double(const struct frame_field *f)
{
    int64_t bits = get_i64(f);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static char *get_str(const struct frame_field *f)
{
    if (memchr(f->data, 0, f->len))
        return NULL;
    return strndup((const char *)f->data, f->len);
}

int spec_decode(const uint8_t *buf, size_t len, struct job_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    struct frame f;
    if (frame_decode(buf, len, len, &f) != (long)len || f.type != SPEC_FRAME_TYPE)
        return -EPROTO;
    struct blob **blobs[] = {NULL,          &spec->callable,  &spec->args,
                             &spec->kwargs, &spec->json_args, &spec->json_kwargs};
    size_t cursor = 0;
    int backoff = 0, rc = 0, got;
    struct frame_field fld;
    while (rc == 0 && (got = frame_next_field(&f, &cursor, &fld)) == 1) {
        int fixed = fld.tag >= T_RESULT_JSON && fld.tag <= T_SOFT_TIMEOUT;
        if ((fixed || fld.tag == T_RETRY_BACKOFF || fld.tag == T_RETRY_FLAGS) && fld.len != 8) {
            rc = -EPROTO;
            break;
        }
        char **str = fld.tag == T_METADATA       ? &spec->metadata
                     : fld.tag == T_RETRY_ON     ? &spec->retry.on
                     : fld.tag == T_RETRY_NOT_ON ? &spec->retry.not_on
                                                 : NULL;
        if (fld.tag >= T_CALLABLE && fld.tag <= T_JSON_KWARGS) {
            if (!(*blobs[fld.tag] = blob_new_copy(fld.data, fld.len)))
                rc = -ENOMEM;
        } else if (str) {
            if (!(*str = get_str(&fld)))
                rc = -EPROTO;
        } else if (fld.tag == T_OWNER) {
            if (fld.len >= sizeof(spec->owner) || memchr(fld.data, 0, fld.len))
                rc = -EPROTO;
            else
                memcpy(spec->owner, fld.data, fld.len);
        } else if (fld.tag == T_RESULT_JSON) {
            spec->result_json = get_i64(&fld) != 0;
        } else if (fld.tag == T_TIMEOUT) {
            spec->timeout = get_double(&fld);
        } else if (fld.tag == T_MAX_RETRIES) {
            spec->max_retries = (unsigned)get_i64(&fld);
        } else if (fld.tag == T_RETRY_ON_TIMEOUT) {
            spec->retry_on_timeout = get_i64(&fld) != 0;
        } else if (fld.tag == T_PRIORITY) {
            spec->priority = (int)get_i64(&fld);
        } else if (fld.tag == T_SOFT_TIMEOUT) {
            spec->soft_timeout = get_double(&fld);
        } else if (fld.tag == T_RETRY_BACKOFF && backoff < 3) {
            double *d[] = {&spec->retry.initial, &spec->retry.factor, &spec->retry.max_delay};
            *d[backoff++] = get_double(&fld);
        } else if (fld.tag == T_RETRY_FLAGS) {
            int64_t v = get_i64(&fld);
            spec->retry.jitter = (v & 1) != 0;
            spec->retry.no_crash = (v & 2) != 0;
            spec->retry.no_node_lost = (v & 4) != 0;
            spec->retry.given = (v & 8) != 0;
        }
        /* other tags: a later version's, ignored */
    }
    if (rc == 0 && (got < 0 || !spec->callable))
        rc = -EPROTO;
    if (rc != 0)
        job_spec_release(spec);
    return rc;
}
