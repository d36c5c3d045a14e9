/*
 * interrupt.c — the end of a job a client interrupted (cancel?interrupt, the request
 * is pool/pool_interrupt.c; j->interrupt_ms set): `cancelled`, however it ended — a
 * result, an exception, a crash, its timeout, or the kill once its grace was over
 * (the supervisor's enforce_deadlines). Called with the pool lock held.
 */
#include "sources.h"
#include "pyjobd/format.h"

#include <stdlib.h>

void pool__interrupt_finish(struct pool *p, struct job *j, const char *how)
{
    job_error_release(&j->v.error);
    j->v.error.type = JOB_ERR_CANCELLED;
    j->v.error.message = str_format("Cancelled by a client while running (interrupt): "
                                    "pyjobd.Cancelled was raised in the job, and %s.",
                                    how);
    pool__job_finish(&p->lc, j, JOB_CANCELLED);
}
