/*
 * worker.h — pyjobd-worker's own header: its contract with the pool
 * (include/pyjobd/worker.h: start, command line, fd 3, signals, exit codes), plus
 * the sandbox it enters before Python starts (sandbox.c): what it guarantees and
 * what it does not stop.
 *
 * Sandbox (sandbox.c), set up before Python starts, with or without --user:
 *   - every fd other than 0, 1, 2 and 3 is closed (close_range), after the user
 *     database has been read; fd 3 is close-on-exec, so programs a job runs do not
 *     get the channel;
 *   - RLIMIT_CORE 0 (soft and hard); RLIMIT_NOFILE soft = hard = the smaller of the
 *     inherited hard limit and WORKER_MAX_FILES;
 *   - PR_SET_NO_NEW_PRIVS: setuid/setgid programs and file capabilities grant
 *     nothing to the worker or to anything it execs;
 *   - if the working directory is not readable and searchable by the (new) user,
 *     the worker says so on stderr and moves to "/"; with --init that is a boot
 *     failure instead, since --init imports from the working directory;
 *   - PR_SET_PDEATHSIG=SIGKILL is armed after the user switch (a uid change clears
 *     it), and EOF on fd 3 ends the worker between jobs.
 * What it does not stop (it is no seccomp filter and no namespace): a job can use
 * all the CPU, memory (unless --memory-limit), disk and network the user may use,
 * reach every system call, fork up to --max-procs (RLIMIT_NPROC counts every
 * process of the uid), read whatever the uid can read, and signal (or, when
 * dumpable, ptrace) processes of the same uid: with neither --user nor --uids,
 * that includes the server itself and its token file. A worker runs job after job
 * unless each is forked (FRAME_TAG_ISOLATE): code a job leaves behind (patched
 * modules, threads) sees the later jobs the server sends it (one tenant's, unless
 * the server runs --isolation none). Processes a job starts stay in the worker's
 * process group, so the supervisor's kill(-pid, SIGKILL) of the group ends them
 * with the worker; a process that calls setsid() or setpgid() leaves the group
 * and would survive it; so the worker is their subreaper and kills them all
 * after each job (reaper.c), and the server, subreaper of the worker's descendants,
 * kills what is left once a worker dies. When the server itself is SIGKILLed only
 * the worker gets PDEATHSIG: a cgroup (systemd's KillMode=control-group, a
 * container's PID namespace) contains what its jobs left then.
 */
#ifndef PYJOBD_WORKER_WORKER_H
#define PYJOBD_WORKER_WORKER_H

#include "pyjobd/worker.h"

/* The cap on RLIMIT_NOFILE (soft and hard) that the sandbox sets. */
#define WORKER_MAX_FILES 4096

#endif
