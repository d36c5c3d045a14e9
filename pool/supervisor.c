/*
 * supervisor.c — the pool's one thread: an epoll loop over the wake eventfd, each
 * worker's socket and each worker's pidfd.
 *
 * It owns every job transition after submission: dispatch (FIFO to idle workers),
 * results, per-job deadlines (enforced from outside the worker with SIGKILL), crash
 * classification (the pidfd and wait4 are the single source of truth for a worker's
 * end), respawn with backoff for workers that fail to boot, and waiter deadlines.
 * Invariant: a job is running iff it is some worker's w->job; when a worker ends,
 * its job (if any) is finished before the slot is reused, so no job is left behind.
 */
#include "internal.h"
#include "pyjobd/frame.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define STOP_GRACE_MS 3000
#define BOOT_BACKOFF_MIN_MS 100
#define BOOT_BACKOFF_MAX_MS 30000

void pool__wake(struct pool *p)
{
    uint64_t one = 1;
    ssize_t n = write(p->wakefd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake-up is already pending, which is all we need */
}

static void count_duration(struct pool *p, const struct job *j)
{
    double d = (double)(j->v.finished_at.tv_sec - j->v.started_at.tv_sec) +
               (double)(j->v.finished_at.tv_nsec - j->v.started_at.tv_nsec) / 1e9;
    int b = 0;
    while (b < POOL_DURATION_BUCKETS - 1 && d > pool_duration_bounds[b])
        b++;
    p->duration_buckets[b]++;
    p->duration_sum += d;
    p->duration_count++;
}

void pool__finish_job(struct pool *p, struct job *j, enum job_status status)
{
    int ran = j->v.status == JOB_RUNNING;
    if (ran)
        p->running--;
    pool__queue_remove(p, j);
    j->v.status = status;
    clock_gettime(CLOCK_REALTIME, &j->v.finished_at);
    if (ran)
        count_duration(p, j);
    p->finished[status]++;
    j->worker = NULL;
    j->deadline_ms = 0;
    job_spec_release(&j->spec); /* the payload is no longer needed */
    pool__retention_add(p, j);
    pool__persist(p, j);
    if (status == JOB_FAILED)
        log_info("job %s failed: %s: %s", j->v.id, job_error_type_name(j->v.error.type),
                 j->v.error.message ? j->v.error.message : "");
    else
        log_debug("job %s %s", j->v.id, job_status_name(status));
    if (pool__shared(p) && !j->mirror)
        /* Another node could have taken the job over (this one presumed dead): the
         * waiters learn the end once the database accepted it (cluster.c). */
        j->awaiting_commit = 1;
    else
        pool__waiters_fire_job(p, j);
}

void pool__fail_job(struct pool *p, struct job *j, enum job_error_type type, char *message)
{
    job_error_release(&j->v.error);
    j->v.error.type = type;
    j->v.error.message = message ? message : strdup(job_error_type_name(type));
    pool__finish_job(p, j, JOB_FAILED);
}

char *pool__format(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* --- worker processes ------------------------------------------------------------- */

static int64_t boot_backoff_ms(unsigned failures)
{
    int64_t d = BOOT_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && d < BOOT_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < BOOT_BACKOFF_MAX_MS ? d : BOOT_BACKOFF_MAX_MS;
}

static void start_worker(struct pool *p, struct worker *w)
{
    int rc = pool__spawn_worker(p, w);
    if (rc == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_SOCK, w->slot)};
        struct epoll_event evp = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_PIDFD, w->slot)};
        struct epoll_event evo = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_STDOUT, w->slot)};
        struct epoll_event eve = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_STDERR, w->slot)};
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->sock, &ev) == 0 &&
            (w->pidfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->pidfd, &evp) == 0) &&
            epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->out_fd, &evo) == 0 &&
            epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->err_fd, &eve) == 0) {
            w->spawned_ms = clock_now_ms();
            clock_gettime(CLOCK_REALTIME, &w->started_at);
            w->ending = END_NONE;
            log_debug("worker %d spawned in slot %u", (int)w->pid, w->slot);
            return;
        }
        rc = -errno;
        pool__kill_worker(w, SIGKILL);
        pool__close_channel(p, w); /* the pidfd path reaps it */
        return;
    }
    w->boot_failures++;
    p->boot_failures++;
    if (!p->workers_ready && !p->no_worker_since_ms)
        p->no_worker_since_ms = clock_now_ms();
    snprintf(p->boot_error, sizeof(p->boot_error), "cannot start the worker program %s: %s",
             p->cfg.worker_path, strerror(-rc));
    w->respawn_at_ms = clock_now_ms() + boot_backoff_ms(w->boot_failures);
    log_error("%s; retrying in %lld ms", p->boot_error,
              (long long)boot_backoff_ms(w->boot_failures));
}

/* Puts a job whose attempt ended badly back at the head of the queue when it has
 * retries left (its error stays, showing what happened last). Returns 1 if so. */
static int retry_job(struct pool *p, struct job *j)
{
    if (p->stopping || p->draining || j->v.attempts > j->spec.max_retries)
        return 0;
    log_info("job %s: attempt %u failed (%s); retrying (%u retries allowed)", j->v.id,
             j->v.attempts, job_error_type_name(j->v.error.type), j->spec.max_retries);
    p->running--;
    j->v.status = JOB_QUEUED;
    j->worker = NULL;
    j->deadline_ms = 0;
    pool__queue_push_front(p, j);
    pool__persist(p, j);
    return 1;
}

static void crash_job(struct pool *p, struct worker *w, int status, const struct rusage *ru)
{
    struct job *j = w->job;
    char how[128];
    pool__describe_exit(status, how, sizeof(how));
    long long rss = (long long)ru->ru_maxrss * 1024;
    job_error_release(&j->v.error);
    j->v.error.type = JOB_ERR_WORKER_CRASHED;
    j->v.error.max_rss_bytes = rss;
    const char *why;
    if (WIFSIGNALED(status)) {
        j->v.error.signal = WTERMSIG(status);
        why = WTERMSIG(status) == SIGKILL
                  ? "Something outside the worker killed it (for example the kernel's "
                    "out-of-memory killer or an operator)."
                  : "This is usually a segmentation fault or an abort in a C extension "
                    "called by the function, or the operating system killing the worker "
                    "for using too much memory.";
    } else {
        j->v.error.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        why = "The function (or code it called) ended the process, e.g. with os._exit(), "
              "before returning a result.";
    }
    char limit[128] = "";
    if (p->cfg.worker_memory_limit > 0)
        snprintf(limit, sizeof(limit),
                 " Workers are limited to %lld bytes of memory "
                 "(--worker-memory-limit).",
                 p->cfg.worker_memory_limit);
    j->v.error.message =
        pool__format("The worker process (pid %d) running this job %s (peak memory %.1f MiB). %s%s "
                     "The worker has been replaced; other jobs are not affected.",
                     (int)w->pid, how, (double)rss / (1024 * 1024), why, limit);
    w->job = NULL;
    if (!retry_job(p, j))
        pool__finish_job(p, j, JOB_FAILED);
}

static void reap_worker(struct pool *p, struct worker *w)
{
    int status;
    struct rusage ru;
    /* The worker is a zombie now (its pidfd fired), so its pid, which is also its
     * process group id (it leads its own session), cannot have been reused yet: kill
     * whatever its jobs left running in that group before reaping it. */
    kill(-w->pid, SIGKILL);
    pid_t r = wait4(w->pid, &status, WNOHANG, &ru);
    if (r == 0)
        return; /* not yet: the pidfd will fire again */
    if (r < 0) {
        log_error("worker %d: wait4 failed: %s", (int)w->pid, strerror(errno));
        memset(&ru, 0, sizeof(ru));
        status = 0;
    }
    pool__drain_output(p, w); /* a crash's last words (e.g. faulthandler's stack) */
    pool__output_close(p, w);
    int booted = w->ready;
    if (w->ending == END_NONE && booted && !p->stopping)
        p->restarts[END_CRASH]++;
    pool__close_channel(p, w);
    char how[128];
    pool__describe_exit(status, how, sizeof(how));
    if (w->job) {
        log_warn("worker %d %s while running job %s", (int)w->pid, how, w->job->v.id);
        crash_job(p, w, status, &ru);
    } else if (!booted && !p->stopping && w->ending == END_NONE) {
        w->boot_failures++;
        int64_t delay = boot_backoff_ms(w->boot_failures);
        p->boot_failures++;
        if (!p->workers_ready && !p->no_worker_since_ms)
            p->no_worker_since_ms = clock_now_ms();
        char why[512];
        snprintf(why, sizeof(why), "worker %d %s before it was ready%s%s", (int)w->pid, how,
                 w->last_words[0] ? ": " : " (see the server log)", w->last_words);
        size_t len = strnlen(why, sizeof(p->boot_error) - 1); /* the start says most */
        memcpy(p->boot_error, why, len);
        p->boot_error[len] = 0;
        log_error("%s; retrying in %lld ms", p->boot_error, (long long)delay);
        w->respawn_at_ms = clock_now_ms() + delay;
    } else if (!p->stopping && w->ending != END_RETIRE) {
        log_info("worker %d %s; replacing it", (int)w->pid, how);
    } else {
        log_debug("worker %d %s", (int)w->pid, how);
    }
    if (w->pidfd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
        close(w->pidfd);
        w->pidfd = -1;
    }
    w->pid = 0;
    /* A booted worker, or one we ended ourselves, is replaced at once; one that died
     * booting keeps the backoff set above. */
    if (booted || w->ending != END_NONE)
        w->respawn_at_ms = clock_now_ms();
    w->state = WORKER_EMPTY;
    w->ending = END_NONE;
}

/* Without a pidfd, a worker whose channel has closed is polled with wait4 until it
 * can be reaped. (A job that forked a process holding fd 3 would keep the channel open
 * past the worker's death; pidfds do not have that blind spot.) Returns 1 while some
 * worker is still being polled. */
static int reap_pending(struct pool *p)
{
    int polling = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->pid > 0 && w->pidfd < 0 && w->state == WORKER_EXITING) {
            reap_worker(p, w);
            polling |= w->state == WORKER_EXITING;
        }
    }
    return polling;
}

/* --- dispatch and deadlines ------------------------------------------------------- */

static int send_job(struct pool *p, struct worker *w, struct job *j)
{
    struct frame_builder b;
    frame_builder_init(&b, FRAME_JOB);
    frame_builder_add(&b, FRAME_TAG_CALLABLE, blob_data(j->spec.callable),
                      blob_len(j->spec.callable));
    if (j->spec.args)
        frame_builder_add(&b, FRAME_TAG_ARGS, blob_data(j->spec.args), blob_len(j->spec.args));
    if (j->spec.kwargs)
        frame_builder_add(&b, FRAME_TAG_KWARGS, blob_data(j->spec.kwargs),
                          blob_len(j->spec.kwargs));
    if (j->spec.json_args)
        frame_builder_add(&b, FRAME_TAG_JSON_ARGS, blob_data(j->spec.json_args),
                          blob_len(j->spec.json_args));
    if (j->spec.json_kwargs)
        frame_builder_add(&b, FRAME_TAG_JSON_KWARGS, blob_data(j->spec.json_kwargs),
                          blob_len(j->spec.json_kwargs));
    if (j->spec.result_json)
        frame_builder_add_str(&b, FRAME_TAG_RESULT_FORMAT, "json");
    int rc = frame_builder_finish(&b, &w->out, &w->out_len);
    if (rc != 0)
        return rc;
    w->out_off = 0;
    w->job = j;
    w->state = WORKER_BUSY;
    j->worker = w;
    j->v.status = JOB_RUNNING;
    clock_gettime(CLOCK_REALTIME, &j->v.started_at);
    j->v.attempts++;
    j->v.worker_pid = w->pid;
    j->ran_here = 1;
    j->deadline_ms = j->v.timeout > 0 ? clock_now_ms() + (int64_t)(j->v.timeout * 1000.0 + 0.5) : 0;
    p->running++;
    pool__persist(p, j); /* "running" is on record before the worker can act */
    pool__flush_output(p, w);
    return 0;
}

static void dispatch(struct pool *p)
{
    for (unsigned i = 0; i < p->nslots && p->queue_head; i++) {
        struct worker *w = p->workers[i];
        if (w->state != WORKER_IDLE || !w->active)
            continue;
        struct job *j = pool__queue_pop(p);
        if (send_job(p, w, j) != 0)
            pool__fail_job(p, j, JOB_ERR_INVALID_PAYLOAD,
                           strdup("the server ran out of memory preparing the job for a worker"));
    }
}

static void enforce_deadlines(struct pool *p, int64_t now)
{
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        struct job *j = w->job;
        if (w->state != WORKER_BUSY || !j || !j->deadline_ms || now < j->deadline_ms)
            continue;
        /* SIGKILL from outside: a job stuck in C code cannot ignore it. */
        log_warn("job %s exceeded its timeout of %g s; killing worker %d", j->v.id, j->v.timeout,
                 (int)w->pid);
        pool__drain_output(p, w);
        w->job = NULL;
        pool__end_worker(p, w, END_TIMEOUT);
        job_error_release(&j->v.error);
        j->v.error.type = JOB_ERR_TIMEOUT;
        j->v.error.message = pool__format(
            "The job ran longer than its timeout of %g s and was stopped; the worker running "
            "it was killed and replaced. Raise \"timeout\" in the request (or the server's "
            "--default-timeout) if the job needs more time.",
            j->v.timeout);
        if (!j->spec.retry_on_timeout || !retry_job(p, j))
            pool__finish_job(p, j, JOB_FAILED);
    }
}

static int is_live(const struct worker *w)
{
    return w->active && !w->parked &&
           (w->state == WORKER_STARTING || w->state == WORKER_IDLE || w->state == WORKER_BUSY);
}

static unsigned count_live(const struct pool *p)
{
    unsigned live = 0;
    for (unsigned i = 0; i < p->nslots; i++)
        live += is_live(p->workers[i]);
    return live;
}

/* --idle-timeout: idle workers beyond --min-workers exit and their slots are parked,
 * like loky's executor timeout; unpark_for_queue() brings them back on demand. */
static void park_idle_workers(struct pool *p, int64_t now)
{
    if (p->cfg.idle_timeout <= 0)
        return;
    int64_t limit = (int64_t)(p->cfg.idle_timeout * 1000.0);
    unsigned live = count_live(p);
    for (unsigned i = 0; i < p->nslots && live > p->cfg.min_workers; i++) {
        struct worker *w = p->workers[i];
        if (!is_live(w) || w->state != WORKER_IDLE || now - w->idle_since_ms < limit)
            continue;
        log_info("worker %d idle for %g s; stopping it (--idle-timeout)", (int)w->pid,
                 p->cfg.idle_timeout);
        w->parked = 1;
        pool__end_worker(p, w, END_RETIRE);
        live--;
    }
}

static void unpark_for_queue(struct pool *p, int64_t now)
{
    size_t ready = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        ready += is_live(w) && w->state != WORKER_BUSY;
    }
    size_t need = p->queued > ready ? p->queued - ready : 0;
    for (unsigned i = 0; i < p->nslots && need; i++) {
        struct worker *w = p->workers[i];
        if (w->active && w->parked) {
            w->parked = 0;
            w->respawn_at_ms = now;
            need--;
        }
    }
}

/* Crash-loop protection, second half: while no worker can boot, jobs stay queued
 * for --boot-failure-timeout, then fail with the reason instead of waiting forever. */
static void fail_queue_if_no_workers(struct pool *p, int64_t now)
{
    if (!p->no_worker_since_ms || p->cfg.boot_failure_timeout <= 0 || p->workers_ready ||
        now - p->no_worker_since_ms < (int64_t)(p->cfg.boot_failure_timeout * 1000.0))
        return;
    struct job *j;
    while ((j = pool__queue_pop(p)))
        pool__fail_job(
            p, j, JOB_ERR_WORKER_CRASHED,
            pool__format("No worker could start for %g s (%s). Fix the worker environment "
                         "(see GET /readyz and the server log), then submit the job again.",
                         p->cfg.boot_failure_timeout, p->boot_error));
}

static void start_due_workers(struct pool *p, int64_t now)
{
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->active && !w->parked && w->state == WORKER_EMPTY && now >= w->respawn_at_ms)
            start_worker(p, w);
    }
}

/* Milliseconds until the next thing the loop must do by itself, or -1. */
static int next_timeout(struct pool *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state == WORKER_BUSY && w->job && w->job->deadline_ms)
            next = w->job->deadline_ms < next ? w->job->deadline_ms : next;
        if (w->active && !w->parked && w->state == WORKER_EMPTY && !p->stopping)
            next = w->respawn_at_ms < next ? w->respawn_at_ms : next;
    }
    if (p->cfg.idle_timeout > 0 && count_live(p) > p->cfg.min_workers) {
        int64_t limit = (int64_t)(p->cfg.idle_timeout * 1000.0);
        for (unsigned i = 0; i < p->nslots; i++) {
            struct worker *w = p->workers[i];
            if (is_live(w) && w->state == WORKER_IDLE && w->idle_since_ms + limit < next)
                next = w->idle_since_ms + limit;
        }
    }
    if (p->no_worker_since_ms && p->queue_head && p->cfg.boot_failure_timeout > 0) {
        int64_t t = p->no_worker_since_ms + (int64_t)(p->cfg.boot_failure_timeout * 1000.0);
        next = t < next ? t : next;
    }
    int64_t expiry = pool__retention_next_ms(p);
    next = expiry < next ? expiry : next;
    struct waiter *top = pool__waiter_heap_top(&p->waiters);
    if (top && top->deadline_ms < next)
        next = top->deadline_ms;
    if (next == INT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now > 60000 ? 60000 : (int)(next - now);
}

/* --- stopping ---------------------------------------------------------------------- */

static void interrupt_all(struct pool *p)
{
    struct job *j;
    /* With a store, queued jobs stay queued on disk for the next start. */
    while (!p->cfg.store && (j = pool__queue_pop(p))) {
        pool__fail_job(p, j, JOB_ERR_INTERRUPTED,
                       strdup("The server stopped before this job ran. Submit it again."));
    }
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state == WORKER_EMPTY)
            continue;
        if ((j = w->job)) {
            w->job = NULL;
            pool__fail_job(p, j, JOB_ERR_INTERRUPTED,
                           strdup("The server stopped while this job was running; the job was "
                                  "killed. Submit it again."));
            pool__kill_worker(w, SIGKILL);
        }
        /* Idle workers see EOF on their channel and exit by themselves. */
        pool__close_channel(p, w);
    }
    pool__waiters_fire_all(p);
}

static int all_workers_gone(const struct pool *p)
{
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->workers[i]->state != WORKER_EMPTY)
            return 0;
    return 1;
}

/* --- the loop ---------------------------------------------------------------------- */

void *pool__supervisor_main(void *arg)
{
    struct pool *p = arg;
    struct epoll_event evs[64];
    int64_t stop_deadline = 0;
    int killed_all = 0;

    /* Signals are the main thread's business. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    pthread_mutex_lock(&p->lock);
    for (;;) {
        int64_t now = clock_now_ms();
        if (p->stopping) {
            if (!stop_deadline) {
                interrupt_all(p);
                stop_deadline = now + STOP_GRACE_MS;
            }
            if (all_workers_gone(p))
                break;
            if (now >= stop_deadline && !killed_all) {
                for (unsigned i = 0; i < p->nslots; i++)
                    pool__kill_worker(p->workers[i], SIGKILL);
                killed_all = 1;
            }
        } else {
            enforce_deadlines(p, now);
            pool__waiters_expire(p, now);
            pool__retention_enforce(p, now);
            if (p->draining && !p->cfg.store) {
                struct job *j;
                while ((j = pool__queue_pop(p)))
                    pool__fail_job(p, j, JOB_ERR_INTERRUPTED,
                                   strdup("The server is shutting down and stopped before this job "
                                          "ran. Submit it again."));
            }
            park_idle_workers(p, now);
            unpark_for_queue(p, now);
            fail_queue_if_no_workers(p, now);
            start_due_workers(p, now);
            dispatch(p);
            pool__cluster_want(p);
        }
        /* Reap first: a slot freed here must count in the next deadline (its respawn). */
        int polling = reap_pending(p);
        int timeout = p->stopping ? 100 : next_timeout(p, now);
        if (polling && (timeout < 0 || timeout > 10))
            timeout = 10;
        pthread_mutex_unlock(&p->lock);
        int n = epoll_wait(p->epfd, evs, 64, timeout);
        pthread_mutex_lock(&p->lock);
        if (n < 0 && errno != EINTR) {
            log_error("supervisor: epoll_wait failed: %s", strerror(errno));
            continue;
        }
        for (int i = 0; i < n; i++) {
            unsigned kind = evs[i].data.u64 & 0xff;
            unsigned slot = (unsigned)(evs[i].data.u64 >> 8);
            if (kind == EV_WAKE) {
                uint64_t v;
                ssize_t r = read(p->wakefd, &v, sizeof(v));
                (void)r;
                continue;
            }
            struct worker *w = p->workers[slot];
            if (kind == EV_SOCK && w->sock >= 0) {
                if (evs[i].events & EPOLLOUT)
                    pool__flush_output(p, w);
                if (w->sock >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    pool__read_channel(p, w);
            } else if (kind == EV_PIDFD && w->pidfd >= 0) {
                reap_worker(p, w);
            } else if (kind == EV_STDOUT && w->out_fd >= 0) {
                pool__output_read(p, w, w->out_fd);
            } else if (kind == EV_STDERR && w->err_fd >= 0) {
                pool__output_read(p, w, w->err_fd);
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}
