/*
 * store_sqlite.h — the SQLite store's own structure, shared by its files:
 *
 *   store_sqlite.c       opening, the writer thread and its group commits, the
 *                        store's function table
 *   store_sqlite_schema.c  the schema's versions and the migrations between them
 *   store_sqlite_read.c  what is read back: every row at start (load), and one finished
 *                        job's results on demand, on a connection of its own
 *   store_sqlite_keys.c  the Idempotency-Keys: in their jobs' rows, and those of deleted
 *                        jobs in a table of their own until they expire
 *   store_sqlite_batch.c a batch's puts of one job before the writer applies them: only
 *                        the last one's row is written
 *   store_sqlite_rows.c  a job's row as the writer writes it: inserted, updated, deleted
 *
 * The writer's connection (db) is used by the writer thread alone once the store is
 * open (and by load, before anything is written). The reader's connection (rdb) is
 * used under rlock by any thread: SQLite connections are not to be shared by threads
 * at once (they are opened SQLITE_OPEN_NOMUTEX), and in WAL mode a reader sees the
 * last commit without ever blocking the writer or being blocked by it.
 */
#ifndef PYJOBD_STORE_SQLITE_H
#define PYJOBD_STORE_SQLITE_H

#include "store_impl.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/queue.h>

enum op_kind { OP_PUT, OP_DELETE, OP_SCHEDULE_PUT, OP_SCHEDULE_DELETE };

/* A schedule's row as an op carries it (store_sqlite_schedules.c): copies. */
struct op_schedule {
    struct store_schedule row; /* its pointers point at the copies below */
    uint8_t *job;
    char *cron, *timezone;
};

struct op {
    enum op_kind kind;
    uint64_t ticket;
    uint64_t seq;
    struct job_view v; /* OP_PUT; OP_DELETE and OP_SCHEDULE_DELETE: its id */
    struct job_spec spec;
    struct op_schedule *schedule; /* OP_SCHEDULE_PUT */
    int fresh;                    /* OP_PUT: the job's first write (STORE_NEW): no row to update */
    int superseded; /* OP_PUT: a later op of its batch writes the row (its key still goes) */
    /* OP_PUT of a start the log holds (store_started): its row may wait, until
     * carry_until_ms (CLOCK_MONOTONIC; 0: not carried yet), for the job's next put,
     * which then writes it instead (store_sqlite.c). */
    int deferrable;
    int64_t carry_until_ms;
    STAILQ_ENTRY(op) link;
};
STAILQ_HEAD(op_list, op);

struct sqlite_store {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *begin, *commit;                  /* a group commit's (store_sqlite.c) */
    sqlite3_stmt *put, *update, *del;              /* store_sqlite_rows.c */
    sqlite3_stmt *key_put, *key_expire, *key_keep; /* store_sqlite_keys.c */
    sqlite3_stmt *sched_put, *sched_del;           /* store_sqlite_schedules.c */
    int64_t keys_expired_ms; /* CLOCK_MONOTONIC of the last expiry; 0: never */
    char *describe;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    struct op_list queue;   /* written in order, all at once by the thread */
    struct op *queue_tail;  /* the last op queued, while it is in queue */
    struct op_list carried; /* the writer's: starts whose rows wait for the next batch */
    uint64_t next_ticket, committed, failed_upto;
    int stopping;
    void (*on_commit)(void *arg); /* store_on_commit */
    void *on_commit_arg;
    /* Starts logged (store_started); the log is emptied once the database committed
     * starts_ticket, the write of the last one, unless a commit failed since. */
    struct start_log *starts;
    uint64_t starts_ticket;
    unsigned starts_logged; /* since the log was last emptied */
    int keep_starts;
    /* make bench's measure of what at-most-once costs (PYJOBD_BENCH_STARTS, read at
     * open; never set in use): 1 a start waits for the database's commit instead of
     * the log, 2 a start is not put on record at all (a kill -9 may run a job twice). */
    int bench_starts;
    /* The reader (store_sqlite_read.c): its connection and statement, under rlock. */
    pthread_mutex_t rlock;
    sqlite3 *rdb;
    sqlite3_stmt *sizes;
};

/* store_load: every row, oldest first, through cb (on the writer's connection, before
 * the first write). */
int sqls__load(struct store *base, store_load_cb cb, void *arg, char *err, size_t errlen);

/* Opens the reader's connection on path (the database exists and is migrated): 0, or
 * -1 with a message in err. Closing accepts a store whose reader never opened. */
int sqls__reader_open(struct sqlite_store *s, const char *path, char *err, size_t errlen);
void sqls__reader_close(struct sqlite_store *s);

/* store_read_request, on the reader's connection (any thread). */
int sqls__read_request(struct store *base, const char *id, struct job_spec *spec);

/* store_read_results, on the reader's connection (any thread). */
int sqls__read_results(struct store *base, const char *id, struct job_view *v);

/* store_sqlite_schema.c: runs sql, or fills err naming path (0 / -1); brings the file
 * to the current schema, or refuses a newer one (0 / -1 with err). */
/* A job's attempt history as text (store_history.c): malloc'd, NULL on ENOMEM; and
 * back (*out malloc'd, *n entries; a damaged text gives what could be read). */
char *sqls__history_encode(const struct job_attempt *h, unsigned n);
int sqls__history_decode(const char *text, struct job_attempt **out, unsigned *n);

/* Schedules (store_sqlite_schedules.c): statements, the writer's apply of an op, an
 * op for a row, loading, and freeing an op's copy. */
int sqls__schedules_prepare(struct sqlite_store *s);
void sqls__schedules_finalize(struct sqlite_store *s);
int sqls__schedule_apply(struct sqlite_store *s, const struct op *op);
/* Fills op (zeroed) to write sc's row: 0 or -ENOMEM. */
int sqls__schedule_op(struct op *op, const struct store_schedule *sc);
int sqls__load_schedules(struct store *base, store_schedule_cb cb, void *arg);
void sqls__schedule_free(struct op_schedule *o);

int sqls__exec_or_err(sqlite3 *db, const char *sql, const char *path, char *err, size_t errlen);
int sqls__migrate(sqlite3 *db, const char *path, char *err, size_t errlen);

/* store_sqlite_keys.c. The statements (0 or -1 with the
 * connection's error); a put's key (op->spec.idem_key set: SQLITE_OK-like 0 or the
 * sqlite3 error); the deletion of expired keys, at most once a minute, in the writer's
 * transaction (SQLITE_OK or the error); store_load_keys on the writer's connection. */
int sqls__keys_prepare(struct sqlite_store *s);
void sqls__keys_finalize(struct sqlite_store *s);
int sqls__key_put(struct sqlite_store *s, const struct op *op);
/* Before job id's row is deleted: its key, if still valid, into the keys' table. */
int sqls__key_keep(struct sqlite_store *s, const char *id);
int sqls__keys_expire(struct sqlite_store *s);
int sqls__load_keys(struct store *base, store_key_cb cb, void *arg);

/* store_sqlite_batch.c: marks superseded the puts of the batch whose row a later op of
 * the same id writes or deletes (ops in queue order; the rest untouched); the op that
 * supersedes a first put is a first put too (fresh). */
void sqls__batch_coalesce(struct op_list *batch);

/* store_sqlite_rows.c. The statements (0 or -1 with the connection's error); the
 * writer's apply of a job's put or delete (0 or the sqlite3 error). */
int sqls__rows_prepare(struct sqlite_store *s);
void sqls__rows_finalize(struct sqlite_store *s);
int sqls__row_apply(struct sqlite_store *s, const struct op *op);

#endif
