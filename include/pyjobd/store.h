/*
 * store.h — durable job records: the seam between the pool and a database.
 *
 * The pool keeps working state in memory (queue, waiters, workers); a store keeps a
 * copy of every job so that a restart, or another node, finds it. Writes are queued
 * and committed in order by the store's own thread, many per transaction (group
 * commit); store_sync() waits for a write to be committed, which is what a 201 means.
 *
 * Two implementations: SQLite (pool/store/store_sqlite.c, one node, the default durable
 * store) and PostgreSQL (pool/store/pg/, several nodes sharing one queue). The calls below
 * are common to both; a shared store (store_is_shared) also answers the calls of
 * include/pyjobd/store_shared.h, which a single-node store answers for one node.
 * Every call goes through the store's function table (pool/store/store_impl.h, dispatched
 * by pool/store/store.c).
 */
#ifndef PYJOBD_STORE_H
#define PYJOBD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/job.h"

struct store;

/* Opens a SQLite store (creating the file, or migrating an older schema). NULL with
 * a message naming the file in err when it cannot be opened, is corrupt, or was
 * written by a newer schema. */
struct store *store_open_sqlite(const char *path, char *err, size_t errlen);

/* Commits what is queued and closes. Accepts NULL. */
void store_close(struct store *s);

/*
 * Calls cb once per stored job, oldest first (by seq). The callee owns *v and *spec
 * (release them with job_view_release / job_spec_release when not kept). cb returns
 * 0 to go on, negative to stop (store_load then returns that value). A shared store
 * loads nothing: its jobs are claimed, not recovered.
 */
typedef int (*store_load_cb)(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq);
int store_load(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen);

/*
 * Calls cb once per Idempotency-Key the store keeps that has not expired (expires_us,
 * CLOCK_REALTIME), soonest to expire first; the strings and the digest
 * (JOB_IDEM_DIGEST_BYTES) are borrowed for the call. A key is stored by the first put
 * (STORE_NEW) of a job whose spec has idem_key, with it. 0, cb's negative value, -EIO,
 * or -ENOTSUP for a store that keeps none (a shared store).
 */
/* A recurring schedule as a store keeps it (POST /v1/schedules): its definition, the
 * job request it submits (spec_codec bytes) and how far it has fired. */
struct store_schedule {
    char id[JOB_ID_LEN + 1];
    char owner[JOB_OWNER_MAX];
    const uint8_t *job; /* spec_encode's bytes (borrowed) */
    size_t job_len;
    const char *cron;                 /* NULL with every */
    double every;                     /* seconds; 0 with cron */
    const char *timezone;             /* "UTC" ... */
    int run_once;                     /* "missed": "run_once" */
    int64_t created_us, last_tick_us; /* CLOCK_REALTIME; last_tick 0: never fired */
    uint64_t runs;
    char last_job[JOB_ID_LEN + 1];
};

/* Writes a schedule's row after every write queued before it (a tick's job first: a
 * row that says a tick fired is never committed without that tick's job). Returns
 * the write's ticket (0: no store or ENOMEM). */
uint64_t store_put_schedule(struct store *s, const struct store_schedule *sc);
uint64_t store_delete_schedule(struct store *s, const char *id);

/* Every schedule kept, through cb (its strings and bytes are valid during the call).
 * A non-zero return from cb stops and is returned. -ENOTSUP for a store that loads
 * none at start (PostgreSQL: its schedules are rows any node reads, and the leading
 * node fires them; see the schedule calls of store_shared.h). */
typedef int (*store_schedule_cb)(void *arg, const struct store_schedule *sc);
int store_load_schedules(struct store *s, store_schedule_cb cb, void *arg);

typedef int (*store_key_cb)(void *arg, const char *owner, const char *key, const uint8_t *digest,
                            const char *job_id, int64_t expires_us);
int store_load_keys(struct store *s, store_key_cb cb, void *arg);

/* store_put flags (a single-node store ignores them). */
enum {
    STORE_NEW = 1,     /* the job's first write: its payload goes with it */
    STORE_CLAIMED = 2, /* with STORE_NEW: this node runs it (no other node may claim it) */
};

/* Queues an insert-or-replace of the job's record. Takes its own references and
 * copies; the caller keeps its data. Returns the write's ticket (0 on ENOMEM). */
uint64_t store_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                   uint64_t seq, unsigned flags);

/* Queues the removal of a job. Returns the write's ticket. */
uint64_t store_delete(struct store *s, const char *id);

/* Waits until every write up to ticket is committed: 0; -EIO if a commit failed;
 * -ETIMEDOUT when a shared store's database did not confirm it in time (the write
 * stays queued and is retried). */
int store_sync(struct store *s, uint64_t ticket);

/* 1 once every write up to ticket is committed (or failed, or given up at the stop),
 * else 0; never blocks. 1 for ticket 0. */
int store_committed(struct store *s, uint64_t ticket);

/* The job is about to run: v its state as just put ("running"), with that write's
 * ticket. Returns 0 when the start is on record already (SQLite logs it at once, see
 * pool/store/start_log.h), else the ticket to wait for (store_committed) before the
 * job's code may run: a job must not run unless a restart would know it may have. */
uint64_t store_started(struct store *s, const struct job_view *v, uint64_t ticket);

/* fn(arg) is called from the store's own thread after each commit: it must not block
 * nor take a lock the store's callers hold while they write (the pool's wake-up). */
void store_on_commit(struct store *s, void (*fn)(void *arg), void *arg);

/* A finished job's payload (callable, args, kwargs, json_args, json_kwargs) and
 * result format, read back into spec's zeroed fields (a rerun whose request left
 * memory). Any thread. 0, -ENOENT, -ENODATA (not kept), -ENOTSUP, -ENOMEM, -EIO. */
int store_read_request(struct store *s, const char *id, struct job_spec *spec);

/*
 * The results of a finished job as they are stored (result, result_json and the
 * pickled exception), byte for byte, for a job whose results left the pool's memory
 * (--max-results-memory): sets those three members of *v to new references to the
 * stored values (NULL where the row has none), dropping what they held. Blocks on the
 * database; any thread may call it, concurrently with the writes, and sees what is
 * committed. 0; -ENOENT when no row has this id; -ENOMEM; -EIO; -ENOTSUP for a store
 * without it (a shared store, whose every read of a finished job is store_fetch). On
 * failure *v is unchanged.
 */
int store_read_results(struct store *s, const char *id, struct job_view *v);

/* "sqlite:/path/jobs.db", "postgresql://host:port/db (schema pyjobd)" for /v1/info. */
const char *store_describe(const struct store *s);

/* 1 for a store shared by several nodes (PostgreSQL). */
int store_is_shared(const struct store *s);

#endif
