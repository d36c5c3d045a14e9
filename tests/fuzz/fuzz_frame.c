/*
 * fuzz_frame.c — libFuzzer harness for the worker protocol decoder (lib/frame.c).
 *
 * The input is a byte stream as it would arrive on a worker's socket. It is cut
 * into frames with frame_decode() exactly as the supervisor does (decode, consume,
 * repeat), and every frame's fields are walked with frame_next_field() and looked
 * up with frame_find_field(). The first input byte picks max_payload so that the
 * -EMSGSIZE path is reached too. Invariants checked (abort on violation):
 *   - a decoded frame lies inside the buffer, and its size is header + payload;
 *   - every field lies inside its frame's payload, the cursor only moves forward;
 *   - frame_find_field() agrees with a linear walk (same first field, same error);
 *   - re-encoding the fields with frame_builder gives back the same frame bytes
 *     when the walk ended cleanly.
 */
#include "pyjobd/frame.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fields(const struct frame *f)
{
    size_t cursor = 0;
    struct frame_field fld;
    int rc;
    struct frame_builder b;
    frame_builder_init(&b, f->type);
    /* Tags seen, to cross-check frame_find_field on a few of them. */
    uint32_t tags[8];
    size_t ntags = 0;
    while ((rc = frame_next_field(f, &cursor, &fld)) == 1) {
        CHECK(fld.data >= f->payload);
        CHECK((size_t)(fld.data - f->payload) + fld.len <= f->len);
        CHECK(cursor == (size_t)(fld.data - f->payload) + fld.len);
        CHECK(cursor <= f->len);
        frame_builder_add(&b, fld.tag, fld.data, fld.len);
        if (ntags < sizeof(tags) / sizeof(*tags))
            tags[ntags++] = fld.tag;
    }
    CHECK(rc == 0 || rc == -EPROTO);
    CHECK(rc != 0 || cursor == f->len);

    for (size_t i = 0; i < ntags; i++) {
        struct frame_field found;
        CHECK(frame_find_field(f, tags[i], &found) == 1);
        CHECK(found.tag == tags[i]);
        CHECK(found.data >= f->payload && (size_t)(found.data - f->payload) + found.len <= f->len);
    }
    /* A tag that is absent: the walk's own end result (0 or -EPROTO). */
    uint32_t absent = 0xFFFFFFFFu;
    int seen = 0;
    for (size_t i = 0; i < ntags; i++)
        seen |= tags[i] == absent;
    if (!seen && ntags < sizeof(tags) / sizeof(*tags)) {
        struct frame_field found;
        CHECK(frame_find_field(f, absent, &found) == rc);
    }

    uint8_t *out;
    size_t out_len;
    if (frame_builder_finish(&b, &out, &out_len) == 0) {
        if (rc == 0) {
            CHECK(out_len == FRAME_HEADER_SIZE + f->len);
            CHECK(memcmp(out + FRAME_HEADER_SIZE, f->payload, f->len) == 0);
            struct frame again;
            CHECK(frame_decode(out, out_len, f->len, &again) == (long)out_len);
            CHECK(again.type == f->type && again.len == f->len);
        }
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t limits[] = {0, 8, 64, 4096, SIZE_MAX};
    size_t max_payload = limits[data[0] % (sizeof(limits) / sizeof(*limits))];
    data++;
    size--;

    /* Copy into an exact-size heap buffer so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    size_t off = 0;
    for (;;) {
        struct frame f;
        long n = frame_decode(buf + off, size - off, max_payload, &f);
        if (n == -EAGAIN || n == -EMSGSIZE)
            break;
        CHECK(n >= (long)FRAME_HEADER_SIZE);
        CHECK((size_t)n <= size - off);
        CHECK((size_t)n == FRAME_HEADER_SIZE + f.len);
        CHECK(f.len <= max_payload);
        CHECK(f.payload == buf + off + FRAME_HEADER_SIZE);
        check_fields(&f);
        off += (size_t)n;
    }
    free(buf);
    return 0;
}
