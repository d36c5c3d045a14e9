/*
 * pool_interrupt.c — a graceful cancel (cancel?interrupt=S), the request: a running
 * job's worker gets WORKER_SIG_INTERRUPT (pyjobd.Cancelled is raised in the job, see
 * include/pyjobd/worker.h) and the job a time, S seconds on, at which the supervisor
 * kills its worker if it is still running (pool/sources/interrupt.c, which also ends
 * such a job `cancelled` however it ends). A job that is not running is cancelled as
 * pool_cancel does; one running on another node is not reached (the nodes' cancel
 * relay carries no grace).
 *
 * Why a signal and not a frame: the worker's only thread is running the job's Python
 * code and reads no frame until the job ends; a signal reaches that thread in a sleep
 * or a C call too. It carries the number of the job frame on that worker (sigqueue),
 * so one that arrives late, or one the job's code sends itself, does nothing.
 */
#include "sources/sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

/* Lock held; j is this node's running job. 0, or 1 when its frame is still held back
 * (no code of it ran: the caller cancels it outright). */
static int interrupt_running(struct job *j, double grace)
{
    struct worker *w = j->worker;
    if (w->gate)
        return 1;
    int64_t until = clock_now_ms() + (int64_t)(grace * 1000.0 + 0.999);
    if (!j->interrupt_ms || until < j->interrupt_ms)
        j->interrupt_ms = until;
    union sigval v = {.sival_int = (int)(w->jobs_sent & WORKER_INTERRUPT_JOB_MASK)};
    /* The worker is not reaped yet (the supervisor is its reaper): its pid names it. */
    if (sigqueue(w->pid, WORKER_SIG_INTERRUPT, v) != 0 && errno != ESRCH)
        log_warn("worker %d: cannot interrupt job %s: %s", (int)w->pid, j->v.id, strerror(errno));
    log_info("job %s: interrupted at a client's request (worker %d is killed in %g s unless "
             "the job ends)",
             j->v.id, (int)w->pid, grace);
    return 0;
}

int pool_interrupt(struct pool *p, const char *id, double grace)
{
    if (!(grace > 0 && grace <= 3600))
        return -EINVAL;
    int rc = 0, outright = 1;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__table_find(&p->lc.jobs, id, &rc);
    int here = j && !j->mirror; /* else the database answers (shared store) */
    if (here && j->v.status == JOB_RUNNING && j->worker)
        outright = interrupt_running(j, grace);
    else if (!j && !store_is_shared(p->cfg.store))
        outright = 0; /* rc says why: -ENOENT or -ESTALE */
    pthread_mutex_unlock(&p->lock);
    if (!outright) {
        if (rc == 0)
            pool__wake(p); /* the supervisor sleeps until the grace ends at most */
        return rc;
    }
    /* Queued, finished, elsewhere, or held back before its code ran: a plain cancel
     * says it all (forced only for one of ours that is held back). */
    int force = here && j && j->v.status == JOB_RUNNING;
    rc = pool_cancel(p, id, force);
    return rc == -EBUSY ? -EREMOTE : rc;
}
