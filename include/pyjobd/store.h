/*
 * store.h — durable job records: the seam between the pool and a database.
 *
 * The pool keeps working state in memory (queue, waiters, workers); a store keeps a
 * copy of every job on disk so that a restart finds them again. Writes are queued
 * and committed in order by the store's own thread, many per transaction (group
 * commit); store_sync() waits for a write to be on disk, which is what a 201 means.
 * The interface is small on purpose: a shared store for several nodes implements
 * the same calls. The SQLite implementation is pool/store_sqlite.c.
 */
#ifndef PYJOBD_STORE_H
#define PYJOBD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/job.h"

struct store;

/* Opens the database (creating it, or migrating an older schema). NULL with a message
 * naming the file in err when it cannot be opened, is corrupt, or was written by a
 * newer schema. */
struct store *store_open(const char *path, char *err, size_t errlen);

/* Commits what is queued and closes. Accepts NULL. */
void store_close(struct store *s);

/*
 * Calls cb once per stored job, oldest first (by seq). The callee owns *v and *spec
 * (release them with job_view_release / job_spec_release when not kept). cb returns
 * 0 to go on, negative to stop (store_load then returns that value).
 */
typedef int (*store_load_cb)(void *arg, struct job_view *v, struct job_spec *spec, uint64_t seq);
int store_load(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen);

/* Queues an insert-or-replace of the job's full record. Takes its own references and
 * copies; the caller keeps its data. Returns the write's ticket (0 on ENOMEM). */
uint64_t store_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                   uint64_t seq);

/* Queues the removal of a job. Returns the write's ticket. */
uint64_t store_delete(struct store *s, const char *id);

/* Waits until every write up to ticket is committed: 0, or -EIO if a commit failed. */
int store_sync(struct store *s, uint64_t ticket);

/* "sqlite:/path/jobs.db" for /v1/info. */
const char *store_describe(const struct store *s);

#endif
