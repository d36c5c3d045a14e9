/*
 * interp.h — the embedded CPython: started once per worker process, never finalized.
 */
#ifndef PYJOBD_WORKER_INTERP_H
#define PYJOBD_WORKER_INTERP_H

#include <Python.h>

#include <sys/types.h>

/* What a running worker needs from Python. All references are strong and live
 * until the process exits. */
struct worker_py {
    PyObject *loads;            /* cloudpickle.loads */
    PyObject *dumps;            /* cloudpickle.dumps */
    PyObject *plain_dumps;      /* _pickle.dumps, for results of atomic types; or NULL */
    PyObject *protocol;         /* cloudpickle.DEFAULT_PROTOCOL, with plain_dumps */
    PyObject *format_exception; /* traceback.format_exception */
    PyObject *json_loads;       /* json.loads */
    PyObject *json_encode;      /* json.JSONEncoder(allow_nan=False).encode */
    char python_version[32];    /* platform.python_version() */
    char cloudpickle_version[64];
    pid_t pid; /* the worker's own pid, to recognise a child forked by a job */
    unsigned long long memory_limit; /* --memory-limit in bytes, 0 when none (set by main) */
    size_t max_result_bytes;         /* --max-result-bytes, 0 when none (set by main) */
    /* With a memory limit: address space held back (WORKER_OOM_RESERVE bytes, never
     * touched) and given up when a job raises MemoryError, so that its reply can
     * still be built. NULL while given up. Managed by main and runner.c. */
    void *oom_reserve;
};

#define WORKER_OOM_RESERVE ((size_t)4 << 20)

/*
 * Starts CPython isolated from the caller's environment (PYTHONPATH, PYTHONHOME
 * and user site are ignored; the system site-packages are used) and imports
 * cloudpickle. argv0 becomes sys.argv[0]. huge_arenas (--huge-arenas): pymalloc's
 * arenas on huge pages (arenas.c). Returns 0 with *py filled and the GIL held, or -1
 * after writing one "pyjobd-worker: ..." line to stderr.
 */
int worker_interp_start(struct worker_py *py, const char *argv0, int huge_arenas);

/*
 * Runs --init: puts the worker's cwd (os.getcwd(), absolute) at sys.path[0], where
 * it stays for the jobs, imports the module of spec "module:function" (already
 * checked for that form) and calls function() once, ignoring what it returns;
 * function may be a dotted path inside the module (mod:obj.attr). Returns 0, or
 * -1 after writing "pyjobd-worker: --init <spec> failed: <ExcType>: <message>"
 * and the traceback, if any, to stderr. Needs the GIL.
 */
int worker_interp_run_init(const struct worker_py *py, const char *spec);

/* Copies HOME, USER and LOGNAME from the C environment into os.environ (which Python
 * read once at start), after a uid change. Needs the GIL. */
void worker_interp_sync_user_env(void);

/* Flushes sys.stdout and sys.stderr, ignoring any error (needs the GIL). */
void worker_interp_flush_stdio(void);

#endif
