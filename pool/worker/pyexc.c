/*
 * pyexc.c — turning a raised Python exception into an object and into text.
 * These run while reporting a failure, so each one falls back to something
 * simpler rather than raise again, and none leaves an exception set.
 */
#include <Python.h>

#include "pyexc.h"

PyObject *worker_exc_take(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

PyObject *worker_exc_type_name(PyTypeObject *type)
{
    PyObject *module = PyObject_GetAttrString((PyObject *)type, "__module__");
    PyObject *qualname = PyObject_GetAttrString((PyObject *)type, "__qualname__");
    PyObject *name = NULL;
    PyErr_Clear();
    if (qualname && PyUnicode_Check(qualname)) {
        if (module && PyUnicode_Check(module) &&
            PyUnicode_CompareWithASCIIString(module, "builtins") != 0)
            name = PyUnicode_FromFormat("%U.%U", module, qualname);
        else
            name = Py_NewRef(qualname);
    }
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    if (!name)
        name = PyUnicode_FromString(type->tp_name);
    PyErr_Clear();
    return name;
}

PyObject *worker_exc_line(PyObject *exc)
{
    PyObject *name = worker_exc_type_name(Py_TYPE(exc));
    if (!name)
        return NULL;
    PyObject *text = PyObject_Str(exc);
    PyObject *line;
    if (!text) {
        PyErr_Clear();
        line = PyUnicode_FromFormat("%U: <str() of the exception failed>", name);
    } else if (PyUnicode_GetLength(text) == 0) {
        line = Py_NewRef(name);
    } else {
        line = PyUnicode_FromFormat("%U: %U", name, text);
    }
    Py_XDECREF(text);
    Py_DECREF(name);
    PyErr_Clear();
    return line;
}
