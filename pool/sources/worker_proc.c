/*
 * worker_proc.c — starting and stopping pyjobd-worker processes.
 *
 * Workers are forked by the zygote (zygote.c), or started with posix_spawn when there
 * is none (spawn.c; never a plain fork of this threaded server), as
 * include/pyjobd/worker.h describes: the child's end of a socketpair becomes fd 3,
 * stdin is /dev/null, stdout and stderr are two pipes the supervisor reads (worker_output.c),
 * every other fd is closed, signal masks and dispositions are reset, and the child
 * gets its own session so a terminal's Ctrl-C reaches only the server, which then
 * stops the workers itself. Its environment is a minimal one plus --worker-env. Exit
 * is observed through a pidfd (or, without pidfds, by polling wait4).
 */
#include "sources.h"
#include "pyjobd/log.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct worker *pool__worker_new(unsigned slot)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->slot = slot;
    w->active = 1;
    w->state = WORKER_EMPTY;
    w->pidfd = w->sock = w->out_fd = w->err_fd = -1;
    w->respawn_at_ms = 0; /* the supervisor starts the slot on its next turn */
    return w;
}

void pool__worker_free(struct worker *w)
{
    if (!w)
        return;
    free(w->in);
    free(w->out);
    free(w);
}

/* A minimal environment: what Python and ordinary tools need, then --worker-env. */
int pool__worker_env_init(struct pool *p)
{
    static const char *const keep[] = {"HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", NULL};
    size_t extra = 0;
    while (p->cfg.worker_env && p->cfg.worker_env[extra])
        extra++;
    char **env = calloc(extra + 8, sizeof(*env));
    if (!env)
        return -ENOMEM;
    size_t n = 0;
    env[n++] = strdup("PATH=/usr/local/bin:/usr/bin:/bin");
    for (size_t i = 0; keep[i]; i++) {
        const char *v = getenv(keep[i]);
        if (v && asprintf(&env[n], "%s=%s", keep[i], v) >= 0)
            n++;
    }
    for (size_t i = 0; i < extra; i++)
        env[n++] = strdup(p->cfg.worker_env[i]);
    for (size_t i = 0; i < n; i++) {
        if (!env[i]) {
            p->worker_envp = env;
            pool__worker_env_free(p);
            return -ENOMEM;
        }
    }
    p->worker_envp = env;

    int a = 0;
    char **argv = p->worker_argv;
    argv[a++] = (char *)p->cfg.worker_path;
    if (p->cfg.worker_user) {
        argv[a++] = "--user";
        argv[a++] = (char *)p->cfg.worker_user;
    }
    /* Horses fork from workers: pymalloc on huge pages makes their forks cheaper
     * (pool/worker/arenas.c), and costs a worker forked from the zygote a little, so
     * only where some jobs are forked. */
    if (p->cfg.isolation == POOL_ISOLATION_JOB ||
        (p->cfg.job_isolated_tenants && p->cfg.job_isolated_tenants[0]))
        argv[a++] = "--huge-arenas";
    if (p->cfg.worker_init) {
        argv[a++] = "--init";
        argv[a++] = (char *)p->cfg.worker_init;
    }
    if (p->cfg.worker_max_procs > 0) {
        char procs[32];
        snprintf(procs, sizeof(procs), "%u", p->cfg.worker_max_procs);
        argv[a++] = "--max-procs";
        argv[a++] = strdup(procs);
    }
    if (p->cfg.worker_uid_first) {
        char uids[48];
        snprintf(uids, sizeof(uids), "%lu-%lu", p->cfg.worker_uid_first, p->cfg.worker_uid_last);
        argv[a++] = "--uids";
        argv[a++] = strdup(uids);
    }
    if (p->cfg.worker_memory_limit > 0) {
        char limit[32];
        snprintf(limit, sizeof(limit), "%lld", p->cfg.worker_memory_limit);
        argv[a++] = "--memory-limit";
        argv[a++] = strdup(limit);
    }
    if (p->cfg.max_result_bytes > 0) {
        char limit[32];
        snprintf(limit, sizeof(limit), "%zu", p->cfg.max_result_bytes);
        argv[a++] = "--max-result-bytes";
        argv[a++] = strdup(limit);
    }
    argv[a] = NULL;
    return 0;
}

void pool__worker_env_free(struct pool *p)
{
    for (size_t i = 0; p->worker_envp && p->worker_envp[i]; i++)
        free(p->worker_envp[i]);
    free(p->worker_envp);
    p->worker_envp = NULL;
    /* The values made here (the others are the config's): each after its option. */
    for (int i = 0; p->worker_argv[i] && p->worker_argv[i + 1]; i++) {
        const char *opt = p->worker_argv[i];
        if (strcmp(opt, "--memory-limit") == 0 || strcmp(opt, "--max-procs") == 0 ||
            strcmp(opt, "--uids") == 0 || strcmp(opt, "--max-result-bytes") == 0)
            free(p->worker_argv[++i]); /* and skip it: it is no option */
    }
    p->worker_argv[0] = NULL;
}

static int output_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    return 0;
}

int pool__spawn_worker(struct pool *p, struct worker *w)
{
    int sv[2], out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    /* dup2 onto itself would leave FD_CLOEXEC set; keep the child's ends above 3. */
    int child_fd = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child_fd < 0 || (rc = output_pipe(out)) != 0 || (rc = output_pipe(err)) != 0) {
        rc = child_fd < 0 ? -errno : rc;
        close(sv[0]);
        if (child_fd >= 0)
            close(child_fd);
        for (int i = 0; i < 2; i++) {
            if (out[i] >= 0)
                close(out[i]);
            if (err[i] >= 0)
                close(err[i]);
        }
        return rc;
    }

    pid_t pid;
    rc = pool__zygote_fork(p, child_fd, out[1], err[1], &pid);
    if (rc == 1) /* no zygote to fork from: spawn it ourselves, if we still may */
        rc = p->cfg.zygote_only
                 ? -EPERM
                 : pool__spawn_program(p, p->worker_argv, child_fd, out[1], err[1], &pid);
    close(child_fd);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(sv[0]);
        close(out[0]);
        close(err[0]);
        return rc;
    }

    /* Without pidfds (a kernel before 5.3, or valgrind) the supervisor polls wait4
     * for workers whose channel closed instead; see pool__reap_pending(). */
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0 && errno != ENOSYS) {
        rc = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(sv[0]);
        close(out[0]);
        close(err[0]);
        return rc;
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    w->pid = pid;
    w->pidfd = pidfd;
    w->sock = sv[0];
    w->out_fd = out[0];
    w->err_fd = err[0];
    w->state = WORKER_STARTING;
    w->in_len = 0;
    w->out_len = w->out_off = 0;
    w->jobs_done = w->jobs_sent = 0;
    w->bound = w->isolated = 0;
    w->frozen = 0;
    w->stray_since_ms = w->stray_bytes = 0;
    w->stray_dropped = 0;
    w->out_window_ms = w->out_window_bytes = 0;
    w->out_paused = 0;
    w->tenant[0] = 0;
    w->ready = 0;
    w->last_words[0] = 0;
    return 0;
}

int pool__signal_worker(const struct worker *w, int sig)
{
    /* The worker is not reaped yet (we are its only reaper), so its pid cannot name
     * another process; the pidfd is just the belt to those braces. */
    int rc = w->pidfd >= 0 ? pidfd_send_signal(w->pidfd, sig, NULL, 0) : -1;
    if (rc != 0 && (w->pidfd < 0 || errno == ENOSYS))
        rc = kill(w->pid, sig);
    return rc;
}

void pool__kill_worker(struct worker *w, int sig)
{
    if (w->pid <= 0)
        return;
    int rc = pool__signal_worker(w, sig);
    if (rc != 0 && errno != ESRCH)
        log_warn("worker %d: cannot send signal %d: %s", (int)w->pid, sig, strerror(errno));
    /* SIGKILL ends what its jobs started too: the worker leads its own process group,
     * whose id is its pid. */
    if (sig == SIGKILL && kill(-w->pid, SIGKILL) != 0 && errno != ESRCH)
        log_warn("worker %d: cannot kill its process group: %s", (int)w->pid, strerror(errno));
}

/* Adds the children of every thread of pid to *out (at most cap in all). */
static void children_of(pid_t pid, pid_t *out, size_t *n, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *tasks = opendir(path);
    struct dirent *t;
    while (tasks && (t = readdir(tasks))) {
        if (t->d_name[0] == '.')
            continue;
        char file[96];
        snprintf(file, sizeof(file), "/proc/%d/task/%.16s/children", (int)pid, t->d_name);
        FILE *f = fopen(file, "re");
        long child;
        while (f && *n < cap && fscanf(f, "%ld", &child) == 1)
            if (child > 0)
                out[(*n)++] = (pid_t)child;
        if (f)
            fclose(f);
    }
    if (tasks)
        closedir(tasks);
}

/* SIGKILLs every descendant of the worker (not the worker); returns how many. */
static int kill_descendants(const struct worker *w)
{
    enum { MAX = 4096 };
    pid_t *tree = malloc(MAX * sizeof(*tree));
    if (!tree || w->pid <= 0) {
        free(tree);
        return 0;
    }
    size_t n = 0;
    children_of(w->pid, tree, &n, MAX);
    /* Breadth first: each one found adds its own children; all get SIGKILL. */
    for (size_t i = 0; i < n; i++)
        children_of(tree[i], tree, &n, MAX);
    for (size_t i = 0; i < n; i++)
        kill(tree[i], SIGKILL);
    free(tree);
    return (int)n;
}

int pool__worker_freeze(struct worker *w)
{
    if (pool__signal_worker(w, SIGSTOP) != 0)
        return -1;
    w->frozen = 1;
    /* Its reply said the job was over, and the worker kills what a job started before
     * it replies: anything left is a job's code that outlived it. */
    int left = kill_descendants(w);
    if (left)
        log_warn("worker %d: killed %d process%s a job left running after its reply", (int)w->pid,
                 left, left == 1 ? "" : "es");
    return 0;
}

void pool__worker_thaw(struct worker *w)
{
    if (!w->frozen)
        return;
    w->frozen = 0;
    if (pool__signal_worker(w, SIGCONT) != 0 && errno != ESRCH)
        log_warn("worker %d: cannot continue it: %s", (int)w->pid, strerror(errno));
}

long long pool__worker_rss(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long size, resident;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}

long long pool__worker_uid(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long long uid = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Uid: %lld", &uid) == 1)
            break;
    if (f)
        fclose(f);
    return uid;
}

/* Its held-back job frame (channel.c) is dropped. */
void pool__gate_clear(struct pool *p, struct worker *w)
{
    if (w->gate) {
        w->gate = 0;
        __atomic_sub_fetch(&p->gated, 1, __ATOMIC_SEQ_CST);
    }
}

/* The worker's socket is gone (EOF, error, or we killed it): stop watching it. The
 * pidfd stays: the exit status will tell what happened. */
void pool__close_channel(struct pool *p, struct worker *w)
{
    pool__worker_thaw(w); /* a stopped worker would never see the EOF */
    if (w->sock >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->sock, NULL);
        close(w->sock);
        w->sock = -1;
    }
    pool__gate_clear(p, w);
    free(w->out);
    w->out = NULL;
    w->out_len = w->out_off = 0;
    w->epollout = 0;
    free(w->in); /* a partial reply is worth nothing now */
    w->in = NULL;
    w->in_len = w->in_cap = 0;
    if (w->state == WORKER_IDLE || w->state == WORKER_BUSY)
        p->workers_ready--;
    w->state = WORKER_EXITING;
}

/* Writes what is pending of the frame being sent (resumed on EPOLLOUT when the socket
 * buffer is full). */
void pool__flush_channel(struct pool *p, struct worker *w)
{
    while (w->out_off < w->out_len) {
        ssize_t n = send(w->sock, w->out + w->out_off, w->out_len - w->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            w->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                     .data.u64 = pool__ev_key(EV_SOCK, w->slot)};
            if (!w->epollout)
                epoll_ctl(p->epfd, EPOLL_CTL_MOD, w->sock, &ev);
            w->epollout = 1;
            return;
        }
        log_warn("worker %d: write failed: %s", (int)w->pid, strerror(errno));
        pool__close_channel(p, w);
        return;
    }
    free(w->out);
    w->out = NULL;
    w->out_len = w->out_off = 0;
    if (w->epollout) {
        w->epollout = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_SOCK, w->slot)};
        epoll_ctl(p->epfd, EPOLL_CTL_MOD, w->sock, &ev);
    }
}

static int is_worker(const struct pool *p, pid_t pid)
{
    if (pool__is_zygote(p, pid))
        return 1;
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->workers[i]->pid == pid)
            return 1;
    return 0;
}

static void remember_orphan(struct pool *p, pid_t pid)
{
    for (size_t i = 0; i < p->norphans; i++)
        if (p->orphans[i] == pid)
            return;
    if (p->norphans == p->caporphans) {
        size_t cap = p->caporphans ? p->caporphans * 2 : 16;
        pid_t *more = realloc(p->orphans, cap * sizeof(*more));
        if (!more)
            return; /* not reaped by us: a zombie until the server exits */
        p->orphans = more;
        p->caporphans = cap;
    }
    p->orphans[p->norphans++] = pid;
}

void pool__orphans_kill(struct pool *p)
{
    int subreaper = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) != 0 || !subreaper)
        return; /* orphans go to init; nothing of ours to find */
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks)
        return;
    struct dirent *t;
    while ((t = readdir(tasks))) {
        char path[64];
        if (t->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%.16s/children", t->d_name);
        FILE *f = fopen(path, "re");
        long pid;
        while (f && fscanf(f, "%ld", &pid) == 1) {
            if (pid <= 0 || is_worker(p, (pid_t)pid))
                continue;
            log_warn("killing process %ld: a job started it and it outlived its worker", pid);
            kill((pid_t)pid, SIGKILL);
            remember_orphan(p, (pid_t)pid);
        }
        if (f)
            fclose(f);
    }
    closedir(tasks);
}

int pool__orphans_reap(struct pool *p)
{
    int reaped = 0;
    for (size_t i = 0; i < p->norphans;) {
        if (waitpid(p->orphans[i], NULL, WNOHANG) != 0) { /* reaped, or not ours (ECHILD) */
            p->orphans[i] = p->orphans[--p->norphans];
            reaped = 1;
        } else {
            i++;
        }
    }
    if (reaped)
        pool__orphans_kill(p); /* their own children are ours now */
    return p->norphans > 0;
}
