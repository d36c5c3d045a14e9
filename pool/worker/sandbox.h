/*
 * sandbox.h — what pyjobd-worker does to itself before Python starts: the user
 * switch (--user), the fds it keeps, its resource limits and privilege flags.
 * What this does and does not stop is written down in worker.h.
 */
#ifndef PYJOBD_WORKER_SANDBOX_H
#define PYJOBD_WORKER_SANDBOX_H

#include "options.h"

/*
 * Enters the sandbox, in this order: with --user, switches to that user
 * (supplementary groups, gid, uid, then checks that root cannot be regained) and
 * sets HOME, USER and LOGNAME to the user's; closes every fd above WORKER_FD; sets
 * RLIMIT_CORE to 0 and caps RLIMIT_NOFILE (soft = hard) at WORKER_MAX_FILES; sets
 * PR_SET_NO_NEW_PRIVS; moves to "/" when the working directory is not readable and
 * searchable by the (new) user. Must run before anything that a credential change
 * resets (PR_SET_PDEATHSIG) is set up. On any failure prints one
 * "pyjobd-worker: ..." line and exits WORKER_EXIT_BOOT_FAILED.
 */
void worker_sandbox_enter(const struct worker_options *o);

#endif
