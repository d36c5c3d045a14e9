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

#include "pyjobd/job.h"

struct pool;

struct pool_config {
    const char *worker_path; /* path of the pyjobd-worker executable */
    unsigned workers;        /* number of worker processes, >= 1 */
    double default_timeout;  /* seconds applied to jobs without one; 0 = none */
    size_t max_frame_bytes;  /* largest frame accepted from a worker */
};

/* Runtime facts for /v1/info. Strings are copied into the struct. */
struct pool_info {
    unsigned workers;
    unsigned workers_ready;
    char python_version[32];      /* "" until a worker has said hello */
    char cloudpickle_version[32]; /* "" until a worker has said hello */
    size_t queued;
    size_t running;
};

/* Creates the pool and starts its supervisor thread and workers.
 * Returns NULL and sets errno on failure. */
struct pool *pool_new(const struct pool_config *cfg);

/*
 * Stops the pool: fails queued and running jobs with "interrupted", fires every
 * waiter, kills workers (SIGTERM, then SIGKILL after a grace), joins the
 * supervisor. Safe to call once before pool_free(); pool_free() calls it if needed.
 */
void pool_stop(struct pool *p);

/* Stops (if needed) and frees. Accepts NULL. */
void pool_free(struct pool *p);

/*
 * Queues a job. Takes new references to the spec's blobs (the caller keeps its own).
 * On success writes the new id (JOB_ID_LEN + 1 bytes) and returns 0.
 * -ESHUTDOWN when the pool is stopping, -ENOMEM.
 */
int pool_submit(struct pool *p, const struct job_spec *spec, char *id_out);

/* Copies the job's current state into *out (caller releases with job_view_release).
 * 0, or -ENOENT for an unknown id, -ENOMEM. */
int pool_job_get(struct pool *p, const char *id, struct job_view *out);

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
 * unknown id (cb is never called); -ENOMEM (cb is never called).
 */
int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg);

/* Fills *out with current facts. */
void pool_get_info(struct pool *p, struct pool_info *out);

/* CLOCK_MONOTONIC in milliseconds (the clock of pool_watch deadlines). */
int64_t pool_now_ms(void);

#endif
