/*
 * internal.h — the pool's own structures, shared by the files of pool/ only.
 *
 * Locking: one mutex (pool->lock) guards everything below. HTTP threads take it in
 * the public functions (pool.c, pool_admin.c); the supervisor thread holds it while
 * it handles a batch of events. Nothing blocks while holding it (sockets are
 * non-blocking; spawning is posix_spawn, which returns once the child has exec'd).
 */
#ifndef PYJOBD_POOL_INTERNAL_H
#define PYJOBD_POOL_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyjobd/job.h"
#include "pyjobd/pool.h"

struct worker;
struct waiter;

/* The captured tail of one output stream of a job. */
struct outbuf {
    uint8_t *data;
    size_t len, cap;
    uint64_t dropped; /* bytes dropped from the front to stay within the limit */
};

/* A job as the pool keeps it. It sits on up to three lists at once:
 * all jobs by creation (listing), the queue (while queued), finished jobs by end
 * time (retention). */
struct job {
    struct job_view v;    /* what clients see */
    struct job_spec spec; /* what to run (released when the job ends) */
    uint64_t seq;         /* creation order, 1-based: the listing cursor */
    int64_t deadline_ms;  /* CLOCK_MONOTONIC deadline while running; 0 = none */
    int64_t finished_ms;  /* CLOCK_MONOTONIC time it finished (retention) */
    struct job *all_prev, *all_next;
    struct job *q_prev, *q_next;
    struct job *done_prev, *done_next;
    int queued;             /* on the queue */
    struct outbuf out, err; /* captured stdout / stderr */
    uint64_t store_ticket;  /* the store write that records the latest state */
    struct waiter *waiters;
    struct worker *worker; /* while running */
    /* Shared store only: */
    int mirror;          /* the database answers for it (another node's job, or ours once
                          * its end is committed); kept for waiters and output */
    int ran_here;        /* its output was captured here */
    int awaiting_commit; /* finished here; waiters fire once the database has it */
};

/* Someone long-polling a job. Lives in the job's list and in the deadline heap. */
struct waiter {
    pool_watch_cb cb;
    void *arg;
    int64_t deadline_ms;
    struct job *job;
    struct waiter *prev, *next; /* in job->waiters */
    size_t heap_idx;
};

enum worker_state {
    WORKER_EMPTY,    /* no process; respawn at respawn_at_ms if the slot is active */
    WORKER_STARTING, /* spawned, waiting for its hello */
    WORKER_IDLE,
    WORKER_BUSY,
    WORKER_EXITING, /* killed or lost its channel; waiting for the exit status */
};

/* Why a worker is being replaced (counted in the stats). */
enum worker_end { END_NONE, END_CRASH, END_TIMEOUT, END_RECYCLE, END_CANCEL, END_RETIRE };

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
    int64_t idle_since_ms;
    struct job *job;
    int64_t spawned_ms;
    struct timespec started_at;
    int64_t respawn_at_ms;
    unsigned jobs_done;
    unsigned boot_failures; /* consecutive exits before hello, for backoff */
    /* Input: bytes read from the worker, not yet decoded. */
    uint8_t *in;
    size_t in_len, in_cap;
    /* Output: one frame being written to the worker. */
    uint8_t *out;
    size_t out_len, out_off;
    int epollout; /* EPOLLOUT is armed: the frame did not fit in the socket buffer */
};

struct waiter_heap {
    struct waiter **items;
    size_t len, cap;
};

/* Ids of jobs removed by retention, remembered (bounded) to answer "expired". */
struct expired_ids {
    struct registry *set;
    char (*ring)[JOB_ID_LEN + 1];
    size_t cap, head, len;
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
    char *worker_argv[8];

    struct registry *jobs;
    uint64_t next_seq;
    struct job *all_head, *all_tail;     /* by creation, oldest first */
    struct job *queue_head, *queue_tail; /* FIFO */
    struct job *done_head, *done_tail;   /* finished, oldest first */
    size_t queued, running;
    struct expired_ids expired;

    struct worker **workers; /* slots; never shrinks, inactive slots are reused */
    unsigned nslots;
    unsigned target;
    unsigned workers_ready;
    struct waiter_heap waiters;

    char python_version[32];
    char cloudpickle_version[32];
    char boot_error[256];

    /* Counters for /v1/pool and /metrics. */
    uint64_t submitted;
    uint64_t finished[JOB_CANCELLED + 1];
    uint64_t restarts[END_RETIRE + 1];
    uint64_t boot_failures;
    uint64_t duration_buckets[POOL_DURATION_BUCKETS];
    double duration_sum;
    uint64_t duration_count;
};

/* epoll keys of the supervisor loop: what fired, for which worker slot */
enum { EV_WAKE = 0, EV_SOCK = 1, EV_PIDFD = 2, EV_STDOUT = 3, EV_STDERR = 4 };
static inline uint64_t pool__ev_key(unsigned kind, unsigned slot)
{
    return (uint64_t)slot << 8 | kind;
}

/* channel.c */
void pool__close_channel(struct pool *p, struct worker *w);
void pool__flush_output(struct pool *p, struct worker *w);
void pool__read_channel(struct pool *p, struct worker *w);
void pool__drain_output(struct pool *p, struct worker *w);

/* supervisor.c */
void pool__fail_job(struct pool *p, struct job *j, enum job_error_type type, char *message);
char *pool__format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *pool__supervisor_main(void *arg);
void pool__wake(struct pool *p);
void pool__finish_job(struct pool *p, struct job *j, enum job_status status);
void pool__end_worker(struct pool *p, struct worker *w, enum worker_end why);

/* output.c */
void pool__output_append(struct outbuf *o, const uint8_t *data, size_t len, size_t max);
void pool__output_free(struct outbuf *o);
void pool__output_read(struct pool *p, struct worker *w, int fd);
void pool__output_close(struct pool *p, struct worker *w);

/* worker_proc.c */
int pool__worker_env_init(struct pool *p);
void pool__worker_env_free(struct pool *p);
int pool__spawn_worker(struct pool *p, struct worker *w);
void pool__kill_worker(struct worker *w, int sig);
void pool__describe_exit(int status, char *buf, size_t len);
long long pool__worker_rss(pid_t pid);

/* waiters.c */
int pool__waiter_heap_push(struct waiter_heap *h, struct waiter *w);
void pool__waiter_heap_remove(struct waiter_heap *h, struct waiter *w);
struct waiter *pool__waiter_heap_top(const struct waiter_heap *h);
void pool__waiters_fire_job(struct pool *p, struct job *j);
void pool__waiters_expire(struct pool *p, int64_t now);
void pool__waiters_fire_all(struct pool *p);

/* jobs.c: records and the lists they sit on */
struct job *pool__job_new(struct pool *p, const struct job_spec *spec);
void pool__job_free(struct job *j);
void pool__all_append(struct pool *p, struct job *j);
void pool__queue_push(struct pool *p, struct job *j);
void pool__queue_push_front(struct pool *p, struct job *j);
struct job *pool__queue_pop(struct pool *p);
void pool__queue_remove(struct pool *p, struct job *j);
void pool__forget_job(struct pool *p, struct job *j, int expired);
struct job *pool__lookup(struct pool *p, const char *id, int *err);

/* cluster.c (shared store) */
int pool__shared(const struct pool *p);
unsigned pool__idle_workers(const struct pool *p);
void pool__cluster_init(struct pool *p);
void pool__cluster_want(struct pool *p);
void pool__mirror_release(struct pool *p, struct job *j);
int pool__answers_locally(const struct pool *p, const struct job *j);
/* Shared store, and this node does not run the job (no record, or only a mirror). */
int pool__elsewhere(const struct pool *p, const struct job *j);
int pool__cancel_here(struct pool *p, struct job *j, int force); /* pool_admin.c */
struct job *pool__mirror_for(struct pool *p, const char *id, int *created);

/* persist.c */
void pool__persist(struct pool *p, struct job *j);
void pool__persist_new(struct pool *p, struct job *j, unsigned flags);
void pool__unpersist(struct pool *p, struct job *j, int expired);
int pool__recover(struct pool *p);

/* retention.c */
void pool__retention_add(struct pool *p, struct job *j);
void pool__retention_enforce(struct pool *p, int64_t now);
int64_t pool__retention_next_ms(const struct pool *p);
int pool__expired_init(struct expired_ids *e, size_t cap);
void pool__expired_free(struct expired_ids *e);
int pool__expired_contains(const struct expired_ids *e, const char *id);

#endif
