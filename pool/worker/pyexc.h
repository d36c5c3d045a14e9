/*
 * pyexc.h — turning a raised Python exception into an object and into text.
 * Every function here leaves the Python error indicator clear.
 */
#ifndef PYJOBD_WORKER_PYEXC_H
#define PYJOBD_WORKER_PYEXC_H

#include <Python.h>

/*
 * Takes the exception out of the error indicator, normalized and with its
 * __traceback__ set. Returns a new reference, or NULL when none was raised.
 */
PyObject *worker_exc_take(void);

/*
 * Qualified name of a type: "ValueError" for builtins, "mymod.MyError" otherwise.
 * Returns a new reference to a str, or NULL when even that could not be allocated.
 */
PyObject *worker_exc_type_name(PyTypeObject *type);

/* "ValueError: bad value", or "ValueError" when str(exc) is empty. New reference or NULL. */
PyObject *worker_exc_line(PyObject *exc);

#endif
