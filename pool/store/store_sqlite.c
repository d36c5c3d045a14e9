/*
 * store_sqlite.c — the durable job store on SQLite (include/pyjobd/store.h).
 *
 * One table, one row per job, written whole at each transition (inserted, then updated):
 * submitted, started, finished, re-queued; deleted by retention or DELETE. A
 * dedicated thread commits whatever is queued in one transaction (WAL journal,
 * synchronous=NORMAL: a commit survives a crash of this process; a power cut may
 * lose the last few), then wakes the submitters waiting in store_sync().
 * A job's start is on record before the database commits it: store_started appends
 * it to a log beside the database (start_log.c), emptied once the database has every
 * logged start, replayed over the rows when the store is loaded. The start's row then
 * waits (is carried) up to CARRY_MS for the job's end, whose row is written instead.
 * The schema and its migrations are in store_sqlite_schema.c.
 * A new database is created 0600, and SQLite gives its -wal and -shm files the
 * database's mode: the store holds every tenant's payloads and results.
 * What is read back (load, and results on demand) is in store_sqlite_read.c; the
 * Idempotency-Keys, written in a job's row with its first put, in store_sqlite_keys.c.
 * Of a job's puts in one commit only the last one's row is written (store_sqlite_batch.c),
 * inserted or updated by store_sqlite_rows.c.
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
#include <time.h>
#include <unistd.h>

static int apply(struct sqlite_store *s, const struct op *op)
{
    if (op->kind == OP_SCHEDULE_PUT || op->kind == OP_SCHEDULE_DELETE)
        return sqls__schedule_apply(s, op);
    return sqls__row_apply(s, op);
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

/* A start's row waits (is carried from batch to batch) while the log holds the start,
 * for at most CARRY_MS: most jobs end by then, and their end's row is written instead,
 * one write of the row rather than two. The log is emptied only when nothing is
 * carried, so once CARRY_UNTIL_LOGGED starts are logged every row is written at once
 * until it is; nothing is carried at the stop. */
#define CARRY_UNTIL_LOGGED 4096
#define CARRY_MS 50

/* Moves out of batch (coalesced) the starts whose rows wait: a put the log holds, not
 * written by a later op of the batch, within CARRY_MS of its first batch, and not the
 * job's first row (its submission's answer waits for this commit). */
static void carry_starts(struct op_list *batch, struct op_list *carried, int64_t now_ms)
{
    struct op_list keep = STAILQ_HEAD_INITIALIZER(keep);
    struct op *op;
    while ((op = STAILQ_FIRST(batch))) {
        STAILQ_REMOVE_HEAD(batch, link);
        if (op->kind == OP_PUT && op->deferrable && !op->superseded && !op->fresh &&
            (!op->carry_until_ms || now_ms < op->carry_until_ms)) {
            if (!op->carry_until_ms)
                op->carry_until_ms = now_ms + CARRY_MS;
            STAILQ_INSERT_TAIL(carried, op, link);
        } else {
            STAILQ_INSERT_TAIL(&keep, op, link);
        }
    }
    STAILQ_CONCAT(batch, &keep);
}

/* A start's put does not wake the writer when the log holds the start (its row may
 * wait), so an idle writer looks at its queue this often too. */
#define IDLE_MS 1000

/* Waits for work: 1 when there is some (queued, a carried row whose wait is over, or
 * the stop with rows carried), 0 when there is none and the store stops. Under
 * s->lock. Carried rows are in the order they were first carried: the first one's
 * wait ends first. */
static int await_work(struct sqlite_store *s)
{
    while (STAILQ_EMPTY(&s->queue) && !s->stopping) {
        int carried = !STAILQ_EMPTY(&s->carried);
        int64_t until =
            carried ? STAILQ_FIRST(&s->carried)->carry_until_ms : clock_now_ms() + IDLE_MS;
        struct timespec at = {until / 1000, (long)(until % 1000) * 1000000L};
        if (pthread_cond_timedwait(&s->work, &s->lock, &at) == ETIMEDOUT && carried)
            return 1;
    }
    return !STAILQ_EMPTY(&s->queue) || !STAILQ_EMPTY(&s->carried);
}

static void *store_main(void *arg)
{
    struct sqlite_store *s = arg;
    pthread_mutex_lock(&s->lock);
    while (await_work(s)) {
        int carry = !s->stopping && !s->keep_starts && s->starts_logged < CARRY_UNTIL_LOGGED;
        struct op_list batch = STAILQ_HEAD_INITIALIZER(batch);
        STAILQ_CONCAT(&batch, &s->carried); /* older than the queue: first */
        STAILQ_CONCAT(&batch, &s->queue);
        s->queue_tail = NULL;
        pthread_mutex_unlock(&s->lock);

        /* Group commit: everything queued so far goes in one transaction, each job's
         * row written once (store_sqlite_batch.c). A carried start is on record in the
         * log, so its ticket counts as done with the batch. */
        sqls__batch_coalesce(&batch);
        uint64_t last = 0;
        struct op *op;
        STAILQ_FOREACH(op, &batch, link)
        {
            if (op->ticket > last)
                last = op->ticket;
        }
        if (carry)
            carry_starts(&batch, &s->carried, clock_now_ms());
        int rc = SQLITE_OK;
        if (!STAILQ_EMPTY(&batch)) {
            rc = sqlite3_step(s->begin) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
            sqlite3_reset(s->begin);
            STAILQ_FOREACH(op, &batch, link)
            {
                if (rc == SQLITE_OK && (rc = apply(s, op)) != 0)
                    log_error("store: cannot write job %s: %s", op->v.id, sqlite3_errmsg(s->db));
            }
            if (rc == SQLITE_OK && (rc = sqls__keys_expire(s)) != SQLITE_OK)
                log_error("store: cannot delete expired idempotency keys: %s",
                          sqlite3_errmsg(s->db));
            if (rc == SQLITE_OK) {
                rc = sqlite3_step(s->commit) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
                sqlite3_reset(s->commit);
            }
            if (rc != SQLITE_OK) {
                log_error("store: commit failed: %s", sqlite3_errmsg(s->db));
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            }
        }
        free_ops(&batch);

        pthread_mutex_lock(&s->lock);
        if (last > s->committed) /* a batch of carried rows alone is older */
            s->committed = last;
        if (rc != SQLITE_OK) {
            s->failed_upto = last;
            s->keep_starts = 1; /* the rows may lack some logged start: keep them all */
        }
        if (!s->keep_starts && s->starts_ticket && last >= s->starts_ticket &&
            STAILQ_EMPTY(&s->carried)) {
            start_log_truncate(s->starts);
            s->starts_logged = 0;
        }
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
    STAILQ_INIT(&s->carried);
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
    if (sqlite3_prepare_v2(s->db, "BEGIN IMMEDIATE", -1, &s->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "COMMIT", -1, &s->commit, NULL) != SQLITE_OK ||
        sqls__rows_prepare(s) != 0 || sqls__keys_prepare(s) != 0 ||
        sqls__schedules_prepare(s) != 0) {
        snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqls__reader_open(s, path, err, errlen) != 0 ||
        !(s->starts = start_log_open(path, err, errlen)))
        goto fail;
    /* The last run's starts (replayed by load) stay until the first start of this run
     * is committed: the recovery's own writes come before it. */
    s->starts_ticket = start_log_empty(s->starts) ? 0 : UINT64_MAX;
    const char *bench = getenv("PYJOBD_BENCH_STARTS");
    if (bench && (strcmp(bench, "commit") == 0 || strcmp(bench, "none") == 0)) {
        s->bench_starts = strcmp(bench, "commit") == 0 ? 1 : 2;
        log_warn("store: PYJOBD_BENCH_STARTS=%s (make bench only): %s", bench,
                 s->bench_starts == 1 ? "a job's start waits for the database's commit"
                                      : "starts are NOT on record: a kill -9 may run a job "
                                        "twice");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC); /* await_work's timed wait */
    pthread_cond_init(&s->work, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&s->done, NULL);
    if (pthread_create(&s->thread, NULL, store_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store thread");
        goto fail;
    }
    pthread_setname_np(s->thread, "store-sqlite"); /* as top -H and perf name it */
    return &s->base;
fail:
    start_log_close(s->starts);
    sqls__reader_close(s); /* zeroed when it never opened: nothing to undo */
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqls__rows_finalize(s);
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
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqls__rows_finalize(s);
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

/* wake: 0 for a start's put, whose store_started wakes the writer unless the log holds
 * the start (then its row may wait: no wake-up of the writer for it). */
static uint64_t enqueue(struct sqlite_store *s, struct op *op, int wake)
{
    pthread_mutex_lock(&s->lock);
    op->ticket = ++s->next_ticket;
    STAILQ_INSERT_TAIL(&s->queue, op, link);
    s->queue_tail = op;
    if (wake)
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
    op->fresh = (flags & STORE_NEW) != 0;
    op->seq = seq;
    job_spec_ref_payload(&op->spec, spec);
    memcpy(op->spec.idem_digest, spec->idem_digest, sizeof(op->spec.idem_digest));
    op->spec.idem_expires_us = spec->idem_expires_us;
    return enqueue(s, op, !(v->status == JOB_RUNNING && !(flags & STORE_NEW)));
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
    return enqueue(s, op, 1);
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
    return enqueue(s, op, 1);
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
    if (s->committed < ticket)
        pthread_cond_signal(&s->work); /* a start's put may not have woken the writer */
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
    int rc = s->bench_starts ? -ENOTSUP : start_log_append(s->starts, v);
    int waits = 1; /* its put is written as it comes */
    if (rc == 0) {
        s->starts_ticket = ticket; /* tickets only grow */
        s->starts_logged++;
        /* Its put, still queued: its row may wait for the job's next put. */
        if (ticket && s->queue_tail && s->queue_tail->ticket == ticket) {
            s->queue_tail->deferrable = 1;
            waits = 0;
        }
    }
    if (rc == 0 && !ticket)
        s->keep_starts = 1; /* no write carries it (out of memory): the log must */
    if (waits)
        pthread_cond_signal(&s->work); /* the put did not wake the writer */
    pthread_mutex_unlock(&s->lock);
    if (s->bench_starts)
        return s->bench_starts == 1 ? ticket : 0;
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
