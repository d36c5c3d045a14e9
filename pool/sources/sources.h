/*
 * sources.h — the pool's state (struct pool, struct worker) and the event sources
 * that drive jobs through their lifecycle (../lifecycle/lifecycle.h):
 *
 *   worker_proc.c    a worker process: spawn, signal, its channel socket (close, send),
 *                    its memory and uid; the environment workers get; the orphans
 *   worker_output.c  a worker's stdout/stderr pipes: into the running job's output, or
 *                    (outside any job) into the server log
 *   workers.c        starting a worker, ending one (and the job it ran), reaping it:
 *                    crash classification, boot failures and their backoff, a cancel
 *   channel.c        frames on a worker's channel: a job out, hello/result/error in
 *   outcome.c        a job's reply (result, error) from its worker: the job's end, limits
 *   cluster.c        a shared store's events (claims, commits, fences, reaping)
 *   retention.c      how long finished jobs stay (--result-ttl, --max-jobs)
 *   results_memory.c how many bytes of their results stay in memory (--max-results-memory)
 *   recovery.c       jobs found in a single-node store at start
 *   wake.c           poking the supervisor's loop from any thread
 *   spawn.c          starting the worker program afresh (posix_spawn)
 *   zygote.c         the template process workers are forked from
 *
 * The supervisor (../supervisor/) runs the loop that calls them; the public calls
 * (the .c files of pool/ itself) sit on top. Everything here runs with the pool lock held, unless
 * it says otherwise.
 *
 * Locking: one mutex (pool->lock) guards everything below. HTTP threads take it in
 * the public functions; the supervisor thread holds it while it handles a batch of
 * events. Nothing blocks while holding it (sockets are non-blocking; spawning is
 * posix_spawn, which returns once the child has exec'd).
 */
#ifndef PYJOBD_POOL_SOURCES_H
#define PYJOBD_POOL_SOURCES_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lifecycle/lifecycle.h"
#include "pyjobd/pool.h"
#include "pyjobd/cron.h"
#include "pyjobd/tzif.h"
#include "pyjobd/wait_status.h"

struct frame;

enum worker_state {
    WORKER_EMPTY,    /* no process; respawn at respawn_at_ms if the slot is active */
    WORKER_STARTING, /* spawned, waiting for its hello */
    WORKER_IDLE,
    WORKER_BUSY,
    WORKER_EXITING, /* killed or lost its channel; waiting for the exit status */
};

/* Why a worker is being replaced (counted in the stats). */
enum worker_end {
    END_NONE,
    END_CRASH,
    END_TIMEOUT,
    END_RECYCLE,
    END_CANCEL,
    END_TENANT, /* idle, bound to another tenant than the job that needs a worker */
    END_RETIRE,
};

struct worker {
    unsigned slot;
    int active; /* the slot is part of the pool's target size */
    enum worker_state state;
    enum worker_end ending; /* set when we decide to end the process */
    pid_t pid;
    int pidfd;
    int sock;
    int out_fd, err_fd;   /* read ends of the worker's stdout and stderr pipes */
    int parked;           /* stopped by the idle timeout; restarted on demand */
    int ready;            /* said hello since it was spawned */
    char last_words[200]; /* last line it wrote before it was ready (why a boot failed) */
    /* Output outside any job, to the log: this window's bytes, what was left out. */
    int64_t stray_since_ms;
    size_t stray_bytes;
    uint64_t stray_dropped;
    /* Backpressure on its pipes: this window's start and bytes, reading paused. */
    int64_t out_window_ms;
    size_t out_window_bytes;
    int out_paused;
    int64_t idle_since_ms;
    struct job *job;
    int64_t spawned_ms;
    struct timespec started_at;
    int64_t respawn_at_ms;
    unsigned jobs_done;
    unsigned jobs_sent;     /* FRAME_JOBs sent this process: numbers its interrupts */
    unsigned boot_failures; /* consecutive exits before hello, for backoff */
    /* It ran a job's code in itself, and then whose (with --isolation tenant it runs no
     * other tenant's job: a new process is a fresh interpreter); or it ran every job in
     * a process forked for it (FRAME_TAG_ISOLATE), and is still clean. Never both. */
    int bound;
    char tenant[JOB_OWNER_MAX];
    int isolated;
    /* Idle after running a job in itself: SIGSTOPped, with every process it started
     * killed, so that no code of that job runs while no job is in flight (a job that
     * forged its reply, a thread it left); SIGCONT comes with the next job or its end. */
    int frozen;
    /* While idle: its CPU time (clock ticks) when last looked at, -1 before the first
     * look; a job's code that outlived the job shows up as CPU used while idle. */
    long long idle_cpu_ticks;
    int64_t idle_cpu_at_ms;
    /* Input: bytes read from the worker, not yet decoded. */
    uint8_t *in;
    size_t in_len, in_cap;
    /* Output: one frame being written to the worker. */
    uint8_t *out;
    size_t out_len, out_off;
    int epollout; /* EPOLLOUT is armed: the frame did not fit in the socket buffer */
    /* The job frame is held back until this store write (the job's "running") is
     * committed; 0: nothing held (see pool__send_job). */
    uint64_t gate;
};

struct pool {
    struct pool_config cfg;
    pthread_mutex_t lock;
    pthread_t thread;
    int thread_started;
    int epfd;
    int wakefd; /* eventfd: HTTP threads poke the supervisor */
    int stopping;
    int stopped;
    int draining;
    int64_t drain_deadline_ms;
    int64_t no_worker_since_ms; /* first boot failure while no worker was ready; 0 = fine */
    char **worker_envp;         /* environment given to workers */
    char *worker_path;          /* absolute path of pyjobd-worker (owned) */
    char *worker_argv[16];

    struct lifecycle lc;  /* the jobs, their waiters and counters */
    struct idem_map idem; /* Idempotency-Keys of the last cfg.idempotency_ttl (pool_submit.c) */

    struct worker **workers; /* slots; never shrinks, inactive slots are reused */
    unsigned nslots;
    unsigned target;
    unsigned workers_ready;
    unsigned dispatch_gen; /* the supervisor's count of dispatch rounds (struct tenant.gen) */

    char python_version[32];
    char cloudpickle_version[32];
    char boot_error[256];

    /* Processes jobs started that outlived their worker, killed, not yet reaped (the
     * server is their subreaper: see pool__orphans_kill). */
    pid_t *orphans;
    size_t norphans, caporphans;

    /* --worker-uids: tenants not in cfg.tenant_names, in the order their first job came
     * (their uids follow the listed tenants'). */
    char (*uid_extra)[JOB_OWNER_MAX];
    size_t nuid_extra;

    /* The zygote (zygote.c): its pid (0: none), its socket, said it is ready. */
    pid_t zygote_pid;
    int zygote_sock;
    int zygote_ready;
    unsigned zygote_failures; /* in a row, for the backoff */
    int64_t zygote_retry_ms;  /* no zygote: when to start one */

    /* Recurring schedules (schedules.c): oldest first, and their next ticks. */
    TAILQ_HEAD(, schedule) schedules;
    size_t nschedules;
    struct heap schedule_ticks;

    /* Counters for /v1/pool and /metrics (the jobs' are in lc). */
    uint64_t restarts[END_RETIRE + 1];
    uint64_t boot_failures;

    /* Workers with a held-back job frame (struct worker.gate); also read, atomically,
     * by the store's thread after a commit (pool__wake_on_commit). */
    unsigned gated;
    /* --max-results-memory is passed, waiting for a commit before results can leave
     * memory (results_memory.c); read the same way. */
    int results_waiting;
};

/* epoll keys of the supervisor loop: what fired, for which worker slot */
enum { EV_WAKE = 0, EV_SOCK = 1, EV_PIDFD = 2, EV_STDOUT = 3, EV_STDERR = 4, EV_ZYGOTE = 5 };
static inline uint64_t pool__ev_key(unsigned kind, unsigned slot)
{
    return (uint64_t)slot << 8 | kind;
}

/* wake.c (any thread, no lock needed) */
void pool__wake(struct pool *p);
void pool__wake_on_commit(void *pool); /* store_on_commit: a held-back frame may go */

/* worker_proc.c */
struct worker *pool__worker_new(unsigned slot); /* an empty, active slot; NULL on ENOMEM */
void pool__worker_free(struct worker *w);
int pool__worker_env_init(struct pool *p);
void pool__worker_env_free(struct pool *p);
int pool__spawn_worker(struct pool *p, struct worker *w);
void pool__kill_worker(struct worker *w, int sig);
int pool__signal_worker(const struct worker *w, int sig); /* 0, or -1 with errno */
/* SIGSTOP, then SIGKILL to what it started: 0, or -1 with errno (not stopped).
 * pool__worker_thaw: SIGCONT, if it is stopped. */
int pool__worker_freeze(struct worker *w);
void pool__worker_thaw(struct worker *w);
void pool__close_channel(struct pool *p, struct worker *w);
void pool__gate_clear(struct pool *p, struct worker *w);    /* its held-back job frame goes */
void pool__flush_channel(struct pool *p, struct worker *w); /* write what is pending */
long long pool__worker_rss(pid_t pid);
long long pool__worker_uid(pid_t pid); /* its real uid, -1 if unknown */
/* When this process is the subreaper of its workers' descendants (the server sets
 * PR_SET_CHILD_SUBREAPER), a process a job started that left the worker's process
 * group becomes its child once the worker is gone: kills every child that is not a
 * worker, and reaps them later (pool__orphans_reap: 1 while some are not reaped). */
void pool__orphans_kill(struct pool *p);
int pool__orphans_reap(struct pool *p);

/* worker_output.c */
void pool__output_read(struct pool *p, struct worker *w, int fd);
void pool__output_drain(struct pool *p, struct worker *w); /* both pipes, what is there */
void pool__output_close(struct pool *p, struct worker *w);
void pool__output_report_dropped(struct worker *w);          /* what the log left out, if any */
void pool__output_new_job(struct pool *p, struct worker *w); /* a new window, reading on */
/* Turns reading back on for workers whose window ended; returns the next such time. */
int64_t pool__output_resume(struct pool *p, int64_t now);

/* workers.c */
void pool__start_worker(struct pool *p, struct worker *w);
/* Ends the process (SIGKILL when busy, else EOF on its channel); a job it ran must
 * have been taken off it first (pool__take_job). */
void pool__end_worker(struct pool *p, struct worker *w, enum worker_end why);
/* Takes the running job off its worker (both links cleared) and returns it. */
struct job *pool__take_job(struct worker *w);
void pool__reap_worker(struct pool *p, struct worker *w);
int pool__reap_pending(struct pool *p); /* without pidfds; 1 while still polling */
/* Cancels this node's job j: 0, -EALREADY (finished), -EBUSY (running, !force). */
int pool__cancel_here(struct pool *p, struct job *j, int force);

/* interrupt.c: j (this node's running job, with a worker) is interrupted: 0, or 1 when
 * its frame is still held back (no code of it ran: the caller cancels it outright). */
int pool__interrupt_running(struct job *j, double grace);
/* interrupt.c (the request is pool_interrupt, pool/pool_interrupt.c): j, taken off
 * its worker with j->interrupt_ms set, -> cancelled; how says how it ended ("it
 * returned", ...) for the message. */
void pool__interrupt_finish(struct pool *p, struct job *j, const char *how);

unsigned pool__idle_workers(const struct pool *p);
/* The worker has just become idle: its CPU is watched from now on. */
void pool__idle_begin(struct worker *w, int64_t now);
/* Idle workers that ran a job's code in themselves and have had no job for 2 ms:
 * frozen (pool__worker_freeze); returns when the next one is due (INT64_MAX: none). */
int64_t pool__freeze_idle(struct pool *p, int64_t now);
/* Kills an idle worker that used CPU (a job's code still runs in it: a thread, a
 * signal handler); returns when it should look again (INT64_MAX: no idle worker). */
int64_t pool__idle_cpu_check(struct pool *p, int64_t now);

/* channel.c */
/* j runs in a process forked for it: --isolation job, or its tenant's isolation=job. */
int pool__job_isolated(const struct pool *p, const struct job *j);
int pool__tenant_isolated(const struct pool *p, const char *tenant); /* tenant may be NULL */
/* --worker-uids: the uid j's tenant runs as; 0 without --worker-uids, -ERANGE when the
 * range has no uid left for a new tenant, -ENOMEM. */
long long pool__job_uid(struct pool *p, const struct job *j);
int pool__send_job(struct pool *p, struct worker *w, struct job *j);
/* Sends the job frames whose "running" the store has committed since (supervisor). */
void pool__release_gated(struct pool *p);
void pool__read_channel(struct pool *p, struct worker *w);
/* The worker broke the protocol (what says how): it is killed, and the job it runs, if
 * any, fails as protocol_violation. */
void pool__protocol_violation(struct pool *p, struct worker *w, const char *what);

/* outcome.c */
/* A FRAME_RESULT or FRAME_ERROR from w: the end of the job it runs (results held to
 * --max-result-bytes, texts cut), then w goes on, is recycled or retires. */
void pool__handle_outcome(struct pool *p, struct worker *w, const struct frame *f);
/* head (type and length only) declares a frame larger than --max-result-bytes plus its
 * slack: a reply of a busy worker fails its job as result_too_large, anything else is
 * a protocol violation; the worker is killed either way, nothing more of it read. */
void pool__reply_too_large(struct pool *p, struct worker *w, const struct frame *head);

/* cluster.c (shared store) */
int pool__shared(const struct pool *p);
void pool__cluster_init(struct pool *p);
/* The store stops calling the pool (a call under way ends first); the pool lock not held. */
void pool__cluster_stop(struct pool *p);
void pool__cluster_want(struct pool *p);
/* From memory, or (shared store) from the database? */
int pool__answers_locally(const struct pool *p, const struct job *j);
/* Shared store, and this node does not run the job (no record, or only a mirror). */
int pool__elsewhere(const struct pool *p, const struct job *j);
/* pool_admin.c. Shared store, a job this node does not run: cancelled in the database
 * when no node has claimed it; else its node is asked (NOTIFY; grace > 0: interrupted,
 * see pool_interrupt) and, but for an interrupt of a running job, the answer read
 * back. 0, -EBUSY (running, neither force nor grace), -EALREADY, -EXDEV (no answer),
 * and store_cancel's errors. */
int pool__cancel_elsewhere(struct pool *p, const char *id, int force, double grace);

/* retention.c */
/* --- schedules.c ----------------------------------------------------------------- */

struct schedule {
    char id[JOB_ID_LEN + 1];
    char owner[JOB_OWNER_MAX];
    struct job_spec job; /* what each tick submits */
    char *cron_text;     /* NULL with every */
    struct cron cron;
    double every;
    char tz_name[TZ_NAME_MAX + 8];
    struct tz *tz; /* NULL: UTC */
    int run_once;
    int64_t created_us, last_tick_us, next_us; /* CLOCK_REALTIME */
    uint64_t runs;
    char last_job[JOB_ID_LEN + 1];
    struct heap_node tick; /* keyed by next_us as CLOCK_MONOTONIC ms */
    int armed;             /* tick is in the pool's heap */
    TAILQ_ENTRY(schedule) link;
};

/* A new schedule (not yet in the pool): its definition checked and its first tick
 * after now. NULL with err on a bad definition or ENOMEM. */
struct schedule *pool__schedule_new(const char *id, const struct pool_schedule_request *rq,
                                    int64_t created_us, char *err, size_t errlen);
void pool__schedule_free(struct schedule *s);
/* The row a store keeps of s (row->job malloc'd: free it; the strings are s's): 0 or
 * -ENOMEM. */
struct store_schedule;
int pool__schedule_row(const struct schedule *s, struct store_schedule *row);
/* Adds s to the pool (lock held), written to the store; restored ones are not. */
void pool__schedule_add(struct pool *p, struct schedule *s, int write);
/* Takes s out (lock held), deleted from the store; the caller frees it. */
void pool__schedule_remove(struct pool *p, struct schedule *s);
/* Fires the ticks due (lock held): a job each; returns when the next one is due
 * (CLOCK_MONOTONIC ms, INT64_MAX: none). */
int64_t pool__schedules_fire(struct pool *p, int64_t now_ms);
/* Recovery: every stored schedule back (and one job for missed ticks if it says so). */
int pool__schedules_recover(struct pool *p);
void pool__schedules_free(struct pool *p);

void pool__retention_enforce(struct pool *p, int64_t now);
int64_t pool__retention_next_ms(const struct pool *p);

/* results_memory.c */
/* --max-results-memory: the oldest finished jobs' results leave memory until what the
 * rest hold is within it (see the file for where they go). */
void pool__results_memory_enforce(struct pool *p);
size_t pool__results_memory_bytes(const struct pool *p); /* held by finished jobs now */

/* spawn.c */
/* posix_spawn of the worker program with argv: chan on fd 3, out and err on 1 and 2,
 * /dev/null on 0, nothing else open, signals reset, a session of its own, in
 * --worker-cwd, with the workers' environment. 0 and *pid, or -errno. */
int pool__spawn_program(const struct pool *p, char *const argv[], int chan, int out, int err,
                        pid_t *pid);

/* zygote.c */
/* Starts a zygote when there is none and its backoff is over (not with --worker-start
 * exec, nor while stopping); when that is due (INT64_MAX: nothing to do). */
void pool__zygote_tick(struct pool *p, int64_t now);
int64_t pool__zygote_next_ms(const struct pool *p);
void pool__zygote_event(struct pool *p); /* its socket is readable */
/* Forks a worker with these fds (the zygote gets copies): 0 and *pid, the server's
 * child; 1 when there is no ready zygote (spawn it yourself); -errno when the fork
 * failed. Waits at most 1 s for the answer. */
int pool__zygote_fork(struct pool *p, int chan, int out, int err, pid_t *pid);
int pool__is_zygote(const struct pool *p, pid_t pid);
/* Starts a zygote and waits for it to be ready (no supervisor loop yet): 0, or -errno. */
int pool__zygote_spawn_ready(struct pool *p, int wait_ms);
/* Takes over a zygote started by pool_zygote_start (ready already). */
int pool__zygote_adopt(struct pool *p, const struct pool_zygote *z);
void pool__zygote_stop(struct pool *p);

/* recovery.c */
int pool__recover(struct pool *p);

#endif
