/*
 * output.c — what jobs print. Each worker's stdout and stderr are pipes read by the
 * supervisor; bytes that arrive while the worker runs a job belong to that job (the
 * tail, at most --max-output-bytes per stream), bytes that arrive while it is idle or
 * booting go to the server log. Before a job's result is recorded its worker's pipes
 * are drained, so everything the job wrote before replying is attributed to it.
 */
#include "internal.h"
#include "pyjobd/store_shared.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

void pool__output_append(struct outbuf *o, const uint8_t *data, size_t len, size_t max)
{
    if (len >= max) {
        o->dropped += o->len + (len - max);
        data += len - max;
        len = max;
        o->len = 0;
    } else if (o->len + len > max) {
        size_t drop = o->len + len - max;
        memmove(o->data, o->data + drop, o->len - drop);
        o->len -= drop;
        o->dropped += drop;
    }
    if (!len)
        return;
    if (o->cap - o->len < len) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap - o->len < len)
            cap *= 2;
        if (cap > max)
            cap = max;
        uint8_t *d = realloc(o->data, cap);
        if (!d) {
            o->dropped += len;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, data, len);
    o->len += len;
}

void pool__output_free(struct outbuf *o)
{
    free(o->data);
    memset(o, 0, sizeof(*o));
}

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
                pool__output_append(o, (const uint8_t *)buf, (size_t)n, p->cfg.max_output_bytes);
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

int pool_job_output(struct pool *p, const char *id, struct job_output *out)
{
    int rc = 0;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__lookup(p, id, &rc);
    if (pool__elsewhere(p, j) && !(j && j->ran_here)) {
        /* Output is kept by the node that ran the job, in its memory. */
        pthread_mutex_unlock(&p->lock);
        struct job_view v;
        rc = store_fetch(p->cfg.store, id, &v);
        if (rc == 0) {
            job_view_release(&v);
            rc = -EREMOTE;
        }
        return rc;
    }
    if (j) {
        out->out = blob_new_copy(j->out.data, j->out.len);
        out->err = blob_new_copy(j->err.data, j->err.len);
        out->out_dropped = j->out.dropped;
        out->err_dropped = j->err.dropped;
        if (!out->out || !out->err)
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != 0)
        job_output_release(out);
    return rc;
}

void job_output_release(struct job_output *o)
{
    blob_unref(o->out);
    blob_unref(o->err);
    memset(o, 0, sizeof(*o));
}
