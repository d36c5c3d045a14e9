/*
 * wait.c — the records of pending long-polls.
 *
 * A single-job wait (API_WAIT_JOB, API_WAIT_RESULT) is plain data: the pool calls
 * the server's wake callback directly. A multi-job wait (POST /v1/jobs/wait) puts one
 * pool watch per id on a shared struct api__multiwait, whose callbacks may run on the
 * supervisor thread long after the server resumed the connection, answered and freed
 * its api_wait. So the multi-waiter is reference counted: the api_wait holds one
 * reference, every registered watch holds one until its callback returns, and
 * registration holds one while it runs. Whoever drops the last frees it. The
 * server's wake runs at most once (woken), and never after the api_wait was freed
 * without being woken (api__wait_free sets woken first).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct api__multiwait *api__multiwait_new(char (*ids)[JOB_ID_LEN + 1], size_t n,
                                          int first_completed, int64_t deadline_ms)
{
    struct api__multiwait *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->ids = malloc(n ? n * sizeof(*m->ids) : 1);
    m->watch = calloc(n ? n : 1, 1);
    if (!m->ids || !m->watch) {
        free(m->ids);
        free(m->watch);
        free(m);
        return NULL;
    }
    memcpy(m->ids, ids, n * sizeof(*m->ids));
    m->n = n;
    m->first_completed = first_completed;
    m->deadline_ms = deadline_ms;
    atomic_init(&m->refs, 1);
    atomic_init(&m->pending, 0);
    atomic_init(&m->woken, 0);
    return m;
}

void api__multiwait_unref(struct api__multiwait *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(m->ids);
    free(m->watch);
    free(m);
}

void api__multiwait_wake(struct api__multiwait *m)
{
    if (atomic_exchange_explicit(&m->woken, 1, memory_order_acq_rel) == 0 && m->wake)
        m->wake(m->wake_arg);
}

void api__multiwait_fired_cb(void *arg)
{
    struct api__multiwait *m = arg;
    /* FIRST_COMPLETED: any firing (a job ended, or the deadline) ends the wait.
     * ALL_COMPLETED: the last firing does; the deadline fires every watch. */
    if (m->first_completed || atomic_fetch_sub_explicit(&m->pending, 1, memory_order_acq_rel) == 1)
        api__multiwait_wake(m);
    api__multiwait_unref(m);
}

void api__wait_free(struct api_wait *w)
{
    if (!w)
        return;
    if (w->many) {
        /* Released without being answered (e.g. the server is going away): make sure
         * no later watch calls into a request the server has freed. */
        atomic_store_explicit(&w->many->woken, 1, memory_order_release);
        api__multiwait_unref(w->many);
    }
    free(w);
}
