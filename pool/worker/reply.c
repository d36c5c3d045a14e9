/*
 * reply.c — a job's outcome as its one reply frame (see reply.h). What a job returns or
 * raises is encoded here, and only here, so this is where the server's limits are
 * kept: a result longer than --max-result-bytes is never sent (result_too_large), an
 * exception pickle that long is left out, and every text is cut to a length that
 * keeps the frame within the server's frame limit. Like the rest of the runner, each
 * step falls back to something simpler rather than raise, and every reference taken
 * is released on every path.
 */
#include <Python.h>

#include "reply.h"
#include "pyexc.h"
#include "pyjobd/job.h"

#include <stdio.h>
#include <sys/mman.h>

/* str, or its first and last max/2 characters around a note of what was cut; a new
 * reference (NULL only when str is NULL or memory ran out). */
static PyObject *reply_clip(PyObject *str, Py_ssize_t max)
{
    if (!str || !PyUnicode_Check(str))
        return Py_XNewRef(str);
    Py_ssize_t n = PyUnicode_GET_LENGTH(str);
    if (n <= max)
        return Py_NewRef(str);
    Py_ssize_t half = max / 2;
    PyObject *head = PyUnicode_Substring(str, 0, half);
    PyObject *tail = head ? PyUnicode_Substring(str, n - half, n) : NULL;
    PyObject *out = tail ? PyUnicode_FromFormat("%U\n[... %zd characters cut ...]\n%U", head,
                                                n - 2 * half, tail)
                         : NULL;
    Py_XDECREF(head);
    Py_XDECREF(tail);
    return out;
}

/* Appends str, cut to max characters, as UTF-8, escaping lone surrogates (so any str
 * can be sent), or `fallback` when str is NULL or cannot be encoded. */
static void reply_add_text(struct frame_builder *b, uint32_t tag, PyObject *str, Py_ssize_t max,
                           const char *fallback)
{
    PyObject *clipped = reply_clip(str, max);
    PyObject *utf8 =
        clipped ? PyUnicode_AsEncodedString(clipped, "utf-8", "backslashreplace") : NULL;
    Py_XDECREF(clipped);
    if (utf8) {
        frame_builder_add(b, tag, PyBytes_AS_STRING(utf8), (size_t)PyBytes_GET_SIZE(utf8));
        Py_DECREF(utf8);
    } else {
        PyErr_Clear();
        frame_builder_add_str(b, tag, fallback);
    }
}

/* "".join(traceback.format_exception(exc)); a new reference or NULL. */
static PyObject *reply_traceback(const struct worker_py *py, PyObject *exc)
{
    PyObject *lines = PyObject_CallOneArg(py->format_exception, exc);
    PyObject *empty = lines ? PyUnicode_FromStringAndSize("", 0) : NULL;
    PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    PyErr_Clear();
    return text;
}

void worker_reply_error(const struct worker_py *py, struct frame_builder *b, const char *error_type,
                        PyObject *message, PyObject *exc, PyObject *exc_pickle)
{
    frame_builder_init(b, FRAME_ERROR);
    frame_builder_add_str(b, FRAME_TAG_ERROR_TYPE, error_type);
    reply_add_text(b, FRAME_TAG_MESSAGE, message, REPLY_MAX_MESSAGE,
                   "the job failed (its message could not be built)");
    if (exc) {
        PyObject *name = worker_exc_type_name(Py_TYPE(exc));
        reply_add_text(b, FRAME_TAG_EXC_TYPE, name, REPLY_MAX_EXC_TYPE, Py_TYPE(exc)->tp_name);
        Py_XDECREF(name);
        PyObject *tb = reply_traceback(py, exc);
        reply_add_text(b, FRAME_TAG_TRACEBACK, tb, REPLY_MAX_TRACEBACK,
                       "(the traceback could not be formatted)\n");
        Py_XDECREF(tb);
    }
    if (exc_pickle)
        frame_builder_add(b, FRAME_TAG_EXCEPTION, PyBytes_AS_STRING(exc_pickle),
                          (size_t)PyBytes_GET_SIZE(exc_pickle));
    PyErr_Clear();
}

/* 1 when len bytes are more than the server takes (--max-result-bytes). */
static int reply_too_long(const struct worker_py *py, Py_ssize_t len)
{
    return py->max_result_bytes && (size_t)len > py->max_result_bytes;
}

/*
 * Pickles exc for the client, checking that it also unpickles: an exception
 * class whose __init__ takes other arguments than its args would otherwise blow
 * up in the client's Future.result(). Returns the pickle, or NULL and *note (a
 * new str, or NULL) saying why not: it failed, or it is longer than the server takes.
 */
static PyObject *reply_pickle_exception(const struct worker_py *py, PyObject *exc, PyObject **note)
{
    const char *failed = "could not be pickled";
    PyObject *data = PyObject_CallOneArg(py->dumps, exc);
    if (data && PyBytes_Check(data) && reply_too_long(py, PyBytes_GET_SIZE(data))) {
        char size[JOB_BYTES_TEXT], limit[JOB_BYTES_TEXT];
        *note = PyUnicode_FromFormat(
            "the exception object pickled to %s, more than the server's limit of %s "
            "(--max-result-bytes), so only its type, text and traceback are returned",
            job_bytes_text((uint64_t)PyBytes_GET_SIZE(data), size),
            job_bytes_text(py->max_result_bytes, limit));
        Py_DECREF(data);
        PyErr_Clear();
        return NULL;
    }
    if (data && PyBytes_Check(data)) {
        PyObject *back = PyObject_CallOneArg(py->loads, data);
        if (back) {
            Py_DECREF(back);
            return data;
        }
        failed = "could not be unpickled";
    }
    Py_XDECREF(data);
    PyObject *why = worker_exc_take();
    PyObject *line = why ? worker_exc_line(why) : NULL;
    *note = line ? PyUnicode_FromFormat("the exception object %s, so only its text and "
                                        "traceback are returned: %U",
                                        failed, line)
                 : PyUnicode_FromFormat("the exception object %s", failed);
    Py_XDECREF(line);
    Py_XDECREF(why);
    PyErr_Clear();
    return NULL;
}

/*
 * Frees the locals of the frames a MemoryError's traceback holds (frame.clear(),
 * as traceback.clear_frames does), for it and the exceptions chained to it: a job
 * that ran out of memory by growing a local list still owns all of it through
 * the traceback, and building the reply would then fail for want of memory too.
 * The traceback text needs only the code and line numbers, which stay.
 */
static void reply_release_frames(PyObject *exc)
{
    for (int depth = 0; exc && depth < 100; depth++) {
        PyObject *tb = PyException_GetTraceback(exc);
        while (tb && tb != Py_None) {
            PyObject *frame = PyObject_GetAttrString(tb, "tb_frame");
            PyObject *r = frame ? PyObject_CallMethod(frame, "clear", NULL) : NULL;
            Py_XDECREF(r);
            Py_XDECREF(frame);
            PyErr_Clear(); /* a frame still running (another thread's) stays */
            Py_SETREF(tb, PyObject_GetAttrString(tb, "tb_next"));
        }
        Py_XDECREF(tb);
        PyErr_Clear();
        PyObject *next = PyException_GetCause(exc);
        if (!next)
            next = PyException_GetContext(exc);
        Py_XDECREF(next); /* still referenced by exc */
        exc = next;
    }
}

void worker_reply_exception(struct worker_py *py, struct frame_builder *b,
                            const struct worker_retry_policy *retry)
{
    PyObject *exc = worker_exc_take();
    if (!exc) {
        /* Only a broken C extension returns NULL without an exception. */
        PyObject *msg = PyUnicode_FromString("the callable failed without raising an exception");
        worker_reply_error(py, b, "exception", msg, NULL, NULL);
        Py_XDECREF(msg);
        return;
    }
    int oom = PyErr_GivenExceptionMatches(exc, PyExc_MemoryError);
    if (oom && py->oom_reserve) {
        munmap(py->oom_reserve, WORKER_OOM_RESERVE);
        py->oom_reserve = NULL;
    }
    if (oom)
        reply_release_frames(exc);
    PyObject *note = NULL;
    PyObject *pickle = reply_pickle_exception(py, exc, &note);
    /* Cut before anything is appended, so that the notes survive a huge str(exc). */
    PyObject *line = worker_exc_line(exc);
    Py_XSETREF(line, reply_clip(line, REPLY_MAX_MESSAGE - 1024));
    if (line && oom && py->memory_limit)
        Py_SETREF(line, PyUnicode_FromFormat("%U (this worker's memory limit is %llu bytes: "
                                             "--worker-memory-limit)",
                                             line, py->memory_limit));
    PyObject *msg = line && note ? PyUnicode_FromFormat("%U (%U)", line, note) : Py_XNewRef(line);
    PyErr_Clear();
    int retryable = retry && worker_retry_matches(exc, &retry->on, retry->has_on, &retry->not_on,
                                                  retry->has_not_on);
    worker_reply_error(py, b, "exception", msg, exc, pickle);
    if (retryable)
        frame_builder_add(b, FRAME_TAG_RETRYABLE, "1", 1);
    Py_XDECREF(msg);
    Py_XDECREF(line);
    Py_XDECREF(note);
    Py_XDECREF(pickle);
    Py_DECREF(exc);
}

/* result_too_large for a value of `type` whose encoding is len bytes. */
static void reply_too_large(const struct worker_py *py, struct frame_builder *b, PyObject *type,
                            Py_ssize_t len, int json)
{
    char size[JOB_BYTES_TEXT], limit[JOB_BYTES_TEXT], text[640];
    snprintf(text, sizeof(text),
             "The job returned a result of %s (%zd bytes %s), larger than the server's limit "
             "of %s (%zu bytes: --max-result-bytes). Return less (write large outputs to "
             "shared storage and return their path) or ask the operator to raise the limit.",
             job_bytes_text((uint64_t)len, size), len, json ? "of JSON" : "pickled",
             job_bytes_text(py->max_result_bytes, limit), py->max_result_bytes);
    PyObject *msg = type ? PyUnicode_FromFormat("%s The return value was of type %U.", text, type)
                         : PyUnicode_FromString(text);
    worker_reply_error(py, b, "result_too_large", msg, NULL, NULL);
    Py_XDECREF(msg);
}

/* A value cloudpickle writes as the C pickler does (see interp_plain_dumps). */
static int reply_atomic(PyObject *v)
{
    return v == Py_None || PyBool_Check(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v) ||
           PyUnicode_CheckExact(v) || PyBytes_CheckExact(v);
}

void worker_reply_result(const struct worker_py *py, struct frame_builder *b, PyObject *result,
                         int json)
{
    PyObject *data;
    if (json) {
        PyObject *text = PyObject_CallOneArg(py->json_encode, result);
        data = text ? PyUnicode_AsUTF8String(text) : NULL;
        Py_XDECREF(text);
    } else if (py->plain_dumps && reply_atomic(result)) {
        PyObject *args[2] = {result, py->protocol};
        data = PyObject_Vectorcall(py->plain_dumps, args, 2, NULL);
    } else {
        data = PyObject_CallOneArg(py->dumps, result);
    }
    int fits = data && PyBytes_Check(data) &&
               (size_t)PyBytes_GET_SIZE(data) <= UINT32_MAX - FRAME_FIELD_HEADER_SIZE;
    if (fits && !reply_too_long(py, PyBytes_GET_SIZE(data))) {
        frame_builder_init(b, FRAME_RESULT);
        frame_builder_add(b, json ? FRAME_TAG_RESULT_JSON : FRAME_TAG_RESULT,
                          PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
        Py_DECREF(data);
        return;
    }
    if (data && PyBytes_Check(data) && reply_too_long(py, PyBytes_GET_SIZE(data))) {
        Py_ssize_t len = PyBytes_GET_SIZE(data);
        Py_DECREF(data); /* before the reply is built: it may be most of the memory */
        PyObject *name = worker_exc_type_name(Py_TYPE(result));
        reply_too_large(py, b, name, len, json);
        Py_XDECREF(name);
        return;
    }
    const char *failed = json ? "is not JSON-encodable" : "could not be pickled";
    PyObject *exc = worker_exc_take(); /* first: naming the type clears the error */
    PyObject *line = exc ? worker_exc_line(exc) : NULL;
    PyObject *type = worker_exc_type_name(Py_TYPE(result));
    PyObject *msg = NULL;
    if (type && line)
        msg = PyUnicode_FromFormat("the return value of type %U %s: %U", type, failed, line);
    else if (type && data && PyBytes_Check(data))
        msg = PyUnicode_FromFormat("the return value of type %U encoded to %zd bytes, more than "
                                   "a frame can carry (4 GiB)",
                                   type, PyBytes_GET_SIZE(data));
    else if (type)
        msg = PyUnicode_FromFormat("the return value of type %U %s", type, failed);
    PyErr_Clear();
    worker_reply_error(py, b, json ? "unjsonable_result" : "unpicklable_result", msg, exc, NULL);
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(line);
    Py_XDECREF(exc);
    Py_XDECREF(data);
}
