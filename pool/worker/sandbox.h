/*
 * sandbox.h — what pyjobd-worker does to itself before Python starts: the user
 * switch (--user), the fds it keeps, its resource limits and privilege flags.
 * What this does and does not stop is written down in worker.h.
 */
#ifndef PYJOBD_WORKER_SANDBOX_H
#define PYJOBD_WORKER_SANDBOX_H

#include "options.h"
#include "pyjobd/frame.h"

#include <sys/types.h>

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

/*
 * --uids: the uid a job frame names (FRAME_TAG_UID). 1 and *uid when it names one in
 * the range, 0 when the worker has no --uids and the frame names none; any other case
 * (a uid outside the range, one missing under --uids, one given without) means the
 * server and the worker disagree: a line on stderr and exit WORKER_EXIT_PROTOCOL.
 */
int worker_sandbox_job_uid(const struct worker_options *o, const struct frame *job, uid_t *uid);

/*
 * Becomes uid (gid the same number, no supplementary groups) for good, from root:
 * checks that root cannot be regained, makes the process non-dumpable, sets umask 077
 * (other tenants share /tmp), HOME=/,
 * USER and LOGNAME to the number, moves to "/" if the working directory is closed to
 * it, and re-arms PR_SET_PDEATHSIG (which the change clears), ending at once if the
 * parent is already gone. A process that already is uid does nothing. On failure one
 * "pyjobd-worker: ..." line and exit WORKER_EXIT_INTERNAL.
 */
void worker_sandbox_become(uid_t uid);

#endif
