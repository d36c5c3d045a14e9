/*
 * store_sqlite_batch.c — one group commit's ops, looked over before the writer applies
 * them (store_sqlite.c). A job often has several puts in one batch (submitted, started,
 * finished); each put writes the whole row, so the last one alone leaves the row the
 * whole sequence would have left, and the earlier ones are marked superseded. The
 * Idempotency-Key of a job's first put goes to the put that supersedes it, whose row
 * is then the first one (fresh) and is inserted with it. A delete supersedes the puts of its id
 * before it and is applied itself; a put after it is written. Schedules' ops are left alone.
 *
 * The index is a table of the batch's ops by id, open addressing, made for one batch
 * and freed after it: its slots point at the ops (whose ids they compare), at least
 * twice as many as the ops, so probes stay short and nothing is ever removed.
 */
#include "store_sqlite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The last 16 hex digits of a job id are random (its first ones are its time). */
static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    size_t n = strlen(id);
    for (size_t i = n > 16 ? n - 16 : 0; i < n; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return (size_t)h;
}

static int is_job_op(const struct op *op)
{
    return op->kind == OP_PUT || op->kind == OP_DELETE;
}

void sqls__batch_coalesce(struct op_list *batch)
{
    size_t n = 0, cap = 16;
    struct op *op;
    STAILQ_FOREACH(op, batch, link)
    {
        n += is_job_op(op);
    }
    if (n < 2)
        return;
    while (cap < 2 * n)
        cap *= 2;
    /* The last op of each id so far. Out of memory, every op is written as queued. */
    struct op **last = calloc(cap, sizeof(*last));
    if (!last)
        return;
    STAILQ_FOREACH(op, batch, link)
    {
        if (!is_job_op(op))
            continue;
        size_t i = id_hash(op->v.id) & (cap - 1);
        while (last[i] && strcmp(last[i]->v.id, op->v.id) != 0)
            i = (i + 1) & (cap - 1);
        if (last[i] && last[i]->kind == OP_PUT) {
            struct op *old = last[i];
            old->superseded = 1;
            op->fresh |= old->fresh; /* its row is not there either */
            if (op->kind == OP_PUT && old->spec.idem_key && !op->spec.idem_key) {
                /* The row that op inserts carries the key (a delete leaves it to old). */
                op->spec.idem_key = old->spec.idem_key;
                old->spec.idem_key = NULL;
                memcpy(op->spec.idem_digest, old->spec.idem_digest, JOB_IDEM_DIGEST_BYTES);
                op->spec.idem_expires_us = old->spec.idem_expires_us;
            }
        }
        last[i] = op;
    }
    free(last);
}
