/*
 * main.c — wiring: settings, signals, the pool, the api and the HTTP server, and an
 * orderly stop on SIGINT/SIGTERM.
 *
 * Before anything starts, the refusals: no tokens beyond loopback, root workers, the
 * workers of several tenants under the server's own uid, a store the workers could
 * read. Each names its fix and the flag that overrides it. The server is non-dumpable
 * from its first line.
 *
 * Signals are blocked in every thread (the mask is inherited by the threads started
 * below) and taken synchronously here with sigwait, so no handler runs in an
 * arbitrary thread and no async-signal-safety rules are stretched.
 */
#include "pyjobd/api.h"
#include "pyjobd/auth.h"
#include "pyjobd/config.h"
#include "pyjobd/healthcheck.h"
#include "pyjobd/http.h"
#include "pyjobd/log.h"
#include "pyjobd/origin.h"
#include "pyjobd/pool.h"
#include "pyjobd/privileges.h"
#include "pyjobd/store.h"
#include "pyjobd/tls.h"
#include "pyjobd/uid_range.h"
#include "pyjobd/store_shared.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 127.0.0.0/8 and ::1: the only addresses where no token is acceptable. */
static int is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* Reads a whole (small) file, NUL-terminated. NULL with a message in err. */
static char *read_file(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        FILE *mem = open_memstream(&buf, &len);
        char chunk[4096];
        size_t n;
        while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            fwrite(chunk, 1, n, mem);
        if (mem)
            fclose(mem);
        fclose(f);
    }
    if (!buf || !len) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path,
                 errno ? strerror(errno) : "empty file");
        free(buf);
        return NULL;
    }
    return buf;
}

/* Opens --store sqlite:PATH: creates the directory (0700) if missing and takes a lock so
 * two servers never share one database (both would run its jobs). */
static struct store *open_store(const struct config *cfg, int *lock_fd, char *err, size_t errlen)
{
    const char *spec = cfg->store;
    if (config_store_is_pg(spec)) {
        char host[64] = "node";
        if (gethostname(host, sizeof(host)) != 0 || !host[0])
            snprintf(host, sizeof(host), "node");
        host[sizeof(host) - 1] = 0;
        struct store_pg_options o = {
            .uri = spec,
            .schema = cfg->pg_schema,
            .node_name = cfg->node_name && *cfg->node_name ? cfg->node_name : host,
            .lease = cfg->node_lease,
            .poll = cfg->pg_poll,
            .result_ttl = cfg->result_ttl,
            .connect_wait = 10,
        };
        return store_open_pg(&o, err, errlen);
    }
    const char *path = spec + strlen("sqlite:");
    char *dir = strdup(path);
    if (dir) {
        char *d = dirname(dir);
        if (strcmp(d, ".") != 0 && mkdir(d, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create the directory of store %s: %s", path,
                     strerror(errno));
            free(dir);
            return NULL;
        }
        free(dir);
    }
    char lock[4200];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    *lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*lock_fd < 0 || flock(*lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "store %.100s is in use by another pyjobd (its .lock file: %s)", path,
                 strerror(errno));
        return NULL;
    }
    return store_open_sqlite(path, err, errlen);
}

/* Long-polls hold a socket each: lift the soft fd limit to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Who the workers will be: --worker-user, resolved as the worker resolves it (a name,
 * else a numeric uid: pool/worker/sandbox.c), with the groups initgroups gives it; or
 * the server's own uid and groups. known is 0 when --worker-user names no user (the
 * workers then fail to boot and say why); the checks below then judge what they can.
 */
struct worker_ids {
    int known;
    uid_t uid;
    gid_t *groups; /* the primary group first */
    int ngroups;
};

static void worker_ids_load(const struct config *cfg, struct worker_ids *w)
{
    memset(w, 0, sizeof(*w));
    struct passwd *pw = NULL;
    if (cfg->worker_user) {
        const char *u = cfg->worker_user;
        if (!(pw = getpwnam(u)) && *u && u[strspn(u, "0123456789")] == '\0')
            pw = getpwuid((uid_t)strtoul(u, NULL, 10));
        if (!pw)
            return;
    }
    if (pw && pw->pw_uid != geteuid()) {
        gid_t one;
        int n = 1;
        getgrouplist(pw->pw_name, pw->pw_gid, &one, &n);
        if (n < 1 || !(w->groups = calloc((size_t)n, sizeof(gid_t))) ||
            getgrouplist(pw->pw_name, pw->pw_gid, w->groups, &n) < 0) {
            free(w->groups);
            w->groups = NULL;
            return;
        }
        w->ngroups = n;
        w->uid = pw->pw_uid;
    } else {
        /* The workers keep the server's uid, so they keep its groups too. */
        int n = getgroups(0, NULL);
        if (n < 0 || !(w->groups = calloc((size_t)n + 1, sizeof(gid_t))) ||
            (n = getgroups(n, w->groups + 1)) < 0) {
            free(w->groups);
            w->groups = NULL;
            return;
        }
        w->groups[0] = getegid();
        w->ngroups = n + 1;
        w->uid = geteuid();
    }
    w->known = 1;
}

static void worker_ids_release(struct worker_ids *w)
{
    free(w->groups);
    w->groups = NULL;
}

/* Several tenants' workers under the server's own uid: each tenant's jobs could read the
 * server's files (the token file, the store) and ptrace or kill the other tenants'
 * workers. 0 to go on, or an exit status. */
static int refuse_shared_uid(const struct config *cfg, const struct auth *auth,
                             const struct worker_ids *w)
{
    if (!w->known || w->uid != geteuid() || auth_count_tenants(auth) < 2)
        return 0;
    if (cfg->allow_shared_worker_uid) {
        log_warn("--allow-shared-worker-uid: the workers of several tenants run as uid %d, the "
                 "server's own: each tenant's jobs can read the server's files (the token file, "
                 "the store) and each other's workers",
                 (int)w->uid);
        return 0;
    }
    const char *env = getenv("PYJOBD_TOKEN");
    log_error("refusing to start: the tokens (%s%s%s) name more than one tenant, and their "
              "workers would all run as uid %d, the server's own: one tenant's jobs could read "
              "the token file, the store and the other tenants' workers. %s --worker-user USER "
              "(an unprivileged user of the workers' own), or pass --allow-shared-worker-uid to "
              "accept that tenants' jobs can read the server's files and each other's workers.",
              cfg->token_file ? "--token-file " : "", cfg->token_file ? cfg->token_file : "",
              env && *env ? (cfg->token_file ? " and PYJOBD_TOKEN" : "PYJOBD_TOKEN") : "",
              (int)w->uid, geteuid() == 0 ? "Pass" : "Start the server as root with");
    return 2;
}

static int in_groups(const struct worker_ids *w, gid_t gid)
{
    for (int i = 0; i < w->ngroups; i++)
        if (w->groups[i] == gid)
            return 1;
    return 0;
}

/*
 * One directory or file of the store: 1 when the workers' user could read it (it is
 * world-readable, readable by one of the workers' groups, or owned by the workers' user
 * when that is not the server's), after saying so with the fix. A missing one is no
 * concern: the store creates it private.
 */
static int store_path_exposed(const char *path, const struct worker_ids *w, int warn_only)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    enum log_level level = warn_only ? LOG_WARN : LOG_ERROR;
    const char *what = S_ISDIR(st.st_mode) ? "directory" : "file";
    const char *harm = S_ISDIR(st.st_mode) ? "the workers' jobs could look into it"
                                           : "the workers' jobs could read every tenant's "
                                             "payloads and results";
    int exposed = 0;
    if (w->known && st.st_uid == w->uid && w->uid != geteuid()) {
        const struct passwd *me = getpwuid(geteuid());
        char owner[32];
        snprintf(owner, sizeof(owner), "%u", (unsigned)geteuid());
        log_msg(level,
                "store %s %s belongs to uid %u, the workers' user, who can change its mode "
                "and read it. Fix: chown %s %s",
                what, path, (unsigned)st.st_uid, me ? me->pw_name : owner, path);
        exposed = 1;
    }
    const struct group *gr = NULL;
    const char *by = NULL;
    if (st.st_mode & S_IROTH)
        by = "every user";
    else if ((st.st_mode & S_IRGRP) && (!w->known || in_groups(w, st.st_gid)))
        by = (gr = getgrgid(st.st_gid)) ? gr->gr_name : "its group, one of the workers'";
    if (by) {
        log_msg(level, "store %s %s (mode %04o) is readable by %s%s: %s. Fix: chmod go-rwx %s",
                what, path, (unsigned)(st.st_mode & 07777), gr ? "group " : "", by, harm, path);
        exposed = 1;
    }
    return exposed;
}

/* --store sqlite:PATH: its directory and files, checked before they are opened. 0 to go
 * on (with warnings under --allow-insecure-files), or an exit status. */
static int refuse_insecure_store(const struct config *cfg, const struct worker_ids *w)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    if (strncmp(cfg->store, "sqlite:", 7) != 0)
        return 0; /* memory; PostgreSQL's files are the database server's */
    const char *path = cfg->store + strlen("sqlite:");
    char *dir = strdup(path);
    if (!dir) {
        log_error("out of memory");
        return 1;
    }
    int exposed = store_path_exposed(dirname(dir), w, cfg->allow_insecure_files);
    free(dir);
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char file[4200];
        snprintf(file, sizeof(file), "%s%s", path, suffixes[i]);
        exposed |= store_path_exposed(file, w, cfg->allow_insecure_files);
    }
    if (!exposed)
        return 0;
    if (cfg->allow_insecure_files) {
        log_warn("--allow-insecure-files: starting on a store the workers could read");
        return 0;
    }
    log_error("refusing to start on a store the workers could read: fix it as said above, or "
              "pass --allow-insecure-files to start anyway");
    return 2;
}

#define DEFAULT_WORKER_UIDS "64000-64999"

/*
 * --worker-uids: the range of uids tenants' workers get (*first 0: none). A root server
 * without --worker-user or --allow-root-workers gets DEFAULT_WORKER_UIDS. Refused: a
 * malformed range, a server that is not root, --worker-user as well, and a range that
 * holds a uid or gid of the user or group database (workers would get that user's
 * files). 0, or an exit status after saying why.
 */
static int worker_uids_choose(const struct config *cfg, unsigned long *first, unsigned long *last)
{
    *first = *last = 0;
    const char *v = cfg->worker_uids;
    if (v && strcmp(v, "off") == 0)
        return 0;
    if (!v) {
        if (geteuid() != 0 || cfg->worker_user || cfg->allow_root_workers)
            return 0;
        v = DEFAULT_WORKER_UIDS;
    }
    if (uid_range_parse(v, first, last) != 0) {
        log_error("--worker-uids %s: expected FIRST-LAST, two numbers with 0 < FIRST <= LAST < "
                  "2147483647 (e.g. %s), or off",
                  v, DEFAULT_WORKER_UIDS);
        return 2;
    }
    if (geteuid() != 0) {
        log_error("--worker-uids needs the server to run as root (it is uid %d), to start "
                  "workers under other uids; run it as root, or drop --worker-uids",
                  (int)geteuid());
        return 2;
    }
    if (cfg->worker_user) {
        log_error("--worker-uids and --worker-user both say whom workers run as: give one "
                  "(--worker-uids off to run every tenant's workers as --worker-user)");
        return 2;
    }
    const struct passwd *pw;
    setpwent();
    while ((pw = getpwent()))
        if (pw->pw_uid >= *first && pw->pw_uid <= *last)
            break;
    endpwent();
    const struct group *gr = NULL;
    if (!pw) {
        setgrent();
        while ((gr = getgrent()))
            if (gr->gr_gid >= *first && gr->gr_gid <= *last)
                break;
        endgrent();
    }
    if (pw || gr) {
        log_error("--worker-uids %lu-%lu holds %s %u (%s): workers would get its files. Pick a "
                  "range no user or group has (--worker-uids FIRST-LAST)",
                  *first, *last, pw ? "uid" : "gid",
                  pw ? (unsigned)pw->pw_uid : (unsigned)gr->gr_gid, pw ? pw->pw_name : gr->gr_name);
        return 2;
    }
    return 0;
}

/*
 * --server-user: starts the worker zygote while still root (it keeps root, to start
 * each tenant's workers under its uid), then becomes the user, keeping only CAP_KILL
 * to signal the workers. From then on the pool starts workers through that zygote
 * only. Runs while the server has one thread. 0, or an exit status.
 */
static int become_server_user(const struct config *cfg, struct pool_config *pcfg,
                              struct pool_zygote *zygote)
{
    if (geteuid() != 0) {
        /* A container run with --user: already unprivileged, nothing to give up. */
        log_info("--server-user %s: the server already runs as uid %d, not root: nothing to "
                 "give up",
                 cfg->server_user, (int)geteuid());
        return 0;
    }
    if (!pcfg->worker_uid_first || pcfg->worker_exec) {
        log_error("--server-user %s: %s", cfg->server_user,
                  pcfg->worker_exec
                      ? "with --worker-start exec every worker is started by the server "
                        "itself, which then needs root: use --worker-start fork"
                      : "it needs --worker-uids (workers under uids of their own, started by a "
                        "root zygote); with --worker-user the server must stay root");
        return 2;
    }
    char err[512];
    struct pool_zygote z;
    if (pool_zygote_start(pcfg, &z, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (privileges_drop(cfg->server_user, err, sizeof(err)) != 0) {
        pool_zygote_discard(&z);
        log_error("%s", err);
        return 2;
    }
    log_info("running as uid %d (--server-user %s) with CAP_KILL only; worker zygote %d "
             "keeps root to start workers",
             (int)getuid(), cfg->server_user, (int)z.pid);
    *zygote = pcfg->zygote = z;
    pcfg->zygote_only = 1;
    return 0;
}

/* Policy checks that need no resources: 0 to go on, or an exit status. */
static int refuse_unsafe(const struct config *cfg, const struct auth *auth,
                         const struct worker_ids *w, unsigned long uid_first)
{
    /* Anyone who can submit a job runs code on this machine: never without a token
     * beyond loopback, unless the operator says so explicitly. */
    if (!auth_count(auth) && !is_loopback(cfg->listen)) {
        if (!cfg->insecure_no_auth) {
            log_error("refusing to listen on %s without authentication: anyone who can reach "
                      "it could run code here. Set PYJOBD_TOKEN or --token-file, or pass "
                      "--insecure-no-auth if the network is trusted.",
                      cfg->listen);
            return 2;
        }
        log_warn("--insecure-no-auth: serving %s WITHOUT authentication; anyone who can reach "
                 "it can run code as this server's workers",
                 cfg->listen);
    }
    if (!!cfg->tls_cert != !!cfg->tls_key) {
        log_error("--tls-cert and --tls-key go together");
        return 2;
    }
    /* Root workers would run every client's code as root. */
    if (geteuid() == 0 && !cfg->worker_user && !cfg->allow_root_workers && !uid_first) {
        log_error("refusing to run workers as root: pass --worker-uids FIRST-LAST (each "
                  "tenant's workers under a uid of its own), --worker-user NAME (an unprivileged "
                  "user, e.g. nobody) or, if you really mean it, --allow-root-workers");
        return 2;
    }
    if (cfg->worker_user && geteuid() != 0) {
        log_error("--worker-user needs the server to run as root (it is uid %d); run the "
                  "server as the user the workers should have instead",
                  (int)geteuid());
        return 2;
    }
    if (access(cfg->worker_path, X_OK) != 0) {
        log_error("cannot run the worker program %s: %s (build it with 'make', or point "
                  "--worker / PYJOBD_WORKER at it)",
                  cfg->worker_path, strerror(errno));
        return 1;
    }
    return refuse_shared_uid(cfg, auth, w);
}

/* Waits for SIGINT/SIGTERM, drains the pool for the grace period (or until a second
 * signal), and returns when it is time to stop. */
static void wait_for_shutdown(const sigset_t *sigs, struct pool *pool, double grace)
{
    int sig = 0;
    sigwait(sigs, &sig);
    log_info("received %s: no new jobs; running jobs may finish for %g s (send it again to "
             "stop at once)",
             sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
    pool_drain(pool, grace);
    const struct timespec tick = {0, 50 * 1000 * 1000};
    while (!pool_drained(pool)) {
        if (sigtimedwait(sigs, NULL, &tick) > 0) {
            log_info("second signal: stopping now");
            break;
        }
    }
}

int main(int argc, char **argv)
{
    /* First of all: no process of this uid (a worker without --worker-user, another
     * server's job) may ptrace the server or read its /proc/<pid>/mem or environ, where
     * the tokens, the store's password and every tenant's payloads are. The kernel also
     * takes away core dumps, and makes /proc/<pid>/ root's. Workers are dumpable again
     * after their exec. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        log_error("cannot make the server non-dumpable: %s", strerror(errno));
        return 1;
    }
    if (argc >= 2 && strcmp(argv[1], "--health-check") == 0)
        return healthcheck_run(argc >= 3 ? argv[2] : NULL);
    struct config cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_level(cfg.log_level);
    if (cfg.min_workers == 0 && cfg.idle_timeout <= 0) {
        /* Without an idle timeout no worker ever exits: 0 would mean nothing. */
        log_error("--min-workers 0 (scale to zero) needs --idle-timeout S (S > 0): the seconds "
                  "an idle worker lives before it exits");
        return 2;
    }
    raise_fd_limit();

    /* Everything below is released at `out`, in reverse order; NULL/-1 means not made. */
    char err[1024];
    char *cert = NULL, *key = NULL;
    struct store *store = NULL;
    int store_lock = -1;
    struct pool *pool = NULL;
    struct api *api = NULL;
    struct http_server *http = NULL;
    struct pool_zygote zygote = {.pid = 0, .sock = -1}; /* --server-user: until pool_new */
    char **allowed_hosts = NULL, **cors_origins = NULL;
    struct worker_ids wids;
    worker_ids_load(&cfg, &wids);
    uint8_t cursor_key[AUTH_CURSOR_KEY_BYTES];
    int cursor_keyed = 0;
    struct auth *auth = auth_new(cfg.token_file, getenv("PYJOBD_TOKEN"), cfg.allow_insecure_files,
                                 err, sizeof(err));
    if (!auth) {
        log_error("%s", err);
        worker_ids_release(&wids);
        return 2;
    }
    char **job_isolated = auth_job_isolated_tenants(auth);
    char **tenant_names = auth_tenant_names(auth);
    if (auth_count(auth) && !auth_count_admins(auth))
        log_info("no token has the role admin: no tenant may resize the pool or see other "
                 "tenants' workers%s (give an operator's line in --token-file the option 'admin')",
                 cfg.public_metrics ? "" : " or read /metrics");
    unsigned long uid_first = 0, uid_last = 0;
    if ((rc = worker_uids_choose(&cfg, &uid_first, &uid_last)) != 0)
        goto out;
    if (uid_first) {
        if (cfg.worker_init) {
            log_error("--worker-init does not work with --worker-uids yet (a worker gets its "
                      "tenant's uid only with its first job, after --worker-init would have "
                      "run, as root): drop one of them (--worker-uids off with --worker-user)");
            rc = 2;
            goto out;
        }
        /* Workers run as uids no file belongs to: only what everyone may read is theirs. */
        worker_ids_release(&wids);
        wids = (struct worker_ids){.known = 1, .uid = (uid_t)-1};
        log_info("workers run as uids %lu-%lu, one per tenant (--worker-uids)", uid_first,
                 uid_last);
    }
    if ((rc = refuse_unsafe(&cfg, auth, &wids, uid_first)) != 0)
        goto out;
    rc = 1;
    if ((cursor_keyed = auth_cursor_key(auth, cursor_key)) < 0) {
        log_error("out of memory");
        goto out;
    }
    rc = 2;
    if (cfg.tls_cert && (!(cert = read_file(cfg.tls_cert, "--tls-cert", err, sizeof(err))) ||
                         !(key = read_file(cfg.tls_key, "--tls-key", err, sizeof(err))))) {
        log_error("%s", err);
        goto out;
    }
    if ((cfg.tls_cert || cfg.tls_priorities) &&
        tls_priorities_check(cfg.tls_priorities, err, sizeof(err)) != 0) {
        log_error("%s", err);
        goto out;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A process a job started that leaves its worker's process group (setsid, setpgid,
     * a double fork) becomes this server's child when the worker dies, not init's: the
     * pool kills it then (pool/sources/worker_proc.c, pool__orphans_kill). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        log_warn("prctl(PR_SET_CHILD_SUBREAPER): %s; processes that jobs start outside their "
                 "worker's process group may outlive it",
                 strerror(errno));

    struct pool_config pcfg = {
        .worker_path = cfg.worker_path,
        .workers = cfg.workers,
        .default_timeout = cfg.default_timeout,
        /* A result at its limit, with room for the frame's other fields. */
        .max_frame_bytes = cfg.max_result_bytes + ((size_t)1 << 20),
        .max_result_bytes = cfg.max_result_bytes,
        .max_results_memory = cfg.max_results_memory,
        .max_queue = cfg.max_queue,
        .max_jobs = cfg.max_jobs,
        .result_ttl = cfg.result_ttl,
        .idempotency_ttl = cfg.idempotency_ttl,
        .min_workers = cfg.min_workers,
        .idle_timeout = cfg.idle_timeout,
        .max_tasks_per_worker = cfg.max_tasks_per_worker,
        .worker_max_rss = (long long)cfg.worker_max_rss,
        .worker_memory_limit = (long long)cfg.worker_memory_limit,
        .max_output_bytes = cfg.max_output_bytes,
        .boot_failure_timeout = cfg.boot_failure_timeout,
        .worker_env = cfg.worker_env,
        .worker_cwd = cfg.worker_cwd,
        .worker_init = cfg.worker_init,
        .worker_user = cfg.worker_user,
        .tenant_max_queued = cfg.tenant_max_queued,
        .tenant_max_running = cfg.tenant_max_running,
        /* Under the server's own uid the count includes everything its user runs (a
         * desktop's browsers too): a default there would surprise; with a user of
         * their own, workers get one. */
        .worker_max_procs = cfg.worker_max_procs != UINT_MAX ? cfg.worker_max_procs
                            : cfg.worker_user || uid_first   ? 1024
                                                             : 0,
        .isolation = strcmp(cfg.isolation, "none") == 0  ? POOL_ISOLATION_NONE
                     : strcmp(cfg.isolation, "job") == 0 ? POOL_ISOLATION_JOB
                                                         : POOL_ISOLATION_TENANT,
        .worker_exec = strcmp(cfg.worker_start, "exec") == 0,
        .job_isolated_tenants = (const char *const *)job_isolated,
        .worker_uid_first = uid_first,
        .worker_uid_last = uid_last,
        .tenant_names = (const char *const *)tenant_names,
    };
    if (cfg.server_user && (rc = become_server_user(&cfg, &pcfg, &zygote)) != 0)
        goto out;
    if ((rc = refuse_insecure_store(&cfg, &wids)) != 0)
        goto out;
    rc = 1;
    if (strcmp(cfg.store, "memory") != 0 &&
        !(store = open_store(&cfg, &store_lock, err, sizeof(err)))) {
        log_error("%s", err);
        goto out;
    }
    pcfg.store = store;
    pool = pool_new(&pcfg);
    zygote.pid = 0; /* the pool's now, whether it started or not */
    if (!pool) {
        log_error("cannot start the worker pool: %s", strerror(errno));
        goto out;
    }
    struct api_config acfg = {
        .pool = pool,
        .max_wait = 60.0,
        .max_request_bytes = cfg.max_request_bytes,
        .default_timeout = cfg.default_timeout,
        .version = PYJOBD_VERSION,
        .python_match = cfg.python_match,
        .max_retries_limit = cfg.max_retries_limit,
        .max_batch = cfg.max_batch,
        .max_queue = cfg.max_queue,
        .tenant_max_queued = cfg.tenant_max_queued,
        .max_jobs = cfg.max_jobs,
        .result_ttl = cfg.result_ttl,
        .idempotency_ttl = cfg.idempotency_ttl,
        .store = store ? store_describe(store) : "memory", /* never the URI's password */
        .max_connections = cfg.max_connections,
        .http_header_timeout = cfg.header_timeout,
        .max_buffered_bytes = cfg.max_buffered_bytes,
        .min_transfer_rate = cfg.min_transfer_rate,
        .transfer_grace = cfg.transfer_grace,
        .max_result_bytes = cfg.max_result_bytes,
        .max_results_memory = cfg.max_results_memory,
        .allowed_hosts = cfg.allowed_hosts,
        .cors_origins = cfg.cors_origin,
        .public_metrics = cfg.public_metrics,
        .cursor_key = cursor_keyed ? cursor_key : NULL,
    };
    if (!(api = api_new(&acfg))) {
        log_error("out of memory");
        goto out;
    }
    const char *bad_host = NULL, *bad_origin = NULL;
    allowed_hosts = origin_list_parse(cfg.allowed_hosts, &bad_host);
    cors_origins = origin_list_parse(cfg.cors_origin, &bad_origin);
    if (bad_host || bad_origin) {
        log_error("--%s: '%s' is no %s", bad_host ? "allowed-hosts" : "cors-origin",
                  bad_host ? bad_host : bad_origin,
                  bad_host ? "host name (e.g. --allowed-hosts pyjobd.internal,10.0.0.5)"
                           : "web origin (e.g. --cors-origin https://dash.example.com)");
        rc = 2;
        goto out;
    }
    struct origin_policy origin = {
        .allowed_hosts = (const char *const *)allowed_hosts,
        .tokens = auth_count(auth) > 0,
        .cors_origins = (const char *const *)cors_origins,
    };
    struct http_config hcfg = {
        .listen = cfg.listen,
        .port = cfg.port,
        .threads = cfg.http_threads,
        .max_request_bytes = cfg.max_request_bytes,
        .max_buffered_bytes = cfg.max_buffered_bytes,
        .min_transfer_rate = cfg.min_transfer_rate,
        .transfer_grace = cfg.transfer_grace,
        .max_connections = cfg.max_connections,
        .header_timeout = cfg.header_timeout,
        .auth = auth,
        .metrics_open = cfg.public_metrics,
        .origin = &origin,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .tls_priorities = cfg.tls_priorities,
        .api = api,
    };
    if (!(http = http_start(&hcfg, err, sizeof(err)))) {
        log_error("%s", err);
        goto out;
    }
    int v6 = strchr(cfg.listen, ':') != NULL;
    log_info("pyjobd %s listening on %s://%s%s%s:%u with %u workers (%s); %s", PYJOBD_VERSION,
             cert ? "https" : "http", v6 ? "[" : "", cfg.listen, v6 ? "]" : "", http_port(http),
             cfg.workers, cfg.worker_path,
             auth_count(auth) ? "bearer tokens required" : "no authentication (loopback)");
    /* The one line on stdout: tests and scripts read the port from it. */
    printf("listening on %s%s%s:%u\n", v6 ? "[" : "", cfg.listen, v6 ? "]" : "", http_port(http));
    fflush(stdout);

    wait_for_shutdown(&sigs, pool, cfg.shutdown_grace);
    rc = 0;
out:
    /* Pool first: it ends every job and answers every waiter, then the HTTP side gets
     * a moment to deliver those answers before it closes; the store last, so the
     * pool's final writes are committed. */
    pool_stop(pool);
    pool_zygote_discard(&zygote);
    http_stop(http, 1000);
    api_free(api);
    pool_free(pool);
    store_close(store);
    if (store_lock >= 0)
        close(store_lock);
    auth_free(auth);
    auth_strings_free(job_isolated);
    auth_strings_free(tenant_names);
    origin_list_free(allowed_hosts);
    origin_list_free(cors_origins);
    worker_ids_release(&wids);
    explicit_bzero(cursor_key, sizeof(cursor_key));
    if (key)
        explicit_bzero(key, strlen(key));
    free(key);
    free(cert);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
