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
 * reach every system call, fork without bound (no RLIMIT_NPROC: it counts every
 * process of the user), read whatever the user can read, and signal (or, without
 * --user, ptrace) processes of the same uid: with no --user, that includes the
 * server itself and its token file. Workers of one pool share a uid, and a worker
 * runs job after job: code a job leaves behind (patched modules, threads) sees
 * later jobs, whoever submitted them. Processes a job starts stay in the worker's
 * process group, so the supervisor's kill(-pid, SIGKILL) of the group ends them
 * with the worker; a process that calls setsid() or setpgid() leaves the group
 * and survives it, as do all of them when the server itself is SIGKILLed (only
 * the worker gets PDEATHSIG). The worker is no subreaper: that would only move
 * orphans under it, where nobody reaps them, and they would still outlive it.
 * Only a cgroup (systemd's KillMode=control-group, a container's PID namespace)
 * contains those.
 */
#ifndef PYJOBD_WORKER_WORKER_H
#define PYJOBD_WORKER_WORKER_H

#include "pyjobd/worker.h"

/* The cap on RLIMIT_NOFILE (soft and hard) that the sandbox sets. */
#define WORKER_MAX_FILES 4096

#endif
