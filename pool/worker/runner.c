/*
 * runner.c — runs one job: unpickle the callable and its arguments, call it,
 * pickle what came out, and describe it in exactly one reply frame.
 *
 * Nothing the job does may end the worker: every exception, SystemExit and
 * KeyboardInterrupt included, becomes a FRAME_ERROR. Every reference taken here
 * is released before returning, whichever path was taken, so that thousands of
 * jobs leave the worker's memory where it was (objects the job stored in module
 * globals are the job's business). The error indicator is clear on return.
 */
#include <Python.h>

#include "runner.h"
#include "interp.h"
#include "pyexc.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The unpickled call; each reference is owned, NULL until loaded. */
struct runner_call {
    PyObject *slot[3]; /* RUNNER_FN, RUNNER_ARGS, RUNNER_KWARGS */
    size_t from[3];    /* index in runner_parts of the field that filled each slot */
};
enum { RUNNER_FN, RUNNER_ARGS, RUNNER_KWARGS };

/* A job's input fields, in the order they are decoded. */
static const struct {
    uint32_t tag;
    const char *what; /* as named in messages (and in the REST request) */
    int slot;
    int json;         /* JSON text rather than a pickle */
    const char *kind; /* what was pickled by reference, for the ModuleNotFoundError hint */
} runner_parts[] = {
    {FRAME_TAG_CALLABLE, "callable", RUNNER_FN, 0, "function"},
    {FRAME_TAG_ARGS, "args", RUNNER_ARGS, 0, "value"},
    {FRAME_TAG_KWARGS, "kwargs", RUNNER_KWARGS, 0, "value"},
    {FRAME_TAG_JSON_ARGS, "json_args", RUNNER_ARGS, 1, NULL},
    {FRAME_TAG_JSON_KWARGS, "json_kwargs", RUNNER_KWARGS, 1, NULL},
};
#define RUNNER_NPARTS (sizeof(runner_parts) / sizeof(runner_parts[0]))

/* Appends str as UTF-8, escaping lone surrogates (so any str can be sent), or
 * `fallback` when str is NULL or cannot be encoded. */
static void runner_add_text(struct frame_builder *b, uint32_t tag, PyObject *str,
                            const char *fallback)
{
    PyObject *utf8 = str ? PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace") : NULL;
    if (utf8) {
        frame_builder_add(b, tag, PyBytes_AS_STRING(utf8), (size_t)PyBytes_GET_SIZE(utf8));
        Py_DECREF(utf8);
    } else {
        PyErr_Clear();
        frame_builder_add_str(b, tag, fallback);
    }
}

/* "".join(traceback.format_exception(exc)); a new reference or NULL. */
static PyObject *runner_traceback(const struct worker_py *py, PyObject *exc)
{
    PyObject *lines = PyObject_CallOneArg(py->format_exception, exc);
    PyObject *empty = lines ? PyUnicode_FromStringAndSize("", 0) : NULL;
    PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    PyErr_Clear();
    return text;
}

/*
 * Starts a FRAME_ERROR. exc (may be NULL) supplies EXC_TYPE and TRACEBACK,
 * exc_pickle (may be NULL) EXCEPTION. Borrows everything.
 */
static void runner_reply_error(const struct worker_py *py, struct frame_builder *b,
                               const char *error_type, PyObject *message, PyObject *exc,
                               PyObject *exc_pickle)
{
    frame_builder_init(b, FRAME_ERROR);
    frame_builder_add_str(b, FRAME_TAG_ERROR_TYPE, error_type);
    runner_add_text(b, FRAME_TAG_MESSAGE, message,
                    "the job failed (its message could not be built)");
    if (exc) {
        PyObject *name = worker_exc_type_name(Py_TYPE(exc));
        runner_add_text(b, FRAME_TAG_EXC_TYPE, name, Py_TYPE(exc)->tp_name);
        Py_XDECREF(name);
        PyObject *tb = runner_traceback(py, exc);
        runner_add_text(b, FRAME_TAG_TRACEBACK, tb, "(the traceback could not be formatted)\n");
        Py_XDECREF(tb);
    }
    if (exc_pickle)
        frame_builder_add(b, FRAME_TAG_EXCEPTION, PyBytes_AS_STRING(exc_pickle),
                          (size_t)PyBytes_GET_SIZE(exc_pickle));
    PyErr_Clear();
}

/* invalid_payload without an exception; steals message (may be NULL). */
static void runner_reply_invalid(const struct worker_py *py, struct frame_builder *b,
                                 PyObject *message)
{
    PyErr_Clear();
    runner_reply_error(py, b, "invalid_payload", message, NULL, NULL);
    Py_XDECREF(message);
}

/* invalid_payload for part i failing to decode with the pending exception. */
static void runner_reply_unpickle_failed(const struct worker_py *py, struct frame_builder *b,
                                         size_t i)
{
    PyObject *exc = worker_exc_take();
    PyObject *line = exc ? worker_exc_line(exc) : NULL;
    PyObject *msg = NULL;
    if (line && !runner_parts[i].json &&
        PyErr_GivenExceptionMatches(exc, PyExc_ModuleNotFoundError))
        msg = PyUnicode_FromFormat(
            "could not unpickle the %s: %U. The %s was pickled by reference to a module the "
            "worker cannot import; install the module on the server or pickle it by value "
            "(cloudpickle.register_pickle_by_value)",
            runner_parts[i].what, line, runner_parts[i].kind);
    else if (line)
        msg = PyUnicode_FromFormat("could not %s the %s: %U",
                                   runner_parts[i].json ? "decode" : "unpickle",
                                   runner_parts[i].what, line);
    PyErr_Clear();
    runner_reply_error(py, b, "invalid_payload", msg, exc, NULL);
    Py_XDECREF(msg);
    Py_XDECREF(line);
    Py_XDECREF(exc);
}

/* Decodes field f: a pickle through a memoryview slice of owner (no copy of the
 * bytes), JSON through a str (json.loads takes no memoryview; JSON args are small). */
static PyObject *runner_load(const struct worker_py *py, PyObject *owner,
                             const struct frame_field *f, int json)
{
    if (json) {
        PyObject *text = PyUnicode_DecodeUTF8((const char *)f->data, (Py_ssize_t)f->len, NULL);
        PyObject *obj = text ? PyObject_CallOneArg(py->json_loads, text) : NULL;
        Py_XDECREF(text);
        return obj;
    }
    PyObject *view = PyMemoryView_FromObject(owner);
    if (!view)
        return NULL;
    Py_ssize_t start = (const char *)f->data - PyBytes_AS_STRING(owner);
    PyObject *slice = PySequence_GetSlice(view, start, start + (Py_ssize_t)f->len);
    Py_DECREF(view);
    if (!slice)
        return NULL;
    PyObject *obj = PyObject_CallOneArg(py->loads, slice);
    Py_DECREF(slice);
    return obj;
}

/* Returns 1 when kwargs has a key that is not a str, after starting the reply. */
static int runner_bad_kwargs_key(const struct worker_py *py, struct frame_builder *b,
                                 PyObject *kwargs)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(kwargs, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            PyObject *name = worker_exc_type_name(Py_TYPE(key));
            runner_reply_invalid(
                py, b,
                name ? PyUnicode_FromFormat("kwargs keys must be strings, got %U", name) : NULL);
            Py_XDECREF(name);
            return 1;
        }
    }
    return 0;
}

/* The JSON name of a decoded value's kind, for messages about json_args/json_kwargs. */
static const char *runner_json_kind(PyObject *obj)
{
    if (PyDict_Check(obj))
        return "an object";
    if (PyList_Check(obj))
        return "an array";
    if (PyUnicode_Check(obj))
        return "a string";
    if (PyBool_Check(obj))
        return "a boolean";
    if (obj == Py_None)
        return "null";
    return "a number";
}

/* Starts invalid_payload when slot s holds the wrong type; returns 1 if it did. */
static int runner_bad_type(const struct worker_py *py, struct frame_builder *b,
                           const struct runner_call *c, int s)
{
    PyObject *obj = c->slot[s];
    const char *what = runner_parts[c->from[s]].what;
    if (runner_parts[c->from[s]].json) {
        int is_args = s == RUNNER_ARGS;
        if (is_args ? PyList_Check(obj) : PyDict_Check(obj))
            return 0;
        runner_reply_invalid(py, b,
                             PyUnicode_FromFormat("%s must be a JSON %s, got %s", what,
                                                  is_args ? "array" : "object",
                                                  runner_json_kind(obj)));
        return 1;
    }
    int is_args = s == RUNNER_ARGS;
    if (is_args ? PyTuple_Check(obj) : PyDict_Check(obj))
        return 0;
    PyObject *name = worker_exc_type_name(Py_TYPE(obj));
    runner_reply_invalid(py, b,
                         name ? PyUnicode_FromFormat("%s must unpickle to %s, got %U", what,
                                                     is_args ? "a tuple" : "a dict", name)
                              : NULL);
    Py_XDECREF(name);
    return 1;
}

/*
 * Decodes and checks the call. Returns 0 when c is ready, -1 after starting an
 * invalid_payload reply. The caller releases c either way.
 */
static int runner_prepare(const struct worker_py *py, PyObject *owner,
                          const struct frame_field *fields, const int *present,
                          struct runner_call *c, struct frame_builder *b)
{
    if (!present[0]) {
        runner_reply_invalid(py, b, PyUnicode_FromString("the job has no callable"));
        return -1;
    }
    for (size_t i = 0; i < RUNNER_NPARTS; i++) {
        int s = runner_parts[i].slot;
        if (!present[i])
            continue;
        if (c->slot[s]) {
            runner_reply_invalid(py, b,
                                 PyUnicode_FromFormat("%s and %s are mutually exclusive",
                                                      runner_parts[c->from[s]].what,
                                                      runner_parts[i].what));
            return -1;
        }
        c->slot[s] = runner_load(py, owner, &fields[i], runner_parts[i].json);
        c->from[s] = i;
        if (!c->slot[s]) {
            runner_reply_unpickle_failed(py, b, i);
            return -1;
        }
    }
    if (c->slot[RUNNER_ARGS] && runner_bad_type(py, b, c, RUNNER_ARGS))
        return -1;
    if (c->slot[RUNNER_KWARGS] && runner_bad_type(py, b, c, RUNNER_KWARGS))
        return -1;
    /* PyObject_Call wants a tuple: no args at all, or a JSON array, become one. */
    if (!c->slot[RUNNER_ARGS] || PyList_Check(c->slot[RUNNER_ARGS])) {
        PyObject *tuple =
            c->slot[RUNNER_ARGS] ? PySequence_Tuple(c->slot[RUNNER_ARGS]) : PyTuple_New(0);
        if (!tuple) {
            runner_reply_unpickle_failed(py, b, c->from[RUNNER_ARGS]);
            return -1;
        }
        Py_XSETREF(c->slot[RUNNER_ARGS], tuple);
    }
    if (c->slot[RUNNER_KWARGS] && runner_bad_kwargs_key(py, b, c->slot[RUNNER_KWARGS]))
        return -1;
    if (!PyCallable_Check(c->slot[RUNNER_FN])) {
        PyObject *name = worker_exc_type_name(Py_TYPE(c->slot[RUNNER_FN]));
        runner_reply_invalid(
            py, b,
            name ? PyUnicode_FromFormat("the callable unpickled to an object of type %U, "
                                        "which is not callable",
                                        name)
                 : NULL);
        Py_XDECREF(name);
        return -1;
    }
    return 0;
}

/*
 * Pickles exc for the client, checking that it also unpickles: an exception
 * class whose __init__ takes other arguments than its args would otherwise blow
 * up in the client's Future.result(). Returns the pickle, or NULL and *note (a
 * new str, or NULL) saying why not.
 */
static PyObject *runner_pickle_exception(const struct worker_py *py, PyObject *exc, PyObject **note)
{
    const char *failed = "could not be pickled";
    PyObject *data = PyObject_CallOneArg(py->dumps, exc);
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
static void runner_release_frames(PyObject *exc)
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

/* The call raised: an "exception" reply. */
static void runner_reply_exception(struct worker_py *py, struct frame_builder *b)
{
    PyObject *exc = worker_exc_take();
    if (!exc) {
        /* Only a broken C extension returns NULL without an exception. */
        PyObject *msg = PyUnicode_FromString("the callable failed without raising an exception");
        runner_reply_error(py, b, "exception", msg, NULL, NULL);
        Py_XDECREF(msg);
        return;
    }
    int oom = PyErr_GivenExceptionMatches(exc, PyExc_MemoryError);
    if (oom && py->oom_reserve) {
        munmap(py->oom_reserve, WORKER_OOM_RESERVE);
        py->oom_reserve = NULL;
    }
    if (oom)
        runner_release_frames(exc);
    PyObject *note = NULL;
    PyObject *pickle = runner_pickle_exception(py, exc, &note);
    PyObject *line = worker_exc_line(exc);
    if (line && oom && py->memory_limit)
        Py_SETREF(line, PyUnicode_FromFormat("%U (this worker's memory limit is %llu bytes: "
                                             "--worker-memory-limit)",
                                             line, py->memory_limit));
    PyObject *msg = line && note ? PyUnicode_FromFormat("%U (%U)", line, note) : Py_XNewRef(line);
    PyErr_Clear();
    runner_reply_error(py, b, "exception", msg, exc, pickle);
    Py_XDECREF(msg);
    Py_XDECREF(line);
    Py_XDECREF(note);
    Py_XDECREF(pickle);
    Py_DECREF(exc);
}

/*
 * The call returned: a FRAME_RESULT carrying RESULT (a pickle) or, when json is
 * set, RESULT_JSON (ASCII JSON text); unpicklable_result or unjsonable_result
 * when the value cannot be encoded.
 */
static void runner_reply_result(const struct worker_py *py, struct frame_builder *b,
                                PyObject *result, int json)
{
    PyObject *data;
    if (json) {
        PyObject *text = PyObject_CallOneArg(py->json_encode, result);
        data = text ? PyUnicode_AsUTF8String(text) : NULL;
        Py_XDECREF(text);
    } else {
        data = PyObject_CallOneArg(py->dumps, result);
    }
    if (data && PyBytes_Check(data) &&
        (size_t)PyBytes_GET_SIZE(data) <= UINT32_MAX - FRAME_FIELD_HEADER_SIZE) {
        frame_builder_init(b, FRAME_RESULT);
        frame_builder_add(b, json ? FRAME_TAG_RESULT_JSON : FRAME_TAG_RESULT,
                          PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
        Py_DECREF(data);
        return;
    }
    const char *failed = json ? "is not JSON-encodable" : "could not be pickled";
    PyObject *exc = worker_exc_take();
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
    runner_reply_error(py, b, json ? "unjsonable_result" : "unpicklable_result", msg, exc, NULL);
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(line);
    Py_XDECREF(exc);
    Py_XDECREF(data);
}

/* A process forked by the job has come back here; end it as a script would end. */
static void runner_exit_forked_child(PyObject *result)
{
    if (!result) {
        /* Exits with the code of a SystemExit; prints any other exception. */
        PyErr_Print();
        worker_interp_flush_stdio();
        _exit(1);
    }
    worker_interp_flush_stdio();
    _exit(0);
}

/* Drops what an interactive excepthook or pdb.pm() may have left on sys. */
static void runner_clear_sys(void)
{
    static const char *const names[] = {"last_type", "last_value", "last_traceback", "last_exc"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (PySys_GetObject(names[i]))
            PySys_SetObject(names[i], NULL);
    }
    PyErr_Clear();
}

/*
 * Reads RESULT_FORMAT: returns 0 for a pickle (absent or "pickle"), 1 for "json",
 * -1 after starting an invalid_payload reply for anything else.
 */
static int runner_result_format(const struct worker_py *py, struct frame_builder *b,
                                const struct frame_field *f, int present)
{
    if (!present || (f->len == 6 && memcmp(f->data, "pickle", 6) == 0))
        return 0;
    if (f->len == 4 && memcmp(f->data, "json", 4) == 0)
        return 1;
    PyObject *value = PyUnicode_DecodeUTF8((const char *)f->data, (Py_ssize_t)f->len, "replace");
    runner_reply_invalid(py, b,
                         value ? PyUnicode_FromFormat("unknown result_format %R (expected \"json\" "
                                                      "or \"pickle\")",
                                                      value)
                               : NULL);
    Py_XDECREF(value);
    return -1;
}

int worker_runner_run(struct worker_py *py, PyObject *owner, const struct frame *job,
                      struct frame_builder *reply)
{
    struct frame_field fields[RUNNER_NPARTS], format;
    int present[RUNNER_NPARTS];
    for (size_t i = 0; i < RUNNER_NPARTS; i++) {
        present[i] = frame_find_field(job, runner_parts[i].tag, &fields[i]);
        if (present[i] < 0)
            return -EPROTO;
    }
    int has_format = frame_find_field(job, FRAME_TAG_RESULT_FORMAT, &format);
    if (has_format < 0)
        return -EPROTO;

    struct runner_call c = {{NULL, NULL, NULL}, {0, 0, 0}};
    int json = runner_result_format(py, reply, &format, has_format);
    if (json >= 0 && runner_prepare(py, owner, fields, present, &c, reply) == 0) {
        PyObject *result =
            PyObject_Call(c.slot[RUNNER_FN], c.slot[RUNNER_ARGS], c.slot[RUNNER_KWARGS]);
        if (getpid() != py->pid)
            runner_exit_forked_child(result);
        if (result)
            runner_reply_result(py, reply, result, json);
        else
            runner_reply_exception(py, reply);
        Py_XDECREF(result);
    }
    for (int s = 0; s < 3; s++)
        Py_XDECREF(c.slot[s]);
    runner_clear_sys();
    /* Before the reply, so the server sees a job's output ahead of its outcome. */
    worker_interp_flush_stdio();
    PyErr_Clear();
    return 0;
}
