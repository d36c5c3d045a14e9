/*
 * workers.c — a worker slot's process over its life: starting it, ending it (with the
 * job it ran, if any), and reaping it, where its pidfd and wait4 are the single
 * source of truth for how it ended: a crash fails (or retries) only its own job, a
 * worker that dies before its hello is a boot failure with a backoff, and exit code 3
 * (WORKER_EXIT_BOOT_FAILED: respawning will not help) stops the quick retries.
 * Invariant: a job is running iff it is some worker's w->job; when a worker ends, its
 * job (if any) is finished before the slot is reused, so no job is left behind.
 */
#include "sources.h"
#include "pyjobd/format.h"
#include "pyjobd/log.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_BACKOFF_MIN_MS 100
#define BOOT_BACKOFF_MAX_MS 30000

static int64_t boot_backoff_ms(unsigned failures)
{
    int64_t d = BOOT_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && d < BOOT_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < BOOT_BACKOFF_MAX_MS ? d : BOOT_BACKOFF_MAX_MS;
}

/* Counts a failed start of w and says why (reported by /readyz and /v1/pool). */
static void boot_failed(struct pool *p, struct worker *w, const char *why, int64_t delay)
{
    p->boot_failures++;
    if (!p->workers_ready && !p->no_worker_since_ms)
        p->no_worker_since_ms = clock_now_ms();
    size_t len = strnlen(why, sizeof(p->boot_error) - 1); /* the start says most */
    memcpy(p->boot_error, why, len);
    p->boot_error[len] = 0;
    log_error("%s; retrying in %lld ms", p->boot_error, (long long)delay);
    w->respawn_at_ms = clock_now_ms() + delay;
}

void pool__start_worker(struct pool *p, struct worker *w)
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
        pool__kill_worker(w, SIGKILL);
        pool__close_channel(p, w); /* the pidfd path reaps it */
        return;
    }
    w->boot_failures++;
    char why[512];
    snprintf(why, sizeof(why), "cannot start the worker program %s: %s", p->cfg.worker_path,
             strerror(-rc));
    boot_failed(p, w, why, boot_backoff_ms(w->boot_failures));
}

void pool__end_worker(struct pool *p, struct worker *w, enum worker_end why)
{
    if (w->state == WORKER_EMPTY || w->state == WORKER_EXITING)
        return;
    w->ending = why;
    p->restarts[why]++;
    /* A busy worker is running someone's code: only SIGKILL is sure to stop it; so may
     * an idle one that ran a job in itself (a job that forged its reply still holds the
     * main thread, and would never read the EOF). A fresh one, or one that forked its
     * jobs, sees EOF on its channel and exits by itself. */
    if (w->state == WORKER_BUSY || why == END_CRASH || (w->jobs_done && !w->isolated))
        pool__kill_worker(w, SIGKILL);
    pool__close_channel(p, w);
}

struct job *pool__take_job(struct worker *w)
{
    struct job *j = w->job;
    w->job = NULL;
    if (j)
        j->worker = NULL;
    return j;
}

int pool__cancel_here(struct pool *p, struct job *j, int force)
{
    if (job_status_is_terminal(j->v.status))
        return -EALREADY;
    if (j->v.status == JOB_RUNNING && !force)
        return -EBUSY;
    if (j->v.status == JOB_RUNNING) {
        struct worker *w = j->worker;
        pool__take_job(w);
        pool__end_worker(p, w, END_CANCEL);
    }
    pool__job_cancel(&p->lc, j);
    return 0;
}

unsigned pool__idle_workers(const struct pool *p)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        const struct worker *w = p->workers[i];
        if (w->active && w->state == WORKER_IDLE)
            n++;
    }
    return n;
}

/* An idle worker that used more than this much CPU between two looks, a second apart,
 * is running a job's leftover code. Python waiting for its next job uses none. */
#define IDLE_CPU_LOOK_MS 1000
#define IDLE_CPU_MAX_MS 100

/* utime + stime of pid in clock ticks, -1 if unknown. */
static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *s = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
    unsigned long long ut, st;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    if (!s ||
        sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* The state letter of pid's /proc stat (R, S, T, t, Z...), 0 if unknown. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *s = strrchr(buf, ')');
    return s && s[1] == ' ' ? s[2] : 0;
}

/* A worker idle this long is stopped: under load the next job usually comes first,
 * and a stop and a continue per job would cost more than the job. */
#define FREEZE_AFTER_MS 2

int64_t pool__freeze_idle(struct pool *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        /* A fresh worker ran nobody's code; one that forked its jobs ran none itself. */
        if (w->state != WORKER_IDLE || w->frozen || !w->jobs_done || w->isolated)
            continue;
        if (now < w->idle_since_ms + FREEZE_AFTER_MS) {
            next = w->idle_since_ms + FREEZE_AFTER_MS < next ? w->idle_since_ms + FREEZE_AFTER_MS
                                                             : next;
            continue;
        }
        if (pool__worker_freeze(w) != 0) {
            log_warn("worker %d: cannot stop it while idle: %s; replacing it", (int)w->pid,
                     strerror(errno));
            pool__end_worker(p, w, END_CRASH);
        }
    }
    return next;
}

void pool__idle_begin(struct worker *w, int64_t now)
{
    w->idle_cpu_ticks = -1;
    w->idle_cpu_at_ms = now;
}

int64_t pool__idle_cpu_check(struct pool *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state != WORKER_IDLE || !w->jobs_done)
            continue; /* a worker that never ran a job runs nobody's code */
        int64_t due = w->idle_cpu_at_ms + IDLE_CPU_LOOK_MS;
        if (now < due) {
            next = due < next ? due : next;
            continue;
        }
        /* Stopped while idle: someone else's SIGCONT (a process of the same uid) would let
         * the code of the job it ran go on unsupervised. */
        char state = w->frozen ? proc_state(w->pid) : 'T';
        if (state != 'T' && state != 't' && state != 0) {
            log_warn("worker %d was continued while idle (state %c; it was stopped after its "
                     "last job): something sent it SIGCONT; replacing it",
                     (int)w->pid, state);
            pool__end_worker(p, w, END_CRASH);
            continue;
        }
        long long ticks = cpu_ticks(w->pid), hz = sysconf(_SC_CLK_TCK);
        long long used_ms = w->idle_cpu_ticks >= 0 && ticks >= 0 && hz > 0
                                ? (ticks - w->idle_cpu_ticks) * 1000 / hz
                                : 0;
        if (used_ms > IDLE_CPU_MAX_MS) {
            log_warn("worker %d used %lld ms of CPU in %lld ms while idle: code of a job it ran "
                     "still runs (a thread, a signal handler); replacing it",
                     (int)w->pid, used_ms, (long long)(now - w->idle_cpu_at_ms));
            pool__end_worker(p, w, END_CRASH);
            continue;
        }
        w->idle_cpu_ticks = ticks;
        w->idle_cpu_at_ms = now;
        next = now + IDLE_CPU_LOOK_MS < next ? now + IDLE_CPU_LOOK_MS : next;
    }
    return next;
}

/* The worker running j died: j failed (or is retried) with what is known of why. */
static void crash_job(struct pool *p, struct worker *w, int status, const struct rusage *ru)
{
    struct job *j = pool__take_job(w);
    char how[128];
    wait_status_describe(status, how, sizeof(how));
    if (j->interrupt_ms) {
        char ended[200];
        snprintf(ended, sizeof(ended), "its worker then died (%s)", how);
        pool__interrupt_finish(p, j, ended);
        return;
    }
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
        str_format("The worker process (pid %d) running this job %s (peak memory %.1f MiB). %s%s "
                   "The worker has been replaced; other jobs are not affected.",
                   (int)w->pid, how, (double)rss / (1024 * 1024), why, limit);
    int may_retry = !p->stopping && !p->draining && !j->spec.retry.no_crash;
    if (!may_retry || !pool__job_retry(&p->lc, j, 1))
        pool__job_finish(&p->lc, j, JOB_FAILED);
}

/* A worker that died before its hello: a boot failure, retried with a backoff. One
 * that said (exit code 3) that respawning will not help is tried once more, in case
 * that was a fluke, then only at the longest interval. */
static void boot_exit(struct pool *p, struct worker *w, int status, const char *how)
{
    w->boot_failures++;
    int hopeless = WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_BOOT_FAILED;
    int64_t delay =
        hopeless && w->boot_failures >= 2 ? BOOT_BACKOFF_MAX_MS : boot_backoff_ms(w->boot_failures);
    char why[512];
    /* The reason first: the whole is cut to fit boot_error (and /readyz). */
    snprintf(why, sizeof(why), "worker %d %s before it was ready%s%s%s", (int)w->pid, how,
             hopeless ? " (exit code 3: its configuration is wrong, respawning will not help "
                        "until it is fixed)"
                      : "",
             w->last_words[0] ? ": " : " (see the server log)", w->last_words);
    boot_failed(p, w, why, delay);
}

void pool__reap_worker(struct pool *p, struct worker *w)
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
    pool__output_drain(p, w); /* a crash's last words (e.g. faulthandler's stack) */
    pool__output_close(p, w);
    pool__output_report_dropped(w);
    int booted = w->ready;
    if (w->ending == END_NONE && booted && !p->stopping)
        p->restarts[END_CRASH]++;
    pool__close_channel(p, w);
    char how[128];
    wait_status_describe(status, how, sizeof(how));
    if (w->job) {
        log_warn("worker %d %s while running job %s", (int)w->pid, how, w->job->v.id);
        crash_job(p, w, status, &ru);
    } else if (!booted && !p->stopping && w->ending == END_NONE) {
        boot_exit(p, w, status, how);
    } else if (!p->stopping && w->ending == END_TENANT) {
        log_debug("worker %d %s; replacing it for another tenant", (int)w->pid, how);
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
    pool__orphans_kill(p); /* what its jobs started outside its process group */
}

/* Without a pidfd, a worker whose channel has closed is polled with wait4 until it
 * can be reaped. (A job that forked a process holding fd 3 would keep the channel open
 * past the worker's death; pidfds do not have that blind spot.) Returns 1 while some
 * worker is still being polled. */
int pool__reap_pending(struct pool *p)
{
    int polling = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->pid > 0 && w->pidfd < 0 && w->state == WORKER_EXITING) {
            pool__reap_worker(p, w);
            polling |= w->state == WORKER_EXITING;
        }
    }
    return pool__orphans_reap(p) | polling;
}
