/*
 * lifecycle.h — every transition of a job, in one place:
 *
 *     submitted ─▶ [scheduled ─▶] queued ─▶ running ─▶ succeeded | failed | cancelled
 *                                  ▲          │
 *                                  └─ retry ──┘  (and: scheduled | queued ─▶ cancelled |
 *                                                 failed, e.g. expired)
 *
 * plus the records that only mirror the shared database (another node's job waited
 * for here, or ours once its end is committed), and forgetting a record. Each
 * transition keeps the counters, tells the store (in the order things happened: the
 * pool lock is held), moves the record between the table's lists (retention's done
 * list included) and fires the waiters. The event sources (worker channel, worker
 * ends, cluster, retention, recovery) and the public calls decide *when*; they never
 * write a status themselves. Workers are not known here: a caller that ends a job's
 * worker detaches it (j->worker = NULL) before calling the transition.
 *
 * Callers hold the pool lock. Nothing here blocks (store writes are queued).
 */
#ifndef PYJOBD_POOL_LIFECYCLE_H
#define PYJOBD_POOL_LIFECYCLE_H

#include "../records/records.h"

struct store;

struct lifecycle {
    struct job_table jobs;
    struct waiter_heap waiters;
    struct store *store; /* borrowed; NULL keeps jobs in memory only */
    int shared;          /* the store is shared by several nodes */
    size_t running;
    /* Counters for /v1/pool and /metrics. */
    uint64_t submitted;
    uint64_t finished[JOB_CANCELLED + 1];
    uint64_t duration_buckets[POOL_DURATION_BUCKETS];
    double duration_sum;
    uint64_t duration_count;
};

/* tombstones: how many expired ids to remember. 0 or -ENOMEM. */
int pool__lifecycle_init(struct lifecycle *lc, struct store *store, size_t tombstones);
/* Frees every record (waiters must have been fired). */
void pool__lifecycle_free(struct lifecycle *lc);

/* --- entering ----------------------------------------------------------------------- */

/* Indexes a new record: 0, -EEXIST (its id is taken: pick another), -ENOMEM. */
int pool__job_admit(struct lifecycle *lc, struct job *j);
/* Takes back an admitted record that was never submitted (the caller frees it). */
void pool__job_withdraw(struct lifecycle *lc, struct job *j);

/* An admitted job is accepted: queued here (here = 1), or, on a shared store, only
 * written to the database's queue for any node to claim (here = 0: the record is
 * then removed and freed). Returns the ticket of its store write (0 without a store). */
uint64_t pool__job_submitted(struct lifecycle *lc, struct job *j, int here);

/* A job the shared store handed to this node: queued here. A mirror of it (waited
 * for) becomes the record, its waiters stay. Takes *v and *spec in every case.
 * 0; -EEXIST when this node holds it already (found again after a reconnect);
 * -ENOMEM. */
int pool__job_claimed(struct lifecycle *lc, struct job_view *v, struct job_spec *spec);

/* A job loaded from a single-node store, in its stored state (recovery; call in
 * creation order): indexed; queued ones queued, running ones counted as running (the
 * caller then re-queues or fails them: pool__job_retry, pool__job_fail), finished
 * ones then go through pool__job_restored_done. 0 or -EEXIST / -ENOMEM. */
int pool__job_restored(struct lifecycle *lc, struct job *j);

/* A restored finished job joins the done list as finished at finished_ms
 * (CLOCK_MONOTONIC); call in the order they finished. */
void pool__job_restored_done(struct lifecycle *lc, struct job *j, int64_t finished_ms);

/* The backoff before the attempt after `attempts` ended ones: min(max, initial ×
 * factor^(attempts−1)) seconds, in us; with jitter, that times a uniform [0, 1) drawn
 * from rnd; 0 without a backoff. */
int64_t pool__retry_delay_us(const struct job_retry *r, unsigned attempts, uint64_t rnd);

/* A timed job's time came (the supervisor, pool__timer_due): past its expires_at it
 * fails as expired; a scheduled one whose run_at came is queued. */
void pool__job_due(struct lifecycle *lc, struct job *j);

/* --- running and ending ------------------------------------------------------------- */

/* queued -> running on the worker pid (the caller has bound j->worker). */
void pool__job_start(struct lifecycle *lc, struct job *j, pid_t pid);
/* Its timeout counts from now (again, when its frame was held back; 0: none). */
void pool__job_arm_deadline(struct job *j);

/* -> succeeded | failed | cancelled, with the result or error already in j->v.
 * The request (payload) stays for a rerun; the job joins the done list. Its waiters fire now, or on
 * a shared store once the database has committed the end (pool__job_committed). */
void pool__job_finish(struct lifecycle *lc, struct job *j, enum job_status status);

/* -> failed with this error (message taken; NULL: the type's name). */
void pool__job_fail(struct lifecycle *lc, struct job *j, enum job_error_type type, char *message);

/* running -> queued again, when it has retries left (attempts <= max_retries): at the
 * head of the queue (front) or its tail; or, when its policy has a backoff,
 * scheduled for then (next_attempt_us). The attempt joins the history; its error
 * stays, showing what happened last. 1 if re-queued, 0 if not (nothing changed). */
int pool__job_retry(struct lifecycle *lc, struct job *j, int front);

/* A queued job, or a running one whose worker the caller stopped: -> cancelled. */
void pool__job_cancel(struct lifecycle *lc, struct job *j);

/* --- leaving ----------------------------------------------------------------------- */

/* Removes the record (waiters fire: they read the answer elsewhere, or "gone") and,
 * unless it is a mirror or (shared store) only expired from memory, the stored copy.
 * Unless gone is JOB_GONE_FORGOTTEN (0), a tombstone keeps its id and why. */
void pool__job_forget(struct lifecycle *lc, struct job *j, enum job_gone gone);

/* A finished job's results leave memory (--max-results-memory): the record stays, its
 * result, result_json and pickled exception are released, and j->results_out says how
 * many bytes readers must fetch from the store (or the database answers for it). */
void pool__job_results_out(struct lifecycle *lc, struct job *j);

/* Shared store: the job is not ours any more (fenced, or this node was reaped); the
 * caller stopped its worker. The record goes; reads go to the database. */
void pool__job_disown(struct lifecycle *lc, struct job *j);

/* --- mirrors (shared store) ------------------------------------------------------- */

/* The record of id, or a new mirror of it (*created = 1) to carry waiters; its view
 * stays a placeholder until the database's arrives. NULL on ENOMEM. */
struct job *pool__job_mirror(struct lifecycle *lc, const char *id, int *created);

/* The database's view of a mirrored, unfinished job; a final one joins the done list
 * and fires the waiters. Not a mirror, or already final: nothing happens. */
void pool__job_mirror_update(struct lifecycle *lc, struct job *j, const struct job_view *v);

/* Forgets an unfinished mirror nobody waits for any more. */
void pool__job_mirror_release(struct lifecycle *lc, struct job *j);

/* The database has this node's final write of j: from now on it answers for the job
 * (j becomes a mirror) and the waiters fire. */
void pool__job_committed(struct lifecycle *lc, struct job *j);

#endif
