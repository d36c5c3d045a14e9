/*
 * start_log.h — the SQLite store's record of jobs that started: one line appended per
 * start, before the job's code may run, so that the start is on record without waiting
 * for the database's next commit (see store_started in include/pyjobd/store.h). When the
 * database has committed every logged start, the log is emptied; when the store is
 * loaded, a logged start newer than the job's row makes the row "running" again.
 * Not thread-safe: the store calls it under its own lock.
 */
#ifndef PYJOBD_START_LOG_H
#define PYJOBD_START_LOG_H

#include "pyjobd/job.h"

#include <stddef.h>
#include <time.h>

struct start_log;

struct start_entry {
    char id[JOB_ID_LEN + 1];
    unsigned attempts; /* the attempt that started */
    struct timespec started_at;
    int worker_pid;
};

/* "<db_path>-starts", created 0600 if missing. NULL with a message in err. */
struct start_log *start_log_open(const char *db_path, char *err, size_t errlen);
void start_log_close(struct start_log *l);

/* Appends v's start (id, attempts, started_at, worker_pid): 0, or -errno (nothing
 * appended). */
int start_log_append(struct start_log *l, const struct job_view *v);

int start_log_empty(const struct start_log *l);
void start_log_truncate(struct start_log *l);

/* Every logged start, sorted by id, the latest attempt of each job: 0 and *out (free
 * it), or -errno. */
int start_log_read(struct start_log *l, struct start_entry **out, size_t *n);
const struct start_entry *start_log_find(const struct start_entry *items, size_t n, const char *id);

#endif
