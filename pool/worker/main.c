/*
 * main.c — pyjobd-worker: process setup, then the loop that reads a job frame
 * from fd 3, runs it and writes the reply. The contract with the supervisor
 * (fd 3, frames, exit codes, signals) is in include/pyjobd/worker.h.
 *
 * The only state is on main()'s stack; the process exits with _exit() after
 * flushing Python's stdio, without finalizing Python (see interp.c).
 */
#include <Python.h>

#include "channel.h"
#include "arenas.h"
#include "horse.h"
#include "interp.h"
#include "interrupt.h"
#include "options.h"
#include "reaper.h"
#include "runner.h"
#include "sandbox.h"
#include "zygote.h"
#include "pyjobd/frame.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static _Noreturn void worker_boot_fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "pyjobd-worker: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(WORKER_EXIT_BOOT_FAILED);
}

/* Ends the process after the job's last output is out. Needs the GIL. */
static _Noreturn void worker_exit(int code)
{
    worker_interp_flush_stdio();
    _exit(code);
}

/*
 * Makes the process independent of how it was spawned: it dies with its parent
 * and starts with a clean signal state (posix_spawn keeps the parent's mask and
 * ignored signals, and the server blocks or ignores some). Runs after
 * worker_sandbox_enter(): a uid or gid change clears PR_SET_PDEATHSIG.
 */
static void worker_setup_process(int zygote)
{
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        worker_boot_fail("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
    /* The parent may have died before PDEATHSIG was armed; nobody waits for us. */
    if (getppid() != parent)
        _exit(WORKER_EXIT_OK);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* fails harmlessly for signals libc reserves */
    }
    /* A gone server shows up as EPIPE on write, not as a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (!zygote) /* the zygote's forks are the server's children, not its own */
        worker_reaper_enable();

    int fl = fcntl(WORKER_FD, F_GETFD);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (fl < 0 || getsockopt(WORKER_FD, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
        type != (zygote ? SOCK_SEQPACKET : SOCK_STREAM))
        worker_boot_fail("%s", zygote ? "fd 3 is not a seqpacket socket; pyjobd-worker "
                                        "--zygote is started by the pyjobd server"
                                      : "fd 3 is not a stream socket; pyjobd-worker is started "
                                        "by the pyjobd server with its end of a socketpair on "
                                        "fd 3");
    /* Programs a job execs must not inherit the channel and talk on it, or keep
     * it open after the worker dies. */
    fcntl(WORKER_FD, F_SETFD, fl | FD_CLOEXEC);
}

/* The process's address space in bytes (what RLIMIT_AS bounds), 0 if unknown. */
static unsigned long long worker_address_space(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    return pages * (unsigned long long)(page > 0 ? page : 4096);
}

/*
 * --memory-limit: RLIMIT_AS, soft and hard, set once boot is over so that only
 * jobs are bounded by it. A limit that the booted worker already exceeds would
 * fail every job (and reading them), so it is a boot failure.
 */
static void worker_set_memory_limit(const struct worker_options *o)
{
    unsigned long long used = worker_address_space();
    if (used >= o->memory_limit) {
        fprintf(stderr,
                "pyjobd-worker: --memory-limit %s is too low: the worker already uses %llu "
                "bytes of address space after boot\n",
                o->limit_arg, used);
        worker_exit(WORKER_EXIT_BOOT_FAILED);
    }
    struct rlimit lim = {o->memory_limit, o->memory_limit};
    if (setrlimit(RLIMIT_AS, &lim) != 0) {
        fprintf(stderr, "pyjobd-worker: --memory-limit %s: setrlimit(RLIMIT_AS): %s\n",
                o->limit_arg, strerror(errno));
        worker_exit(WORKER_EXIT_BOOT_FAILED);
    }
}

/* Maps the OOM reserve (PROT_NONE: it only holds address space); NULL on failure. */
static void *worker_map_reserve(void)
{
    void *p = mmap(NULL, WORKER_OOM_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Writes one whole frame on fd 3; returns only on success. */
static void worker_send_bytes(const uint8_t *buf, size_t len)
{
    int rc = worker_channel_write(WORKER_FD, buf, len);
    if (rc == -EPIPE || rc == -ECONNRESET)
        worker_exit(WORKER_EXIT_OK);
    if (rc != 0) {
        fprintf(stderr, "pyjobd-worker: write on fd 3: %s\n", strerror(-rc));
        worker_exit(WORKER_EXIT_OK);
    }
}

/* Sends a finished builder's frame; returns only on success. */
static void worker_send(struct frame_builder *b)
{
    uint8_t *buf;
    size_t len;
    int rc = frame_builder_finish(b, &buf, &len);
    if (rc != 0) {
        fprintf(stderr, "pyjobd-worker: cannot build a reply frame: %s\n", strerror(-rc));
        worker_exit(WORKER_EXIT_INTERNAL);
    }
    worker_send_bytes(buf, len);
    free(buf);
}

static void worker_send_hello(const struct worker_py *py)
{
    struct frame_builder b;
    frame_builder_init(&b, FRAME_HELLO);
    frame_builder_add_str(&b, FRAME_TAG_PYTHON_VERSION, py->python_version);
    frame_builder_add_str(&b, FRAME_TAG_CLOUDPICKLE_VERSION, py->cloudpickle_version);
    worker_send(&b);
}

/* Reads the next job; returns only with one in hand. */
static PyObject *worker_next_job(struct frame *job)
{
    PyObject *owner = NULL;
    int rc = worker_channel_read(WORKER_FD, WORKER_MAX_JOB_PAYLOAD, &owner, job);
    if (rc == 1 && job->type == FRAME_JOB)
        return owner;
    if (rc == 1) {
        fprintf(stderr, "pyjobd-worker: unexpected frame type %u from the server\n", job->type);
        Py_DECREF(owner);
        worker_exit(WORKER_EXIT_PROTOCOL);
    }
    switch (rc) {
    case 0:
    case -ECONNRESET:
        worker_exit(WORKER_EXIT_OK);
    case -EMSGSIZE:
        fprintf(stderr, "pyjobd-worker: the server sent a frame larger than %zu bytes\n",
                WORKER_MAX_JOB_PAYLOAD);
        worker_exit(WORKER_EXIT_PROTOCOL);
    case -EPROTO:
        fprintf(stderr, "pyjobd-worker: the server closed fd 3 in the middle of a frame\n");
        worker_exit(WORKER_EXIT_PROTOCOL);
    case -ENOMEM:
        fprintf(stderr, "pyjobd-worker: out of memory reading a job frame\n");
        worker_exit(WORKER_EXIT_INTERNAL);
    default:
        fprintf(stderr, "pyjobd-worker: read on fd 3: %s\n", strerror(-rc));
        worker_exit(WORKER_EXIT_OK);
    }
}

int main(int argc, char **argv)
{
    struct worker_options opts;
    worker_options_parse(argc, argv, &opts);
    worker_sandbox_enter(&opts);
    worker_setup_process(opts.zygote);

    struct worker_py py;
    if (worker_interp_start(&py, argc > 0 && argv[0] ? argv[0] : "pyjobd-worker",
                            opts.huge_arenas) != 0)
        exit(WORKER_EXIT_BOOT_FAILED);
    py.max_result_bytes = opts.max_result_bytes; /* the zygote's forks inherit it */
    if (opts.zygote)
        worker_zygote_serve(&py, argc, argv); /* returns in each worker it forks */
    /* In each worker, forked or not: what --init opens (connections, threads) is its own. */
    if (opts.init && worker_interp_run_init(&py, opts.init) != 0)
        worker_exit(WORKER_EXIT_BOOT_FAILED);
    if (worker_interrupt_install() != 0)
        worker_exit(WORKER_EXIT_BOOT_FAILED);
    if (opts.memory_limit) {
        worker_set_memory_limit(&opts);
        py.memory_limit = opts.memory_limit;
        py.oom_reserve = worker_map_reserve();
        if (!py.oom_reserve) {
            fprintf(stderr,
                    "pyjobd-worker: --memory-limit %s is too low: no room left for "
                    "jobs after boot\n",
                    opts.limit_arg);
            worker_exit(WORKER_EXIT_BOOT_FAILED);
        }
    }
    worker_send_hello(&py);

    int isolated = -1; /* unknown until the first job: each job forked, or none */
    for (;;) {
        struct frame job;
        PyObject *owner = worker_next_job(&job);
        worker_interrupt_job_begin();
        struct frame_field flag;
        int isolate = frame_find_field(&job, FRAME_TAG_ISOLATE, &flag) > 0;
        if (isolated >= 0 && isolate != isolated) {
            /* A forked job would inherit what a shared one left behind. */
            fprintf(stderr, "pyjobd-worker: the server mixed isolated and shared jobs on "
                            "one worker\n");
            worker_exit(WORKER_EXIT_PROTOCOL);
        }
        if (isolate && isolated < 0 && opts.huge_arenas)
            worker_arenas_collapse(); /* each horse's fork copies less (arenas.c) */
        isolated = isolate;
        uid_t uid = 0;
        int as_uid = worker_sandbox_job_uid(&opts, &job, &uid);
        if (isolate) {
            uint8_t *done;
            size_t len = worker_horse_run(&py, owner, &job, as_uid ? uid : 0, &done);
            Py_DECREF(owner);
            worker_send_bytes(done, len);
            free(done);
            continue;
        }
        if (as_uid && getuid() != uid && getuid() != 0) {
            /* Bound to another tenant's uid: its leftovers must not meet this job. */
            fprintf(stderr,
                    "pyjobd-worker: the server sent a job for uid %u to a worker "
                    "that runs as uid %u\n",
                    (unsigned)uid, (unsigned)getuid());
            worker_exit(WORKER_EXIT_PROTOCOL);
        }
        if (as_uid && getuid() == 0) {
            worker_sandbox_become(uid);
            worker_interp_sync_user_env();
        }
        struct frame_builder reply;
        int rc = worker_runner_run(&py, owner, &job, &reply);
        Py_DECREF(owner);
        if (rc != 0) {
            fprintf(stderr, "pyjobd-worker: malformed fields in a job frame\n");
            worker_exit(WORKER_EXIT_PROTOCOL);
        }
        /* The job is over when the processes it started are: before its reply. */
        int stuck = worker_reaper_kill_all() != 0;
        worker_send(&reply);
        if (stuck) {
            fprintf(stderr, "pyjobd-worker: processes the job started did not die within "
                            "1 s of SIGKILL; exiting so that the supervisor ends them\n");
            worker_exit(WORKER_EXIT_INTERNAL);
        }
        if (py.memory_limit && !py.oom_reserve && !(py.oom_reserve = worker_map_reserve())) {
            /* What the job kept (module globals, threads) fills the limit: every
             * later job would fail too, so let the supervisor start a fresh worker. */
            fprintf(stderr,
                    "pyjobd-worker: out of memory after a job that hit the memory "
                    "limit (%llu bytes); exiting\n",
                    py.memory_limit);
            worker_exit(WORKER_EXIT_INTERNAL);
        }
    }
}
