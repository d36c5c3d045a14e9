/*
 * worker_output.c — what jobs print. Each worker's stdout and stderr are pipes read by the
 * supervisor; bytes that arrive while the worker runs a job belong to that job (the
 * tail, at most --max-output-bytes per stream), bytes that arrive while it is idle or
 * booting go to the server log. Before a job's result is recorded its worker's pipes
 * are drained, so everything the job wrote before replying is attributed to it.
 */
#include "sources.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static void log_stray_output(struct worker *w, int fd, const char *buf, size_t n)
{
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (!n)
        return;
    log_info("worker %d %s: %.*s", (int)w->pid, fd == w->out_fd ? "stdout" : "stderr", (int)n, buf);
    if (w->ready)
        return;
    /* A worker that fails to boot says why on its last line ("pyjobd-worker: ..."). */
    const char *line = buf + n;
    while (line > buf && line[-1] != '\n')
        line--;
    snprintf(w->last_words, sizeof(w->last_words), "%.*s", (int)(buf + n - line), line);
}

void pool__output_read(struct pool *p, struct worker *w, int fd)
{
    char buf[65536];
    /* Bounded per call, so a job printing without end cannot starve the loop. */
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            if (w->job) {
                struct outbuf *o = fd == w->out_fd ? &w->job->out : &w->job->err;
                pool__outbuf_append(o, (const uint8_t *)buf, (size_t)n, p->cfg.max_output_bytes);
            } else {
                log_stray_output(w, fd, buf, (size_t)n);
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF: every writer (the worker and its children) has closed it. */
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        if (fd == w->out_fd)
            w->out_fd = -1;
        else
            w->err_fd = -1;
        return;
    }
}

void pool__output_drain(struct pool *p, struct worker *w)
{
    if (w->out_fd >= 0)
        pool__output_read(p, w, w->out_fd);
    if (w->err_fd >= 0)
        pool__output_read(p, w, w->err_fd);
}

void pool__output_close(struct pool *p, struct worker *w)
{
    int *fds[2] = {&w->out_fd, &w->err_fd};
    for (int i = 0; i < 2; i++) {
        if (*fds[i] < 0)
            continue;
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, *fds[i], NULL);
        close(*fds[i]);
        *fds[i] = -1;
    }
}
