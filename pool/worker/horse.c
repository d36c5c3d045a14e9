/*
 * horse.c — --isolation job: every job in a process forked for it (as RQ's "work
 * horse"), so that nothing a job does reaches the next one, even of the same tenant.
 *
 * The worker reads the job frame and forks; only the child (the horse) unpickles and
 * runs it, on a socketpair of its own: the horse never holds the channel (fd 3), so
 * no frame it writes reaches the server unchecked. The worker takes one whole reply
 * frame from it, then kills the horse and every process it started (the worker is
 * their subreaper) before it forwards the reply, so no thread or child of the job
 * outlives it. While a horse lives the worker is not dumpable, so that the job cannot
 * ptrace its way to fd 3; the horse gets back the dumpable state the worker had.
 */
#include <Python.h>

#include "horse.h"
#include "channel.h"
#include "fork_hooks.h"
#include "interrupt.h"
#include "reaper.h"
#include "reply.h"
#include "runner.h"
#include "sandbox.h"
#include "worker.h"
#include "pyjobd/job.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a horse that closed its end without a reply may take to be gone. */
#define HORSE_EXIT_GRACE_MS 200

static _Noreturn void horse_fail(int code, const char *what, const char *detail)
{
    fprintf(stderr, "pyjobd-worker: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    worker_interp_flush_stdio();
    _exit(code);
}

/* In the horse: run the job, send its reply on fd, end. */
static _Noreturn void horse_run_job(struct worker_py *py, PyObject *owner, const struct frame *job,
                                    int fd)
{
    struct frame_builder reply;
    if (worker_runner_run(py, owner, job, &reply) != 0)
        horse_fail(WORKER_EXIT_PROTOCOL, "malformed fields in a job frame", NULL);
    uint8_t *buf;
    size_t len;
    int rc = frame_builder_finish(&reply, &buf, &len);
    if (rc != 0)
        horse_fail(WORKER_EXIT_INTERNAL, "cannot build a reply frame", strerror(-rc));
    rc = worker_channel_write(fd, buf, len);
    if (rc != 0)
        horse_fail(WORKER_EXIT_INTERNAL, "cannot hand the reply to the worker", strerror(-rc));
    worker_interp_flush_stdio();
    _exit(WORKER_EXIT_OK);
}

/* The horse's wait status once it is gone; -1 if it is still alive after the grace. */
static int horse_wait(pid_t pid)
{
    struct timespec pause = {.tv_nsec = 1000000};
    for (int i = 0; i < HORSE_EXIT_GRACE_MS; i++) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return status;
        if (got < 0 && errno != EINTR)
            return -1;
        nanosleep(&pause, NULL);
    }
    return -1;
}

/* Ends the worker the way the horse ended, so the server reports the job's crash as
 * it does for a job run in the worker itself. */
static _Noreturn void horse_end_as(int status)
{
    worker_interp_flush_stdio();
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL); /* not faulthandler's, not Python's */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : WORKER_EXIT_INTERNAL);
}

/* The reply the job's process declared (declared bytes) is more than max: it is not
 * read; the worker answers result_too_large itself, in a frame put in *buf (malloc'd). */
static size_t horse_too_large(const struct worker_py *py, size_t declared, size_t max,
                              uint8_t **buf)
{
    char size[JOB_BYTES_TEXT], limit[JOB_BYTES_TEXT], result[JOB_BYTES_TEXT];
    PyObject *msg = PyUnicode_FromFormat(
        "The job's process sent its worker a reply of %s (%zu bytes declared), more than the "
        "server accepts: %s, the result limit of %s (--max-result-bytes) plus 1 MiB for the "
        "rest of the reply. Nothing of it was read and the job's process was killed. Return "
        "less (write large outputs to shared storage and return their path), or ask the "
        "operator to raise the limit; a job's code that writes to its reply channel gets "
        "this too.",
        job_bytes_text(declared, size), declared, job_bytes_text(max, limit),
        job_bytes_text(py->max_result_bytes, result));
    struct frame_builder b;
    worker_reply_error(py, &b, "result_too_large", msg, NULL, NULL);
    Py_XDECREF(msg);
    size_t len;
    int rc = frame_builder_finish(&b, buf, &len);
    if (rc != 0)
        horse_fail(WORKER_EXIT_INTERNAL, "cannot build a reply frame", strerror(-rc));
    return len;
}

size_t worker_horse_run(struct worker_py *py, PyObject *owner, const struct frame *job, uid_t uid,
                        uint8_t **reply)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        horse_fail(WORKER_EXIT_INTERNAL, "cannot fork a process for the job: socketpair",
                   strerror(errno));
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (dumpable == 1)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pid_t worker = getpid();
    worker_interp_flush_stdio();
    struct worker_fork_hooks hooks;
    worker_fork_hooks_trim(&hooks);
    PyOS_BeforeFork();
    /* An interrupt that comes before the horse is known waits, then goes on to it. */
    worker_interrupt_block(1);
    pid_t pid = fork();
    if (pid == 0) {
        PyOS_AfterFork_Child();
        worker_fork_hooks_restore(&hooks, 1);
        worker_interrupt_forward_to(0);
        worker_interrupt_block(0);
        py->pid = getpid();
        close(sv[0]);
        close(WORKER_FD);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != worker)
            _exit(WORKER_EXIT_OK);
        if (uid) {
            worker_sandbox_become(uid); /* non-dumpable for good */
            worker_interp_sync_user_env();
        } else if (dumpable == 1) {
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        }
        horse_run_job(py, owner, job, sv[1]);
    }
    int err = errno;
    PyOS_AfterFork_Parent();
    worker_fork_hooks_restore(&hooks, 0);
    if (pid > 0)
        worker_interrupt_forward_to(pid);
    worker_interrupt_block(0);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        horse_fail(WORKER_EXIT_INTERNAL, "cannot fork a process for the job", strerror(err));
    }

    /* Until the horse is dead the worker writes no Python object: its pages are the
     * horse's too, and a write would copy one (or split a huge page, see arenas.c). */
    *reply = NULL;
    struct frame f;
    size_t max = py->max_result_bytes ? py->max_result_bytes + WORKER_REPLY_SLACK : UINT32_MAX;
    int rc = worker_channel_read_raw(sv[0], max, reply, &f);
    worker_interrupt_forward_to(0);
    close(sv[0]);
    int too_large = rc == -EMSGSIZE;
    if ((rc == 1 && (f.type == FRAME_RESULT || f.type == FRAME_ERROR)) || too_large) {
        /* The horse first, waited for at once (it cannot ignore SIGKILL): what it
         * started, if anything, then comes to us and goes the reaper's slower way. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        if (worker_reaper_kill_all() != 0)
            horse_fail(WORKER_EXIT_INTERNAL,
                       "processes the job started did not die within 1 s of SIGKILL", NULL);
        if (dumpable == 1)
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        worker_fork_hooks_release(&hooks);
        return too_large ? horse_too_large(py, f.len, max, reply)
                         : FRAME_HEADER_SIZE + (size_t)f.len;
    }
    free(*reply);
    *reply = NULL;
    int status = rc == 1 ? -1 : horse_wait(pid);
    worker_reaper_kill_all();
    if (rc == 1) {
        char what[96];
        snprintf(what, sizeof(what), "a frame of type %u instead of a result or an error", f.type);
        horse_fail(WORKER_EXIT_PROTOCOL, "the job's process sent the worker", what);
    }
    if (status == -1)
        horse_fail(WORKER_EXIT_PROTOCOL,
                   "the job's process closed its reply channel without replying and went on "
                   "running",
                   rc == 0 ? NULL : strerror(-rc));
    horse_end_as(status);
}
