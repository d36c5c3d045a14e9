/*
 * channel.c — a worker's channel: the socketpair the supervisor talks to it on.
 *
 * Writing a job frame (resumed on EPOLLOUT when the socket buffer is full), reading
 * and decoding what comes back (hello, result, error), turning an outcome into the
 * job's final state, and deciding whether the worker goes on, is recycled or retires.
 * A malformed or unexpected frame ends the worker: the protocol has no recovery.
 * Called on the supervisor thread with the pool lock held.
 */
#include "internal.h"
#include "pyjobd/frame.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)

static char *dup_field(const struct frame *f, uint32_t tag)
{
    struct frame_field fld;
    if (frame_find_field(f, tag, &fld) != 1)
        return NULL;
    return strndup((const char *)fld.data, fld.len);
}

/* The worker's socket is gone (EOF, error, or we killed it): stop watching it. The
 * pidfd stays: the exit status will tell what happened. */
void pool__close_channel(struct pool *p, struct worker *w)
{
    if (w->sock >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->sock, NULL);
        close(w->sock);
        w->sock = -1;
    }
    free(w->out);
    w->out = NULL;
    w->out_len = w->out_off = 0;
    w->epollout = 0;
    w->in_len = 0;
    if (w->state == WORKER_IDLE || w->state == WORKER_BUSY)
        p->workers_ready--;
    w->state = WORKER_EXITING;
}

void pool__end_worker(struct pool *p, struct worker *w, enum worker_end why)
{
    if (w->state == WORKER_EMPTY || w->state == WORKER_EXITING)
        return;
    w->ending = why;
    p->restarts[why]++;
    /* A busy worker is running someone's code: only SIGKILL is sure to stop it. An
     * idle or starting one sees EOF on its channel and exits by itself. */
    if (w->state == WORKER_BUSY || why == END_CRASH)
        pool__kill_worker(w, SIGKILL);
    pool__close_channel(p, w);
}

void pool__flush_output(struct pool *p, struct worker *w)
{
    while (w->out_off < w->out_len) {
        ssize_t n = send(w->sock, w->out + w->out_off, w->out_len - w->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            w->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                     .data.u64 = pool__ev_key(EV_SOCK, w->slot)};
            if (!w->epollout)
                epoll_ctl(p->epfd, EPOLL_CTL_MOD, w->sock, &ev);
            w->epollout = 1;
            return;
        }
        log_warn("worker %d: write failed: %s", (int)w->pid, strerror(errno));
        pool__close_channel(p, w);
        return;
    }
    free(w->out);
    w->out = NULL;
    w->out_len = w->out_off = 0;
    if (w->epollout) {
        w->epollout = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_SOCK, w->slot)};
        epoll_ctl(p->epfd, EPOLL_CTL_MOD, w->sock, &ev);
    }
}

static void handle_hello(struct pool *p, struct worker *w, const struct frame *f)
{
    if (w->state != WORKER_STARTING) {
        log_warn("worker %d: unexpected hello; replacing it", (int)w->pid);
        pool__end_worker(p, w, END_CRASH);
        return;
    }
    char *py = dup_field(f, FRAME_TAG_PYTHON_VERSION);
    char *cp = dup_field(f, FRAME_TAG_CLOUDPICKLE_VERSION);
    if (py && !p->python_version[0]) {
        snprintf(p->python_version, sizeof(p->python_version), "%s", py);
        snprintf(p->cloudpickle_version, sizeof(p->cloudpickle_version), "%s", cp ? cp : "");
    }
    log_info("worker %d ready in %lld ms (Python %s, cloudpickle %s)", (int)w->pid,
             (long long)(clock_now_ms() - w->spawned_ms), py ? py : "?", cp ? cp : "?");
    free(py);
    free(cp);
    w->state = WORKER_IDLE;
    w->ready = 1;
    w->idle_since_ms = clock_now_ms();
    w->boot_failures = 0;
    p->boot_error[0] = 0;
    p->no_worker_since_ms = 0;
    p->workers_ready++;
}

static enum job_error_type error_type_from_name(const char *name)
{
    static const enum job_error_type types[] = {JOB_ERR_INVALID_PAYLOAD, JOB_ERR_UNPICKLABLE_RESULT,
                                                JOB_ERR_UNJSONABLE_RESULT};
    for (size_t i = 0; name && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(name, job_error_type_name(types[i])) == 0)
            return types[i];
    return JOB_ERR_EXCEPTION;
}

static void record_outcome(struct pool *p, struct job *j, const struct frame *f)
{
    struct frame_field fld;
    job_error_release(&j->v.error);
    if (f->type == FRAME_RESULT) {
        int json = frame_find_field(f, FRAME_TAG_RESULT_JSON, &fld) == 1;
        if ((json || frame_find_field(f, FRAME_TAG_RESULT, &fld) == 1)) {
            struct blob *b = blob_new_copy(fld.data, fld.len);
            if (b) {
                *(json ? &j->v.result_json : &j->v.result) = b;
                pool__finish_job(p, j, JOB_SUCCEEDED);
                return;
            }
        }
        pool__fail_job(p, j, JOB_ERR_UNPICKLABLE_RESULT,
                       strdup("The worker sent no result bytes (or the server ran out of memory "
                              "storing them)."));
        return;
    }
    char *type = dup_field(f, FRAME_TAG_ERROR_TYPE);
    enum job_error_type et = error_type_from_name(type);
    free(type);
    j->v.error.type = et;
    j->v.error.exc_type = dup_field(f, FRAME_TAG_EXC_TYPE);
    j->v.error.traceback = dup_field(f, FRAME_TAG_TRACEBACK);
    if (frame_find_field(f, FRAME_TAG_EXCEPTION, &fld) == 1)
        j->v.error.exception = blob_new_copy(fld.data, fld.len);
    j->v.error.message = dup_field(f, FRAME_TAG_MESSAGE);
    if (!j->v.error.message)
        j->v.error.message = strdup(job_error_type_name(et));
    pool__finish_job(p, j, JOB_FAILED);
}

void pool__drain_output(struct pool *p, struct worker *w)
{
    if (w->out_fd >= 0)
        pool__output_read(p, w, w->out_fd);
    if (w->err_fd >= 0)
        pool__output_read(p, w, w->err_fd);
}

/* Recycling: --max-tasks-per-worker, --worker-max-rss (loky's memory-leak guard,
 * read from /proc rather than psutil), and after a MemoryError under
 * --worker-memory-limit, whose heap may be left fragmented. */
static int needs_recycling(struct pool *p, struct worker *w, int out_of_memory)
{
    const char *why = NULL;
    long long rss = 0;
    if (out_of_memory && p->cfg.worker_memory_limit > 0)
        why = "its job ran out of memory";
    else if (p->cfg.max_tasks_per_worker && w->jobs_done >= p->cfg.max_tasks_per_worker)
        why = "it ran --max-tasks-per-worker jobs";
    else if (p->cfg.worker_max_rss > 0 && (rss = pool__worker_rss(w->pid)) > p->cfg.worker_max_rss)
        why = "its memory grew past --worker-max-rss";
    if (why)
        log_info("recycling worker %d after %u jobs: %s", (int)w->pid, w->jobs_done, why);
    return why != NULL;
}

static void handle_outcome(struct pool *p, struct worker *w, const struct frame *f)
{
    struct job *j = w->job;
    if (w->state != WORKER_BUSY || !j) {
        log_warn("worker %d: result without a job; replacing it", (int)w->pid);
        pool__end_worker(p, w, END_CRASH);
        return;
    }
    /* Everything the job printed before replying is in the pipes by now. */
    pool__drain_output(p, w);
    struct frame_field fld;
    int out_of_memory = frame_find_field(f, FRAME_TAG_EXC_TYPE, &fld) == 1 && fld.len == 11 &&
                        memcmp(fld.data, "MemoryError", 11) == 0;
    w->job = NULL;
    w->state = WORKER_IDLE;
    w->idle_since_ms = clock_now_ms();
    w->jobs_done++;
    record_outcome(p, j, f);
    /* A worker retired by a shrink finishes its job first, then goes. */
    if (!w->active)
        pool__end_worker(p, w, END_RETIRE);
    else if (needs_recycling(p, w, out_of_memory))
        pool__end_worker(p, w, END_RECYCLE);
}

static void handle_frame(struct pool *p, struct worker *w, const struct frame *f)
{
    switch (f->type) {
    case FRAME_HELLO:
        handle_hello(p, w, f);
        break;
    case FRAME_RESULT:
    case FRAME_ERROR:
        handle_outcome(p, w, f);
        break;
    default:
        log_warn("worker %d: unknown frame type %u; replacing it", (int)w->pid, f->type);
        pool__end_worker(p, w, END_CRASH);
    }
}

void pool__read_channel(struct pool *p, struct worker *w)
{
    for (;;) {
        if (w->in_cap - w->in_len < READ_CHUNK) {
            size_t cap = w->in_cap ? w->in_cap * 2 : 2 * READ_CHUNK;
            uint8_t *in = realloc(w->in, cap);
            if (!in) {
                log_error("worker %d: out of memory reading its reply", (int)w->pid);
                pool__kill_worker(w, SIGKILL);
                pool__close_channel(p, w);
                return;
            }
            w->in = in;
            w->in_cap = cap;
        }
        ssize_t n = read(w->sock, w->in + w->in_len, w->in_cap - w->in_len);
        if (n > 0) {
            w->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or error: the worker is ending; its pidfd will say how. */
        pool__close_channel(p, w);
        return;
    }
    size_t off = 0;
    while (w->sock >= 0) {
        struct frame f;
        long used = frame_decode(w->in + off, w->in_len - off, p->cfg.max_frame_bytes, &f);
        if (used == -EAGAIN)
            break;
        if (used < 0) {
            log_warn("worker %d: malformed frame (%s); replacing it", (int)w->pid,
                     strerror((int)-used));
            pool__end_worker(p, w, END_CRASH);
            return;
        }
        handle_frame(p, w, &f);
        off += (size_t)used;
    }
    if (w->sock >= 0 && off) {
        memmove(w->in, w->in + off, w->in_len - off);
        w->in_len -= off;
    }
    /* Don't keep a large buffer around after a large result. */
    if (w->in_len == 0 && w->in_cap > 4 * READ_CHUNK) {
        free(w->in);
        w->in = NULL;
        w->in_cap = 0;
    }
}
