/*
 * pool.h — the supervised worker pool and the jobs it runs.
 *
 * A pool owns: N pyjobd-worker processes (spawned, watched, replaced), the FIFO
 * queue of jobs, the job registry, per-job deadlines, and the waiters that long-poll
 * for a job's end. One supervisor thread runs all of it; the functions below are
 * safe to call from any other thread (HTTP threads).
 *
 * The pool never looks inside payloads: pickles go to workers as opaque bytes.
 */
#ifndef PYJOBD_POOL_H
#define PYJOBD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/clock.h"
#include "pyjobd/job.h"

struct pool;
struct store;

/* What a worker process may run (--isolation). */
enum pool_isolation {
    POOL_ISOLATION_TENANT, /* jobs of one tenant only: bound to the tenant of its first job */
    POOL_ISOLATION_NONE,   /* anyone's jobs, one after the other (a single user's machine) */
    POOL_ISOLATION_JOB,    /* every job in a process forked for it, killed when it ends */
};

/* A zygote started before the pool (pool_zygote_start) and handed over to it. */
struct pool_zygote {
    pid_t pid; /* 0: none */
    int sock;
};

struct pool_config {
    const char *worker_path; /* path of the pyjobd-worker executable */
    unsigned workers;        /* number of worker processes, >= 1 */
    double default_timeout;  /* seconds applied to jobs without one; 0 = none */
    size_t max_frame_bytes;  /* largest frame accepted from a worker */
    size_t max_result_bytes; /* largest result (pickle or JSON) a job may return; 0 = any */
    /* Bytes of finished jobs' results held in memory; beyond it the oldest results
     * leave memory (0 = no bound). */
    size_t max_results_memory;
    size_t max_queue;  /* queued jobs accepted at once; 0 = unlimited */
    size_t max_jobs;   /* job records kept (oldest finished evicted); 0 = unlimited */
    double result_ttl; /* seconds a finished job is kept; 0 = forever */
    /* Lifecycle (all 0/NULL = off or default). */
    /* The idle timeout never goes below this; 0 (all workers may exit when idle, the
     * next job starts one) only with idle_timeout > 0, else it counts as 1. */
    unsigned min_workers;
    double idle_timeout;           /* seconds an idle worker beyond min_workers lives */
    unsigned max_tasks_per_worker; /* replace a worker after this many jobs */
    long long worker_max_rss;      /* replace a worker whose RSS is above this after a job */
    long long worker_memory_limit; /* RLIMIT_AS for jobs, in bytes */
    unsigned worker_max_procs;     /* RLIMIT_NPROC of the workers' uid; 0 = not set */
    size_t max_output_bytes;       /* captured stdout/stderr per job and stream (tail) */
    double boot_failure_timeout;   /* queued jobs fail once no worker could boot this long */
    const char *const *worker_env; /* extra KEY=VALUE for workers, NULL-terminated */
    const char *worker_cwd;        /* working directory of workers (NULL: inherit) */
    const char *worker_init;       /* "module:function" run once per worker, or NULL */
    const char *worker_user;       /* drop workers to this user (--worker-user), or NULL */
    struct store *store;           /* durable copy of every job (borrowed), or NULL */
    enum pool_isolation isolation; /* default (0): tenant */
    int worker_exec;               /* --worker-start exec: no zygote, every worker exec'd */
    /* Tenants whose every job is forked as with POOL_ISOLATION_JOB, whatever `isolation`
     * says (the token file's isolation=job), NULL-terminated; NULL for none. */
    const char *const *job_isolated_tenants;
    /* --worker-uids FIRST-LAST (0 when off): each tenant's jobs run as a uid of its own,
     * FIRST + the tenant's place in tenant_names (NULL-terminated, the token file's
     * order); tenants not listed there get the next free ones, in the order they come. */
    unsigned long worker_uid_first, worker_uid_last;
    const char *const *tenant_names;
    /* Handed over (pid 0: the pool starts its own); pool_new owns it from the call on,
     * and kills it if it fails. With zygote_only the server cannot
     * start workers itself (it dropped root: --server-user): only this zygote can, and
     * once it is gone no worker starts again. */
    struct pool_zygote zygote;
    int zygote_only;
    size_t tenant_max_queued;    /* queued jobs of one tenant at most (this node); 0 = any */
    unsigned tenant_max_running; /* running jobs of one tenant at most (this node); 0 = any */
    double idempotency_ttl;      /* seconds an Idempotency-Key is remembered; 0: 24 h */
};

/* Runtime facts for /v1/info. Strings are copied into the struct. */
struct pool_info {
    unsigned workers;
    unsigned workers_ready;
    char python_version[32];      /* "" until a worker has said hello */
    char cloudpickle_version[32]; /* "" until a worker has said hello */
    size_t queued;
    size_t running;
    int stopping;            /* 1 once shutdown began */
    char boot_error[256];    /* why workers fail to boot, "" when they don't */
    char node[JOB_NODE_MAX]; /* this node's id on a shared store, else "" */
    int store_down;          /* 1: the shared store's database is unreachable */
    const char *isolation;   /* "tenant" | "job" | "none" (static) */
    int scales_to_zero;      /* 1: min_workers 0, no worker ready is normal when idle */
};

/*
 * Starts the zygote workers are forked from, as the pool would, and waits (at most 30 s)
 * until it is ready: for a server that drops root before it starts the pool. 0 and *z,
 * or -1 with a message in err.
 */
int pool_zygote_start(const struct pool_config *cfg, struct pool_zygote *z, char *err,
                      size_t errlen);
void pool_zygote_discard(struct pool_zygote *z); /* kills and reaps it; pid 0 is a no-op */

/* Creates the pool and starts its supervisor thread and workers.
 * Returns NULL and sets errno on failure. */
struct pool *pool_new(const struct pool_config *cfg);

/*
 * Stops the pool: fails queued and running jobs with "interrupted", fires every
 * waiter, kills workers (SIGTERM, then SIGKILL after a grace), joins the
 * supervisor. Safe to call once before pool_free(); pool_free() calls it if needed.
 */
void pool_stop(struct pool *p);

/*
 * Starts a graceful stop: new submissions get -ESHUTDOWN, queued jobs fail as
 * "interrupted" now, running jobs may finish for up to grace seconds. Then call
 * pool_stop() (at once, e.g. on a second signal, or when pool_drained() says so),
 * which interrupts whatever still runs.
 */
void pool_drain(struct pool *p, double grace);

/* 1 once a drain has no running job left or its grace period has passed. */
int pool_drained(struct pool *p);

/* Stops (if needed) and frees. Accepts NULL. */
void pool_free(struct pool *p);

/*
 * Queues a job. Takes new references to the spec's blobs (the caller keeps its own).
 * On success fills *view_out with the job as queued (its id, times, effective timeout;
 * the caller releases it with job_view_release) and returns 0: nothing needs to be
 * read back to answer the client.
 * -EAGAIN when the queue is full (--max-queue), -EDQUOT when the job's tenant has
 * --tenant-max-queued jobs queued (see pool_tenant_queued), -ESHUTDOWN when the pool
 * is stopping, -ENOMEM.
 */
int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out);

/* Jobs of this tenant queued on this node. */
size_t pool_tenant_queued(struct pool *p, const char *tenant);

/*
 * Queues n jobs at once, all or none, in order. Fills views_out[0..n) as
 * pool_submit does (only on success).
 * 0; -EAGAIN when the queue has no room for all n (--max-queue; nothing was queued);
 * -EDQUOT when a tenant would pass --tenant-max-queued (nothing was queued);
 * -ESHUTDOWN; -ENOMEM. pool_submit() is the n = 1 case.
 */
int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out);

/*
 * pool_submit_batch with Idempotency-Keys (a spec's idem_key and idem_digest; specs
 * without one are submitted as pool_submit_batch does). A spec whose tenant sent its key
 * within cfg.idempotency_ttl makes no job: views_out[i] is then that key's job as it is
 * now and replayed[i] is 1 (0 for the others). The keys are checked and the new jobs
 * queued at once, under the pool lock: concurrent submissions of one key make one job.
 * The keys of one call must differ. Besides pool_submit_batch's errors (nothing was
 * queued, nothing is in views_out), with *bad_index naming the spec: -EKEYREJECTED when
 * the key came with another request (digests differ); -ESTALE when the key's job was
 * removed since (retention, DELETE). (On a shared store the database decides for every
 * node at once: store_submit_keyed writes the keys and the new jobs in one transaction.)
 */
int pool_submit_keyed(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out, unsigned char *replayed, size_t *bad_index);

/* Copies the job's current state into *out (caller releases with job_view_release).
 * 0; -ENOENT for an id never seen (or deleted); -ESTALE for a job that finished and
 * was removed by retention (--result-ttl / --max-jobs); -ENOBUFS for a job that
 * finished and was removed because finished jobs' results passed --max-results-memory
 * with no store to keep them; -ENOMEM; -EIO when a result that left memory cannot be
 * read back from the store. With a single-node store, results that left memory are read
 * back (blocking on the store, never under the pool's lock), byte for byte. */
int pool_job_get(struct pool *p, const char *id, struct job_view *out);

/* pool_job_get for n ids at once (with a shared store, one database round trip for
 * all the jobs this node does not answer for): rcs[i] is pool_job_get's result for
 * ids[i], out[i] is filled when it is 0. Returns 0, or -ENOMEM. For what waits (a
 * multi-wait): a job of another node already being waited for here comes from this
 * node's copy, whose status says whether it finished (other fields may be blank). */
int pool_job_get_many(struct pool *p, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                      int *rcs);

/* This node's own copy of a job, never the shared database's: 0, -ENOENT, -ENOMEM.
 * (Without a shared store, the same as pool_job_get.) */
int pool_job_peek(struct pool *p, const char *id, struct job_view *out);

/*
 * Runs a finished job's request again as a new job (its rerun_of names id), queued
 * now, as pool_submit does; its view in *out. 0; -ENOENT / -ESTALE as pool_job_get;
 * -EBUSY: not finished; -ENODATA: its request is no longer kept (--max-results-memory
 * dropped it); pool_submit's errors; on a shared store (the job and its request read
 * from the database) also -ENOTCONN, -ETIMEDOUT, -EIO.
 */
int pool_rerun(struct pool *p, const char *id, struct job_view *out);

/* --- recurring schedules (pool_schedules.c) ---------------------------------------- */

/* POST /v1/schedules: at each tick, one job from `job` (its owner set), whose schedule
 * field names the schedule. Ticks: a cron expression in a time zone, or every N s. */
struct pool_schedule_request {
    struct job_spec job;
    const char *cron;     /* or NULL */
    double every;         /* seconds, with cron NULL */
    const char *timezone; /* NULL: "UTC" */
    int run_once;         /* ticks missed (server down): one job at once (1) or none (0) */
};

/* A schedule as GET /v1/schedules shows it. */
struct pool_schedule_info {
    char id[JOB_ID_LEN + 1];
    char owner[JOB_OWNER_MAX];
    char cron[256]; /* "" with every */
    double every;
    char timezone[72];
    int run_once;
    int64_t created_us, next_us, last_tick_us; /* CLOCK_REALTIME; last 0: never fired */
    uint64_t runs;
    char last_job[JOB_ID_LEN + 1];
};

/* Most schedules one server keeps, and one tenant of it. */
#define POOL_MAX_SCHEDULES 10000
#define POOL_MAX_SCHEDULES_PER_TENANT 1000

/* 0 with *out; -EINVAL with err (a cron expression or a time zone that is wrong: the
 * api checks them first); -EAGAIN (POOL_MAX_SCHEDULES); -EDQUOT (the tenant has
 * POOL_MAX_SCHEDULES_PER_TENANT, counted in the database on a shared store); -ENOMEM; on a
 * shared store also -ENOTCONN, -ETIMEDOUT, -EIO (the database). The reads and delete
 * below: the same database errors on a shared store. */
int pool_schedule_create(struct pool *p, const struct pool_schedule_request *rq,
                         struct pool_schedule_info *out, char *err, size_t errlen);
/* tenant NULL: any owner. 0, -ENOENT (none, or another tenant's). */
int pool_schedule_get(struct pool *p, const char *id, const char *tenant,
                      struct pool_schedule_info *out);
/* The tenant's schedules, oldest first: *out malloc'd (free()), *n of them. */
int pool_schedule_list(struct pool *p, const char *tenant, struct pool_schedule_info **out,
                       size_t *n);
/* 0, -ENOENT. Jobs it submitted stay. */
int pool_schedule_delete(struct pool *p, const char *id, const char *tenant);

/* Which finished jobs POST /v1/jobs/rerun takes. */
struct pool_rerun_filter {
    enum job_status status;         /* succeeded, failed or cancelled */
    enum job_error_type error_type; /* JOB_ERR_NONE: any */
    int64_t since_us;               /* finished at or after (CLOCK_REALTIME us); 0: any */
    const char *tenant;             /* only this owner's; NULL: any */
};

/* Reruns at most max finished jobs the filter takes, oldest finished first (those
 * whose request is gone are passed over), as one batch: *n new jobs in out[0..*n).
 * 0, pool_submit_batch's errors (nothing queued); on a shared store (the jobs and their
 * requests read from the database) also -ENOTCONN, -ETIMEDOUT. */
int pool_rerun_many(struct pool *p, const struct pool_rerun_filter *f, struct job_view *out,
                    size_t max, size_t *n);

/*
 * Cancels a job, like Future.cancel(), plus a forced variant for running jobs.
 * 0: the job is now cancelled (a queued one is dequeued; with force a running one's
 * worker is killed and replaced, and only that job is affected).
 * -ENOENT / -ESTALE as pool_job_get; -EBUSY: running and !force;
 * -EALREADY: already finished (succeeded, failed or cancelled).
 */
int pool_cancel(struct pool *p, const char *id, int force);

/*
 * Cancels a job gracefully (cancel?interrupt=grace): a running one gets
 * pyjobd.Cancelled raised in it, and its worker is killed if it has not ended grace
 * seconds later (0 < grace <= 3600); it ends cancelled whatever it does. A job not
 * running yet is cancelled as pool_cancel(p, id, 0) does. 0: cancelled, or (running)
 * interrupted and ending (on a shared store, also by the node that runs it, asked
 * through the database); -ENOENT / -ESTALE as pool_job_get; -EALREADY: finished;
 * -EXDEV: its node did not confirm a cancel before the job started; -EINVAL: grace
 * out of range.
 */
int pool_interrupt(struct pool *p, const char *id, double grace);

/* Forgets a finished job. 0; -ENOENT / -ESTALE; -EBUSY when it is not finished. */
int pool_delete(struct pool *p, const char *id);

/* A page of jobs, newest first. */
struct pool_list_query {
    int status;        /* -1: any; else an enum job_status */
    const char *owner; /* NULL: any owner; else only this tenant's jobs */
    uint64_t cursor;   /* 0: from the newest; else the `next` of the previous page */
    size_t limit;      /* 1..1000 */
    /* 0: no bound; else the page ends before a job whose result (pickle or JSON) would
     * take the page's results past this many bytes (its first job always fits). */
    size_t result_budget;
};

/*
 * Lists jobs. *out is a malloc'd array of *n views (release each view, then free the
 * array; NULL when *n is 0). *next is the cursor of the following page, 0 at the end.
 * Results that left memory (--max-results-memory) are read back from the store only
 * when q->result_budget is set; otherwise the views of those jobs lack them.
 * 0, -ENOMEM, or -EIO (a result could not be read back).
 */
int pool_list(struct pool *p, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next);

/*
 * Callback for pool_watch(): called exactly once, when the job has reached a terminal
 * state, when the deadline passes, or when the pool stops — whichever is first. It
 * runs on the supervisor thread (or on the caller's thread, before pool_watch returns,
 * when the job is already finished); it must be quick and must not call back into
 * the pool.
 */
typedef void (*pool_watch_cb)(void *arg);

/*
 * Calls cb(arg) once the job is finished or at deadline_ms (CLOCK_MONOTONIC, ms),
 * whichever is first. Returns 0 when cb has been or will be called; -ENOENT for an
 * unknown id (cb is never called); -ENOMEM (cb is never called). With a shared store,
 * an id this node does not hold is not looked up (callers read the job first).
 */
int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg);

/* A job's captured output: the tail of what it wrote to fds 1 and 2. */
struct job_output {
    struct blob *out;                  /* stdout (never NULL on success; may be empty) */
    struct blob *err;                  /* stderr */
    uint64_t out_dropped, err_dropped; /* bytes dropped from the front (over the limit) */
};

/* Copies a job's output so far. 0, -ENOENT / -ESTALE, -ENOMEM.
 * Release with job_output_release(). */
int pool_job_output(struct pool *p, const char *id, struct job_output *out);
void job_output_release(struct job_output *o);

/* Fills *out with current facts. */
void pool_get_info(struct pool *p, struct pool_info *out);

/* The isolation that `tenant`'s jobs get ("tenant" | "job" | "none", static): the
 * pool's, or "job" for a tenant of cfg.job_isolated_tenants. tenant may be NULL. */
const char *pool_isolation_of(const struct pool *p, const char *tenant);

/* One worker as GET /v1/pool shows it. */
struct pool_worker_info {
    pid_t pid;
    const char *state;             /* "starting" | "idle" | "busy" | "exiting" (static) */
    char job_id[JOB_ID_LEN + 1];   /* "" when idle */
    char job_owner[JOB_OWNER_MAX]; /* tenant of that job */
    unsigned jobs_done;
    struct timespec started_at; /* CLOCK_REALTIME */
    long long rss_bytes;        /* from /proc; -1 when unknown */
    long long uid;              /* its real uid, from /proc; -1 when unknown */
    int retiring;               /* 1: will exit after its current job (shrink, recycle) */
};

/* Upper bounds (seconds) of the job-duration histogram buckets; the last is +Inf. */
#define POOL_DURATION_BUCKETS 12
extern const double pool_duration_bounds[POOL_DURATION_BUCKETS];

struct pool_stats {
    unsigned workers_target;          /* what --workers / PATCH asked for */
    size_t nworkers;                  /* entries in workers[] (live processes) */
    struct pool_worker_info *workers; /* malloc'd; pool_stats_release() */
    size_t queued, running;
    size_t scheduled;                     /* waiting for their run_at */
    uint64_t submitted;                   /* jobs accepted since start */
    uint64_t finished[JOB_CANCELLED + 1]; /* by terminal enum job_status */
    uint64_t restarts_crash, restarts_timeout, restarts_recycle, restarts_cancel;
    uint64_t restarts_tenant; /* an idle worker of one tenant replaced for another's job */
    uint64_t boot_failures;
    char boot_error[256]; /* last boot failure, "" when the last boot worked */
    /* Job run time (started → finished), for jobs that ran on a worker. */
    uint64_t duration_buckets[POOL_DURATION_BUCKETS]; /* non-cumulative counts */
    double duration_sum;
    uint64_t duration_count;
    size_t jobs_retained; /* records in the registry */
    /* Bytes of results (pickles, JSON, exception pickles) finished jobs hold in memory,
     * which --max-results-memory bounds. */
    size_t results_memory_bytes;
};

/* Fills *out. 0 or -ENOMEM. */
int pool_get_stats(struct pool *p, struct pool_stats *out);
void pool_stats_release(struct pool_stats *s);

/*
 * Sets the number of workers (1..1024). Growing starts workers at once; shrinking
 * retires idle workers first and busy ones when their current job ends — it never
 * kills a running job and never makes other jobs wait. 0, -EINVAL, -ESHUTDOWN.
 */
int pool_resize(struct pool *p, unsigned workers);

#endif
