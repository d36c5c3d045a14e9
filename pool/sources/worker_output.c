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
 *
 * Backpressure: a worker's pipes are read for at most --max-output-bytes (a job's) or
 * STRAY_CAP (outside any job) per OUTPUT_WINDOW_MS, then not at all until the window
 * ends: a job flooding its output waits on a full pipe instead of costing the
 * supervisor a core. A job's end and a worker's end drain what is there regardless.
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
#define STRAY_LINE_MAX 512    /* bytes of one line shown; the rest is counted */
#define OUTPUT_WINDOW_MS 1000 /* a job reads --max-output-bytes per window at most */

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

/* Reading a worker's pipes on or off (its fds stay in the epoll set). */
static void set_reading(struct pool *p, struct worker *w, int on)
{
    const int fds[2] = {w->out_fd, w->err_fd};
    const unsigned kinds[2] = {EV_STDOUT, EV_STDERR};
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = on ? EPOLLIN : 0,
                                 .data.u64 = pool__ev_key(kinds[i], w->slot)};
        if (fds[i] >= 0)
            epoll_ctl(p->epfd, EPOLL_CTL_MOD, fds[i], &ev);
    }
    w->out_paused = !on;
}

/* Counts n bytes read from w's pipes in the current window: 1 once the window's budget
 * (--max-output-bytes for a job, STRAY_CAP outside any) is spent. */
static int over_budget(struct pool *p, struct worker *w, size_t n)
{
    int64_t now = clock_now_ms();
    if (now - w->out_window_ms >= OUTPUT_WINDOW_MS) {
        w->out_window_ms = now;
        w->out_window_bytes = 0;
    }
    w->out_window_bytes += n;
    return w->out_window_bytes >= (w->job ? p->cfg.max_output_bytes : STRAY_CAP);
}

/* drain: read what is there whatever the budget (a job's end, a worker's end). */
static void read_pipe(struct pool *p, struct worker *w, int fd, int drain)
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
            if (over_budget(p, w, (size_t)n) && !drain) {
                /* Backpressure: the writer blocks on a full pipe until the window
                 * ends, instead of the supervisor reading without end. */
                set_reading(p, w, 0);
                return;
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

void pool__output_read(struct pool *p, struct worker *w, int fd)
{
    read_pipe(p, w, fd, 0);
}

void pool__output_drain(struct pool *p, struct worker *w)
{
    if (w->out_fd >= 0)
        read_pipe(p, w, w->out_fd, 1);
    if (w->err_fd >= 0)
        read_pipe(p, w, w->err_fd, 1);
}

void pool__output_new_job(struct pool *p, struct worker *w)
{
    w->out_window_ms = clock_now_ms();
    w->out_window_bytes = 0;
    if (w->out_paused)
        set_reading(p, w, 1);
}

int64_t pool__output_resume(struct pool *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (!w->out_paused)
            continue;
        int64_t due = w->out_window_ms + OUTPUT_WINDOW_MS;
        if (now >= due || (w->out_fd < 0 && w->err_fd < 0)) {
            w->out_window_ms = now;
            w->out_window_bytes = 0;
            set_reading(p, w, 1);
        } else if (due < next) {
            next = due;
        }
    }
    return next;
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
