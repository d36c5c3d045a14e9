/*
 * store_sqlite_read.c — what the SQLite store reads back (see store_sqlite.h): every
 * row when the server starts (load, with the start log replayed over the rows), and,
 * on demand, the results of one finished job whose results left the pool's memory
 * (--max-results-memory).
 *
 * The results are read on a connection of the reader's own, under its own mutex: the
 * writer's connection belongs to the writer thread, and a read queued to that thread
 * would wait behind group commits (and make them wait). In WAL mode this reader sees
 * the last commit and neither blocks the writer nor is blocked by it. One explicit read
 * transaction covers the lookup and the blob reads, so they see one snapshot; the
 * blobs are read with incremental blob I/O straight into the blobs handed out, not
 * copied from SQLite's own buffer: a 64 MiB result costs 64 MiB, once.
 */
#include "store_sqlite.h"
#include "start_log.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct timespec us_ts(int64_t us)
{
    return (struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
}

static struct blob *column_blob(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    const void *d = sqlite3_column_blob(st, i);
    return blob_new_copy(d, (size_t)sqlite3_column_bytes(st, i));
}

static char *column_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

/* The columns load reads, named (never SELECT *: the table's column order is the order
 * the migrations added them in), numbered as load reads them. */
#define LOAD_SQL                                                                                   \
    "SELECT id, seq, owner, status, created_us, started_us, finished_us, timeout, attempts,"       \
    " worker_pid, max_retries, retry_on_timeout, result_format_json, metadata, callable, args,"    \
    " kwargs, json_args, json_kwargs, result, result_json, err_type, err_message, err_exc_type,"   \
    " err_exception, err_traceback, err_exit_code, err_signal, err_max_rss, priority,"             \
    " soft_timeout, run_at_us, expires_at_us, retry_on, retry_not_on, retry_initial,"              \
    " retry_factor, retry_max, retry_flags, next_attempt_us, history, rerun_of, schedule FROM"     \
    " jobs ORDER BY seq"

int sqls__load(struct store *base, store_load_cb cb, void *arg, char *err, size_t errlen)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, LOAD_SQL, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", s->describe, sqlite3_errmsg(s->db));
        return -EIO;
    }
    struct start_entry *starts = NULL;
    size_t nstarts = 0;
    int rc = start_log_read(s->starts, &starts, &nstarts), out = 0;
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot read its start log: %s", s->describe, strerror(-rc));
        sqlite3_finalize(st);
        return rc;
    }
    while (out == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct job_view v;
        struct job_spec spec;
        memset(&v, 0, sizeof(v));
        memset(&spec, 0, sizeof(spec));
        snprintf(v.id, sizeof(v.id), "%s", (const char *)sqlite3_column_text(st, 0));
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 1);
        snprintf(v.owner, sizeof(v.owner), "%s", (const char *)sqlite3_column_text(st, 2));
        memcpy(spec.owner, v.owner, sizeof(spec.owner));
        v.status = (enum job_status)sqlite3_column_int(st, 3);
        v.created_at = us_ts(sqlite3_column_int64(st, 4));
        v.started_at = us_ts(sqlite3_column_int64(st, 5));
        v.finished_at = us_ts(sqlite3_column_int64(st, 6));
        v.timeout = spec.timeout = sqlite3_column_double(st, 7);
        v.attempts = (unsigned)sqlite3_column_int(st, 8);
        v.worker_pid = sqlite3_column_int(st, 9);
        v.max_retries = spec.max_retries = (unsigned)sqlite3_column_int(st, 10);
        spec.retry_on_timeout = sqlite3_column_int(st, 11);
        spec.result_json = sqlite3_column_int(st, 12);
        v.metadata = column_text(st, 13);
        spec.metadata = v.metadata ? strdup(v.metadata) : NULL;
        spec.callable = column_blob(st, 14);
        spec.args = column_blob(st, 15);
        spec.kwargs = column_blob(st, 16);
        spec.json_args = column_blob(st, 17);
        spec.json_kwargs = column_blob(st, 18);
        v.result = column_blob(st, 19);
        v.result_json = column_blob(st, 20);
        v.error.type = (enum job_error_type)sqlite3_column_int(st, 21);
        v.error.message = column_text(st, 22);
        v.error.exc_type = column_text(st, 23);
        v.error.exception = column_blob(st, 24);
        v.error.traceback = column_text(st, 25);
        v.error.exit_code = sqlite3_column_int(st, 26);
        v.error.signal = sqlite3_column_int(st, 27);
        v.error.max_rss_bytes = sqlite3_column_int64(st, 28);
        v.priority = spec.priority = sqlite3_column_int(st, 29);
        v.soft_timeout = spec.soft_timeout = sqlite3_column_double(st, 30);
        v.run_at_us = spec.run_at_us = sqlite3_column_int64(st, 31);
        v.expires_at_us = spec.expires_at_us = sqlite3_column_int64(st, 32);
        v.retry.on = column_text(st, 33);
        v.retry.not_on = column_text(st, 34);
        v.retry.initial = sqlite3_column_double(st, 35);
        v.retry.factor = sqlite3_column_double(st, 36);
        v.retry.max_delay = sqlite3_column_double(st, 37);
        int flags = sqlite3_column_int(st, 38);
        v.retry.jitter = flags & 1;
        v.retry.no_crash = (flags & 2) != 0;
        v.retry.no_node_lost = (flags & 4) != 0;
        v.retry.given = (flags & 8) != 0;
        v.retry_on_timeout = spec.retry_on_timeout || (flags & 16);
        v.next_attempt_us = sqlite3_column_int64(st, 39);
        const unsigned char *sched = sqlite3_column_text(st, 42);
        if (sched && job_id_is_valid((const char *)sched))
            memcpy(v.schedule, sched, JOB_ID_LEN + 1);
        const unsigned char *rerun_of = sqlite3_column_text(st, 41);
        if (rerun_of && job_id_is_valid((const char *)rerun_of)) {
            memcpy(v.rerun_of, rerun_of, JOB_ID_LEN + 1);
            memcpy(spec.rerun_of, rerun_of, JOB_ID_LEN + 1);
        }
        if (sqls__history_decode((const char *)sqlite3_column_text(st, 40), &v.history,
                                 &v.nhistory) != 0 ||
            job_retry_copy(&spec.retry, &v.retry) != 0) {
            job_view_release(&v);
            job_spec_release(&spec);
            out = -ENOMEM;
            break;
        }
        /* A start the database had not committed yet: the job may have run. */
        const struct start_entry *e = start_log_find(starts, nstarts, v.id);
        if (e && job_status_is_pending(v.status) && e->attempts > v.attempts) {
            v.next_attempt_us = 0;
            v.status = JOB_RUNNING;
            v.attempts = e->attempts;
            v.started_at = e->started_at;
            v.worker_pid = e->worker_pid;
        }
        out = cb(arg, &v, &spec, seq);
    }
    free(starts);
    if (out == 0 && rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s: reading jobs failed: %s", s->describe, sqlite3_errmsg(s->db));
        out = -EIO;
    }
    sqlite3_finalize(st);
    return out;
}

int sqls__reader_open(struct sqlite_store *s, const char *path, char *err, size_t errlen)
{
    pthread_mutex_init(&s->rlock, NULL);
    /* Read-write: a read-only connection cannot take part in WAL's shared memory when
     * the -shm file is missing; query_only keeps it from ever writing. */
    if (sqlite3_open_v2(path, &s->rdb,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(s->rdb, 5000) != SQLITE_OK ||
        sqlite3_exec(s->rdb, "PRAGMA query_only = 1", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->rdb,
                           "SELECT rowid, length(result), length(result_json), "
                           "length(err_exception) FROM jobs WHERE id = ?1",
                           -1, &s->sizes, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "store %s: cannot open its reader: %s", path,
                 s->rdb ? sqlite3_errmsg(s->rdb) : "out of memory");
        return -1;
    }
    return 0;
}

void sqls__reader_close(struct sqlite_store *s)
{
    sqlite3_finalize(s->sizes);
    sqlite3_close(s->rdb);
    s->sizes = NULL;
    s->rdb = NULL;
    pthread_mutex_destroy(&s->rlock);
}

/* Column col of row rowid, len bytes, into a new blob (*out); 0 or an SQLite code. */
static int read_blob(sqlite3 *db, const char *col, sqlite3_int64 rowid, sqlite3_int64 len,
                     struct blob **out)
{
    sqlite3_blob *h;
    int rc = sqlite3_blob_open(db, "main", "jobs", col, rowid, 0, &h);
    if (rc != SQLITE_OK)
        return rc;
    struct blob *b = blob_new((size_t)len);
    rc = b ? SQLITE_OK : SQLITE_NOMEM;
    for (sqlite3_int64 at = 0; rc == SQLITE_OK && at < len;) {
        int n = len - at > (1 << 30) ? 1 << 30 : (int)(len - at);
        rc = sqlite3_blob_read(h, blob_mutable_data(b) + at, n, (int)at);
        at += n;
    }
    sqlite3_blob_close(h);
    if (rc != SQLITE_OK)
        blob_unref(b);
    else
        *out = b;
    return rc;
}

int sqls__read_results(struct store *base, const char *id, struct job_view *v)
{
    static const char *const cols[] = {"result", "result_json", "err_exception"};
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct blob **dst[] = {&v->result, &v->result_json, &v->error.exception};
    struct blob *got[3] = {NULL, NULL, NULL};
    int found = 0;
    pthread_mutex_lock(&s->rlock);
    int rc = sqlite3_exec(s->rdb, "BEGIN", NULL, NULL, NULL);
    sqlite3_reset(s->sizes);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s->sizes, 1, id, -1, SQLITE_STATIC);
    int step = rc == SQLITE_OK ? sqlite3_step(s->sizes) : rc;
    sqlite3_int64 rowid = 0, len[3] = {-1, -1, -1};
    if (step == SQLITE_ROW) {
        found = 1;
        rowid = sqlite3_column_int64(s->sizes, 0);
        for (int i = 0; i < 3; i++)
            if (sqlite3_column_type(s->sizes, 1 + i) != SQLITE_NULL)
                len[i] = sqlite3_column_int64(s->sizes, 1 + i);
    }
    rc = step == SQLITE_ROW || step == SQLITE_DONE ? SQLITE_OK : step;
    sqlite3_reset(s->sizes); /* the transaction, and so the snapshot, stays */
    for (int i = 0; rc == SQLITE_OK && i < 3; i++)
        if (len[i] >= 0)
            rc = read_blob(s->rdb, cols[i], rowid, len[i], &got[i]);
    if (rc != SQLITE_OK && rc != SQLITE_NOMEM)
        log_error("store: cannot read the results of job %s: %s", id, sqlite3_errmsg(s->rdb));
    sqlite3_exec(s->rdb, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->rlock);
    for (int i = 0; i < 3; i++) {
        if (rc == SQLITE_OK && found) {
            blob_unref(*dst[i]);
            *dst[i] = got[i];
        } else {
            blob_unref(got[i]);
        }
    }
    if (rc != SQLITE_OK)
        return (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : -EIO;
    return found ? 0 : -ENOENT;
}

int sqls__read_request(struct store *base, const char *id, struct job_spec *spec)
{
    static const char *const sql = "SELECT callable, args, kwargs, json_args, json_kwargs,"
                                   " result_format_json FROM jobs WHERE id = ?1";
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct blob **dst[] = {&spec->callable, &spec->args, &spec->kwargs, &spec->json_args,
                           &spec->json_kwargs};
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->rlock);
    int rc = sqlite3_prepare_v2(s->rdb, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = rc == SQLITE_OK ? sqlite3_step(st) : rc, out = 0;
    if (step == SQLITE_ROW) {
        for (int i = 0; i < 5 && out == 0; i++) {
            *dst[i] = column_blob(st, i);
            if (!*dst[i] && sqlite3_column_type(st, i) != SQLITE_NULL)
                out = -ENOMEM;
        }
        spec->result_json = sqlite3_column_int(st, 5);
        if (out == 0 && !spec->callable)
            out = -ENODATA; /* a row written before requests were kept */
    } else {
        out = step == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->rlock);
    return out;
}
