/*
 * retry_match.h — whether a raised exception is one the job's retry policy retries:
 * the worker's half of FRAME_TAG_RETRY_ON / RETRY_NOT_ON / RETRYABLE (frame.h). The
 * server never unpickles anything, so only the worker can look at an exception's class.
 */
#ifndef PYJOBD_WORKER_RETRY_MATCH_H
#define PYJOBD_WORKER_RETRY_MATCH_H

#include <Python.h>

#include "pyjobd/frame.h"

/* What is looked at (the rest is ignored; the server validates policies too). */
#define RETRY_MAX_NAMES 64       /* names per list: the first 64 '\n'-separated ones */
#define RETRY_MAX_NAME_BYTES 256 /* a longer name matches nothing */
#define RETRY_MAX_MRO 256        /* classes of the MRO: the first 256 */

/* A job's retry policy as its frame carries it: the fields borrow the job frame. */
struct worker_retry_policy {
    struct frame_field on, not_on;
    int has_on, has_not_on; /* frame_find_field's answer: 1 present, 0 absent */
};

/*
 * 1 when some class of type(exc)'s MRO matches a name in `on` and none matches a name in
 * `not_on`; 0 otherwise, and always without `on` (has_on 0). A class matches a name
 * equal to f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__ or cls.__name__.
 *
 * The MRO is the one the interpreter uses (tp_mro, what `except` matches against), not
 * whatever a metaclass makes type(exc).__mro__ answer. A class any of whose three
 * attributes is not a str, or raises when read (they are read with getattr, which may
 * run the job's code), or cannot be encoded as UTF-8, matches nothing. A field that is
 * not valid UTF-8 matches nothing. exc may be NULL (0). Call with no Python error set;
 * leaves none set. Needs the GIL.
 */
int worker_retry_matches(PyObject *exc, const struct frame_field *on, int has_on,
                         const struct frame_field *not_on, int has_not_on);

#endif
