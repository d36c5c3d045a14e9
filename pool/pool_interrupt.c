/*
 * pool_interrupt.c — a graceful cancel (cancel?interrupt=S), the request: a running
 * job is interrupted (pool/sources/interrupt.c: pyjobd.Cancelled raised in it, its
 * worker killed S seconds on if it is still running, the job `cancelled` however it
 * ends). A job that is not running is cancelled as pool_cancel does; one running on
 * another node (a shared store) is interrupted by that node, asked through the
 * database (pool_cancel_elsewhere, with the grace).
 */
#include "sources/sources.h"
#include "pyjobd/store.h"

#include <errno.h>

int pool_interrupt(struct pool *p, const char *id, double grace)
{
    if (!(grace > 0 && grace <= 3600))
        return -EINVAL;
    int rc = 0, outright = 1;
    pthread_mutex_lock(&p->lock);
    struct job *j = pool__table_find(&p->lc.jobs, id, &rc);
    int here = j && !j->mirror; /* else the database answers (shared store) */
    if (pool__elsewhere(p, j)) {
        pthread_mutex_unlock(&p->lock);
        return pool__cancel_elsewhere(p, id, 0, grace);
    }
    if (here && j->v.status == JOB_RUNNING && j->worker)
        outright = pool__interrupt_running(j, grace);
    else if (!j)
        outright = 0; /* rc says why: -ENOENT or -ESTALE */
    pthread_mutex_unlock(&p->lock);
    if (!outright) {
        if (rc == 0)
            pool__wake(p); /* the supervisor sleeps until the grace ends at most */
        return rc;
    }
    /* Queued, finished, or held back before its code ran: a plain cancel says it all
     * (forced for one that is held back). */
    int force = here && j && j->v.status == JOB_RUNNING;
    return pool_cancel(p, id, force);
}
