/*
 * retry_match.c — matching a raised exception's class against a job's retry policy
 * (see retry_match.h).
 *
 * The exception comes from the job, so its classes may be hostile: reading their
 * names is the only Python code run here (getattr on the class, which a metaclass may
 * make raise or return anything), each answer is checked to be a str before it is
 * used, and the names are compared as UTF-8 bytes with memcmp, so no __eq__ of the
 * job's runs. References to the MRO and to each class are held while the job's code
 * may run (it could reassign __bases__, which replaces the MRO tuple). The work is
 * bounded by the policy's limits: RETRY_MAX_MRO classes times RETRY_MAX_NAMES names
 * per list, each compared three ways.
 */
#include <Python.h>

#include "retry_match.h"
#include "pyjobd/utf8.h"

#include <string.h>

/* The names of one list, pointing into the job frame. */
struct retry_names {
    size_t n;
    struct {
        const char *s;
        size_t len;
    } name[RETRY_MAX_NAMES];
};

/* One class's three names as UTF-8: s is NULL for a str too long to be part of any
 * name looked at; ref keeps the str (which owns the bytes) alive. */
struct retry_attr {
    PyObject *ref;
    const char *s;
    size_t len;
};
enum { RETRY_MODULE, RETRY_QUALNAME, RETRY_NAME, RETRY_NATTRS };
static const char *const retry_attr_names[RETRY_NATTRS] = {"__module__", "__qualname__",
                                                           "__name__"};

/* Splits field f into names; none when it is absent or not valid UTF-8. */
static void retry_parse(const struct frame_field *f, int has, struct retry_names *out)
{
    out->n = 0;
    if (has <= 0 || !f || !f->data)
        return;
    const unsigned char *p = f->data;
    for (size_t at = 0; at < f->len;) {
        size_t seq = utf8_seq(p + at, f->len - at);
        if (!seq)
            return;
        at += seq;
    }
    const char *s = (const char *)p, *end = s + f->len;
    for (size_t seen = 0; s < end && seen < RETRY_MAX_NAMES; seen++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = (size_t)((nl ? nl : end) - s);
        if (len > 0 && len <= RETRY_MAX_NAME_BYTES) {
            out->name[out->n].s = s;
            out->name[out->n].len = len;
            out->n++;
        }
        if (!nl)
            break;
        s = nl + 1;
    }
}

/* Reads attribute i of cls into *a. Returns 0, or -1 (nothing held, no error set) when
 * it raises, is not a str or cannot be encoded. */
static int retry_attr_read(PyObject *cls, int i, struct retry_attr *a)
{
    a->ref = PyObject_GetAttrString(cls, retry_attr_names[i]);
    a->s = NULL;
    a->len = 0;
    if (!a->ref || !PyUnicode_Check(a->ref))
        goto fail;
    Py_ssize_t chars = PyUnicode_GetLength(a->ref);
    if (chars < 0)
        goto fail;
    if (chars > RETRY_MAX_NAME_BYTES)
        return 0; /* its UTF-8 is longer too: it can be part of no name looked at */
    Py_ssize_t len;
    a->s = PyUnicode_AsUTF8AndSize(a->ref, &len);
    if (!a->s)
        goto fail;
    a->len = (size_t)len;
    return 0;
fail:
    Py_CLEAR(a->ref);
    a->s = NULL;
    PyErr_Clear();
    return -1;
}

static int retry_eq(const struct retry_attr *a, const char *s, size_t len)
{
    return a->s && a->len == len && memcmp(a->s, s, len) == 0;
}

/* 1 when one of names is one of the class's three names. */
static int retry_class_matches(const struct retry_attr *attr, const struct retry_names *names)
{
    const struct retry_attr *mod = &attr[RETRY_MODULE], *qual = &attr[RETRY_QUALNAME];
    for (size_t i = 0; i < names->n; i++) {
        const char *s = names->name[i].s;
        size_t len = names->name[i].len;
        if (retry_eq(qual, s, len) || retry_eq(&attr[RETRY_NAME], s, len))
            return 1;
        if (mod->s && qual->s && len == mod->len + 1 + qual->len && s[mod->len] == '.' &&
            memcmp(s, mod->s, mod->len) == 0 && memcmp(s + mod->len + 1, qual->s, qual->len) == 0)
            return 1;
    }
    return 0;
}

int worker_retry_matches(PyObject *exc, const struct frame_field *on, int has_on,
                         const struct frame_field *not_on, int has_not_on)
{
    struct retry_names yes, no; /* 1 KiB each */
    retry_parse(on, has_on, &yes);
    if (!exc || yes.n == 0)
        return 0;
    retry_parse(not_on, has_not_on, &no);

    PyObject *mro = Py_XNewRef(Py_TYPE(exc)->tp_mro);
    if (!mro || !PyTuple_Check(mro)) {
        Py_XDECREF(mro);
        return 0;
    }
    int hit = 0, excluded = 0;
    Py_ssize_t n = PyTuple_GET_SIZE(mro);
    if (n > RETRY_MAX_MRO)
        n = RETRY_MAX_MRO;
    for (Py_ssize_t i = 0; i < n && !excluded; i++) {
        PyObject *cls = Py_NewRef(PyTuple_GET_ITEM(mro, i));
        struct retry_attr attr[RETRY_NATTRS];
        int got = 0;
        if (PyType_Check(cls)) {
            while (got < RETRY_NATTRS && retry_attr_read(cls, got, &attr[got]) == 0)
                got++;
        }
        if (got == RETRY_NATTRS) {
            if (retry_class_matches(attr, &no))
                excluded = 1;
            else if (!hit && retry_class_matches(attr, &yes))
                hit = 1;
        }
        for (int k = 0; k < got; k++)
            Py_XDECREF(attr[k].ref);
        Py_DECREF(cls);
    }
    Py_DECREF(mro);
    PyErr_Clear();
    return hit && !excluded;
}
