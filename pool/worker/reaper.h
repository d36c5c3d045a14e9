/*
 * reaper.h — every process a job started ends with the job (reaper.c).
 */
#ifndef PYJOBD_WORKER_REAPER_H
#define PYJOBD_WORKER_REAPER_H

/* Makes the worker the reaper of every process its jobs start, whatever process
 * group or session they make (PR_SET_CHILD_SUBREAPER): a process whose parent dies
 * becomes the worker's child instead of init's. At boot; exits BOOT_FAILED on error. */
void worker_reaper_enable(void);

/* Kills (SIGKILL) and reaps every process the job left behind, children of the
 * job's threads and orphans alike. Returns 0 once none is left, -1 if some were
 * still there after about a second (the caller then ends the worker, so that the
 * supervisor's kill reaches them). Cheap when there are none: one waitid(). */
int worker_reaper_kill_all(void);

#endif
