/*
 * store_sqlite_schedules.c — the SQLite store's recurring schedules (schema 7): one row
 * per schedule with its definition, the job request it submits (spec_codec bytes) and
 * how far it has fired. A row is written through the writer's queue like a job's, so
 * it commits after every job queued before it: a row saying that a tick fired never
 * reaches the disk without that tick's job (a crash loses a suffix of the queue, never
 * a middle). Loaded at start, on the reader's connection.
 */
#include "store_sqlite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sqls__schedules_prepare(struct sqlite_store *s)
{
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO schedules (id, owner, job, cron, every,"
                           " timezone, run_once, created_us, last_tick_us, runs, last_job)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                           -1, &s->sched_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM schedules WHERE id = ?1", -1, &s->sched_del, NULL) !=
            SQLITE_OK)
        return -1;
    return 0;
}

void sqls__schedules_finalize(struct sqlite_store *s)
{
    sqlite3_finalize(s->sched_put);
    sqlite3_finalize(s->sched_del);
    s->sched_put = s->sched_del = NULL;
}

void sqls__schedule_free(struct op_schedule *o)
{
    if (!o)
        return;
    free(o->job);
    free(o->cron);
    free(o->timezone);
    free(o);
}

int sqls__schedule_apply(struct sqlite_store *s, const struct op *op)
{
    sqlite3_stmt *st = op->kind == OP_SCHEDULE_PUT ? s->sched_put : s->sched_del;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (op->kind == OP_SCHEDULE_DELETE) {
        sqlite3_bind_text(st, 1, op->v.id, -1, SQLITE_STATIC);
    } else {
        const struct store_schedule *r = &op->schedule->row;
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->owner, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, r->job, (int)r->job_len, SQLITE_STATIC);
        if (r->cron)
            sqlite3_bind_text(st, 4, r->cron, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 5, r->every);
        sqlite3_bind_text(st, 6, r->timezone, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 7, r->run_once);
        sqlite3_bind_int64(st, 8, r->created_us);
        sqlite3_bind_int64(st, 9, r->last_tick_us);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)r->runs);
        if (r->last_job[0])
            sqlite3_bind_text(st, 11, r->last_job, -1, SQLITE_STATIC);
    }
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

int sqls__schedule_op(struct op *op, const struct store_schedule *sc)
{
    struct op_schedule *o = calloc(1, sizeof(*o));
    if (o) {
        o->row = *sc;
        o->job = malloc(sc->job_len ? sc->job_len : 1);
        o->cron = sc->cron ? strdup(sc->cron) : NULL;
        o->timezone = strdup(sc->timezone ? sc->timezone : "UTC");
    }
    if (!o || !o->job || (sc->cron && !o->cron) || !o->timezone) {
        sqls__schedule_free(o);
        return -ENOMEM;
    }
    memcpy(o->job, sc->job, sc->job_len);
    o->row.job = o->job;
    o->row.cron = o->cron;
    o->row.timezone = o->timezone;
    op->kind = OP_SCHEDULE_PUT;
    op->schedule = o;
    op->v.error.exit_code = -1;
    snprintf(op->v.id, sizeof(op->v.id), "%s", sc->id);
    return 0;
}

int sqls__load_schedules(struct store *base, store_schedule_cb cb, void *arg)
{
    /* On the reader's connection: recovery has queued writes by now, and the writer's
     * connection is its thread's (a connection must not be used by two at once). */
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->rlock);
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT id, owner, job, cron, every, timezone, run_once, created_us,"
                           " last_tick_us, runs, last_job FROM schedules ORDER BY created_us",
                           -1, &st, NULL) != SQLITE_OK) {
        pthread_mutex_unlock(&s->rlock);
        return -EIO;
    }
    int rc, out = 0;
    while (out == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_schedule sc;
        memset(&sc, 0, sizeof(sc));
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *owner = (const char *)sqlite3_column_text(st, 1);
        const char *last = (const char *)sqlite3_column_text(st, 10);
        if (!id || !job_id_is_valid(id) || !owner || strlen(owner) >= sizeof(sc.owner))
            continue; /* a row no version wrote */
        memcpy(sc.id, id, JOB_ID_LEN + 1);
        memcpy(sc.owner, owner, strlen(owner) + 1);
        sc.job = sqlite3_column_blob(st, 2);
        sc.job_len = (size_t)sqlite3_column_bytes(st, 2);
        sc.cron = (const char *)sqlite3_column_text(st, 3);
        sc.every = sqlite3_column_double(st, 4);
        sc.timezone = (const char *)sqlite3_column_text(st, 5);
        sc.run_once = sqlite3_column_int(st, 6);
        sc.created_us = sqlite3_column_int64(st, 7);
        sc.last_tick_us = sqlite3_column_int64(st, 8);
        sc.runs = (uint64_t)sqlite3_column_int64(st, 9);
        if (last && job_id_is_valid(last))
            memcpy(sc.last_job, last, JOB_ID_LEN + 1);
        out = cb(arg, &sc);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->rlock);
    return out;
}
