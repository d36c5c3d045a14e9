/*
 * main.c — wiring: settings, signals, the pool, the api and the HTTP server, and an
 * orderly stop on SIGINT/SIGTERM.
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
#include "pyjobd/pool.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/file.h>
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

/* Opens --store sqlite:PATH: creates the directory if missing and takes a lock so two
 * servers never share one database (both would run its jobs). */
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
        if (strcmp(d, ".") != 0 && mkdir(d, 0750) != 0 && errno != EEXIST) {
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

/* Policy checks that need no resources: 0 to go on, or an exit status. */
static int refuse_unsafe(const struct config *cfg, const struct auth *auth)
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
    if (geteuid() == 0 && !cfg->worker_user && !cfg->allow_root_workers) {
        log_error("refusing to run workers as root: pass --worker-user NAME (an unprivileged "
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
    return 0;
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
    if (argc >= 2 && strcmp(argv[1], "--health-check") == 0)
        return healthcheck_run(argc >= 3 ? argv[2] : NULL);
    struct config cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_level(cfg.log_level);
    raise_fd_limit();

    /* Everything below is released at `out`, in reverse order; NULL/-1 means not made. */
    char err[1024];
    char *cert = NULL, *key = NULL;
    struct store *store = NULL;
    int store_lock = -1;
    struct pool *pool = NULL;
    struct api *api = NULL;
    struct http_server *http = NULL;
    uint8_t cursor_key[AUTH_CURSOR_KEY_BYTES];
    int cursor_keyed = 0;
    struct auth *auth = auth_new(cfg.token_file, getenv("PYJOBD_TOKEN"), cfg.allow_insecure_files,
                                 err, sizeof(err));
    if (!auth) {
        log_error("%s", err);
        return 2;
    }
    if (auth_count(auth) && !auth_count_admins(auth))
        log_info("no token has the role admin: no tenant may resize the pool or see other "
                 "tenants' workers%s (give an operator's line in --token-file the option 'admin')",
                 cfg.public_metrics ? "" : " or read /metrics");
    if ((rc = refuse_unsafe(&cfg, auth)) != 0)
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

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    if (strcmp(cfg.store, "memory") != 0 &&
        !(store = open_store(&cfg, &store_lock, err, sizeof(err)))) {
        log_error("%s", err);
        goto out;
    }
    struct pool_config pcfg = {
        .store = store,
        .worker_path = cfg.worker_path,
        .workers = cfg.workers,
        .default_timeout = cfg.default_timeout,
        .max_frame_bytes = (size_t)4 << 30,
        .max_queue = cfg.max_queue,
        .max_jobs = cfg.max_jobs,
        .result_ttl = cfg.result_ttl,
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
    };
    if (!(pool = pool_new(&pcfg))) {
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
        .max_jobs = cfg.max_jobs,
        .result_ttl = cfg.result_ttl,
        .store = store ? store_describe(store) : "memory", /* never the URI's password */
        .max_connections = cfg.max_connections,
        .http_header_timeout = cfg.header_timeout,
        .public_metrics = cfg.public_metrics,
        .cursor_key = cursor_keyed ? cursor_key : NULL,
    };
    if (!(api = api_new(&acfg))) {
        log_error("out of memory");
        goto out;
    }
    struct http_config hcfg = {
        .listen = cfg.listen,
        .port = cfg.port,
        .threads = cfg.http_threads,
        .max_request_bytes = cfg.max_request_bytes,
        .max_connections = cfg.max_connections,
        .header_timeout = cfg.header_timeout,
        .auth = auth,
        .metrics_open = cfg.public_metrics,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
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
    http_stop(http, 1000);
    api_free(api);
    pool_free(pool);
    store_close(store);
    if (store_lock >= 0)
        close(store_lock);
    auth_free(auth);
    explicit_bzero(cursor_key, sizeof(cursor_key));
    if (key)
        explicit_bzero(key, strlen(key));
    free(key);
    free(cert);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
