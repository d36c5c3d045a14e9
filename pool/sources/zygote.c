/*
 * zygote.c — the template process workers are forked from (`pyjobd-worker --zygote`,
 * include/pyjobd/worker.h): a worker then costs a fork of a booted interpreter
 * instead of an exec and a Python start, so that replacing a worker (a tenant
 * switch, a crash, a timeout, --isolation job) is cheap.
 *
 * The zygote boots once, next to the first workers (which are spawned as before);
 * once it says it is ready, pool__spawn_worker asks it first, and spawns itself when
 * the zygote cannot answer. The zygote runs no job, but it runs as the workers' user,
 * so a job can signal it: a zygote that dies, stops answering (1 s) or says anything
 * unasked is killed, spawning goes back to exec, and a new zygote is started after a
 * backoff (ZYGOTE_BACKOFF_MIN_MS, doubling to ZYGOTE_BACKOFF_MAX_MS while it keeps
 * failing). The zygote's stdout and stderr are the server's stderr.
 */
#include "sources.h"
#include "pyjobd/log.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ZYGOTE_REPLY_MS 1000
#define ZYGOTE_BACKOFF_MIN_MS 1000
#define ZYGOTE_BACKOFF_MAX_MS 60000

static int zygote_recv(struct pool *p, int32_t *value, int wait_ms);

/* Ends the zygote (if any) and, unless the pool is stopping, plans the next one. */
static void zygote_lost(struct pool *p, const char *why)
{
    if (p->zygote_sock >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->zygote_sock, NULL);
        close(p->zygote_sock);
        p->zygote_sock = -1;
    }
    if (p->zygote_pid > 0) {
        kill(p->zygote_pid, SIGKILL);
        int status = 0;
        while (waitpid(p->zygote_pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (why) {
            char how[96];
            wait_status_describe(status, how, sizeof(how));
            if (p->cfg.zygote_only)
                log_error("worker zygote %d %s (it %s); the server runs unprivileged "
                          "(--server-user) and cannot start another, so no worker starts "
                          "any more: restart pyjobd",
                          (int)p->zygote_pid, why, how);
            else
                log_warn("worker zygote %d %s (it %s); workers are spawned one by one until a "
                         "new one is ready",
                         (int)p->zygote_pid, why, how);
        }
        p->zygote_pid = 0;
    }
    p->zygote_ready = 0;
    if (why) {
        p->zygote_failures++;
        int64_t d = ZYGOTE_BACKOFF_MIN_MS;
        for (unsigned i = 1; i < p->zygote_failures && d < ZYGOTE_BACKOFF_MAX_MS; i++)
            d *= 2;
        p->zygote_retry_ms =
            clock_now_ms() + (d < ZYGOTE_BACKOFF_MAX_MS ? d : ZYGOTE_BACKOFF_MAX_MS);
    }
}

static int zygote_spawn(struct pool *p)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    int child_fd = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child_fd < 0) {
        close(sv[0]);
        return -errno;
    }
    char *argv[sizeof(p->worker_argv) / sizeof(p->worker_argv[0]) + 1];
    size_t n = 0;
    for (; p->worker_argv[n]; n++)
        argv[n] = p->worker_argv[n];
    argv[n++] = "--zygote";
    argv[n] = NULL;

    pid_t pid;
    int rc = pool__spawn_program(p, argv, child_fd, 2, 2, &pid); /* output: the server's log */
    close(child_fd);
    if (rc != 0) {
        close(sv[0]);
        return rc;
    }
    struct timeval tv = {.tv_sec = ZYGOTE_REPLY_MS / 1000,
                         .tv_usec = ZYGOTE_REPLY_MS % 1000 * 1000};
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    p->zygote_pid = pid;
    p->zygote_sock = sv[0];
    p->zygote_ready = 0;
    return 0;
}

/* The zygote's socket joins the supervisor's loop. */
static int zygote_watch(struct pool *p)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_ZYGOTE, 0)};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->zygote_sock, &ev) == 0)
        return 0;
    int rc = -errno;
    zygote_lost(p, NULL);
    return rc;
}

void pool__zygote_tick(struct pool *p, int64_t now)
{
    if (p->cfg.worker_exec || p->cfg.zygote_only || p->zygote_pid > 0 || p->stopping ||
        now < p->zygote_retry_ms)
        return;
    int rc = zygote_spawn(p);
    if (rc == 0)
        rc = zygote_watch(p);
    if (rc != 0) {
        log_warn("cannot start the worker zygote %s: %s", p->cfg.worker_path, strerror(-rc));
        p->zygote_failures++;
        p->zygote_retry_ms = now + ZYGOTE_BACKOFF_MAX_MS;
    }
}

int64_t pool__zygote_next_ms(const struct pool *p)
{
    return p->cfg.worker_exec || p->cfg.zygote_only || p->zygote_pid > 0 ? INT64_MAX
                                                                         : p->zygote_retry_ms;
}

/* One message from the zygote: 1, 0 at EOF, -1 on anything malformed. */
static int zygote_recv(struct pool *p, int32_t *value, int wait_ms)
{
    if (wait_ms > 0) {
        struct pollfd pfd = {.fd = p->zygote_sock, .events = POLLIN};
        int n;
        while ((n = poll(&pfd, 1, wait_ms)) < 0 && errno == EINTR)
            ;
        if (n == 0)
            return -1;
    }
    struct worker_zygote_msg m;
    ssize_t n = recv(p->zygote_sock, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(m) || m.magic != WORKER_ZYGOTE_MAGIC)
        return -1;
    *value = m.value;
    return 1;
}

void pool__zygote_event(struct pool *p)
{
    if (p->zygote_sock < 0)
        return;
    int32_t value = -1;
    int rc = zygote_recv(p, &value, 0);
    if (rc == 1 && !p->zygote_ready && value == 0) {
        p->zygote_ready = 1;
        p->zygote_failures = 0;
        log_debug("worker zygote %d is ready", (int)p->zygote_pid);
        return;
    }
    zygote_lost(p, rc == 0 ? "exited" : "sent a message nobody asked for");
}

int pool__zygote_fork(struct pool *p, int chan, int out, int err, pid_t *pid)
{
    if (!p->zygote_ready)
        return 1;
    struct worker_zygote_msg m = {WORKER_ZYGOTE_MAGIC, 0};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {&m, sizeof(m)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(3 * sizeof(int));
    int fds[3] = {chan, out, err};
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    if (sendmsg(p->zygote_sock, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(m)) {
        zygote_lost(p, "does not take requests");
        return 1;
    }
    int32_t value = 0;
    int rc = zygote_recv(p, &value, ZYGOTE_REPLY_MS);
    if (rc != 1 || value == 0) {
        zygote_lost(p, rc == 0 ? "exited" : "did not answer a fork request within 1 s");
        return 1;
    }
    if (value < 0)
        return value; /* fork failed (EAGAIN: RLIMIT_NPROC); spawning would fail too */
    /* Forked with CLONE_PARENT, it must be our child; anything else is not a worker. */
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)value, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        zygote_lost(p, "answered with a pid that is not the server's child");
        return 1;
    }
    *pid = (pid_t)value;
    return 0;
}

int pool__zygote_spawn_ready(struct pool *p, int wait_ms)
{
    int rc = zygote_spawn(p);
    if (rc != 0)
        return rc;
    int32_t value = -1;
    if (zygote_recv(p, &value, wait_ms) != 1 || value != 0) {
        zygote_lost(p, NULL);
        return -ECHILD;
    }
    p->zygote_ready = 1;
    return 0;
}

int pool__zygote_adopt(struct pool *p, const struct pool_zygote *z)
{
    p->zygote_pid = z->pid;
    p->zygote_sock = z->sock;
    p->zygote_ready = 1;
    return zygote_watch(p);
}

int pool__is_zygote(const struct pool *p, pid_t pid)
{
    return p->zygote_pid > 0 && pid == p->zygote_pid;
}

void pool__zygote_stop(struct pool *p)
{
    zygote_lost(p, NULL);
}
