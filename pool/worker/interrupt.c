/*
 * interrupt.c — pyjobd.SoftTimeout and pyjobd.Cancelled, raised inside a running job.
 *
 * Why a signal and Python's own signal machinery: the job holds the main thread (it
 * may sleep in time.sleep or wait in a C call), and only a signal delivered to that
 * thread both interrupts the system call (EINTR, no SA_RESTART) and makes the
 * interpreter run a Python-level handler as soon as the thread is back in Python,
 * which is where the exception must come from. So WORKER_SIG_INTERRUPT has a Python
 * handler (on_signal, through signal.signal) that raises, and under it a C handler of
 * ours (on_sigusr) that decides whether the signal is meant for the job now running:
 * sent by the server (SI_QUEUE from our parent) or by our soft timer (SI_TIMER), with
 * the job's number in its value. Only then does it note which exception is due and
 * trip the Python handler (PyErr_SetInterruptEx, async-signal-safe). A stale request
 * (for a job that ended), one between jobs, or one the job's code sends itself is
 * ignored. The C handler touches only sig_atomic_t flags and async-signal-safe calls.
 */
#include <Python.h>

#include "interrupt.h"
#include "pyexc.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static PyObject *soft_timeout_exc, *cancelled_exc; /* strong, for the process's life */
static PyObject *handler_fn;                       /* the Python-level handler */

static volatile sig_atomic_t job_no;      /* FRAME_JOBs read by this process's worker */
static volatile sig_atomic_t armed;       /* the job's call is running (in this process) */
static volatile sig_atomic_t due_soft;    /* SoftTimeout is due */
static volatile sig_atomic_t due_cancel;  /* Cancelled is due */
static volatile sig_atomic_t forward_pid; /* the horse running the job, or 0 */
static unsigned soft_ms;                  /* the running job's soft timeout, for the message */
static timer_t soft_timer;
static int soft_timer_set;

static void on_sigusr(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    unsigned v = (unsigned)si->si_value.sival_int;
    int from_server = si->si_code == SI_QUEUE && si->si_pid == getppid();
    int from_timer = si->si_code == SI_TIMER && (v & WORKER_INTERRUPT_SOFT);
    if ((from_server || from_timer) &&
        (v & WORKER_INTERRUPT_JOB_MASK) == ((unsigned)job_no & WORKER_INTERRUPT_JOB_MASK)) {
        if (forward_pid > 0) {
            sigqueue((pid_t)forward_pid, sig, si->si_value);
        } else {
            if (v & WORKER_INTERRUPT_SOFT)
                due_soft = 1;
            else
                due_cancel = 1;
            PyErr_SetInterruptEx(sig);
        }
    }
    errno = saved;
}

/* The Python-level handler: raises what is due while the job's call runs. */
static PyObject *on_signal(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    if (!armed || !(due_soft || due_cancel))
        Py_RETURN_NONE;
    if (due_cancel) {
        due_cancel = due_soft = 0;
        PyErr_SetString(cancelled_exc, "the job was cancelled (POST /v1/jobs/{id}/cancel with "
                                       "interrupt): it is stopped if it does not end in time");
    } else {
        due_soft = 0;
        char msg[96]; /* PyErr_Format has no %g */
        snprintf(msg, sizeof(msg), "the job ran for its soft_timeout of %g s", soft_ms / 1000.0);
        PyErr_SetString(soft_timeout_exc, msg);
    }
    return NULL;
}

static PyMethodDef handler_def = {"_interrupt_handler", on_signal, METH_VARARGS,
                                  "pyjobd's handler of the interrupt signal (internal)."};

static int report(const char *what)
{
    PyObject *exc = worker_exc_take();
    PyObject *line = exc ? worker_exc_line(exc) : NULL;
    const char *text = line ? PyUnicode_AsUTF8(line) : NULL;
    fprintf(stderr, "pyjobd-worker: %s: %s\n", what, text ? text : "unknown error");
    Py_XDECREF(line);
    Py_XDECREF(exc);
    PyErr_Clear();
    return -1;
}

int worker_interrupt_module_init(void)
{
    PyObject *m = PyModule_New("pyjobd");
    if (!m)
        return report("cannot create the module pyjobd");
    PyModule_AddStringConstant(m, "__doc__",
                               "pyjobd inside a worker: exceptions raised in a running job.");
    soft_timeout_exc = PyErr_NewExceptionWithDoc(
        "pyjobd.SoftTimeout", "The job ran for its soft_timeout; its hard timeout still holds.",
        PyExc_TimeoutError, NULL);
    cancelled_exc = PyErr_NewExceptionWithDoc(
        "pyjobd.Cancelled", "The job was cancelled with interrupt; it is killed if it goes on.",
        PyExc_BaseException, NULL);
    handler_fn = PyCFunction_New(&handler_def, NULL);
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    int ok = soft_timeout_exc && cancelled_exc && handler_fn && modules &&
             PyModule_AddObjectRef(m, "SoftTimeout", soft_timeout_exc) == 0 &&
             PyModule_AddObjectRef(m, "Cancelled", cancelled_exc) == 0 &&
             PyObject_SetItem(modules, PyModule_GetNameObject(m), m) == 0;
    Py_DECREF(m);
    return ok ? 0 : report("cannot create the module pyjobd");
}

/* signal.signal(WORKER_SIG_INTERRUPT, on_signal), then our C handler beneath it. */
static int install(void)
{
    PyObject *signal_mod = PyImport_ImportModule("signal");
    PyObject *r = signal_mod ? PyObject_CallMethod(signal_mod, "signal", "iO", WORKER_SIG_INTERRUPT,
                                                   handler_fn)
                             : NULL;
    Py_XDECREF(signal_mod);
    if (!r)
        return report("cannot install the interrupt handler");
    Py_DECREF(r);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigusr;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK; /* no SA_RESTART: a blocked call returns EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(WORKER_SIG_INTERRUPT, &sa, NULL) != 0) {
        fprintf(stderr, "pyjobd-worker: sigaction: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int worker_interrupt_install(void)
{
    return install();
}

void worker_interrupt_job_begin(void)
{
    job_no = (sig_atomic_t)(((unsigned)job_no + 1) & WORKER_INTERRUPT_JOB_MASK);
    due_soft = due_cancel = 0;
    struct sigaction cur;
    if (sigaction(WORKER_SIG_INTERRUPT, NULL, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO) ||
        cur.sa_sigaction != on_sigusr)
        install(); /* the last job replaced it; a failure only loses the graceful path */
}

void worker_interrupt_arm(unsigned soft_timeout_ms)
{
    soft_ms = soft_timeout_ms;
    armed = 1;
    if (due_cancel)
        PyErr_SetInterruptEx(WORKER_SIG_INTERRUPT); /* it came while the job was unpickled */
    if (!soft_timeout_ms)
        return;
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID; /* the job's main thread, where Python raises */
    sev.sigev_signo = WORKER_SIG_INTERRUPT;
    sev.sigev_value.sival_int =
        (int)(WORKER_INTERRUPT_SOFT | ((unsigned)job_no & WORKER_INTERRUPT_JOB_MASK));
    sev._sigev_un._tid = gettid(); /* sigev_notify_thread_id: not in this glibc */
    struct itimerspec when = {.it_value = {.tv_sec = soft_timeout_ms / 1000,
                                           .tv_nsec = (long)(soft_timeout_ms % 1000) * 1000000}};
    if (timer_create(CLOCK_MONOTONIC, &sev, &soft_timer) != 0) {
        fprintf(stderr, "pyjobd-worker: cannot arm the soft timeout: timer_create: %s\n",
                strerror(errno));
        return;
    }
    soft_timer_set = 1;
    timer_settime(soft_timer, 0, &when, NULL);
}

void worker_interrupt_disarm(void)
{
    armed = 0;
    if (soft_timer_set) {
        timer_delete(soft_timer);
        soft_timer_set = 0;
    }
}

void worker_interrupt_forward_to(pid_t pid)
{
    forward_pid = (sig_atomic_t)pid;
}

void worker_interrupt_block(int block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, WORKER_SIG_INTERRUPT);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}
