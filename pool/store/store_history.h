/*
 * store_history.h — a job's attempt history as text, the codec both durable stores
 * keep it in (store_history.c): one line per attempt.
 */
#ifndef PYJOBD_STORE_HISTORY_H
#define PYJOBD_STORE_HISTORY_H

#include "pyjobd/job.h"

/* malloc'd text, NULL on ENOMEM; and back (*out malloc'd, *n entries; a damaged text
 * gives what could be read). */
char *sqls__history_encode(const struct job_attempt *h, unsigned n);
int sqls__history_decode(const char *text, struct job_attempt **out, unsigned *n);

#endif
