/*
 * store_sqlite_rows.c — a job's row as the writer thread writes it (store_sqlite.c),
 * whole at each put, every parameter bound each time. A job's first put inserts the
 * row (insert or replace); a later one updates it in place, by its seq, every column
 * but the id and the seq set, which leaves the row a replace would have left without deleting and
 * inserting its id's index entry again; a row that is not there (deleted, or never committed) is
 * inserted then. A job's Idempotency-Key goes in its row when the row is inserted. A put superseded
 * in its batch (store_sqlite_batch.c) hands its key to the put that supersedes it; superseded by a
 * delete, it writes its key alone (store_sqlite_keys.c), and so does a delete of a row whose key
 * has not expired.
 */
#include "store_sqlite.h"
#include "pyjobd/clock.h"

#include <stdlib.h>

/* Every column a put writes but the id (?1) and the seq (?2), named: a column added
 * later cannot shift the others. The ?N of each is its position here, after those two
 * (bind_row binds by these numbers); the insert and the update name the same list. The
 * row is keyed by its seq (schema 8): the update finds it by rowid and leaves both keys,
 * so neither the table's b-tree nor the id's index moves. */
#define COLUMNS                                                                                    \
    "owner, status, created_us, started_us, finished_us, timeout, attempts, worker_pid,"           \
    " max_retries, retry_on_timeout, result_format_json, metadata, callable, args, kwargs,"        \
    " json_args, json_kwargs, result, result_json, err_type, err_message, err_exc_type,"           \
    " err_exception, err_traceback, err_exit_code, err_signal, err_max_rss, priority,"             \
    " soft_timeout, run_at_us, expires_at_us, retry_on, retry_not_on, retry_initial,"              \
    " retry_factor, retry_max, retry_flags, next_attempt_us, history, rerun_of, schedule"
#define PARAMS                                                                                     \
    "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,"      \
    " ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39,"   \
    " ?40, ?41, ?42, ?43"
/* The insert also writes the job's Idempotency-Key (its first put's), which stays. */
#define INSERT_SQL                                                                                 \
    "INSERT OR REPLACE INTO jobs (id, seq, " COLUMNS ", idem_key, idem_digest, idem_expires_us)"   \
    " VALUES (?1, ?2, " PARAMS ", ?44, ?45, ?46)"
#define UPDATE_SQL "UPDATE jobs SET (" COLUMNS ") = (" PARAMS ") WHERE seq = ?2 AND id = ?1"

int sqls__rows_prepare(struct sqlite_store *s)
{
    if (sqlite3_prepare_v2(s->db, INSERT_SQL, -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, UPDATE_SQL, -1, &s->update, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM jobs WHERE id = ?1", -1, &s->del, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

void sqls__rows_finalize(struct sqlite_store *s)
{
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->update);
    sqlite3_finalize(s->del);
    s->put = s->update = s->del = NULL;
}

static void bind_blob(sqlite3_stmt *st, int i, const struct blob *b)
{
    if (b)
        sqlite3_bind_blob64(st, i, blob_data(b), blob_len(b), SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* All 43 parameters (none is left from the last op: no clear_bindings needed). */
static void bind_row(sqlite3_stmt *st, const struct op *op, const char *history)
{
    const struct job_view *v = &op->v;
    const struct job_spec *sp = &op->spec;
    bind_text(st, 1, v->id);
    if (op->seq) /* always, from the job table; else the insert numbers it, the update misses */
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->seq);
    else
        sqlite3_bind_null(st, 2);
    bind_text(st, 3, v->owner);
    sqlite3_bind_int(st, 4, v->status);
    sqlite3_bind_int64(st, 5, clock_ts_us(v->created_at));
    sqlite3_bind_int64(st, 6, clock_ts_us(v->started_at));
    sqlite3_bind_int64(st, 7, clock_ts_us(v->finished_at));
    sqlite3_bind_double(st, 8, v->timeout);
    sqlite3_bind_int(st, 9, (int)v->attempts);
    sqlite3_bind_int(st, 10, v->worker_pid);
    sqlite3_bind_int(st, 11, (int)v->max_retries);
    sqlite3_bind_int(st, 12, sp->retry_on_timeout);
    sqlite3_bind_int(st, 13, sp->result_json);
    bind_text(st, 14, v->metadata);
    bind_blob(st, 15, sp->callable);
    bind_blob(st, 16, sp->args);
    bind_blob(st, 17, sp->kwargs);
    bind_blob(st, 18, sp->json_args);
    bind_blob(st, 19, sp->json_kwargs);
    bind_blob(st, 20, v->result);
    bind_blob(st, 21, v->result_json);
    sqlite3_bind_int(st, 22, v->error.type);
    bind_text(st, 23, v->error.message);
    bind_text(st, 24, v->error.exc_type);
    bind_blob(st, 25, v->error.exception);
    bind_text(st, 26, v->error.traceback);
    sqlite3_bind_int(st, 27, v->error.exit_code);
    sqlite3_bind_int(st, 28, v->error.signal);
    sqlite3_bind_int64(st, 29, v->error.max_rss_bytes);
    sqlite3_bind_int(st, 30, v->priority);
    sqlite3_bind_double(st, 31, v->soft_timeout);
    sqlite3_bind_int64(st, 32, v->run_at_us);
    sqlite3_bind_int64(st, 33, v->expires_at_us);
    /* The policy from the view: the spec's goes when the job ends. */
    bind_text(st, 34, v->retry.on);
    bind_text(st, 35, v->retry.not_on);
    sqlite3_bind_double(st, 36, v->retry.initial);
    sqlite3_bind_double(st, 37, v->retry.factor);
    sqlite3_bind_double(st, 38, v->retry.max_delay);
    sqlite3_bind_int(st, 39,
                     (v->retry.jitter ? 1 : 0) | (v->retry.no_crash ? 2 : 0) |
                         (v->retry.no_node_lost ? 4 : 0) | (v->retry.given ? 8 : 0) |
                         (v->retry_on_timeout ? 16 : 0));
    sqlite3_bind_int64(st, 40, v->next_attempt_us);
    bind_text(st, 41, history);
    bind_text(st, 42, v->rerun_of[0] ? v->rerun_of : NULL);
    bind_text(st, 43, v->schedule[0] ? v->schedule : NULL);
}

static int step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

int sqls__row_apply(struct sqlite_store *s, const struct op *op)
{
    if (op->kind == OP_DELETE) {
        int rc = sqls__key_keep(s, op->v.id); /* its key outlives it until it expires */
        bind_text(s->del, 1, op->v.id);
        return rc ? rc : step(s->del);
    }
    if (op->superseded) /* a later op of the batch writes the row: only the key goes */
        return op->spec.idem_key ? sqls__key_put(s, op) : 0;
    char *history = op->v.nhistory ? sqls__history_encode(op->v.history, op->v.nhistory) : NULL;
    int rc = 0, done = 0;
    if (!op->fresh) {
        bind_row(s->update, op, history);
        rc = step(s->update);
        done = rc == 0 && sqlite3_changes(s->db) > 0;
    }
    if (rc == 0 && !done) {
        bind_row(s->put, op, history);
        const char *key = op->spec.idem_key;
        bind_text(s->put, 44, key);
        if (key)
            sqlite3_bind_blob(s->put, 45, op->spec.idem_digest, JOB_IDEM_DIGEST_BYTES,
                              SQLITE_STATIC);
        else
            sqlite3_bind_null(s->put, 45);
        sqlite3_bind_int64(s->put, 46, key ? op->spec.idem_expires_us : 0);
        rc = step(s->put);
    } else if (rc == 0 && op->spec.idem_key) {
        rc = sqls__key_put(s, op); /* a row already there: its key goes beside it */
    }
    free(history);
    return rc;
}
