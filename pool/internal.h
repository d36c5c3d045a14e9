/*
 * internal.h — the pool's own structures, shared by the files of pool/ only.
 *
 * Locking: one mutex (pool->lock) guards everything below. HTTP threads take it in
 * the public functions of pool.c; the supervisor thread holds it while it handles a
 * batch of events. Nothing here blocks while holding it (sockets are non-blocking).
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

/* A job as the pool keeps it. */
struct job {
    struct job_view v;    /* what clients see */
    struct job_spec spec; /* what to run (released when the job ends) */
    int64_t deadline_ms;  /* CLOCK_MONOTONIC deadline while running; 0 = none */
    struct job *next;     /* FIFO queue link while queued */
    struct waiter *waiters;
    struct worker *worker; /* while running */
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
    WORKER_EMPTY,    /* no process; respawn at respawn_at_ms */
    WORKER_STARTING, /* spawned, waiting for its hello */
    WORKER_IDLE,
    WORKER_BUSY,
    WORKER_EXITING, /* killed or lost its channel; waiting for the exit status */
};

struct worker {
    unsigned slot;
    enum worker_state state;
    pid_t pid;
    int pidfd;
    int sock;
    struct job *job;
    int64_t spawned_ms;
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

struct pool {
    struct pool_config cfg;
    pthread_mutex_t lock;
    pthread_t thread;
    int thread_started;
    int epfd;
    int wakefd; /* eventfd: HTTP threads poke the supervisor */
    int stopping;
    int stopped;

    struct registry *jobs;
    struct job *queue_head, *queue_tail;
    size_t queued, running;

    struct worker *workers;
    unsigned nworkers;
    unsigned workers_ready;
    struct waiter_heap waiters;

    char python_version[32];
    char cloudpickle_version[32];
};

/* supervisor.c */
void *pool__supervisor_main(void *arg);
void pool__wake(struct pool *p);
void pool__finish_job(struct pool *p, struct job *j, enum job_status status);

/* worker_proc.c */
int pool__spawn_worker(struct pool *p, struct worker *w);
void pool__kill_worker(struct worker *w, int sig);
void pool__describe_exit(int status, char *buf, size_t len);

/* waiters.c */
int pool__waiter_heap_push(struct waiter_heap *h, struct waiter *w);
void pool__waiter_heap_remove(struct waiter_heap *h, struct waiter *w);
struct waiter *pool__waiter_heap_top(const struct waiter_heap *h);
void pool__waiters_fire_job(struct pool *p, struct job *j);
void pool__waiters_expire(struct pool *p, int64_t now);
void pool__waiters_fire_all(struct pool *p);

/* jobs */
void pool__job_free(struct job *j);

#endif
