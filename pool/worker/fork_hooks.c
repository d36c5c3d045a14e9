/*
 * fork_hooks.c — the Python-level at-fork hooks a horse can do without.
 *
 * PyOS_AfterFork_Child runs every os.register_at_fork hook. In the worker those are
 * threading's _after_fork and logging's lock handling (_acquireLock before the fork,
 * _releaseLock in the parent, _after_at_fork_child_reinit_locks in the child). Each
 * only repairs what other threads may have left at the fork: locks they held, Thread
 * objects of threads the child does not have. In a worker whose interpreter has one
 * thread, forking in C code between jobs, there is nothing to repair; but running
 * them is most of a horse's cost: in 3.11 every object Python code touches is written
 * (reference counts, the specializing interpreter's counters), and each page written
 * is copied for the child (194 page faults of about 290 per trivial job, measured
 * with getrusage in the horse).
 *
 * So, when the interpreter has one thread, the fork runs with those known hooks left
 * out of the three lists and every other hook kept (a hook of --worker-init's
 * modules, random's reseed when it is imported, run as usual). For one thread,
 * threading's _after_fork changes nothing the child can tell (its thread keeps its
 * ident, pthread_self being the same in a fork's child, and its held tstate lock;
 * 3.11's does not renew the native id either), nor does logging's. Both sides put the
 * lists back, so a fork made by a job runs every hook. Anything else (several
 * threads, another Python whose hooks have other names) forks with all the hooks.
 *
 * This needs the interpreter's hook lists, which only CPython's internal header
 * declares: this file is the one that includes it.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_interp.h>

#include "fork_hooks.h"

/* The hooks left out: (module, name) in sys.modules at the time of the fork. */
static const struct {
    const char *module, *name;
} fork_hooks_known[] = {
    {"threading", "_after_fork"},
    {"logging", "_acquireLock"},
    {"logging", "_releaseLock"},
    {"logging", "_after_at_fork_child_reinit_locks"},
};
#define FORK_HOOKS_NKNOWN (sizeof(fork_hooks_known) / sizeof(fork_hooks_known[0]))

/* A borrowed reference to the known hook i, NULL when its module is not loaded. */
static PyObject *fork_hooks_known_fn(size_t i, PyObject **keep)
{
    PyObject *modules = PySys_GetObject("modules");
    PyObject *mod = modules ? PyDict_GetItemString(modules, fork_hooks_known[i].module) : NULL;
    if (!mod)
        return NULL;
    PyObject *fn = PyObject_GetAttrString(mod, fork_hooks_known[i].name);
    if (!fn)
        PyErr_Clear();
    *keep = fn;
    return fn;
}

/* A new list: `list` without the known hooks; NULL (no error set) when list is NULL. */
static PyObject *fork_hooks_filter(PyObject *list, PyObject *const *known)
{
    if (!list || !PyList_Check(list))
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(list); i++) {
        PyObject *hook = PyList_GET_ITEM(list, i);
        int skip = 0;
        for (size_t k = 0; k < FORK_HOOKS_NKNOWN; k++)
            skip |= known[k] && hook == known[k];
        if (!skip && PyList_Append(out, hook) != 0)
            Py_CLEAR(out);
    }
    if (!out)
        PyErr_Clear();
    return out;
}

void worker_fork_hooks_trim(struct worker_fork_hooks *h)
{
    h->trimmed = 0;
    for (int i = 0; i < 3; i++)
        h->copies[i] = NULL;
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (PyThreadState_Next(PyInterpreterState_ThreadHead(interp)) != NULL)
        return; /* another thread: what it holds must be repaired in the child */
    PyObject *known[FORK_HOOKS_NKNOWN], *keep[FORK_HOOKS_NKNOWN];
    for (size_t k = 0; k < FORK_HOOKS_NKNOWN; k++) {
        keep[k] = NULL;
        known[k] = fork_hooks_known_fn(k, &keep[k]);
    }
    PyObject **lists[3] = {&interp->before_forkers, &interp->after_forkers_parent,
                           &interp->after_forkers_child};
    for (int i = 0; i < 3; i++) {
        h->saved[i] = *lists[i];
        PyObject *trimmed = fork_hooks_filter(*lists[i], known);
        if (!trimmed) {
            h->saved[i] = NULL; /* left as it was */
            continue;
        }
        if (PyList_GET_SIZE(trimmed) == 0)
            Py_CLEAR(trimmed); /* none: a NULL list, which the fork does not even copy */
        *lists[i] = trimmed;   /* saved[i] keeps the interpreter's reference */
    }
    for (size_t k = 0; k < FORK_HOOKS_NKNOWN; k++)
        Py_XDECREF(keep[k]);
    h->trimmed = 1;
}

void worker_fork_hooks_release(struct worker_fork_hooks *h)
{
    for (int i = 0; i < 3; i++)
        Py_CLEAR(h->copies[i]);
}

void worker_fork_hooks_restore(struct worker_fork_hooks *h, int in_child)
{
    if (!h->trimmed)
        return;
    PyInterpreterState *interp = PyInterpreterState_Get();
    PyObject **lists[3] = {&interp->before_forkers, &interp->after_forkers_parent,
                           &interp->after_forkers_child};
    for (int i = 0; i < 3; i++) {
        h->copies[i] = NULL;
        if (!h->saved[i])
            continue;
        h->copies[i] = *lists[i]; /* may be NULL */
        *lists[i] = h->saved[i];
    }
    h->trimmed = 0;
    if (in_child)
        worker_fork_hooks_release(h);
}
