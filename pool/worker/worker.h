/*
 * worker.h — the contract between pyjobd-worker and the supervisor that spawns it.
 *
 * Start: the supervisor spawns the worker (posix_spawn, no arguments needed) with its
 * end of a SOCK_STREAM socketpair on fd 3, stdin on /dev/null and stdout/stderr on
 * the server's stderr. The worker dies with its parent (PR_SET_PDEATHSIG=SIGKILL).
 *
 * Conversation on fd 3 (frames of include/pyjobd/frame.h): once Python and
 * cloudpickle are loaded the worker sends one FRAME_HELLO, then answers every
 * FRAME_JOB with exactly one FRAME_RESULT or FRAME_ERROR, in order, and writes
 * nothing else. Whatever the job prints is flushed before its reply is sent.
 *
 * Signals: SIGINT raises KeyboardInterrupt inside a running job (reported as the
 * job's exception) and is ignored between jobs; SIGTERM keeps its default action.
 * On SIGSEGV/SIGBUS/SIGFPE/SIGABRT/SIGILL faulthandler prints the Python stack to
 * stderr, then the worker dies of the same signal. No core files are written.
 */
#ifndef PYJOBD_WORKER_H
#define PYJOBD_WORKER_H

/* The worker's end of the socketpair. */
#define WORKER_FD 3

/* Largest FRAME_JOB payload accepted; a bigger one means the server is broken. */
#define WORKER_MAX_JOB_PAYLOAD ((size_t)2 << 30)

/* Exit codes. A job that calls os._exit(n) or dies of a signal exits otherwise. */
#define WORKER_EXIT_OK 0       /* EOF on fd 3 or the server is gone: normal shutdown */
#define WORKER_EXIT_INTERNAL 1 /* out of memory building a reply */
#define WORKER_EXIT_BOOT_FAILED                                                                    \
    3                          /* before FRAME_HELLO: Python or cloudpickle failed to load,        \
                                  or fd 3 is missing; respawning will not help */
#define WORKER_EXIT_PROTOCOL 4 /* malformed, oversized or unexpected frame from the server */

#endif
