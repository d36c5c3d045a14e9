/*
 * zygote.c — the template process workers are forked from: Python and cloudpickle
 * are loaded once here, no job ever runs here, and a new worker costs a fork instead
 * of an exec and an interpreter start. --init runs in each worker after the fork
 * (what it opens, connections or threads, is that worker's own, as in a spawned one).
 *
 * The fork is clone(CLONE_PARENT): the new worker is the server's child, not ours,
 * so the server reaps it, watches it through a pidfd and kills it as it does a worker
 * it spawned itself, and the zygote has no children to wait for. The zygote stays
 * single-threaded (nothing but this loop runs in it), so no lock can be held across
 * the fork; Python's own fork hooks (PyOS_BeforeFork and the AfterFork pair) run
 * around it, which reseed `random` in the child and reset its threading state.
 */
#include <Python.h>

#include "zygote.h"
#include "reaper.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void zygote_send(int32_t value)
{
    struct worker_zygote_msg m = {WORKER_ZYGOTE_MAGIC, value};
    if (send(WORKER_FD, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
        _exit(WORKER_EXIT_OK); /* the server is gone */
}

/* One request: returns 1 with its three fds, 0 at EOF; exits on a broken request. */
static int zygote_receive(int fds[3])
{
    struct worker_zygote_msg m;
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {&m, sizeof(m)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    Py_BEGIN_ALLOW_THREADS;
    do
        n = recvmsg(WORKER_FD, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS;
    if (n == 0 || (n < 0 && errno == ECONNRESET))
        return 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int got = c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
                  ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int))
                  : 0;
    if (got > 0)
        memcpy(fds, CMSG_DATA(c), (size_t)(got < 3 ? got : 3) * sizeof(int));
    if (n != (ssize_t)sizeof(m) || m.magic != WORKER_ZYGOTE_MAGIC || got != 3 ||
        (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        fprintf(stderr, "pyjobd-worker --zygote: malformed fork request from the server\n");
        _exit(WORKER_EXIT_PROTOCOL);
    }
    return 1;
}

/* In the new worker: its fds in place, its own session, tied to the server. */
static void zygote_child_setup(const int fds[3], pid_t server)
{
    if (setsid() < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0 ||
        dup3(fds[0], WORKER_FD, O_CLOEXEC) < 0)
        _exit(WORKER_EXIT_BOOT_FAILED);
    if (close_range(WORKER_FD + 1, ~0U, 0) != 0) {
        for (int i = 0; i < 3; i++)
            close(fds[i]);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != server)
        _exit(WORKER_EXIT_OK); /* the server died while we were being born */
    worker_reaper_enable();
}

/* What ps shows of a forked worker: its command line, with --forked for --zygote
 * (the same length, written over it in place). */
static void zygote_rename(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--zygote") == 0)
            memcpy(argv[i], "--forked", 8);
}

void worker_zygote_serve(struct worker_py *py, int argc, char **argv)
{
    pid_t server = getppid();
    zygote_send(0); /* booted */
    for (;;) {
        int fds[3] = {-1, -1, -1};
        if (!zygote_receive(fds))
            _exit(WORKER_EXIT_OK);
        worker_interp_flush_stdio(); /* nothing buffered is written twice */
        PyOS_BeforeFork();
        long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
        if (pid == 0) {
            PyOS_AfterFork_Child();
            py->pid = getpid();
            zygote_child_setup(fds, server);
            zygote_rename(argc, argv);
            return;
        }
        int err = errno;
        PyOS_AfterFork_Parent();
        for (int i = 0; i < 3; i++)
            close(fds[i]);
        zygote_send(pid > 0 ? (int32_t)pid : -err);
    }
}
