/*
 * results_memory.c — --max-results-memory: the bytes of results (result, result_json,
 * the pickled exception) that finished jobs hold in memory stay under the bound. The
 * table's held list has those jobs in the order they finished, so only its head is
 * looked at: beyond the bound, the oldest results leave memory, and where they can be
 * read from afterwards decides how:
 *
 *   - a single-node store (SQLite) that has committed the job's final write: the record
 *     stays, its results are released and read back from the store when asked for
 *     (pool_jobs.c), byte for byte;
 *   - a shared store (PostgreSQL) once the database answers for the job (a mirror):
 *     the same, though a finished job is read from the database anyway;
 *   - no store, or a final write that failed: nowhere. The record expires as retention
 *     expires it, its tombstone saying why, so that a lookup answers -ENOBUFS (a 404
 *     that names the flag), not "never existed".
 *
 * A job whose final write is not committed yet keeps its results until it is: the
 * store's commit wakes the supervisor (results_waiting), which looks again.
 */
#include "sources.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"

enum where { NOWHERE, ON_RECORD, NOT_YET };

static enum where results_kept(struct pool *p, const struct job *j)
{
    struct store *s = p->cfg.store;
    if (!s)
        return NOWHERE;
    if (store_is_shared(p->cfg.store))
        return j->mirror ? ON_RECORD : NOT_YET;
    if (!j->store_ticket)
        return NOWHERE; /* its write could not be queued (out of memory) */
    if (!store_committed(s, j->store_ticket))
        return NOT_YET;
    /* Committed or failed: store_sync says which, without waiting now. */
    return store_sync(s, j->store_ticket) == 0 ? ON_RECORD : NOWHERE;
}

void pool__results_memory_enforce(struct pool *p)
{
    struct job_table *t = &p->lc.jobs;
    size_t max = p->cfg.max_results_memory;
    int waiting = 0;
    for (struct job *j = pool__held_first(t), *next; max && j && t->results_bytes > max; j = next) {
        next = TAILQ_NEXT(j, held_link); /* j leaves the list, or is freed */
        switch (results_kept(p, j)) {
        case ON_RECORD:
            pool__job_results_out(&p->lc, j);
            break;
        case NOWHERE:
            log_info("job %s expired: finished jobs' results passed --max-results-memory "
                     "(%zu bytes) and they are stored nowhere else",
                     j->v.id, max);
            pool__job_forget(&p->lc, j, JOB_GONE_RESULTS);
            break;
        case NOT_YET:
            waiting = 1;
            /* One node's writes commit in the order the jobs finished: nothing after
             * this one is committed either. (Other nodes' jobs, behind ours on a
             * shared store, are the database's already.) */
            if (!store_is_shared(p->cfg.store))
                next = NULL;
            break;
        }
    }
    __atomic_store_n(&p->results_waiting, waiting, __ATOMIC_SEQ_CST);
}

size_t pool__results_memory_bytes(const struct pool *p)
{
    return p->lc.jobs.results_bytes;
}
