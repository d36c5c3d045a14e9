/*
 * worker_proc.c — starting and stopping pyjobd-worker processes.
 *
 * Workers are started with posix_spawn (never a plain fork of this threaded server):
 * the child's end of a socketpair becomes fd 3, stdin is /dev/null, stdout joins
 * stderr, every other fd is closed, signal masks and dispositions are reset, and the
 * child gets its own session so a terminal's Ctrl-C reaches only the server, which
 * then stops the workers itself. Exit is observed through a pidfd.
 */
#include "internal.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define WORKER_CHANNEL_FD 3

int pool__spawn_worker(struct pool *p, struct worker *w)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    /* dup2 onto itself would leave FD_CLOEXEC set; keep the child's end above 3. */
    int child_fd = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child_fd < 0) {
        int err = -errno;
        close(sv[0]);
        return err;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    posix_spawn_file_actions_adddup2(&fa, child_fd, WORKER_CHANNEL_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_CHANNEL_FD + 1);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);

    char *argv[] = {(char *)p->cfg.worker_path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, p->cfg.worker_path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(child_fd);
    if (rc != 0) {
        close(sv[0]);
        return -rc;
    }

    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        int err = -errno;
        kill(pid, SIGKILL);
        close(sv[0]);
        return err;
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    w->pid = pid;
    w->pidfd = pidfd;
    w->sock = sv[0];
    w->state = WORKER_STARTING;
    w->in_len = 0;
    w->out_len = w->out_off = 0;
    w->jobs_done = 0;
    return 0;
}

void pool__kill_worker(struct worker *w, int sig)
{
    if (w->pidfd >= 0 && pidfd_send_signal(w->pidfd, sig, NULL, 0) != 0 && errno != ESRCH)
        log_warn("worker %d: cannot send signal %d: %s", (int)w->pid, sig, strerror(errno));
}

void pool__describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        snprintf(buf, len, "was killed by signal SIG%s (%d)%s", name ? name : "?", WTERMSIG(status),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended with wait status 0x%x", status);
    }
}

long long pool__worker_rss(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long size, resident;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}
