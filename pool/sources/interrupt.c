/*
 * interrupt.c — a job a client interrupted (cancel?interrupt; the request is
 * pool/pool_interrupt.c, or another node's, relayed by pool/sources/cluster.c): its
 * worker gets WORKER_SIG_INTERRUPT (pyjobd.Cancelled is raised in the job, see
 * include/pyjobd/worker.h) and j->interrupt_ms the time, S seconds on, at which the
 * supervisor kills its worker if it is still running; and its end, `cancelled`, however
 * it ended — a result, an exception, a crash, its timeout, or the kill once its grace
 * was over (the supervisor's enforce_deadlines). Called with the pool lock held.
 *
 * Why a signal and not a frame: the worker's only thread is running the job's Python
 * code and reads no frame until the job ends; a signal reaches that thread in a sleep
 * or a C call too. It carries the number of the job frame on that worker (sigqueue),
 * so one that arrives late, or one the job's code sends itself, does nothing.
 */
#include "sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/format.h"
#include "pyjobd/log.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int pool__interrupt_running(struct job *j, double grace)
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

void pool__interrupt_finish(struct pool *p, struct job *j, const char *how)
{
    job_error_release(&j->v.error);
    j->v.error.type = JOB_ERR_CANCELLED;
    j->v.error.message = str_format("Cancelled by a client while running (interrupt): "
                                    "pyjobd.Cancelled was raised in the job, and %s.",
                                    how);
    pool__job_finish(&p->lc, j, JOB_CANCELLED);
}
