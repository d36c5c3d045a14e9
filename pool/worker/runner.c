/*
 * runner.c — runs one job: unpickle the callable and its arguments, call it, and
 * hand what came out to reply.c, which describes it in exactly one reply frame.
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
#include "interrupt.h"
#include "pyexc.h"
#include "reply.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
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

/* invalid_payload without an exception; steals message (may be NULL). */
static void runner_reply_invalid(const struct worker_py *py, struct frame_builder *b,
                                 PyObject *message)
{
    PyErr_Clear();
    worker_reply_error(py, b, "invalid_payload", message, NULL, NULL);
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
    worker_reply_error(py, b, "invalid_payload", msg, exc, NULL);
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
    struct worker_retry_policy retry;
    retry.has_on = frame_find_field(job, FRAME_TAG_RETRY_ON, &retry.on);
    retry.has_not_on = frame_find_field(job, FRAME_TAG_RETRY_NOT_ON, &retry.not_on);
    if (retry.has_on < 0 || retry.has_not_on < 0)
        return -EPROTO;
    struct frame_field soft;
    int has_soft = frame_find_field(job, FRAME_TAG_SOFT_TIMEOUT, &soft);
    if (has_soft < 0 || (has_soft && soft.len != 4))
        return -EPROTO;
    unsigned soft_ms = has_soft ? (unsigned)soft.data[0] | (unsigned)soft.data[1] << 8 |
                                      (unsigned)soft.data[2] << 16 | (unsigned)soft.data[3] << 24
                                : 0;

    struct runner_call c = {{NULL, NULL, NULL}, {0, 0, 0}};
    int json = runner_result_format(py, reply, &format, has_format);
    if (json >= 0 && runner_prepare(py, owner, fields, present, &c, reply) == 0) {
        worker_interrupt_arm(soft_ms);
        PyObject *result =
            PyObject_Call(c.slot[RUNNER_FN], c.slot[RUNNER_ARGS], c.slot[RUNNER_KWARGS]);
        worker_interrupt_disarm();
        if (getpid() != py->pid)
            runner_exit_forked_child(result);
        if (result)
            worker_reply_result(py, reply, result, json);
        else
            worker_reply_exception(py, reply, &retry);
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
