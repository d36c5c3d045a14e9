/*
 * fork_hooks.h — forking a horse without the at-fork hooks that only repair what
 * other threads left (see fork_hooks.c for which, and why it is safe).
 */
#ifndef PYJOBD_WORKER_FORK_HOOKS_H
#define PYJOBD_WORKER_FORK_HOOKS_H

#include <Python.h>

struct worker_fork_hooks {
    int trimmed;
    PyObject *saved[3];  /* the interpreter's lists while trimmed copies stand in */
    PyObject *copies[3]; /* the trimmed copies once put back, until released */
};

/* Before PyOS_BeforeFork: when the interpreter has one thread, swaps its three
 * hook lists for copies without the known hooks. Needs the GIL. */
void worker_fork_hooks_trim(struct worker_fork_hooks *h);

/* After PyOS_AfterFork_Child or _Parent: puts the lists back; in the child, also
 * releases the copies. In the parent the
 * copies wait for worker_fork_hooks_release: freeing them writes Python objects,
 * which the parent must not do while its horse lives (see arenas.c). Needs the GIL. */
void worker_fork_hooks_restore(struct worker_fork_hooks *h, int in_child);

/* Frees the trimmed copies (the parent's, once its horse is dead). Needs the GIL. */
void worker_fork_hooks_release(struct worker_fork_hooks *h);

#endif
