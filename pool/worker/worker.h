/*
 * worker.h — the contract between pyjobd-worker and the supervisor that spawns it.
 *
 * Start: the supervisor spawns the worker (posix_spawn) with its end of a SOCK_STREAM
 * socketpair on fd 3, stdin on /dev/null and stdout/stderr on the server's stderr,
 * in a session of its own (POSIX_SPAWN_SETSID: its process group id is its pid).
 * The worker dies with its parent (PR_SET_PDEATHSIG=SIGKILL).
 *
 * Command line (all optional; each at most once, as "--opt VALUE" or "--opt=VALUE";
 * an unknown option, a positional argument, a missing or invalid value, or an
 * option given twice prints "pyjobd-worker: ..." and exits WORKER_EXIT_BOOT_FAILED):
 *
 *   --init module:function   Once Python and cloudpickle are loaded and before
 *       FRAME_HELLO: insert os.getcwd() (absolute, taken at boot) at sys.path[0],
 *       import `module` (dotted names allowed) and call `function()` once, its
 *       return value ignored; `function` may be a dotted path inside the module
 *       (pkg.mod:obj.attr). The cwd entry stays on sys.path for the jobs; without
 *       --init, sys.path does not contain the cwd. If the form is wrong (no colon,
 *       more than one, an empty part): "pyjobd-worker: --init: invalid value '...':
 *       expected the form module:function ...". If the import fails, the attribute is
 *       missing, it is not callable, or the call raises (SystemExit included):
 *       "pyjobd-worker: --init <spec> failed: <ExcType>: <message>", then the
 *       traceback on the following lines (none when only importlib frames would
 *       show, e.g. the module itself does not exist). Both exit BOOT_FAILED.
 *
 *   --memory-limit BYTES     RLIMIT_AS (soft and hard) set to BYTES (decimal digits,
 *       > 0) after Python, cloudpickle and --init are loaded, just before
 *       FRAME_HELLO: boot is not limited, jobs are. It bounds the address space, not
 *       RSS: each thread a job starts reserves its stack (8 MiB) and maybe a malloc
 *       arena (up to 64 MiB), and processes a job starts inherit the limit. A job
 *       allocating past it usually gets MemoryError, reported as an "exception"
 *       FRAME_ERROR with EXC_TYPE "MemoryError" and " (this worker's memory limit is
 *       N bytes: --worker-memory-limit)" appended to the MESSAGE's first part; the
 *       locals of the frames in its traceback are cleared and a 4 MiB reserve of
 *       address space is released first, so that the reply can be built, and the
 *       worker goes on to the next job. If the reserve cannot be taken back after
 *       the reply (what the job kept fills the limit) the worker exits
 *       WORKER_EXIT_INTERNAL; if C code cannot cope with a failed allocation the
 *       worker may die of a signal. A value below the address space the worker
 *       already uses after boot (about 20 MB plus what --init allocated) exits
 *       BOOT_FAILED ("--memory-limit N is too low: ..."). A job frame larger
 *       than the room left makes the worker exit WORKER_EXIT_INTERNAL ("out of
 *       memory reading a job frame").
 *
 *   --user NAME|UID          Run as this user (looked up by name first, then as a
 *       numeric uid; it must exist in the user database): before anything else, the
 *       worker (which must then start as root, or already be that user) takes the
 *       user's supplementary groups (initgroups), gid and uid (real, effective and
 *       saved), checks that setuid(0) and setgid(0) now fail, makes itself
 *       non-dumpable, and sets HOME, USER and LOGNAME to the user's. An unknown user,
 *       a failed switch or a way back to root: "pyjobd-worker: --user NAME: ..." and
 *       BOOT_FAILED. Without --user the worker keeps the uid it was started with;
 *       whether a root worker is acceptable is the server's decision, not the worker's.
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

/* The cap on RLIMIT_NOFILE (soft and hard) that the sandbox sets. */
#define WORKER_MAX_FILES 4096

/* Exit codes. A job that calls os._exit(n) or dies of a signal exits otherwise. */
#define WORKER_EXIT_OK 0 /* EOF on fd 3 or the server is gone: normal shutdown */
#define WORKER_EXIT_INTERNAL                                                                       \
    1 /* out of memory reading a job or building a reply, or                                       \
         out of memory after a job that hit --memory-limit */
#define WORKER_EXIT_BOOT_FAILED                                                                    \
    3                          /* before FRAME_HELLO: bad command line, Python or cloudpickle      \
                                  failed to load, --init failed, --memory-limit too low,           \
                                  --user unknown or the switch failed, or fd 3 is missing;         \
                                  respawning will not help */
#define WORKER_EXIT_PROTOCOL 4 /* malformed, oversized or unexpected frame from the server */

#endif
