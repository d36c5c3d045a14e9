/*
 * worker_output.c — what jobs print. Each worker's stdout and stderr are pipes read by the
 * supervisor; bytes that arrive while the worker runs a job belong to that job (the
 * tail, at most --max-output-bytes per stream), bytes that arrive while it is idle or
 * booting go to the server log. Before a job's result is recorded its worker's pipes
 * are drained, so everything the job wrote before replying is attributed to it.
 *
 * What reaches the log is a job's code too (a thread it left behind, a child): each
 * line becomes one log line of its own, prefixed with the worker and the stream, with
 * every byte that is not printable ASCII escaped (\n, \xNN), so it can never pass for
 * a line of the server's; and at most STRAY_CAP bytes per worker and STRAY_WINDOW_MS
 * are logged, then how much was left out.
 */
#include "sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define STRAY_CAP (16 * 1024)
#define STRAY_WINDOW_MS 10000
#define STRAY_LINE_MAX 512 /* bytes of one line shown; the rest is counted */

/* Says how much output was left out of the log since the last time. */
void pool__output_report_dropped(struct worker *w)
{
    if (!w->stray_dropped)
        return;
    log_warn("worker %d: %llu more bytes it printed outside any job were not logged (at most "
             "%d bytes every %d s are)",
             (int)w->pid, (unsigned long long)w->stray_dropped, STRAY_CAP, STRAY_WINDOW_MS / 1000);
    w->stray_dropped = 0;
}

/* One line, escaped, into the log. */
static void log_line(struct worker *w, const char *stream, const char *s, size_t n)
{
    char out[STRAY_LINE_MAX * 4 + 64];
    size_t o = 0, i = 0;
    for (; i < n && i < STRAY_LINE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\\\");
        else if (c == '\t')
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\t");
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (i < n)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "... (%zu more bytes)", n - i);
    out[o] = 0;
    log_info("worker %d %s: %s", (int)w->pid, stream, out);
}

static void log_stray_output(struct worker *w, int fd, const char *buf, size_t n)
{
    int64_t now = clock_now_ms();
    if (now - w->stray_since_ms >= STRAY_WINDOW_MS) {
        pool__output_report_dropped(w);
        w->stray_since_ms = now;
        w->stray_bytes = 0;
    }
    size_t room = w->stray_bytes < STRAY_CAP ? STRAY_CAP - w->stray_bytes : 0;
    size_t shown = n < room ? n : room;
    w->stray_bytes += shown;
    if (shown < n && !w->stray_dropped)
        log_warn("worker %d printed more than %d bytes outside any job within %d s: the rest "
                 "is not logged, only counted",
                 (int)w->pid, STRAY_CAP, STRAY_WINDOW_MS / 1000);
    w->stray_dropped += n - shown;
    const char *stream = fd == w->out_fd ? "stdout" : "stderr";
    for (size_t at = 0; at < shown;) {
        const char *nl = memchr(buf + at, '\n', shown - at);
        size_t len = nl ? (size_t)(nl - (buf + at)) : shown - at;
        size_t show = len;
        if (show && buf[at + show - 1] == '\r')
            show--;
        if (show)
            log_line(w, stream, buf + at, show);
        at += len + (nl != NULL);
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (!n || w->ready)
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
