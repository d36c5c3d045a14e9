/*
 * store_shared.h — the calls a store shared by several nodes (PostgreSQL) adds to
 * store.h. Any node accepts a job, any node with a free worker claims and runs it,
 * any node answers for it:
 *
 *  - the pool says how many jobs it could start now (store_want); the store claims
 *    up to that many queued jobs for this node and hands them over (events.claimed);
 *  - reads of jobs this node does not hold go to the database (store_fetch,
 *    store_list, store_cancel, store_forget), synchronously, with a bound;
 *  - a long-poll on another node's job marks it waited-on (store_watch): its
 *    completion notifies, and the store re-checks waited jobs periodically; either
 *    way the pool learns the new state through events.updated;
 *  - writes of this node's jobs are fenced by (node, attempt): a write the database
 *    refuses because another node took the job over comes back as events.fenced;
 *    a node whose lease ran out gets events.reaped and re-registers under a new id.
 *
 * Callbacks run on the store's thread, with no store lock held; they may call the
 * pool's lock but must not call back into the store synchronously.
 */
#ifndef PYJOBD_STORE_SHARED_H
#define PYJOBD_STORE_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/pool.h"
#include "pyjobd/store.h"

struct store_pg_options {
    const char *uri;       /* libpq connection URI (postgresql://...) */
    const char *schema;    /* schema of pyjobd's tables ("pyjobd") */
    const char *node_name; /* prefix of this node's id (the host name by default) */
    double lease;          /* seconds without a heartbeat before a node is reaped */
    double poll;           /* seconds between claims and re-checks without notification */
    double result_ttl;     /* seconds finished jobs are kept in the database; 0 = forever */
    double connect_wait;   /* seconds store_open_pg waits for the first connection */
};

/* Connects, creates or migrates the schema and registers this node. NULL with a
 * message in err (bad URI, unreachable within connect_wait, newer schema). */
struct store *store_open_pg(const struct store_pg_options *o, char *err, size_t errlen);

struct store_events {
    /* Jobs this node now owns (claimed, or found claimed by it after a reconnect).
     * The callee takes *v and *spec. */
    void (*claimed)(void *arg, struct job_view *v, struct job_spec *spec);
    /* The database's view of a job the pool watches for a waiter (the callee copies). */
    void (*updated)(void *arg, const struct job_view *v);
    /* These jobs' final states are committed (the writes were accepted). */
    void (*committed)(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n);
    /* A write about this job was refused: another node has it now. */
    void (*fenced)(void *arg, const char *id);
    /* Another node asks this one to cancel a job it has (see store_ask_cancel; grace
     * > 0: interrupt it, pool_interrupt). */
    void (*cancel)(void *arg, const char *id, int force, double grace);
    /* This node's lease ran out and its jobs went to others: drop them all. */
    void (*reaped)(void *arg);
    /* Ids of jobs of other nodes that a local waiter waits for: writes up to max ids
     * into ids, returns how many. */
    size_t (*waited)(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t max);
    /* Keeps (in place, in order) those of ids[0..n) that a local waiter waits for;
     * returns how many. */
    size_t (*keep_waited)(void *arg, char (*ids)[JOB_ID_LEN + 1], size_t n);
};

void store_set_events(struct store *s, const struct store_events *ev, void *arg);

/* The pool could start n more jobs now (0: none). Never blocks. */
void store_want(struct store *s, unsigned n);

/* 1 while connected to the database. */
int store_available(struct store *s);

/* About how many jobs wait in the database's queue, unclaimed (counted at the poll
 * interval, plus what this node queued since): what --max-queue bounds. */
size_t store_queued(struct store *s);

/* 1 while this node's last heartbeat is younger than its lease: no other node can have
 * taken its jobs over. (Always 1 for a single-node store.) */
int store_lease_fresh(struct store *s);

/* Copies this node's id ("host-1a2b3c4d"; "" for a single-node store) into out. */
void store_node_id(struct store *s, char out[JOB_NODE_MAX]);

/* -ENOTCONN: the database is unreachable; -ETIMEDOUT: it did not answer in time. */

/* The job as the database has it. 0, -ENOENT, -ENOTCONN, -ETIMEDOUT, -ENOMEM. */
int store_fetch(struct store *s, const char *id, struct job_view *out);

/* Several jobs in one round trip: found[i] says whether out[i] was filled (release
 * those). 0, -ENOTCONN, -ETIMEDOUT, -ENOMEM. */
int store_fetch_many(struct store *s, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                     int *found);

/* A page of jobs, newest first (see pool_list). */
int store_list(struct store *s, const struct pool_list_query *q, struct job_view **out, size_t *n,
               uint64_t *next);

/* Cancels a job no node has claimed: 0; -EXDEV when a node has claimed it (*status and
 * node[JOB_NODE_MAX] say where it stands); -EALREADY, -ENOENT, -ENOTCONN, -ETIMEDOUT. */
int store_cancel(struct store *s, const char *id, int *status, char *node);

/* Asks the node that has the job to cancel it (its events.cancel), or, with grace > 0
 * seconds, to interrupt it (pyjobd.Cancelled, its worker killed grace s later if it
 * has not ended); fire and forget. */
void store_ask_cancel(struct store *s, const char *node, const char *id, int force, double grace);

/* Deletes a finished job: 0, -EBUSY (not finished), -ENOENT, -ENOTCONN, -ETIMEDOUT. */
int store_forget(struct store *s, const char *id);

/* The finished jobs f takes (f->tenant's only, when set), oldest finished first, at most
 * max, with their requests (a bulk rerun): *views and *specs, n of each, malloc'd (the
 * caller releases each and frees both). 0, -ENOTCONN, -ETIMEDOUT, -ENOMEM, -ENOTSUP. */
int store_finished_requests(struct store *s, const struct pool_rerun_filter *f, size_t max,
                            struct job_view **views, struct job_spec **specs, size_t *n);

/* Marks the job waited-on and re-reads it (the answer comes as events.updated). */
void store_watch(struct store *s, const char *id);

/* Idempotent submission on a shared store: the database decides which node's job a
 * key names (store_submit_keyed). */
enum store_key_outcome {
    STORE_KEY_NEW,   /* inserted: the key (if any) names this job now */
    STORE_KEY_SAME,  /* the key names job_id, first sent with the same request: a replay */
    STORE_KEY_OTHER, /* the key names job_id, first sent with another request */
    STORE_KEY_GONE,  /* the key names job_id, same request, but that job was removed */
};
struct store_keyed_job {
    const struct job_view *v;       /* v->node "": left in the queue for any node; else this
                                     * node's: inserted as claimed by this node */
    const struct job_spec *spec;    /* idem_key NULL: no key, inserted with the others */
    enum store_key_outcome outcome; /* the answer */
    char job_id[JOB_ID_LEN + 1];    /* the answer for SAME, OTHER, GONE */
};

/* Inserts jobs[0..n) and takes the keys of those that carry one (spec->idem_key, its
 * digest, until spec->idem_expires_us), in one transaction: a job is inserted only if
 * its key names it (a key is new, or expired and taken over), and nothing is inserted
 * when any key is OTHER or GONE. Two nodes taking one key at once: the second waits
 * for the first's commit and finds SAME or OTHER. The keys of one call must differ.
 * 0 (every outcome filled), -ENOTCONN (the database is out of reach, or the connection
 * was lost: whether it committed is unknown; a retry with the same keys tells),
 * -EIO, -ENOMEM; -ENOTSUP for a single-node store. */
int store_submit_keyed(struct store *s, struct store_keyed_job *jobs, size_t n);

/* --- recurring schedules (issue 17 item 4) ---------------------------------------------
 *
 * Schedules are rows of the database; any node creates, reads and deletes them
 * (synchronous requests, as store_fetch). One node at a time fires them, the leader:
 * the node whose connection holds the database's advisory lock for this schema (lost
 * with that connection, so a dead node's lock goes with its connection and another node
 * takes it within --pg-poll). The store tells the pool when it leads and which
 * schedules there are; the pool fires their ticks (store_schedule_tick), and the store
 * commits each tick's job with the schedule's progress in one transaction, or not at
 * all once this node no longer leads. A tick's job id is derived from the schedule and
 * the tick, so a tick fired twice (two leaders, one after the other) makes one job.
 */

enum store_schedules_how {
    /* This node just became the leader: rows are every schedule, with its job; the
     * callee replaces what it had, and ticks missed since each one's last tick go as
     * its "missed" says. */
    STORE_SCHEDULES_LEAD,
    /* A re-read (at the poll interval, or when one was created or deleted anywhere):
     * every schedule without its job (job NULL). The callee drops those not listed and
     * copies into unknown[] the ids of those it does not have, returning how many; the
     * store then reads those with their jobs (STORE_SCHEDULES_ADDED). */
    STORE_SCHEDULES_LISTING,
    /* Schedules the leader did not have, with their jobs. */
    STORE_SCHEDULES_ADDED,
};

/* Called on the store's thread, no store lock held (they may take the pool's). */
struct store_schedule_events {
    size_t (*loaded)(void *arg, enum store_schedules_how how, const struct store_schedule *rows,
                     size_t n, char (*unknown)[JOB_ID_LEN + 1]);
    /* This node stopped leading (its connection was lost): fire nothing more. */
    void (*lost)(void *arg);
    /* A tick was committed: its schedule has fired runs jobs, the last last_job; or
     * (gone) the schedule was deleted meanwhile and the tick made no job. */
    void (*ticked)(void *arg, const char *id, int gone, uint64_t runs, const char *last_job);
};

/* Registers the pool (ev NULL: no more calls; returns once a call in progress ended).
 * Only a store with events registered tries to lead. */
void store_set_schedule_events(struct store *s, const struct store_schedule_events *ev, void *arg);

/* The tick tick_us of schedule id: its job (v: id, owner, created_at, options; spec: its
 * payload; both copied) is inserted unless a job has that id, and the schedule's last
 * tick, runs and last job advanced, in one transaction — only while this node leads,
 * the schedule exists and has not fired that tick. Never blocks: 0 (queued), -ENOMEM,
 * -ENOTCONN (this node does not lead), -ENOTSUP (not a shared store). */
int store_schedule_tick(struct store *s, const char *id, int64_t tick_us, const struct job_view *v,
                        const struct job_spec *spec);

/* A new schedule's row (its runs, last tick and last job are ignored): 0; -EDQUOT when
 * its owner has tenant_max schedules already, -EAGAIN when there are max in all;
 * -ENOTCONN, -ETIMEDOUT, -EIO, -ENOMEM, -ENOTSUP. */
int store_schedule_create(struct store *s, const struct store_schedule *sc, size_t tenant_max,
                          size_t max);

/* Schedules (id NULL: all; owner NULL: anyone's), oldest first, without their jobs:
 * *rows malloc'd (store_schedules_free). 0, -ENOTCONN, -ETIMEDOUT, -EIO, -ENOMEM,
 * -ENOTSUP. */
int store_schedule_read(struct store *s, const char *id, const char *owner,
                        struct store_schedule **rows, size_t *n);
void store_schedules_free(struct store_schedule *rows, size_t n);

/* Deletes a schedule (owner NULL: anyone's): 0, -ENOENT (none, or another owner's),
 * -ENOTCONN, -ETIMEDOUT, -EIO, -ENOMEM, -ENOTSUP. */
int store_schedule_delete(struct store *s, const char *id, const char *owner);

#endif
