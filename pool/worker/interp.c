/*
 * interp.c — starts the embedded CPython once and imports what every job needs.
 *
 * The interpreter is the system one (Debian's python3) whatever the server's
 * environment says: a pyenv or venv PYTHONPATH/PYTHONHOME would otherwise point
 * it at a standard library of another version, or hide dist-packages where
 * cloudpickle lives. It is never finalized: finalization would run the jobs'
 * atexit hooks and join their non-daemon threads, which could hang a shutdown.
 */
#include <Python.h>

#include "interp.h"
#include "arenas.h"
#include "interrupt.h"
#include "pyexc.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Prints "pyjobd-worker: <what>: <exception line><hint>" for the pending exception. */
static void interp_report(const char *what, const char *hint)
{
    PyObject *exc = worker_exc_take();
    PyObject *line = exc ? worker_exc_line(exc) : NULL;
    const char *text = line ? PyUnicode_AsUTF8(line) : NULL;
    PyErr_Clear();
    fprintf(stderr, "pyjobd-worker: %s: %s%s\n", what, text ? text : "unknown error",
            hint ? hint : "");
    Py_XDECREF(line);
    Py_XDECREF(exc);
}

/* Copies str(obj) into buf (truncating); returns -1 if it is not a str. */
static int interp_copy_str(PyObject *obj, char *buf, size_t size)
{
    const char *s = obj && PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (!s) {
        PyErr_Clear();
        return -1;
    }
    snprintf(buf, size, "%s", s);
    return 0;
}

static int interp_boot_python(const char *argv0, int huge_arenas)
{
    PyPreConfig pre;
    PyPreConfig_InitIsolatedConfig(&pre);
    /* Text I/O must not depend on the server's locale: a job printing "é" under
     * LANG=C would otherwise fail with UnicodeEncodeError. */
    pre.utf8_mode = 1;
    PyStatus status = Py_PreInitialize(&pre);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "pyjobd-worker: cannot pre-initialize Python: %s%s%s\n",
                status.func ? status.func : "", status.func ? ": " : "",
                status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }

    if (huge_arenas)
        worker_arenas_install(); /* before any arena is taken */
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    /* Isolated mode leaves site on but say so: dist-packages comes from site. */
    config.site_import = 1;
    config.user_site_directory = 0;
    /* Unbuffered so that a job's output survives the job being SIGKILLed on timeout. */
    config.buffered_stdio = 0;
    /* A crash in a C extension then leaves a Python stack on stderr (a pipe the pool
     * reads, see include/pyjobd/worker.h). */
    config.faulthandler = 1;
    config.install_signal_handlers = 1;
    config.parse_argv = 0;
    char *const argv[] = {(char *)argv0, NULL};
    status = PyConfig_SetBytesArgv(&config, 1, argv);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "pyjobd-worker: cannot start Python: %s%s%s\n",
                status.func ? status.func : "", status.func ? ": " : "",
                status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    return 0;
}

/*
 * sys.executable would be pyjobd-worker itself, and code that starts a fresh
 * interpreter from it (multiprocessing "spawn", loky, joblib) would launch a
 * worker without fd 3. Point it at the interpreter this build embeds, if present.
 */
static void interp_fix_executable(void)
{
    PyObject *base = PySys_GetObject("base_exec_prefix"); /* borrowed */
    PyObject *exe = NULL;
    if (base && PyUnicode_Check(base))
        exe = PyUnicode_FromFormat("%U/bin/python%d.%d", base, PY_MAJOR_VERSION, PY_MINOR_VERSION);
    const char *path = exe ? PyUnicode_AsUTF8(exe) : NULL;
    if (path && access(path, X_OK) == 0)
        PySys_SetObject("executable", exe);
    Py_XDECREF(exe);
    PyErr_Clear();
}

static PyObject *interp_get(PyObject *module, const char *name, const char *what)
{
    PyObject *obj = PyObject_GetAttrString(module, name);
    if (!obj)
        interp_report(what, NULL);
    return obj;
}

/*
 * json.JSONEncoder(allow_nan=False).encode: NaN and Infinity are not JSON, and
 * the server's parser would reject the reply, so they fail in the worker instead.
 */
static PyObject *interp_json_encoder(PyObject *json)
{
    PyObject *cls = interp_get(json, "JSONEncoder", "json has no JSONEncoder");
    PyObject *kwargs = cls ? Py_BuildValue("{s:O}", "allow_nan", Py_False) : NULL;
    PyObject *empty = kwargs ? PyTuple_New(0) : NULL;
    PyObject *encoder = empty ? PyObject_Call(cls, empty, kwargs) : NULL;
    PyObject *encode = encoder ? PyObject_GetAttrString(encoder, "encode") : NULL;
    if (cls && !encode)
        interp_report("cannot create a json.JSONEncoder", NULL);
    Py_XDECREF(encoder);
    Py_XDECREF(empty);
    Py_XDECREF(kwargs);
    Py_XDECREF(cls);
    return encode;
}

/* _pickle.dumps with cloudpickle's protocol: for None, bools, ints, floats, str and
 * bytes it writes exactly the bytes cloudpickle.dumps does (a pickler's
 * reducer_override is not consulted for them), without building a CloudPickler in
 * Python for each result. Optional: without it every result goes through cloudpickle. */
static void interp_plain_dumps(struct worker_py *py)
{
    PyObject *cloudpickle = PyImport_ImportModule("cloudpickle");
    PyObject *c_pickle = cloudpickle ? PyImport_ImportModule("_pickle") : NULL;
    py->protocol = c_pickle ? PyObject_GetAttrString(cloudpickle, "DEFAULT_PROTOCOL") : NULL;
    py->plain_dumps = py->protocol ? PyObject_GetAttrString(c_pickle, "dumps") : NULL;
    if (!py->plain_dumps || !PyLong_CheckExact(py->protocol)) {
        PyErr_Clear();
        Py_CLEAR(py->plain_dumps);
        Py_CLEAR(py->protocol);
    }
    Py_XDECREF(c_pickle);
    Py_XDECREF(cloudpickle);
}

int worker_interp_start(struct worker_py *py, const char *argv0, int huge_arenas)
{
    memset(py, 0, sizeof(*py));
    if (interp_boot_python(argv0, huge_arenas) != 0)
        return -1;
    interp_fix_executable();

    PyObject *cloudpickle = PyImport_ImportModule("cloudpickle");
    if (!cloudpickle) {
        interp_report("cannot import cloudpickle",
                      " (install python3-cloudpickle for the system python3)");
        return -1;
    }
    PyObject *traceback = PyImport_ImportModule("traceback");
    PyObject *platform = traceback ? PyImport_ImportModule("platform") : NULL;
    PyObject *json = platform ? PyImport_ImportModule("json") : NULL;
    if (!json) {
        interp_report("cannot import the standard library", NULL);
        Py_XDECREF(platform);
        Py_XDECREF(traceback);
        Py_DECREF(cloudpickle);
        return -1;
    }
    PyObject *version = interp_get(cloudpickle, "__version__", "cloudpickle has no __version__");
    PyObject *pyversion = PyObject_CallMethod(platform, "python_version", NULL);
    if (!pyversion)
        interp_report("platform.python_version() failed", NULL);
    py->loads = interp_get(cloudpickle, "loads", "cloudpickle has no loads");
    py->dumps = interp_get(cloudpickle, "dumps", "cloudpickle has no dumps");
    py->format_exception =
        interp_get(traceback, "format_exception", "traceback has no format_exception");
    py->json_loads = interp_get(json, "loads", "json has no loads");
    py->json_encode = interp_json_encoder(json);
    int ok =
        version && pyversion && py->loads && py->dumps && py->format_exception && py->json_loads &&
        py->json_encode &&
        interp_copy_str(version, py->cloudpickle_version, sizeof(py->cloudpickle_version)) == 0 &&
        interp_copy_str(pyversion, py->python_version, sizeof(py->python_version)) == 0;
    Py_XDECREF(version);
    Py_XDECREF(pyversion);
    Py_DECREF(json);
    Py_DECREF(platform);
    Py_DECREF(traceback);
    Py_DECREF(cloudpickle);
    if (!ok) {
        if (version && pyversion && py->loads && py->dumps && py->format_exception &&
            py->json_loads && py->json_encode)
            fprintf(stderr, "pyjobd-worker: cloudpickle.__version__ or the Python version "
                            "is not a string\n");
        Py_CLEAR(py->loads);
        Py_CLEAR(py->dumps);
        Py_CLEAR(py->format_exception);
        Py_CLEAR(py->json_loads);
        Py_CLEAR(py->json_encode);
        return -1;
    }
    interp_plain_dumps(py);
    py->pid = getpid();
    return worker_interrupt_module_init();
}

void worker_interp_flush_stdio(void)
{
    static const char *const names[] = {"stdout", "stderr"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        PyObject *stream = PySys_GetObject(names[i]); /* borrowed */
        if (stream && stream != Py_None) {
            PyObject *r = PyObject_CallMethod(stream, "flush", NULL);
            Py_XDECREF(r);
        }
        PyErr_Clear();
    }
}

/* Whether a traceback has a frame outside importlib's frozen modules: a module
 * that is simply not found leaves only those, which say nothing to the user. */
static int interp_tb_worth_printing(PyObject *tb)
{
    int worth = 0;
    Py_XINCREF(tb);
    while (!worth && tb && tb != Py_None) {
        PyObject *frame = PyObject_GetAttrString(tb, "tb_frame");
        PyObject *code = frame ? PyObject_GetAttrString(frame, "f_code") : NULL;
        PyObject *file = code ? PyObject_GetAttrString(code, "co_filename") : NULL;
        const char *name = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
        worth = !name || strncmp(name, "<frozen importlib", 17) != 0;
        Py_XDECREF(file);
        Py_XDECREF(code);
        Py_XDECREF(frame);
        Py_SETREF(tb, PyObject_GetAttrString(tb, "tb_next"));
    }
    Py_XDECREF(tb);
    PyErr_Clear();
    return worth;
}

/* Prints the --init failure for the pending exception: one line, then the traceback. */
static void interp_report_init(const struct worker_py *py, const char *spec)
{
    PyObject *exc = worker_exc_take();
    PyObject *line = exc ? worker_exc_line(exc) : NULL;
    PyObject *tb = exc ? PyException_GetTraceback(exc) : NULL;
    if (tb && !interp_tb_worth_printing(tb))
        Py_CLEAR(tb);
    PyObject *lines = tb ? PyObject_CallOneArg(py->format_exception, exc) : NULL;
    PyObject *empty = lines ? PyUnicode_FromStringAndSize("", 0) : NULL;
    PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
    PyObject *line8 = line ? PyUnicode_AsEncodedString(line, "utf-8", "backslashreplace") : NULL;
    PyObject *text8 = text ? PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace") : NULL;
    PyErr_Clear();
    worker_interp_flush_stdio(); /* what the initializer printed comes first */
    fprintf(stderr, "pyjobd-worker: --init %s failed: %s\n", spec,
            line8 ? PyBytes_AS_STRING(line8) : "unknown error");
    if (text8)
        fputs(PyBytes_AS_STRING(text8), stderr);
    fflush(stderr);
    Py_XDECREF(text8);
    Py_XDECREF(line8);
    Py_XDECREF(text);
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    Py_XDECREF(tb);
    Py_XDECREF(line);
    Py_XDECREF(exc);
}

/* sys.path.insert(0, os.getcwd()); -1 with an exception set on failure. */
static int interp_path_add_cwd(void)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    if (!path || !PyList_Check(path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return -1;
    }
    PyObject *os = PyImport_ImportModule("os");
    PyObject *cwd = os ? PyObject_CallMethod(os, "getcwd", NULL) : NULL;
    int rc = cwd ? PyList_Insert(path, 0, cwd) : -1;
    Py_XDECREF(cwd);
    Py_XDECREF(os);
    return rc;
}

/* Imports the module part of spec and follows the dotted attribute path after the colon. */
static PyObject *interp_resolve_init(const char *spec)
{
    const char *colon = strchr(spec, ':');
    PyObject *modname = PyUnicode_FromStringAndSize(spec, colon - spec);
    PyObject *obj = modname ? PyImport_ImportModuleLevelObject(modname, NULL, NULL, NULL, 0) : NULL;
    Py_XDECREF(modname);
    for (const char *name = colon + 1; obj && *name;) {
        const char *end = strchr(name, '.');
        size_t n = end ? (size_t)(end - name) : strlen(name);
        PyObject *attr = PyUnicode_FromStringAndSize(name, (Py_ssize_t)n);
        Py_SETREF(obj, attr ? PyObject_GetAttr(obj, attr) : NULL);
        Py_XDECREF(attr);
        name += n + (end ? 1 : 0);
    }
    if (obj && !PyCallable_Check(obj)) {
        PyObject *type = worker_exc_type_name(Py_TYPE(obj));
        PyErr_Format(PyExc_TypeError, "%s is not callable (it is an object of type %U)", colon + 1,
                     type ? type : Py_None);
        Py_XDECREF(type);
        Py_CLEAR(obj);
    }
    return obj;
}

int worker_interp_run_init(const struct worker_py *py, const char *spec)
{
    PyObject *fn = interp_path_add_cwd() == 0 ? interp_resolve_init(spec) : NULL;
    PyObject *result = fn ? PyObject_CallNoArgs(fn) : NULL;
    if (getpid() != py->pid) {
        /* The initializer forked and the child came back: only the worker talks on fd 3. */
        if (!result)
            PyErr_Print();
        worker_interp_flush_stdio();
        _exit(result ? 0 : 1);
    }
    Py_XDECREF(fn);
    if (!result) {
        interp_report_init(py, spec);
        return -1;
    }
    Py_DECREF(result);
    worker_interp_flush_stdio();
    return 0;
}

void worker_interp_sync_user_env(void)
{
    static const char *const names[] = {"HOME", "USER", "LOGNAME"};
    PyObject *os = PyImport_ImportModule("os");
    PyObject *environ = os ? PyObject_GetAttrString(os, "environ") : NULL;
    for (size_t i = 0; environ && i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        PyObject *key = PyUnicode_FromString(names[i]);
        PyObject *value = v && key ? PyUnicode_DecodeFSDefault(v) : NULL;
        if (value)
            PyObject_SetItem(environ, key, value);
        Py_XDECREF(value);
        Py_XDECREF(key);
    }
    Py_XDECREF(environ);
    Py_XDECREF(os);
    PyErr_Clear();
}
