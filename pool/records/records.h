/*
 * records.h — the bottom of pool/: a job's record and the data structures it sits in,
 * with no policy. Everything above (lifecycle, the event sources, the supervisor, the
 * public calls) uses these; nothing here calls upwards, locks, or knows of workers,
 * stores or HTTP. Callers hold the pool lock.
 *
 *   job_record.c  one job: its one constructor (every default in one place), free
 *   job_table.c   every record by id and in creation order; the done list (finished,
 *                 oldest first, what retention looks at) and within it the held list
 *                 (those holding results in memory, and their bytes)
 *   queue.c       the queue: per tenant a FIFO per priority, the tenants with queued
 *                 jobs in turn
 *   tombstones.c  ids removed by retention, remembered (bounded) with why, to answer
 *                 "expired"
 *   outbuf.c      the captured tail of one output stream
 *   waiters.c     long-poll waiters: a min-heap on deadline plus a list per job
 *   idempotency.c the Idempotency-Keys of the last --idempotency-ttl, per tenant
 */
#ifndef PYJOBD_POOL_RECORDS_H
#define PYJOBD_POOL_RECORDS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pyjobd/heap.h"
#include "pyjobd/job.h"
#include "pyjobd/pool.h"

struct worker; /* the event sources' (sources/sources.h); records only point at it */
struct tenant; /* queue.c */

/* --- outbuf.c -------------------------------------------------------------------- */

/* The captured tail of one output stream of a job. */
struct outbuf {
    uint8_t *data;
    size_t len, cap;
    uint64_t dropped; /* bytes dropped from the front to stay within the limit */
};

/* Appends, keeping only the last max bytes (what is dropped is counted). */
void pool__outbuf_append(struct outbuf *o, const uint8_t *data, size_t len, size_t max);
void pool__outbuf_free(struct outbuf *o);

/* --- job_record.c ---------------------------------------------------------------- */

struct waiter;
LIST_HEAD(waiter_list, waiter);

/* A job as the pool keeps it. It sits on up to three lists of its table at once:
 * all jobs by creation (listing), the queue (while queued), finished jobs by end time
 * (retention). */
struct job {
    struct job_view v;    /* what clients see */
    struct job_spec spec; /* what to run (released when the job ends) */
    uint64_t seq;         /* creation order, 1-based: the listing cursor; 0 = unset */
    int64_t deadline_ms;  /* CLOCK_MONOTONIC deadline while running; 0 = none */
    int64_t finished_ms;  /* CLOCK_MONOTONIC time it finished (retention) */
    TAILQ_ENTRY(job) all_link, queue_link, done_link, held_link;
    int in_table, queued, done; /* on the all list / the queue / the done list */
    /* Finished and holding results in memory (result, result_json, the pickled
     * exception): their bytes, counted in the table's results_bytes while the record is
     * on its held list (0: not on it). */
    size_t held_bytes;
    /* Bytes of results that left memory (pool__job_drop_results): the store has them
     * (read back on demand), or the database answers for the job; 0: none left. */
    size_t results_out;
    struct outbuf out, err; /* captured stdout / stderr */
    uint64_t store_ticket;  /* the store write that records the latest state */
    struct waiter_list waiters;
    struct tenant *tenant;    /* its owner's queue and counts (set once queued or running) */
    struct prio_level *level; /* while queued: the list of its priority it is on */
    /* A client interrupted it while it ran (cancel?interrupt): it ends cancelled, and
     * its worker is killed at this CLOCK_MONOTONIC time if it is still running; 0 = no. */
    int64_t interrupt_ms;
    struct worker *worker;  /* while running */
    struct heap_node timer; /* while timed: scheduled (run_at) or pending (expires_at) */
    int timed;
    /* Shared store only: */
    int mirror;            /* the database answers for it (another node's job, or ours once
                            * its end is committed); kept for waiters and output */
    int ran_here;          /* it ran on a worker of this node: its output is here */
    int claim_here;        /* being submitted on a shared store: this node runs it */
    int counted_scheduled; /* waiting for its time here: one of the table's nscheduled */
    int awaiting_commit;   /* finished here; waiters fire once the database has it */
};

/* The one constructor: a queued job with no payload, every default set (no error:
 * exit_code and max_rss_bytes -1), id copied when not NULL. NULL on ENOMEM. */
struct job *pool__job_new(const char *id);

/* A new job from a client's spec: copies the metadata, takes references to the blobs;
 * its timeout is the spec's or else default_timeout. NULL on ENOMEM. */
struct job *pool__job_from_spec(const struct job_spec *spec, double default_timeout);

/* Replaces j's view and spec by *v and *spec, which it takes (stored or claimed jobs). */
void pool__job_adopt(struct job *j, struct job_view *v, struct job_spec *spec);

/* Frees the record and what it owns. Accepts NULL. Not on any list any more. */
void pool__job_free(struct job *j);

/* Bytes of results j's view holds: result, result_json and the pickled exception. */
size_t pool__job_result_bytes(const struct job *j);

/* Releases the results j's view holds (their bytes added to j->results_out), for a
 * record that is not on a held list: whoever reads it must fetch them elsewhere. */
void pool__job_drop_results(struct job *j);

/* --- tombstones.c ---------------------------------------------------------------- */

/* Why a record left the table, as its tombstone remembers it. */
enum job_gone {
    JOB_GONE_FORGOTTEN = 0, /* deleted, or never to be answered for here: no tombstone */
    JOB_GONE_EXPIRED = 1,   /* retention: --result-ttl, --max-jobs */
    JOB_GONE_RESULTS = 2,   /* --max-results-memory, with nowhere else to read them from */
};

/* Ids of jobs removed by retention, the last cap of them, each with its reason. */
struct tombstones {
    struct registry *set;
    char (*ring)[JOB_ID_LEN + 1];
    unsigned char *why; /* enum job_gone, by ring slot */
    size_t cap, head, len;
};

int pool__tombstones_init(struct tombstones *t, size_t cap);
void pool__tombstones_free(struct tombstones *t);
void pool__tombstones_add(struct tombstones *t, const char *id, enum job_gone why);
/* Why id was removed: JOB_GONE_FORGOTTEN (0) when it is not remembered. */
enum job_gone pool__tombstones_find(const struct tombstones *t, const char *id);

/* --- queue.c --------------------------------------------------------------------- */

TAILQ_HEAD(job_list, job);

/* The queued jobs of one tenant with one priority, oldest first (a FIFO). */
struct prio_level {
    int priority;
    struct job_list jobs;
    TAILQ_ENTRY(prio_level) link;
};
TAILQ_HEAD(prio_list, prio_level);

/* One tenant's share of the queue (a tenant is a job's owner; "" without tokens). */
struct tenant {
    char name[JOB_OWNER_MAX];
    /* A FIFO per priority present, highest first; a level leaves when it empties.
     * Most jobs share one priority, so finding a job's level is a step or two. */
    struct prio_list levels;
    size_t queued, running;
    size_t submitting; /* scratch of a submission, counting its jobs per tenant */
    int in_turn;       /* on the turns list: it has queued jobs */
    unsigned gen;      /* the dispatcher's mark (see the supervisor) */
    TAILQ_ENTRY(tenant) link, turn_link;
};
TAILQ_HEAD(tenant_list, tenant);

struct job_queue {
    struct tenant_list tenants; /* every tenant seen */
    struct tenant_list turns;   /* those with queued jobs, whose turn is next first */
    size_t n;                   /* queued jobs in all */
};

/* --- job_table.c ----------------------------------------------------------------- */

struct job_table {
    struct registry *by_id;
    struct job_list all;  /* by creation (seq), oldest first */
    struct job_queue q;   /* what waits for a worker */
    struct job_list done; /* finished, oldest first */
    struct job_list held; /* of those, the ones holding results in memory, oldest first */
    size_t results_bytes; /* what they hold (the sum of their held_bytes) */
    size_t nqueued;       /* == q.n */
    size_t nscheduled;    /* jobs scheduled (waiting for their run_at) */
    struct heap timers;   /* jobs waiting for a time (timers.c) */
    uint64_t next_seq;
    struct tombstones expired;
};

int pool__table_init(struct job_table *t, size_t tombstones);
/* Frees the table and every record in it. */
void pool__table_free(struct job_table *t);

/* Indexes j by id and appends it to the all list, giving it the next seq (or keeping
 * the seq it has, e.g. from a store). 0, -EEXIST (nothing changed), -ENOMEM. */
int pool__table_insert(struct job_table *t, struct job *j);

/* The record, or NULL with *err = -ENOENT, or for a tombstoned id -ESTALE (expired by
 * retention) or -ENOBUFS (its results left memory, --max-results-memory). */
struct job *pool__table_find(const struct job_table *t, const char *id, int *err);

/* Takes j out of every index and list (unless gone is JOB_GONE_FORGOTTEN a tombstone
 * remembers its id and why). The record is the caller's again. */
void pool__table_remove(struct job_table *t, struct job *j, enum job_gone gone);

/* A scheduled job stops counting among the table's nscheduled (if it did). */
void pool__scheduled_uncount(struct job_table *t, struct job *j);
size_t pool__table_count(const struct job_table *t);

/* The queue (queue.c). Tenants take turns; within a tenant, higher j->v.priority
 * first, and jobs of one priority keep their order. */
void pool__queue_init(struct job_queue *q);
void pool__queue_free(struct job_queue *q); /* the tenants (the jobs are the table's) */
/* At the tail of its tenant's jobs of its priority. 0, or -ENOMEM (not queued). */
int pool__queue_push(struct job_table *t, struct job *j);
/* At the head of its tenant's jobs of its priority (a retry), and its tenant, if not in
 * turn yet, takes the first turn. 0, or -ENOMEM (not queued). */
int pool__queue_push_front(struct job_table *t, struct job *j);
void pool__queue_remove(struct job_table *t, struct job *j); /* no-op when not queued */
/* The head job of the tenant whose turn it is, or NULL when nothing is queued. */
struct job *pool__queue_first(const struct job_table *t);
/* The job tn runs next: its oldest of its highest priority; NULL when none is queued. */
struct job *pool__tenant_first(const struct tenant *tn);
/* The tenant of j (found or added, remembered in j->tenant), NULL on ENOMEM. */
struct tenant *pool__tenant_of(struct job_table *t, struct job *j);
/* A tenant by name, NULL if it never had a job here. */
struct tenant *pool__tenant_find(const struct job_table *t, const char *name);
/* Tenants with queued jobs, whose turn is next first: TAILQ_FIRST / TAILQ_NEXT(turn_link). */
struct tenant *pool__turn_first(const struct job_table *t);
/* t had its turn: it goes to the back of the turns. */
void pool__turn_served(struct job_table *t, struct tenant *tn);

/* The done list: appends j, finished at finished_ms (CLOCK_MONOTONIC); with results
 * in its view it joins the held list too (their bytes counted). */
void pool__done_add(struct job_table *t, struct job *j, int64_t finished_ms);
void pool__done_remove(struct job_table *t, struct job *j); /* no-op when not on it */
struct job *pool__done_first(const struct job_table *t);

/* The held list: the oldest finished record holding results in memory (NULL: none);
 * the next one is TAILQ_NEXT(j, held_link). */
struct job *pool__held_first(const struct job_table *t);
/* j's results leave memory (pool__job_drop_results) and j the held list; it stays on
 * the done list. */
void pool__held_drop(struct job_table *t, struct job *j);

/* --- timers.c ------------------------------------------------------------------ */

/* A CLOCK_REALTIME time (us) as the CLOCK_MONOTONIC ms the supervisor sleeps on,
 * rounded up; now for a time past. */
int64_t pool__real_to_mono_ms(int64_t real_us);
/* j's one timer, at real_us (CLOCK_REALTIME), replacing any it had. 0 or -ENOMEM. */
int pool__timer_set(struct job_table *t, struct job *j, int64_t real_us);
void pool__timer_clear(struct job_table *t, struct job *j); /* no-op when not timed */
/* The job whose timer is due at now_ms (CLOCK_MONOTONIC) first, or NULL. */
struct job *pool__timer_due(const struct job_table *t, int64_t now_ms);
/* When the next timer is due (CLOCK_MONOTONIC ms), INT64_MAX when none. */
int64_t pool__timer_next_ms(const struct job_table *t);

/* --- waiters.c ------------------------------------------------------------------- */

/* Someone long-polling a job. Lives in its job's list and in the deadline heap. */
struct waiter {
    pool_watch_cb cb;
    void *arg;
    struct heap_node node; /* keyed by its deadline (CLOCK_MONOTONIC ms) */
    struct job *job;
    LIST_ENTRY(waiter) link; /* in job->waiters */
};

struct waiter_heap {
    struct heap heap;
};

/* The waiter a node of the heap belongs to. */
static inline struct waiter *pool__waiter_of(struct heap_node *n)
{
    return (struct waiter *)((char *)n - offsetof(struct waiter, node));
}

/* Attaches a waiter to j. 0 or -ENOMEM (cb is then never called). *earliest is set
 * to 1 when it has the nearest deadline of all (the supervisor must sleep less). */
int pool__waiter_add(struct waiter_heap *h, struct job *j, int64_t deadline_ms, pool_watch_cb cb,
                     void *arg, int *earliest);

/* Fires (calls back and frees) every waiter of j. */
void pool__waiters_fire_job(struct waiter_heap *h, struct job *j);

/* Fires the waiter with the nearest deadline if it is due at now and returns its job;
 * NULL when none is due. */
struct job *pool__waiters_expire_one(struct waiter_heap *h, int64_t now);

/* Fires every waiter (the pool stops). */
void pool__waiters_fire_all(struct waiter_heap *h);

/* The nearest waiter deadline, INT64_MAX when nobody waits. */
int64_t pool__waiters_next_deadline(const struct waiter_heap *h);

void pool__waiters_free(struct waiter_heap *h); /* the heap only; it must be empty */

/* --- idempotency.c ---------------------------------------------------------------- */

/* One tenant's key: the request it first came with (its digest) and the job it made. */
struct idem_entry {
    struct idem_entry *next;          /* in its bucket */
    TAILQ_ENTRY(idem_entry) age_link; /* by expiry, soonest first */
    uint64_t hash;
    int64_t expires_us; /* CLOCK_REALTIME */
    char id[JOB_ID_LEN + 1];
    uint8_t digest[JOB_IDEM_DIGEST_BYTES];
    size_t owner_len;
    char names[]; /* the owner, NUL, the key, NUL */
};
TAILQ_HEAD(idem_age, idem_entry);

struct idem_map {
    struct idem_entry **buckets;
    size_t nbuckets, n;
    struct idem_age by_age;
};

int pool__idem_init(struct idem_map *m); /* 0 or -ENOMEM */
void pool__idem_free(struct idem_map *m);
/* A new entry, not in any map (free() it when unused); id may be NULL (set it later).
 * NULL on ENOMEM. */
struct idem_entry *pool__idem_entry_new(const char *owner, const char *key,
                                        const uint8_t digest[JOB_IDEM_DIGEST_BYTES], const char *id,
                                        int64_t expires_us);
/* The owner's key if it has not expired at now_us (borrowed), else NULL. */
struct idem_entry *pool__idem_find(const struct idem_map *m, const char *owner, const char *key,
                                   int64_t now_us);
/* Takes e (replacing an expired entry of the same owner and key). Never fails. */
void pool__idem_insert(struct idem_map *m, struct idem_entry *e);
/* Drops (frees) every entry expired at now_us; returns how many. */
size_t pool__idem_expire(struct idem_map *m, int64_t now_us);
size_t pool__idem_count(const struct idem_map *m);

#endif
