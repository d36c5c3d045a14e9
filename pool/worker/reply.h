/*
 * reply.h — a job's outcome as its one reply frame: the result, or an error with the
 * exception's type, text, traceback and pickle, within the server's limits
 * (--max-result-bytes, and the frame limit it implies).
 */
#ifndef PYJOBD_WORKER_REPLY_H
#define PYJOBD_WORKER_REPLY_H

#include <Python.h>

#include "interp.h"
#include "retry_match.h"
#include "pyjobd/frame.h"

/* Longest texts a reply carries, in characters (head and tail kept, the middle cut):
 * with the largest allowed pickle they still fit the server's frame limit, which is
 * --max-result-bytes + 1 MiB. */
#define REPLY_MAX_MESSAGE 16384
#define REPLY_MAX_TRACEBACK 131072
#define REPLY_MAX_EXC_TYPE 1024

/*
 * Starts a FRAME_ERROR of error_type. message (may be NULL: a generic text) is the
 * MESSAGE; exc (may be NULL) supplies EXC_TYPE and TRACEBACK, exc_pickle (may be NULL)
 * EXCEPTION. Texts are cut as above. Borrows everything; leaves no Python error set.
 */
void worker_reply_error(const struct worker_py *py, struct frame_builder *b, const char *error_type,
                        PyObject *message, PyObject *exc, PyObject *exc_pickle);

/*
 * The call returned `result`: a FRAME_RESULT carrying RESULT (a pickle) or, with json,
 * RESULT_JSON (JSON text); unpicklable_result or unjsonable_result when the value
 * cannot be encoded; result_too_large, naming both sizes, when its encoding is longer
 * than py->max_result_bytes.
 */
void worker_reply_result(const struct worker_py *py, struct frame_builder *b, PyObject *result,
                         int json);

/*
 * The call raised (the exception is pending): an "exception" reply. Its pickle is left
 * out (and the message says why) when it cannot be pickled and unpickled again, or
 * when it is longer than py->max_result_bytes. With a MemoryError the OOM reserve is
 * given up first and the traceback's frames are cleared, so that the reply can be
 * built.
 *
 * With retry (may be NULL: no policy), the reply carries RETRYABLE when the exception
 * matches the job's policy (worker_retry_matches).
 */
void worker_reply_exception(struct worker_py *py, struct frame_builder *b,
                            const struct worker_retry_policy *retry);

#endif
