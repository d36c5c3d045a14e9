/*
 * store_sqlite.c — the durable job store on SQLite (include/pyjobd/store.h).
 *
 * One table, one row per job, written whole (insert or replace) at each transition:
 * submitted, started, finished, re-queued; deleted by retention or DELETE. A
 * dedicated thread commits whatever is queued in one transaction (WAL journal,
 * synchronous=NORMAL: a commit survives a crash of this process; a power cut may
 * lose the last few), then wakes the submitters waiting in store_sync().
 * A job's start is on record before the database commits it: store_started appends
 * it to a log beside the database (start_log.c), emptied once the database has every
 * logged start, replayed over the rows when the store is loaded.
 * The schema and its migrations are in store_sqlite_schema.c.
 * A new database is created 0600, and SQLite gives its -wal and -shm files the
 * database's mode: the store holds every tenant's payloads and results.
 * What is read back (load, and results on demand) is in store_sqlite_read.c; the
 * Idempotency-Keys' table, written with a job's first put, in store_sqlite_keys.c.
 */
#include "store_sqlite.h"
#include "start_log.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

/* Every column put writes, named: a column added later cannot shift the others. The
 * ?N of each is its position here (apply binds by these numbers). */
#define PUT_SQL                                                                                    \
    "INSERT OR REPLACE INTO jobs (id, seq, owner, status, created_us, started_us, finished_us,"    \
    " timeout, attempts, worker_pid, max_retries, retry_on_timeout, result_format_json,"           \
    " metadata, callable, args, kwargs, json_args, json_kwargs, result, result_json, err_type,"    \
    " err_message, err_exc_type, err_exception, err_traceback, err_exit_code, err_signal,"         \
    " err_max_rss, priority, soft_timeout, run_at_us, expires_at_us, retry_on, retry_not_on,"      \
    " retry_initial, retry_factor, retry_max, retry_flags, next_attempt_us, history, rerun_of,"    \
    " schedule) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"    \
    " ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34,"   \
    " ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43)"

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

static int apply(struct sqlite_store *s, const struct op *op)
{
    if (op->kind == OP_SCHEDULE_PUT || op->kind == OP_SCHEDULE_DELETE)
        return sqls__schedule_apply(s, op);
    sqlite3_stmt *st = op->kind == OP_PUT ? s->put : s->del;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    const struct job_view *v = &op->v;
    char *history = NULL;
    bind_text(st, 1, v->id);
    if (op->kind == OP_PUT) {
        const struct job_spec *sp = &op->spec;
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->seq);
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
        history = v->nhistory ? sqls__history_encode(v->history, v->nhistory) : NULL;
        if (history)
            sqlite3_bind_text(st, 41, history, -1, SQLITE_STATIC);
        if (v->rerun_of[0])
            bind_text(st, 42, v->rerun_of);
        if (v->schedule[0])
            bind_text(st, 43, v->schedule);
    }
    int rc = sqlite3_step(st);
    free(history);
    if (rc == SQLITE_DONE && op->kind == OP_PUT && op->spec.idem_key)
        return sqls__key_put(s, op); /* the same transaction as the job's row */
    return rc == SQLITE_DONE ? 0 : rc;
}

static void free_ops(struct op_list *ops)
{
    struct op *op;
    while ((op = STAILQ_FIRST(ops))) {
        STAILQ_REMOVE_HEAD(ops, link);
        job_view_release(&op->v);
        job_spec_release(&op->spec);
        sqls__schedule_free(op->schedule);
        free(op);
    }
}

static void *store_main(void *arg)
{
    struct sqlite_store *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (STAILQ_EMPTY(&s->queue) && !s->stopping)
            pthread_cond_wait(&s->work, &s->lock);
        if (STAILQ_EMPTY(&s->queue) && s->stopping)
            break;
        struct op_list batch = STAILQ_HEAD_INITIALIZER(batch);
        STAILQ_CONCAT(&batch, &s->queue);
        pthread_mutex_unlock(&s->lock);

        /* Group commit: everything queued so far goes in one transaction. */
        uint64_t last = 0;
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        struct op *op;
        STAILQ_FOREACH(op, &batch, link)
        {
            if (rc == SQLITE_OK && (rc = apply(s, op)) != 0)
                log_error("store: cannot write job %s: %s", op->v.id, sqlite3_errmsg(s->db));
            last = op->ticket;
        }
        if (rc == SQLITE_OK && (rc = sqls__keys_expire(s)) != SQLITE_OK)
            log_error("store: cannot delete expired idempotency keys: %s", sqlite3_errmsg(s->db));
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            log_error("store: commit failed: %s", sqlite3_errmsg(s->db));
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        }
        free_ops(&batch);

        pthread_mutex_lock(&s->lock);
        s->committed = last;
        if (rc != SQLITE_OK) {
            s->failed_upto = last;
            s->keep_starts = 1; /* the rows may lack some logged start: keep them all */
        }
        if (!s->keep_starts && s->starts_ticket && last >= s->starts_ticket)
            start_log_truncate(s->starts);
        pthread_cond_broadcast(&s->done);
        if (s->on_commit)
            s->on_commit(s->on_commit_arg);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static const struct store_ops sqlite_ops;

struct store *store_open_sqlite(const char *path, char *err, size_t errlen)
{
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (!s || asprintf(&s->describe, "sqlite:%s", path) < 0) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    STAILQ_INIT(&s->queue);
    /* SQLite would create it 0644 (less the umask). An existing file keeps its mode. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
    } else if (errno != EEXIST) {
        snprintf(err, errlen, "cannot create store %s: %s", path, strerror(errno));
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                            SQLITE_OPEN_EXRESCODE,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open store %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* quick_check reads every page once: a damaged file is refused, never reused. */
    if (sqls__exec_or_err(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", path, err,
                          errlen) != 0 ||
        sqls__migrate(s->db, path, err, errlen) != 0)
        goto fail;
    sqlite3_stmt *qc;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &qc, NULL) != SQLITE_OK ||
        sqlite3_step(qc) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(qc, 0), "ok") != 0) {
        snprintf(err, errlen,
                 "store %s is damaged (%s); restore it from a backup or move it "
                 "away to start empty",
                 path,
                 qc && sqlite3_column_text(qc, 0) ? (const char *)sqlite3_column_text(qc, 0)
                                                  : sqlite3_errmsg(s->db));
        sqlite3_finalize(qc);
        goto fail;
    }
    sqlite3_finalize(qc);
    if (sqlite3_prepare_v2(s->db, PUT_SQL, -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM jobs WHERE id = ?1", -1, &s->del, NULL) !=
            SQLITE_OK ||
        sqls__keys_prepare(s) != 0 || sqls__schedules_prepare(s) != 0) {
        snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqls__reader_open(s, path, err, errlen) != 0 ||
        !(s->starts = start_log_open(path, err, errlen)))
        goto fail;
    /* The last run's starts (replayed by load) stay until the first start of this run
     * is committed: the recovery's own writes come before it. */
    s->starts_ticket = start_log_empty(s->starts) ? 0 : UINT64_MAX;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    if (pthread_create(&s->thread, NULL, store_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store thread");
        goto fail;
    }
    return &s->base;
fail:
    start_log_close(s->starts);
    sqls__reader_close(s); /* zeroed when it never opened: nothing to undo */
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->del);
    sqls__keys_finalize(s);
    sqls__schedules_finalize(s);
    sqlite3_close(s->db);
    free(s->describe);
    free(s);
    return NULL;
}

static void sqlite_close(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->del);
    sqls__keys_finalize(s);
    sqls__schedules_finalize(s);
    sqlite3_close(s->db);
    sqls__reader_close(s);
    start_log_close(s->starts);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
    free(s->describe);
    free(s);
}

static uint64_t enqueue(struct sqlite_store *s, struct op *op)
{
    pthread_mutex_lock(&s->lock);
    op->ticket = ++s->next_ticket;
    STAILQ_INSERT_TAIL(&s->queue, op, link);
    pthread_cond_signal(&s->work);
    uint64_t t = op->ticket;
    pthread_mutex_unlock(&s->lock);
    return t;
}

static uint64_t sqlite_put(struct store *base, const struct job_view *v,
                           const struct job_spec *spec, uint64_t seq, unsigned flags)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *op = calloc(1, sizeof(*op));
    /* A job's first write carries its key: the row of both is one commit. */
    int keyed = (flags & STORE_NEW) && spec->idem_key;
    if (!op || job_view_copy(&op->v, v) != 0 ||
        (keyed && !(op->spec.idem_key = strdup(spec->idem_key)))) {
        if (op)
            job_view_release(&op->v);
        free(op);
        log_error("store: out of memory queueing job %s", v->id);
        return 0;
    }
    op->kind = OP_PUT;
    op->seq = seq;
    job_spec_ref_payload(&op->spec, spec);
    memcpy(op->spec.idem_digest, spec->idem_digest, sizeof(op->spec.idem_digest));
    op->spec.idem_expires_us = spec->idem_expires_us;
    return enqueue(s, op);
}

static uint64_t sqlite_put_schedule(struct store *base, const struct store_schedule *sc)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *op = calloc(1, sizeof(*op));
    if (!op || sqls__schedule_op(op, sc) != 0) {
        free(op);
        log_error("store: out of memory queueing schedule %s", sc->id);
        return 0;
    }
    return enqueue(s, op);
}

/* A row of id goes (a job's, or a schedule's). */
static uint64_t delete_op(struct store *base, enum op_kind kind, const char *id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return 0;
    op->kind = kind;
    op->v.error.exit_code = -1;
    snprintf(op->v.id, sizeof(op->v.id), "%s", id);
    return enqueue(s, op);
}

static uint64_t sqlite_delete_schedule(struct store *base, const char *id)
{
    return delete_op(base, OP_SCHEDULE_DELETE, id);
}

static uint64_t sqlite_delete(struct store *base, const char *id)
{
    return delete_op(base, OP_DELETE, id);
}

static int sqlite_sync(struct store *base, uint64_t ticket)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (!ticket)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    while (s->committed < ticket)
        pthread_cond_wait(&s->done, &s->lock);
    int rc = s->failed_upto >= ticket ? -EIO : 0;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sqlite_committed(struct store *base, uint64_t ticket)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int done = s->committed >= ticket;
    pthread_mutex_unlock(&s->lock);
    return done;
}

static uint64_t sqlite_started(struct store *base, const struct job_view *v, uint64_t ticket)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = start_log_append(s->starts, v);
    if (rc == 0)
        s->starts_ticket = ticket; /* tickets only grow */
    if (rc == 0 && !ticket)
        s->keep_starts = 1; /* no write carries it (out of memory): the log must */
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        log_warn("store: cannot log the start of job %s (%s); it waits for the commit instead",
                 v->id, strerror(-rc));
    return rc == 0 ? 0 : ticket;
}

static void sqlite_on_commit(struct store *base, void (*fn)(void *arg), void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    s->on_commit = fn;
    s->on_commit_arg = arg;
    pthread_mutex_unlock(&s->lock);
}

static const char *sqlite_describe(const struct store *base)
{
    const struct sqlite_store *s = (const struct sqlite_store *)base;
    return s->describe;
}

/* One node: no shared entries (store.c answers the calls of store_shared.h). */
static const struct store_ops sqlite_ops = {
    .close = sqlite_close,
    .load = sqls__load,
    .load_keys = sqls__load_keys,
    .read_results = sqls__read_results,
    .read_request = sqls__read_request,
    .put_schedule = sqlite_put_schedule,
    .delete_schedule = sqlite_delete_schedule,
    .load_schedules = sqls__load_schedules,
    .put = sqlite_put,
    .del = sqlite_delete,
    .sync = sqlite_sync,
    .committed = sqlite_committed,
    .started = sqlite_started,
    .on_commit = sqlite_on_commit,
    .describe = sqlite_describe,
    .shared = 0,
};
