/*
 * blob.c — reference-counted immutable byte buffers (include/pyjobd/blob.h).
 * One allocation per blob: the header and the bytes live together.
 */
#include "pyjobd/blob.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct blob {
    atomic_uint refs;
    size_t len;
    uint8_t data[];
};

struct blob *blob_new(size_t len)
{
    if (len > SIZE_MAX - sizeof(struct blob) - 1)
        return NULL;
    /* One spare byte keeps the data NUL-terminated, handy for text blobs. */
    struct blob *b = malloc(sizeof(*b) + len + 1);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    b->data[len] = 0;
    return b;
}

struct blob *blob_new_copy(const void *data, size_t len)
{
    struct blob *b = blob_new(len);
    if (b && len)
        memcpy(b->data, data, len);
    return b;
}

struct blob *blob_ref(struct blob *b)
{
    if (b)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void blob_unref(struct blob *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

const uint8_t *blob_data(const struct blob *b)
{
    return b->data;
}

uint8_t *blob_mutable_data(struct blob *b)
{
    return b->data;
}

size_t blob_len(const struct blob *b)
{
    return b->len;
}

void blob_truncate(struct blob *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->data[len] = 0;
    }
}
