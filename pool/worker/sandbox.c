/*
 * sandbox.c — the worker's own hardening, done once at boot before Python starts
 * (see sandbox.h; the guarantees and the limits are in worker.h).
 *
 * Order matters: the user database is read while the worker is still root; fds are
 * closed only after that (NSS may have opened some) and before any job code runs;
 * PR_SET_PDEATHSIG is armed by the caller afterwards, because the kernel clears it
 * when the process's uid or gid changes.
 */
#include "sandbox.h"
#include "worker.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static _Noreturn void sandbox_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void sandbox_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pyjobd-worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(WORKER_EXIT_BOOT_FAILED);
}

/* The user's entry: by name first (a name may be all digits), then by numeric uid. */
static struct passwd *sandbox_find_user(const char *user)
{
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (pw || user[strspn(user, "0123456789")] != '\0')
        return pw;
    errno = 0;
    char *end;
    unsigned long long uid = strtoull(user, &end, 10);
    if (errno != 0 || (uid_t)uid != uid || (uid_t)uid == (uid_t)-1) {
        errno = 0;
        return NULL;
    }
    return getpwuid((uid_t)uid);
}

/*
 * Becomes `user` for good: supplementary groups, then gid, then uid (in that order:
 * after setuid there is no right left to change groups), then proves that neither
 * uid 0 nor gid 0 can be taken back.
 */
static void sandbox_switch_user(const char *user)
{
    struct passwd *pw = sandbox_find_user(user);
    if (!pw) {
        if (errno != 0 && errno != ENOENT && errno != ESRCH)
            sandbox_fail("--user %s: cannot read the user database: %s", user, strerror(errno));
        sandbox_fail("--user %s: no such user (neither a name nor a uid in the user database)",
                     user);
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    char *name = strdup(pw->pw_name);
    char *home = strdup(pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : "/");
    if (!name || !home)
        sandbox_fail("--user %s: out of memory", user);

    uid_t r, e, s;
    gid_t rg, eg, sg;
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    int already = r == uid && e == uid && s == uid && rg == gid && eg == gid && sg == gid;
    if (!already) {
        if (e != 0)
            sandbox_fail("--user %s: cannot switch to uid %u: the worker runs as uid %u, and "
                         "only a worker started as root can change its user",
                         user, (unsigned)uid, (unsigned)e);
        if (initgroups(name, gid) != 0)
            sandbox_fail("--user %s: initgroups: %s", user, strerror(errno));
        if (setresgid(gid, gid, gid) != 0)
            sandbox_fail("--user %s: setresgid(%u): %s", user, (unsigned)gid, strerror(errno));
        if (setresuid(uid, uid, uid) != 0)
            sandbox_fail("--user %s: setresuid(%u): %s", user, (unsigned)uid, strerror(errno));
    }
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    if (r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid)
        sandbox_fail("--user %s: the switch to uid %u gid %u did not take", user, (unsigned)uid,
                     (unsigned)gid);
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        sandbox_fail("--user %s: the worker could become root again; refusing to run", user);
    if (uid != 0 && gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
        sandbox_fail("--user %s: the worker could take gid 0 again; refusing to run", user);
    /* Other workers run as the same user: none may ptrace or read another's memory
     * (the kernel already does this after setuid unless fs.suid_dumpable is set). */
    if (uid != 0)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    /* As login(1) and runuser(1) do: "~" is the user's, not the server's. */
    if (setenv("HOME", home, 1) != 0 || setenv("USER", name, 1) != 0 ||
        setenv("LOGNAME", name, 1) != 0)
        sandbox_fail("--user %s: setenv: %s", user, strerror(errno));
    free(name);
    free(home);
}

/* Everything but stdin, stdout, stderr and the channel: fds the server leaked, or
 * that NSS opened as root, must not reach job code. */
static void sandbox_close_fds(void)
{
    if (close_range(WORKER_FD + 1, ~0U, 0) == 0)
        return;
    /* Kernels before 5.9: every fd the limit allows. */
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = WORKER_FD + 1; fd < (max > 0 ? max : 65536); fd++)
        close((int)fd);
}

static void sandbox_set_limits(void)
{
    /* A crashing job must not fill the disk; the supervisor reports the signal. */
    struct rlimit no_core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
        sandbox_fail("setrlimit(RLIMIT_CORE): %s", strerror(errno));

    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0)
        sandbox_fail("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    rlim_t cap = files.rlim_max < WORKER_MAX_FILES ? files.rlim_max : WORKER_MAX_FILES;
    files.rlim_cur = files.rlim_max = cap;
    if (setrlimit(RLIMIT_NOFILE, &files) != 0)
        sandbox_fail("setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)cap,
                     strerror(errno));
}

/* --max-procs: RLIMIT_NPROC, which bounds the processes (and threads) of the worker's
 * real uid, all its processes counted: a fork bomb stops there. Not enforced for root. */
static void sandbox_set_max_procs(const struct worker_options *o)
{
    struct rlimit procs = {o->max_procs, o->max_procs};
    if (o->max_procs && setrlimit(RLIMIT_NPROC, &procs) != 0)
        sandbox_fail("setrlimit(RLIMIT_NPROC, %llu): %s", (unsigned long long)o->max_procs,
                     strerror(errno));
}

/*
 * The working directory the supervisor chose may be one only root can enter (the
 * server's own, e.g. /root). Jobs then run in "/" instead; --init, which imports
 * from the working directory, cannot, so that is a boot failure.
 */
static void sandbox_check_cwd(const struct worker_options *o)
{
    if (access(".", R_OK | X_OK) == 0)
        return;
    int err = errno;
    char *cwd = getcwd(NULL, 0);
    if (o->init)
        sandbox_fail("--init %s: the working directory %s is not readable by uid %u (%s); "
                     "give the worker user access to it or start workers elsewhere "
                     "(--worker-cwd)",
                     o->init, cwd ? cwd : "(unknown)", (unsigned)getuid(), strerror(err));
    if (chdir("/") != 0)
        sandbox_fail("chdir(\"/\"): %s", strerror(errno));
    fprintf(stderr,
            "pyjobd-worker: the working directory %s is not readable by uid %u (%s); "
            "jobs run in /\n",
            cwd ? cwd : "(unknown)", (unsigned)getuid(), strerror(err));
    free(cwd);
}

void worker_sandbox_enter(const struct worker_options *o)
{
    if (o->user)
        sandbox_switch_user(o->user);
    sandbox_close_fds();
    sandbox_set_limits();
    sandbox_set_max_procs(o);
    /* setuid programs (su, sudo) and file capabilities grant a job nothing. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        sandbox_fail("prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
    sandbox_check_cwd(o);
}

int worker_sandbox_job_uid(const struct worker_options *o, const struct frame *job, uid_t *uid)
{
    struct frame_field f;
    int has = frame_find_field(job, FRAME_TAG_UID, &f);
    if (has == 0 && !o->uid_first)
        return 0;
    uint32_t v = 0;
    if (has == 1 && f.len == 4)
        v = (uint32_t)f.data[0] | (uint32_t)f.data[1] << 8 | (uint32_t)f.data[2] << 16 |
            (uint32_t)f.data[3] << 24;
    if (has != 1 || f.len != 4 || !o->uid_first || v < o->uid_first || v > o->uid_last) {
        fprintf(stderr,
                "pyjobd-worker: the server sent a job %s (this worker's --uids is %lu-%lu)\n",
                !o->uid_first ? "with a uid, but the worker has no --uids"
                : has != 1    ? "without the uid to run it as"
                              : "with a uid outside the range",
                o->uid_first, o->uid_last);
        exit(WORKER_EXIT_PROTOCOL);
    }
    *uid = (uid_t)v;
    return 1;
}

static _Noreturn void become_fail(const char *what, uid_t uid)
{
    fprintf(stderr, "pyjobd-worker: cannot run as uid %u: %s: %s\n", (unsigned)uid, what,
            strerror(errno));
    exit(WORKER_EXIT_INTERNAL);
}

void worker_sandbox_become(uid_t uid)
{
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    if (r == uid && e == uid && s == uid)
        return;
    pid_t parent = getppid();
    if (setgroups(0, NULL) != 0)
        become_fail("setgroups", uid);
    if (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) != 0)
        become_fail("setresgid", uid);
    if (setresuid(uid, uid, uid) != 0)
        become_fail("setresuid", uid);
    errno = EPERM;
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || setegid(0) == 0)
        become_fail("root could be taken back", uid);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    char name[16];
    snprintf(name, sizeof(name), "%u", (unsigned)uid);
    if (setenv("HOME", "/", 1) != 0 || setenv("USER", name, 1) != 0 ||
        setenv("LOGNAME", name, 1) != 0)
        become_fail("setenv", uid);
    if (access(".", R_OK | X_OK) != 0 && chdir("/") != 0)
        become_fail("chdir(\"/\")", uid);
    /* Other tenants' jobs share /tmp: what a job writes is its tenant's unless it says. */
    umask(077);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(WORKER_EXIT_OK); /* the parent died while we changed uid */
}
