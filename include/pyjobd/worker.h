/*
 * worker.h — the contract between pyjobd-worker (pool/worker/) and the pool that
 * spawns it (pool/worker_proc.c), included by both sides: how the worker is started,
 * its command line, the conversation on fd 3, signals and exit codes. What the worker
 * does to itself before Python starts (its sandbox, and what that does not stop) is
 * in pool/worker/worker.h.
 *
 * Start: the pool spawns the worker (posix_spawn) with its end of a SOCK_STREAM
 * socketpair on fd 3 (WORKER_FD), stdin on /dev/null, and stdout and stderr on two
 * pipes of their own that the supervisor reads (pool/sources/worker_output.c: what arrives while
 * the worker runs a job is that job's output, the rest goes to the server log). Every fd above 3 is
 * closed, the signal mask and dispositions are reset, and the worker runs in a session of its own
 * (POSIX_SPAWN_SETSID: its process group id is its pid). The worker dies with its parent (it arms
 * PR_SET_PDEATHSIG=SIGKILL itself).
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
 *   --max-procs N            RLIMIT_NPROC (soft and hard) set to N (decimal digits,
 *       > 0) before Python starts, after --user: the processes and threads of the
 *       worker's real uid, all of them counted, stop at N (fork gets EAGAIN). Root is
 *       not bound by it.
 *
 *   --max-result-bytes BYTES The largest result a job may return (decimal digits,
 *       > 0; the server's --max-result-bytes): a return value whose pickle (or, with
 *       RESULT_FORMAT "json", whose JSON text) is longer is not sent; the reply is a
 *       FRAME_ERROR of type "result_too_large" whose MESSAGE names both sizes. A raised
 *       exception whose pickle is longer is replied without EXCEPTION (its type,
 *       message and traceback still go, the message saying why). Under
 *       FRAME_TAG_ISOLATE the job's process enforces it, and the worker reads at most
 *       BYTES + 1 MiB of reply from that process (more is a "result_too_large" reply
 *       too, the process killed). Whatever the limit, MESSAGE is cut to 16 Ki
 *       characters, TRACEBACK to 128 Ki and EXC_TYPE to 1 Ki (head and tail kept), so
 *       that a reply fits the server's frame limit (BYTES + 1 MiB).
 *
 *   --uids FIRST-LAST        Jobs run under a uid of this range, named by each job
 *       frame (FRAME_TAG_UID; gid the same number, no supplementary groups, umask
 *       077, HOME=/, no user database entry needed). The worker starts as root and
 *       stays root until its first job; then it becomes that job's uid for good (a
 *       later job for another uid, one without a uid, or a uid outside the range
 *       exits WORKER_EXIT_PROTOCOL). Under FRAME_TAG_ISOLATE the worker stays root
 *       and each job's forked process becomes the job's uid before it unpickles
 *       anything. Not with --user.
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
 * Conversation on fd 3 (frames of include/pyjobd/frame.h): once Python and
 * cloudpickle are loaded the worker sends one FRAME_HELLO, then answers every
 * FRAME_JOB with exactly one FRAME_RESULT or FRAME_ERROR, in order, and writes
 * nothing else. Whatever the job prints is flushed before its reply is sent. EOF on
 * fd 3 between jobs ends the worker (WORKER_EXIT_OK).
 *
 * Soft timeout and interrupt: the worker (every process it forks too) has a built-in
 * module `pyjobd` holding SoftTimeout (a subclass of TimeoutError) and Cancelled (of
 * BaseException, like KeyboardInterrupt, so that `except Exception` lets it through).
 * A FRAME_JOB with FRAME_TAG_SOFT_TIMEOUT gets SoftTimeout raised in its main thread
 * that many ms after its call began (a timer of the process that runs the call). The
 * server interrupts the job running on a worker with sigqueue(pid,
 * WORKER_SIG_INTERRUPT, n), n the number of FRAME_JOBs it sent that worker process,
 * 1 for the first (WORKER_INTERRUPT_JOB_MASK bits of it): pyjobd.Cancelled is raised
 * in the job's main thread, also while it sleeps or waits in a C call that returns to
 * Python. Anything else (a stale n, a signal the job's code sends itself, one between
 * jobs) is ignored. Under FRAME_TAG_ISOLATE the worker passes it on to the job's
 * process. Either exception ends the job as the job lets it: a job that catches it
 * and returns succeeds as far as the worker is concerned (the server decides what a
 * cancelled job's outcome is); a job that catches it and goes on is ended by the
 * server's SIGKILL. A job that installs its own handler for WORKER_SIG_INTERRUPT gets
 * that signal instead, until the next job.
 *
 * Signals: SIGINT raises KeyboardInterrupt inside a running job (reported as the
 * job's exception) and is ignored between jobs; SIGTERM keeps its default action.
 * On SIGSEGV/SIGBUS/SIGFPE/SIGABRT/SIGILL faulthandler prints the Python stack to
 * stderr, then the worker dies of the same signal. No core files are written.
 */
#ifndef PYJOBD_WORKER_H
#define PYJOBD_WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* The worker's end of the socketpair. */
#define WORKER_FD 3

/* The room a reply frame has beyond --max-result-bytes, for its other fields: the
 * server accepts frames up to --max-result-bytes + this (server/main.c), and a worker
 * reads at most that much of the reply of a job's forked process. */
#define WORKER_REPLY_SLACK ((size_t)1 << 20)

/* Largest FRAME_JOB payload the worker accepts; a bigger one means the server is
 * broken (the worker exits WORKER_EXIT_PROTOCOL). */
#define WORKER_MAX_JOB_PAYLOAD ((size_t)2 << 30)

/*
 * Zygote (`pyjobd-worker --zygote`, the same other options): the template workers are
 * forked from. fd 3 is then a SOCK_SEQPACKET socket, stdout and stderr are the
 * server's log. It boots as a worker does (sandbox, --user, Python, cloudpickle; not
 * --init, nor --memory-limit) and sends one message {MAGIC, 0}: ready. Each
 * request is {MAGIC, 0} with three fds (SCM_RIGHTS): the new worker's channel (a
 * SOCK_STREAM socket), its stdout and its stderr. The zygote forks with
 * clone(CLONE_PARENT), so that the worker is the server's child, and answers {MAGIC,
 * pid} or {MAGIC, -errno}. The worker puts the fds on 3, 1 and 2, closes the rest,
 * takes a session of its own, arms PR_SET_PDEATHSIG, shows "--forked" for "--zygote"
 * in its command line, runs --init, applies --memory-limit and goes on from FRAME_HELLO
 * as a spawned worker would. No job runs in the zygote. EOF on
 * fd 3 ends it (WORKER_EXIT_OK); a malformed request exits WORKER_EXIT_PROTOCOL.
 */
#define WORKER_ZYGOTE_MAGIC 0x7a79676fu /* "zygo" */
struct worker_zygote_msg {
    uint32_t magic;
    int32_t value;
};

/* The signal that interrupts a running job (see "Soft timeout and interrupt"), and the
 * bits of its value that number the job; the worker's soft timer sets
 * WORKER_INTERRUPT_SOFT in it. */
#define WORKER_SIG_INTERRUPT SIGUSR1
#define WORKER_INTERRUPT_JOB_MASK 0x3fffffffu
#define WORKER_INTERRUPT_SOFT 0x40000000u

/* Exit codes. A job that calls os._exit(n) or dies of a signal exits otherwise. */

/* EOF on fd 3 or the server is gone: normal shutdown. */
#define WORKER_EXIT_OK 0
/* Out of memory reading a job or building a reply, or out of memory after a job that
 * hit --memory-limit. */
#define WORKER_EXIT_INTERNAL 1
/* Before FRAME_HELLO: bad command line, Python or cloudpickle failed to load, --init
 * failed, --memory-limit too low, --user unknown or the switch failed, or fd 3 is
 * missing. Respawning will not help. */
#define WORKER_EXIT_BOOT_FAILED 3
/* A malformed, oversized or unexpected frame from the server. */
#define WORKER_EXIT_PROTOCOL 4

#endif
