/*
 * frame.c — encoder and decoder for the worker protocol (see include/pyjobd/frame.h).
 * Pure functions over caller buffers: no I/O, no global state, so the same file
 * links into the server and into pyjobd-worker.
 */
#include "pyjobd/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

long frame_decode(const uint8_t *buf, size_t len, size_t max_payload, struct frame *out)
{
    out->type = out->len = 0;
    out->payload = NULL;
    if (len < FRAME_HEADER_SIZE)
        return -EAGAIN;
    uint32_t plen = get_u32(buf);
    out->len = plen;
    out->type = get_u32(buf + 4);
    if (plen > max_payload)
        return -EMSGSIZE;
    if (len - FRAME_HEADER_SIZE < plen)
        return -EAGAIN;
    out->payload = buf + FRAME_HEADER_SIZE;
    return (long)(FRAME_HEADER_SIZE + plen);
}

int frame_next_field(const struct frame *f, size_t *cursor, struct frame_field *out)
{
    size_t at = *cursor;
    if (at == f->len)
        return 0;
    if (at > f->len || f->len - at < FRAME_FIELD_HEADER_SIZE)
        return -EPROTO;
    uint32_t flen = get_u32(f->payload + at + 4);
    if (f->len - at - FRAME_FIELD_HEADER_SIZE < flen)
        return -EPROTO;
    out->tag = get_u32(f->payload + at);
    out->len = flen;
    out->data = f->payload + at + FRAME_FIELD_HEADER_SIZE;
    *cursor = at + FRAME_FIELD_HEADER_SIZE + flen;
    return 1;
}

int frame_find_field(const struct frame *f, uint32_t tag, struct frame_field *out)
{
    size_t cursor = 0;
    int rc;
    while ((rc = frame_next_field(f, &cursor, out)) == 1) {
        if (out->tag == tag)
            return 1;
    }
    return rc;
}

static int builder_reserve(struct frame_builder *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->buf, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->buf = p;
    b->cap = cap;
    return 0;
}

void frame_builder_init(struct frame_builder *b, uint32_t type)
{
    memset(b, 0, sizeof(*b));
    if (builder_reserve(b, FRAME_HEADER_SIZE) == 0) {
        put_u32(b->buf, 0);
        put_u32(b->buf + 4, type);
        b->len = FRAME_HEADER_SIZE;
    }
}

void frame_builder_add(struct frame_builder *b, uint32_t tag, const void *data, size_t len)
{
    if (len > UINT32_MAX) {
        b->failed = 1;
        return;
    }
    if (builder_reserve(b, FRAME_FIELD_HEADER_SIZE + len) != 0)
        return;
    put_u32(b->buf + b->len, tag);
    put_u32(b->buf + b->len + 4, (uint32_t)len);
    if (len)
        memcpy(b->buf + b->len + FRAME_FIELD_HEADER_SIZE, data, len);
    b->len += FRAME_FIELD_HEADER_SIZE + len;
}

void frame_builder_add_str(struct frame_builder *b, uint32_t tag, const char *s)
{
    frame_builder_add(b, tag, s, strlen(s));
}

void frame_builder_reset(struct frame_builder *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

int frame_builder_finish(struct frame_builder *b, uint8_t **out, size_t *out_len)
{
    if (b->failed || !b->buf) {
        frame_builder_reset(b);
        return -ENOMEM;
    }
    size_t plen = b->len - FRAME_HEADER_SIZE;
    if (plen > UINT32_MAX) {
        frame_builder_reset(b);
        return -EMSGSIZE;
    }
    put_u32(b->buf, (uint32_t)plen);
    *out = b->buf;
    *out_len = b->len;
    memset(b, 0, sizeof(*b));
    return 0;
}
