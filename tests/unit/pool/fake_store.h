/*
 * fake_store.h — a shared store in memory for the pool's unit tests: what a pool on
 * PostgreSQL sees, without PostgreSQL. It implements struct store_ops
 * (pool/store/store_impl.h) with shared = 1:
 *
 *  - put / delete record every write, in order, and apply it to a table of rows
 *    (the "database"); sync returns at once; writes are committed at once unless
 *    held (fake_store_hold_commits);
 *  - want records the last n the pool asked for;
 *  - fetch / fetch_many / list / cancel / forget answer from the rows;
 *  - watch is counted; ask_cancel does nothing (there is no other node);
 *  - the test drives the events a real store would deliver from its thread
 *    (fake_store_claim, _commit, _fence, _reap, _update, _cancel): each calls the
 *    pool's callback on the test's thread, with no store lock held.
 *
 * A test #includes fake_store.c once (each test file is its own program). Waiting
 * calls give up after ms and say so, so a test fails instead of hanging.
 */
#ifndef PYJOBD_FAKE_STORE_H
#define PYJOBD_FAKE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/job.h"
#include "pyjobd/store.h"

#define FAKE_STORE_NODE "fake-node-1"

/* A new fake; store_close() frees it (after the pool that used it). */
struct store *fake_store_new(void);

/* --- what the pool did ---------------------------------------------------------------- */

/* Writes recorded so far (puts and deletes). */
size_t fake_store_writes(struct store *s);

/* Copies the last write of the job (a put) into *v (release it) and its flags into
 * *flags (may be NULL): 0, or -ENOENT when the pool never wrote it. */
int fake_store_last_put(struct store *s, const char *id, struct job_view *v, unsigned *flags);

/* Waits up to ms for a put of the job in that status (JOB_*); then as
 * fake_store_last_put for that write. 0, or -ETIMEDOUT. */
int fake_store_wait_put(struct store *s, const char *id, enum job_status status, int ms,
                        struct job_view *v);

/* The n of the pool's last store_want (0 before the first). */
unsigned fake_store_want(struct store *s);

/* Waits up to ms for the pool's last store_want to be n: 0, or -ETIMEDOUT. */
int fake_store_wait_want(struct store *s, unsigned n, int ms);

/* How many times the pool called store_fetch (and store_fetch_many, per id), and
 * store_watch. */
size_t fake_store_fetches(struct store *s);
size_t fake_store_watches(struct store *s);

/* --- what the database holds ---------------------------------------------------------- */

/* Sets the row of v->id (as if another node wrote it): fetch answers with a copy. */
void fake_store_set_row(struct store *s, const struct job_view *v);

/* --- events a real store delivers ------------------------------------------------------ */

/* This node claimed the job: the pool takes *v and *spec (it must have its events
 * set, i.e. run on this store). */
void fake_store_claim(struct store *s, struct job_view *v, struct job_spec *spec);

/* From now on, the writes are not committed (store_committed says 0) until
 * fake_store_commit_all, which commits them all and calls the pool's on_commit. */
void fake_store_hold_commits(struct store *s);
void fake_store_commit_all(struct store *s);

/* The job's final write was committed. */
void fake_store_commit(struct store *s, const char *id);

/* A write about the job was refused: another node has it now. */
void fake_store_fence(struct store *s, const char *id);

/* This node's lease ran out: its jobs went to others. */
void fake_store_reap(struct store *s);

/* The database's view of a job the pool watches. */
void fake_store_update(struct store *s, const struct job_view *v);

/* Another node relays a client's cancel. */
void fake_store_cancel(struct store *s, const char *id, int force);

#endif
