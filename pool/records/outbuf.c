/*
 * outbuf.c — the captured tail of one output stream of a job: appending keeps the
 * last `max` bytes and counts what it dropped from the front.
 */
#include "records.h"

#include <stdlib.h>
#include <string.h>

void pool__outbuf_append(struct outbuf *o, const uint8_t *data, size_t len, size_t max)
{
    if (len >= max) {
        o->dropped += o->len + (len - max);
        data += len - max;
        len = max;
        o->len = 0;
    } else if (o->len + len > max) {
        size_t drop = o->len + len - max;
        memmove(o->data, o->data + drop, o->len - drop);
        o->len -= drop;
        o->dropped += drop;
    }
    if (!len)
        return;
    if (o->cap - o->len < len) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap - o->len < len)
            cap *= 2;
        if (cap > max)
            cap = max;
        uint8_t *d = realloc(o->data, cap);
        if (!d) {
            o->dropped += len;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, data, len);
    o->len += len;
}

void pool__outbuf_free(struct outbuf *o)
{
    free(o->data);
    memset(o, 0, sizeof(*o));
}
