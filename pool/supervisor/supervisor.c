/*
 * supervisor.c — the pool's one thread: an epoll loop over the wake eventfd and each
 * worker's socket, pidfd and output pipes, handing every event to its source
 * (../sources/): frames to channel.c, exits to workers.c, output to worker_output.c.
 * Between events it does what is due by itself: dispatch (tenants in turn, each
 * tenant's jobs in order, to idle workers),
 * per-job deadlines (enforced from outside the worker with SIGKILL), waiter
 * deadlines, retention, the idle timeout, respawns, and the shared store's claims.
 */
#include "supervisor.h"
#include "pyjobd/format.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define STOP_GRACE_MS 3000

/* --- dispatch and deadlines ------------------------------------------------------- */

static void send(struct pool *p, struct worker *w, struct job *j)
{
    int rc = pool__send_job(p, w, j);
    if (rc == -ERANGE)
        pool__job_fail(&p->lc, j, JOB_ERR_INVALID_PAYLOAD,
                       str_format("No worker uid is left for tenant '%s': --worker-uids %lu-%lu "
                                  "gives each tenant a uid of its own and all are taken. The "
                                  "operator must widen the range (and restart the server).",
                                  j->v.owner, p->cfg.worker_uid_first, p->cfg.worker_uid_last));
    else if (rc != 0)
        pool__job_fail(&p->lc, j, JOB_ERR_INVALID_PAYLOAD,
                       strdup("the server ran out of memory preparing the job for a worker"));
}

/* A worker slot that will soon have a fresh process (never ran a job): starting, or
 * waiting to be (re)started, or ending for a reason after which it is replaced. */
static int fresh_coming(const struct worker *w)
{
    if (!w->active || w->parked)
        return 0;
    return (w->state == WORKER_STARTING && !w->bound) || w->state == WORKER_EMPTY ||
           (w->state == WORKER_EXITING && w->ending != END_RETIRE);
}

/* May w run j? A job forked for itself needs a worker that ran no job's code in
 * itself; any other job one that forked none, and with --isolation tenant one that ran
 * only jobs of j's tenant. */
static int worker_fits(const struct pool *p, const struct worker *w, const struct job *j,
                       int isolated)
{
    if (isolated)
        return !w->bound;
    /* Under --worker-uids a worker runs as its first job's tenant's uid: as bound. */
    int shared = p->cfg.isolation == POOL_ISOLATION_NONE && !p->cfg.worker_uid_first;
    return !w->isolated && (!w->bound || shared || strcmp(w->tenant, j->v.owner) == 0);
}

/* The idle worker for j: one that already ran jobs like it (worker_fits), else a fresh
 * one; *other: an idle worker that does not fit, idle the longest. */
static struct worker *worker_for(struct pool *p, const struct job *j, struct worker **other)
{
    struct worker *fresh = NULL;
    int isolated = pool__job_isolated(p, j);
    *other = NULL;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state != WORKER_IDLE || !w->active)
            continue;
        if (!worker_fits(p, w, j, isolated)) {
            if (!*other || w->idle_since_ms < (*other)->idle_since_ms)
                *other = w; /* idle the longest: the least likely to be wanted soon */
        } else if (w->bound || w->isolated) {
            return w;
        } else {
            fresh = fresh ? fresh : w;
        }
    }
    return fresh;
}

/*
 * Tenants take turns: in each pass every tenant with queued jobs (and below
 * --tenant-max-running) offers its next job (its highest priority, oldest first), and a tenant
 * served goes to the back of the turns; passes go on while workers are idle. With --isolation
 * tenant no process runs code of two tenants: a job goes to an idle worker of its tenant, else to a
 * fresh one; a job that finds neither waits for a fresh worker already on its way, or, if none is,
 * has an idle worker of another tenant replaced by one (a new interpreter that never ran a job). A
 * tenant's job waits so at most once per call (gen marks it).
 */
static void dispatch(struct pool *p)
{
    unsigned gen = ++p->dispatch_gen;
    unsigned idle = 0, coming = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        const struct worker *w = p->workers[i];
        idle += w->state == WORKER_IDLE && w->active;
        coming += fresh_coming(w);
    }
    unsigned max_running = p->cfg.tenant_max_running;
    for (int progress = 1; progress && idle;) {
        progress = 0;
        struct tenant *tn, *next;
        for (tn = pool__turn_first(&p->lc.jobs); tn && idle; tn = next) {
            next = TAILQ_NEXT(tn, turn_link); /* serving tn moves it to the back */
            if (tn->gen == gen || (max_running && tn->running >= max_running))
                continue;
            struct job *j = pool__tenant_first(tn);
            struct worker *other, *w = worker_for(p, j, &other);
            if (w) {
                pool__turn_served(&p->lc.jobs, tn);
                send(p, w, j);
                idle--;
                progress = 1;
                continue;
            }
            tn->gen = gen; /* it waits for a fresh worker: once */
            if (coming) {
                coming--; /* the next fresh worker is this job's */
            } else if (other) {
                log_debug("worker %d (tenant '%s') replaced: job %s of tenant '%s' needs a "
                          "worker",
                          (int)other->pid, other->tenant, j->v.id, j->v.owner);
                pool__end_worker(p, other, END_TENANT); /* its slot restarts fresh, for j */
                idle--;
            }
        }
    }
}

/* A job's timeout, and the grace of an interrupted job (cancel?interrupt). */
static void enforce_deadlines(struct pool *p, int64_t now)
{
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        struct job *j = w->job;
        if (w->state != WORKER_BUSY || !j)
            continue;
        int timed_out = j->deadline_ms && now >= j->deadline_ms;
        if (!timed_out && !(j->interrupt_ms && now >= j->interrupt_ms))
            continue;
        /* SIGKILL from outside: a job stuck in C code cannot ignore it. */
        if (timed_out)
            log_warn("job %s exceeded its timeout of %g s; killing worker %d", j->v.id,
                     j->v.timeout, (int)w->pid);
        else
            log_warn("job %s did not end within its interrupt's grace; killing worker %d", j->v.id,
                     (int)w->pid);
        pool__output_drain(p, w);
        pool__take_job(w);
        pool__end_worker(p, w, timed_out ? END_TIMEOUT : END_CANCEL);
        if (j->interrupt_ms) {
            pool__interrupt_finish(p, j,
                                   timed_out ? "it ran into its timeout first: its worker was "
                                               "killed"
                                             : "since it had not ended in the time given, its "
                                               "worker was killed and replaced; no other job "
                                               "was affected");
            continue;
        }
        job_error_release(&j->v.error);
        j->v.error.type = JOB_ERR_TIMEOUT;
        j->v.error.message = str_format(
            "The job ran longer than its timeout of %g s and was stopped; the worker running "
            "it was killed and replaced. Raise \"timeout\" in the request (or the server's "
            "--default-timeout) if the job needs more time.",
            j->v.timeout);
        int may_retry = j->spec.retry_on_timeout && !p->stopping && !p->draining;
        if (!may_retry || !pool__job_retry(&p->lc, j, 1))
            pool__job_finish(&p->lc, j, JOB_FAILED);
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
    size_t queued = p->lc.jobs.nqueued;
    size_t need = queued > ready ? queued - ready : 0;
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
    while ((j = pool__queue_first(&p->lc.jobs)))
        pool__job_fail(
            &p->lc, j, JOB_ERR_WORKER_CRASHED,
            str_format("No worker could start for %g s (%s). Fix the worker environment "
                       "(see GET /readyz and the server log), then submit the job again.",
                       p->cfg.boot_failure_timeout, p->boot_error));
}

static void start_due_workers(struct pool *p, int64_t now)
{
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->active && !w->parked && w->state == WORKER_EMPTY && now >= w->respawn_at_ms)
            pool__start_worker(p, w);
    }
}

/* Milliseconds until the next thing the loop must do by itself, or -1. */
static int next_timeout(struct pool *p, int64_t now, int64_t sources_due)
{
    int64_t next = INT64_MAX;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state == WORKER_BUSY && w->job && w->job->deadline_ms)
            next = w->job->deadline_ms < next ? w->job->deadline_ms : next;
        if (w->state == WORKER_BUSY && w->job && w->job->interrupt_ms)
            next = w->job->interrupt_ms < next ? w->job->interrupt_ms : next;
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
    if (p->no_worker_since_ms && pool__queue_first(&p->lc.jobs) &&
        p->cfg.boot_failure_timeout > 0) {
        int64_t t = p->no_worker_since_ms + (int64_t)(p->cfg.boot_failure_timeout * 1000.0);
        next = t < next ? t : next;
    }
    int64_t zygote = p->stopping ? INT64_MAX : pool__zygote_next_ms(p);
    next = zygote < next ? zygote : next;
    int64_t expiry = pool__retention_next_ms(p);
    next = expiry < next ? expiry : next;
    next = sources_due < next ? sources_due : next;
    int64_t waiter = pool__waiters_next_deadline(&p->lc.waiters);
    next = waiter < next ? waiter : next;
    int64_t timer = pool__timer_next_ms(&p->lc.jobs);
    next = timer < next ? timer : next;
    if (next == INT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now > 60000 ? 60000 : (int)(next - now);
}

/* Waiters whose deadline passed: they answer with the job as it is; a mirror nobody
 * waits for any more is dropped. */
static void expire_waiters(struct pool *p, int64_t now)
{
    struct job *j;
    while ((j = pool__waiters_expire_one(&p->lc.waiters, now)))
        pool__job_mirror_release(&p->lc, j);
}

/* Scheduled jobs whose run_at came are queued; pending ones past their expires_at fail. */
static void fire_timers(struct pool *p, int64_t now)
{
    struct job *j;
    while ((j = pool__timer_due(&p->lc.jobs, now)))
        pool__job_due(&p->lc, j);
}

/* Without a store nothing waits for the next start: queued and scheduled jobs fail. */
static void fail_pending(struct pool *p, const char *why)
{
    struct job *j;
    while ((j = pool__queue_first(&p->lc.jobs)))
        pool__job_fail(&p->lc, j, JOB_ERR_INTERRUPTED, strdup(why));
    while ((j = pool__timer_due(&p->lc.jobs, INT64_MAX)))
        pool__job_fail(&p->lc, j, JOB_ERR_INTERRUPTED, strdup(why));
}

/* --- stopping ---------------------------------------------------------------------- */

static void interrupt_all(struct pool *p)
{
    struct job *j;
    pool__zygote_stop(p);
    /* With a store, queued and scheduled jobs stay on disk for the next start. */
    if (!p->cfg.store)
        fail_pending(p, "The server stopped before this job ran. Submit it again.");
    for (unsigned i = 0; i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->state == WORKER_EMPTY)
            continue;
        if ((j = pool__take_job(w))) {
            pool__job_fail(&p->lc, j, JOB_ERR_INTERRUPTED,
                           strdup("The server stopped while this job was running; the job was "
                                  "killed. Submit it again."));
            pool__kill_worker(w, SIGKILL);
        }
        /* Idle workers see EOF on their channel and exit by themselves. */
        pool__close_channel(p, w);
    }
    pool__waiters_fire_all(&p->lc.waiters);
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
        int64_t now = clock_now_ms(), sources_due = INT64_MAX;
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
            expire_waiters(p, now);
            pool__retention_enforce(p, now);
            pool__results_memory_enforce(p);
            fire_timers(p, now);
            int64_t ticks = p->draining ? INT64_MAX : pool__schedules_fire(p, now);
            if (p->draining && !p->cfg.store)
                fail_pending(p, "The server is shutting down and stopped before this job ran. "
                                "Submit it again.");
            park_idle_workers(p, now);
            unpark_for_queue(p, now);
            fail_queue_if_no_workers(p, now);
            pool__zygote_tick(p, now);
            start_due_workers(p, now);
            dispatch(p);
            pool__release_gated(p);
            sources_due = pool__freeze_idle(p, now);
            sources_due = ticks < sources_due ? ticks : sources_due;
            int64_t idle_due = pool__idle_cpu_check(p, now);
            sources_due = idle_due < sources_due ? idle_due : sources_due;
            int64_t resume = pool__output_resume(p, now);
            sources_due = resume < sources_due ? resume : sources_due;
            pool__cluster_want(p);
        }
        /* Reap first: a slot freed here must count in the next deadline (its respawn). */
        int polling = pool__reap_pending(p);
        int timeout = p->stopping ? 100 : next_timeout(p, now, sources_due);
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
            if (kind == EV_ZYGOTE) {
                pool__zygote_event(p);
                continue;
            }
            struct worker *w = p->workers[slot];
            if (kind == EV_SOCK && w->sock >= 0) {
                if (evs[i].events & EPOLLOUT)
                    pool__flush_channel(p, w);
                if (w->sock >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    pool__read_channel(p, w);
            } else if (kind == EV_PIDFD && w->pidfd >= 0) {
                pool__reap_worker(p, w);
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
