/*
 * frame.h — the length-prefixed protocol between the supervisor and its workers.
 *
 * Every message on a worker's socketpair is a frame:
 *
 *     u32 payload_len (little-endian) | u32 type (little-endian) | payload
 *
 * and a payload is a sequence of fields, each
 *
 *     u32 tag (little-endian) | u32 len (little-endian) | len bytes
 *
 * Unknown tags are skipped by readers, so either side can grow new fields.
 * Bytes carried in fields are opaque here: pickles pass through the server
 * untouched and are only ever unpickled inside a worker.
 */
#ifndef PYJOBD_FRAME_H
#define PYJOBD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 8u
#define FRAME_FIELD_HEADER_SIZE 8u

enum frame_type {
    FRAME_JOB = 1,    /* server → worker: run this call */
    FRAME_HELLO = 2,  /* worker → server: booted, ready for jobs */
    FRAME_RESULT = 3, /* worker → server: the call returned */
    FRAME_ERROR = 4,  /* worker → server: the call (or its (un)pickling) failed */
};

enum frame_tag {
    /* FRAME_JOB */
    FRAME_TAG_CALLABLE = 1,      /* cloudpickle of the callable */
    FRAME_TAG_ARGS = 2,          /* cloudpickle of a tuple (optional) */
    FRAME_TAG_KWARGS = 3,        /* cloudpickle of a dict (optional) */
    FRAME_TAG_JSON_ARGS = 4,     /* JSON text of an array, instead of ARGS (optional) */
    FRAME_TAG_JSON_KWARGS = 5,   /* JSON text of an object, instead of KWARGS (optional) */
    FRAME_TAG_RESULT_FORMAT = 6, /* "json": reply with RESULT_JSON instead of RESULT */
    FRAME_TAG_ISOLATE = 7,       /* present (empty): run in a process forked for this job */
    FRAME_TAG_UID = 8,           /* u32 LE: run as this uid (and gid) of --uids (optional) */
    FRAME_TAG_SOFT_TIMEOUT = 9,  /* u32 LE ms > 0: raise pyjobd.SoftTimeout then (optional) */
    /* The job's retry policy (optional): exception class names, each a qualified name
     * ("mymod.TransientError") or a bare one ("ConnectionError"), separated by '\n'.
     * The worker matches a raised exception's MRO against them (see RETRYABLE). */
    FRAME_TAG_RETRY_ON = 12,
    FRAME_TAG_RETRY_NOT_ON = 13,
    /* FRAME_HELLO */
    FRAME_TAG_PYTHON_VERSION = 10,      /* platform.python_version() */
    FRAME_TAG_CLOUDPICKLE_VERSION = 11, /* cloudpickle.__version__ */
    /* FRAME_RESULT */
    FRAME_TAG_RESULT = 20,      /* cloudpickle of the return value */
    FRAME_TAG_RESULT_JSON = 21, /* json.dumps of the return value (RESULT_FORMAT "json") */
    /* FRAME_ERROR */
    /* "exception" | "invalid_payload" | "unpicklable_result" | "unjsonable_result" |
     * "result_too_large" */
    FRAME_TAG_ERROR_TYPE = 30,
    FRAME_TAG_MESSAGE = 31,   /* human-readable text */
    FRAME_TAG_EXC_TYPE = 32,  /* qualified name of the exception type, e.g. "ValueError" */
    FRAME_TAG_EXCEPTION = 33, /* cloudpickle of the exception object (optional) */
    FRAME_TAG_TRACEBACK = 34, /* formatted remote traceback */
    /* In an "exception" error: present (one byte, '1') when a class of the exception's
     * MRO is named in RETRY_ON and none in RETRY_NOT_ON. A job can forge it, which
     * gains it at most the retries its submitter allowed. */
    FRAME_TAG_RETRYABLE = 35,
};

/* A decoded frame. payload points into the caller's buffer (borrowed). */
struct frame {
    uint32_t type;
    uint32_t len;
    const uint8_t *payload;
};

/* One field of a frame. data points into the frame's payload (borrowed). */
struct frame_field {
    uint32_t tag;
    uint32_t len;
    const uint8_t *data;
};

/*
 * Decodes the frame at the start of buf[0..len).
 * Returns the number of bytes the frame occupies (header + payload) and fills *out;
 * -EAGAIN when buf holds only part of a frame (read more and call again);
 * -EMSGSIZE when the declared payload exceeds max_payload (the peer is broken or
 * oversteps a limit: drop the connection, without reading the payload).
 * Whenever buf holds a whole header, out->type and out->len are what it declares
 * (so the caller can size its buffer, or say what was refused), with out->payload
 * NULL unless the frame is complete; with less than a header they are 0.
 */
long frame_decode(const uint8_t *buf, size_t len, size_t max_payload, struct frame *out);

/*
 * Iterates the fields of f. *cursor starts at 0.
 * Returns 1 and fills *out for the next field, 0 at the end, -EPROTO when a field
 * runs past the end of the payload.
 */
int frame_next_field(const struct frame *f, size_t *cursor, struct frame_field *out);

/* Finds the first field with this tag. Returns 1 found, 0 absent, -EPROTO malformed. */
int frame_find_field(const struct frame *f, uint32_t tag, struct frame_field *out);

/* A growable buffer that assembles one frame. */
struct frame_builder {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int failed; /* set when an allocation failed; frame_builder_finish then fails */
};

/* Starts a frame of the given type. */
void frame_builder_init(struct frame_builder *b, uint32_t type);

/* Appends one field (copies data). */
void frame_builder_add(struct frame_builder *b, uint32_t tag, const void *data, size_t len);

/* Appends one field whose value is a NUL-terminated string (without the NUL). */
void frame_builder_add_str(struct frame_builder *b, uint32_t tag, const char *s);

/*
 * Writes the header's length. On success returns 0 and hands the buffer to the
 * caller (*out, *out_len; caller frees with free()); the builder is empty again.
 * Returns -ENOMEM if any step failed (the builder's memory is released) and
 * -EMSGSIZE if the payload does not fit in 32 bits.
 */
int frame_builder_finish(struct frame_builder *b, uint8_t **out, size_t *out_len);

/* Releases the builder's buffer without producing a frame. Safe to call twice. */
void frame_builder_reset(struct frame_builder *b);

#endif
