/*
 * config.c — flags and PYJOBD_* environment variables → struct config.
 * One table lists every setting once: its flag, its variable, its parser and its
 * help, so the two spellings cannot drift apart and --help comes from the same table.
 */
#include "pyjobd/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum kind {
    K_STR,
    K_UINT,
    K_SECONDS,
    K_BYTES,
    K_COUNT,
    K_LOGLEVEL,
    K_CHOICE, /* one of the words of `choices` */
    K_ENV,
    K_FLAG
};

struct setting {
    const char *flag;
    const char *env;
    enum kind kind;
    size_t offset;
    unsigned long long min, max; /* for numbers */
    const char *help;
};

#define OFF(field) offsetof(struct config, field)
#define DAY 86400ull

static const struct setting settings[] = {
    {"listen", "PYJOBD_LISTEN", K_STR, OFF(listen), 0, 0,
     "address to listen on (default 127.0.0.1; ::1 for IPv6)"},
    {"port", "PYJOBD_PORT", K_UINT, OFF(port), 0, 65535,
     "TCP port (default 8080; 0 picks a free one and prints it)"},
    {"http-threads", "PYJOBD_HTTP_THREADS", K_UINT, OFF(http_threads), 1, 256,
     "HTTP threads (default: one per core)"},
    {"max-request-bytes", "PYJOBD_MAX_REQUEST_BYTES", K_BYTES, OFF(max_request_bytes), 64,
     1ull << 40, "largest accepted request body (default 64M)"},
    {"max-buffered-bytes", "PYJOBD_MAX_BUFFERED_BYTES", K_BYTES, OFF(max_buffered_bytes), 64,
     1ull << 44,
     "request bodies all connections together may hold while they are read; beyond it "
     "503 with Retry-After (default 256M)"},
    {"min-transfer-rate", "PYJOBD_MIN_TRANSFER_RATE", K_BYTES, OFF(min_transfer_rate), 1,
     1ull << 40,
     "bytes/s a request body and a response must average after --transfer-grace, or the "
     "connection is closed (default 64K)"},
    {"transfer-grace", "PYJOBD_TRANSFER_GRACE", K_SECONDS, OFF(transfer_grace), 0, 3600,
     "seconds a body or a response may take before --min-transfer-rate counts (default 10)"},
    {"default-timeout", "PYJOBD_DEFAULT_TIMEOUT", K_SECONDS, OFF(default_timeout), 0, 30 * DAY,
     "seconds a job may run when it sets no timeout (default 0 = no limit)"},
    {"max-queue", "PYJOBD_MAX_QUEUE", K_COUNT, OFF(max_queue), 1, 100000000,
     "queued jobs accepted at once; beyond it POST answers 429 (default 100000)"},
    {"tenant-max-queued", "PYJOBD_TENANT_MAX_QUEUED", K_COUNT, OFF(tenant_max_queued), 0, 100000000,
     "queued jobs of one tenant at most; beyond it POST answers 429 (default 0 = "
     "only --max-queue)"},
    {"tenant-max-running", "PYJOBD_TENANT_MAX_RUNNING", K_UINT, OFF(tenant_max_running), 0, 1024,
     "running jobs of one tenant at most; the others wait their turn (default 0 = any)"},
    {"max-jobs", "PYJOBD_MAX_JOBS", K_COUNT, OFF(max_jobs), 1, 100000000,
     "job records kept; the oldest finished go first (default 100000)"},
    {"result-ttl", "PYJOBD_RESULT_TTL", K_SECONDS, OFF(result_ttl), 0, 365 * DAY,
     "seconds a finished job is kept (default 3600; 0 = until --max-jobs)"},
    {"idempotency-ttl", "PYJOBD_IDEMPOTENCY_TTL", K_SECONDS, OFF(idempotency_ttl), 1, 365 * DAY,
     "seconds an Idempotency-Key is remembered: the same key and body again within it answer "
     "the first job (default 86400)"},
    {"max-result-bytes", "PYJOBD_MAX_RESULT_BYTES", K_BYTES, OFF(max_result_bytes), 1024,
     1ull << 40,
     "largest pickled (or JSON) result a job may return; a larger one fails the job as "
     "result_too_large (default 64M)"},
    {"max-results-memory", "PYJOBD_MAX_RESULTS_MEMORY", K_BYTES, OFF(max_results_memory), 0,
     1ull << 50,
     "bytes of finished jobs' results held in memory; beyond it the oldest leave memory (read "
     "back from a durable store, else expired) (default 1G; 0 = no bound)"},
    {"max-batch", "PYJOBD_MAX_BATCH", K_UINT, OFF(max_batch), 1, 1000000,
     "jobs per POST /v1/jobs/batch (default 10000)"},
    {"max-retries-limit", "PYJOBD_MAX_RETRIES_LIMIT", K_UINT, OFF(max_retries_limit), 0, 100,
     "largest max_retries a job may ask for (default 3)"},
    {"python-match", "PYJOBD_PYTHON_MATCH", K_CHOICE, OFF(python_match), 0, 0,
     "client Python version check: minor | exact | none (default minor)"},
    {"workers", "PYJOBD_WORKERS", K_UINT, OFF(workers), 1, 1024,
     "worker processes (default: one per core)"},
    {"min-workers", "PYJOBD_MIN_WORKERS", K_UINT, OFF(min_workers), 0, 1024,
     "workers kept through --idle-timeout (default 1; 0 = scale to zero, needs --idle-timeout)"},
    {"idle-timeout", "PYJOBD_IDLE_TIMEOUT", K_SECONDS, OFF(idle_timeout), 0, 365 * DAY,
     "seconds an idle worker beyond --min-workers lives (default 0 = forever)"},
    {"max-tasks-per-worker", "PYJOBD_MAX_TASKS_PER_WORKER", K_UINT, OFF(max_tasks_per_worker), 0,
     UINT_MAX, "replace a worker after this many jobs (default 0 = never)"},
    {"worker-max-rss", "PYJOBD_WORKER_MAX_RSS", K_BYTES, OFF(worker_max_rss), 0, 1ull << 50,
     "replace a worker whose RSS exceeds this after a job (default 0 = never)"},
    {"worker-memory-limit", "PYJOBD_WORKER_MEMORY_LIMIT", K_BYTES, OFF(worker_memory_limit), 0,
     1ull << 50, "address-space limit of a worker, e.g. 2G (default 0 = none)"},
    {"worker-max-procs", "PYJOBD_WORKER_MAX_PROCS", K_UINT, OFF(worker_max_procs), 0, 1u << 22,
     "processes and threads the workers' user may have at once (RLIMIT_NPROC; not "
     "enforced for root; default 1024 with --worker-user, else the system's; 0 = the "
     "system's)"},
    {"max-output-bytes", "PYJOBD_MAX_OUTPUT_BYTES", K_BYTES, OFF(max_output_bytes), 0, 1ull << 32,
     "captured stdout and stderr per job, each; the tail is kept (default 1M)"},
    {"boot-failure-timeout", "PYJOBD_BOOT_FAILURE_TIMEOUT", K_SECONDS, OFF(boot_failure_timeout), 0,
     30 * DAY, "queued jobs fail after no worker could boot this long (default 60)"},
    {"shutdown-grace", "PYJOBD_SHUTDOWN_GRACE", K_SECONDS, OFF(shutdown_grace), 0, DAY,
     "seconds running jobs may finish after SIGTERM (default 30)"},
    {"worker", "PYJOBD_WORKER", K_STR, OFF(worker_path), 0, 0,
     "path of pyjobd-worker (default: next to this program)"},
    {"worker-cwd", "PYJOBD_WORKER_CWD", K_STR, OFF(worker_cwd), 0, 0,
     "working directory of workers (default: the server's)"},
    {"worker-init", "PYJOBD_WORKER_INIT", K_STR, OFF(worker_init), 0, 0,
     "module:function run once in each worker before its first job"},
    {"worker-env", "PYJOBD_WORKER_ENV", K_ENV, OFF(worker_env), 0, 0,
     "KEY=VALUE for workers (repeatable; in the variable, one per line)"},
    {"store", "PYJOBD_STORE", K_STR, OFF(store), 0, 0,
     "where jobs live: memory (lost on restart), sqlite:PATH (durable), or "
     "postgresql://USER@HOST/DB (durable, shared by several nodes); default memory"},
    {"pg-schema", "PYJOBD_PG_SCHEMA", K_STR, OFF(pg_schema), 0, 0,
     "PostgreSQL store: schema of pyjobd's tables (default pyjobd)"},
    {"node-name", "PYJOBD_NODE_NAME", K_STR, OFF(node_name), 0, 0,
     "PostgreSQL store: this node's name, the prefix of its id (default: the host name)"},
    {"node-lease", "PYJOBD_NODE_LEASE", K_SECONDS, OFF(node_lease), 0, DAY,
     "PostgreSQL store: seconds without a heartbeat before other nodes take over a "
     "node's jobs (default 10)"},
    {"pg-poll", "PYJOBD_PG_POLL", K_SECONDS, OFF(pg_poll), 0, 3600,
     "PostgreSQL store: seconds between claims and re-checks when no notification "
     "comes (default 1)"},
    {"token-file", "PYJOBD_TOKEN_FILE", K_STR, OFF(token_file), 0, 0,
     "bearer tokens, one per line: '[name:]token [admin|role=admin|role=user]', mode 0600 "
     "(also PYJOBD_TOKEN: one admin token)"},
    {"insecure-no-auth", "PYJOBD_INSECURE_NO_AUTH", K_FLAG, OFF(insecure_no_auth), 0, 0,
     "allow listening beyond loopback without a token (anyone could run code)"},
    {"public-metrics", "PYJOBD_PUBLIC_METRICS", K_FLAG, OFF(public_metrics), 0, 0,
     "serve /metrics without a token (else only admin tokens may read it)"},
    {"allowed-hosts", "PYJOBD_ALLOWED_HOSTS", K_STR, OFF(allowed_hosts), 0, 0,
     "NAME[,NAME...]: Host names served besides loopback ones (without tokens only those; "
     "with tokens, when given, only those): the guard against DNS rebinding"},
    {"cors-origin", "PYJOBD_CORS_ORIGIN", K_STR, OFF(cors_origin), 0, 0,
     "ORIGIN[,ORIGIN...]: web origins (https://host[:port]) whose pages may send requests; "
     "a browser request from any other origin but the server's own gets 403"},
    {"tls-cert", "PYJOBD_TLS_CERT", K_STR, OFF(tls_cert), 0, 0, "PEM certificate: serve HTTPS"},
    {"tls-key", "PYJOBD_TLS_KEY", K_STR, OFF(tls_key), 0, 0, "PEM private key of --tls-cert"},
    {"tls-priorities", "PYJOBD_TLS_PRIORITIES", K_STR, OFF(tls_priorities), 0, 0,
     "GnuTLS priority string (default: TLS 1.3 and 1.2, AEAD ciphers with forward secrecy "
     "only, the server's order)"},
    {"max-connections", "PYJOBD_MAX_CONNECTIONS", K_UINT, OFF(max_connections), 1, 1000000,
     "open connections served at once; beyond it 503 (default 10000)"},
    {"http-header-timeout", "PYJOBD_HTTP_HEADER_TIMEOUT", K_SECONDS, OFF(header_timeout), 0, 3600,
     "seconds a client may take to send a request's headers, or idle between "
     "requests (default 30)"},
    {"worker-user", "PYJOBD_WORKER_USER", K_STR, OFF(worker_user), 0, 0,
     "run all workers as this user (the server must run as root)"},
    {"server-user", "PYJOBD_SERVER_USER", K_STR, OFF(server_user), 0, 0,
     "a root server becomes this user (keeping only CAP_KILL) once its worker zygote, "
     "which keeps root to start workers under --worker-uids, is ready"},
    {"worker-uids", "PYJOBD_WORKER_UIDS", K_STR, OFF(worker_uids), 0, 0,
     "FIRST-LAST: each tenant's workers run as a uid (and gid) of its own from this range, "
     "no user database entry needed (default when the server runs as root without "
     "--worker-user: 64000-64999; 'off' for none)"},
    {"allow-root-workers", "PYJOBD_ALLOW_ROOT_WORKERS", K_FLAG, OFF(allow_root_workers), 0, 0,
     "let workers run as root when the server does"},
    {"isolation", "PYJOBD_ISOLATION", K_CHOICE, OFF(isolation), 0, 0,
     "tenant (default: a worker runs jobs of one tenant only) | job (each job in a process "
     "forked for it, gone when it ends) | none (workers run anyone's jobs: for a single "
     "user)"},
    {"worker-start", "PYJOBD_WORKER_START", K_CHOICE, OFF(worker_start), 0, 0,
     "fork (default: workers are forked from a booted template, the zygote) | exec (each "
     "worker starts Python afresh: slower restarts)"},
    {"allow-shared-worker-uid", "PYJOBD_ALLOW_SHARED_WORKER_UID", K_FLAG,
     OFF(allow_shared_worker_uid), 0, 0,
     "start even when several tenants' workers would run under the server's own uid "
     "(each tenant's jobs can then read the server's files and each other's workers)"},
    {"allow-insecure-files", "PYJOBD_ALLOW_INSECURE_FILES", K_FLAG, OFF(allow_insecure_files), 0, 0,
     "only warn about a token file or store that others could read"},
    {"log-level", "PYJOBD_LOG_LEVEL", K_LOGLEVEL, OFF(log_level), 0, 0,
     "debug | info | warn | error (default info)"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

int config_store_is_pg(const char *store)
{
    return strncmp(store, "postgresql://", 13) == 0 || strncmp(store, "postgres://", 11) == 0;
}

static int parse_number(const char *s, int suffixes, unsigned long long *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned long long mult = 1;
    if (suffixes && *end) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end == 'k' ? 'K' : *end);
        if (!u)
            return -EINVAL;
        mult = 1ull << (10 * (u - units + 1));
        end++;
    }
    if (*end || v > ULLONG_MAX / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

static int add_env(struct config *cfg, const char *entry, const char *source)
{
    const char *eq = strchr(entry, '=');
    if (!eq || eq == entry) {
        fprintf(stderr, "pyjobd: %s: expected KEY=VALUE, got '%s'\n", source, entry);
        return -EINVAL;
    }
    if (cfg->nworker_env == CONFIG_MAX_WORKER_ENV) {
        fprintf(stderr, "pyjobd: %s: at most %d worker variables\n", source, CONFIG_MAX_WORKER_ENV);
        return -EINVAL;
    }
    cfg->worker_env[cfg->nworker_env++] = entry;
    cfg->worker_env[cfg->nworker_env] = NULL;
    return 0;
}

/* K_CHOICE: the values each such setting accepts, separated by spaces. */
static const struct {
    const char *flag;
    const char *choices;
} choice_sets[] = {
    {"python-match", "minor exact none"},
    {"isolation", "tenant job none"},
    {"worker-start", "fork exec"},
};

static const char *choices_of(const char *flag)
{
    for (size_t i = 0; i < sizeof(choice_sets) / sizeof(choice_sets[0]); i++)
        if (strcmp(choice_sets[i].flag, flag) == 0)
            return choice_sets[i].choices;
    return ""; /* a K_CHOICE setting without its set accepts nothing */
}

/* Is value one of the space-separated words of choices? */
static int is_choice(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *c = choices; *c;) {
        size_t w = strcspn(c, " ");
        if (w == n && n && strncmp(c, value, n) == 0)
            return 1;
        c += w + (c[w] == ' ');
    }
    return 0;
}

/* "a, b or c" from "a b c". */
static void describe_choices(const char *choices, char *out, size_t len)
{
    size_t used = 0;
    out[0] = 0;
    for (const char *c = choices; *c && used < len;) {
        size_t w = strcspn(c, " ");
        const char *next = c + w + (c[w] == ' ');
        const char *sep = used == 0 ? "" : *next ? ", " : " or ";
        int k = snprintf(out + used, len - used, "%s%.*s", sep, (int)w, c);
        used += k > 0 ? (size_t)k : 0;
        c = next;
    }
}
static int apply(struct config *cfg, const struct setting *st, const char *value,
                 const char *source)
{
    char *field = (char *)cfg + st->offset;
    unsigned long long u;
    switch (st->kind) {
    case K_STR:
        if (!*value) {
            fprintf(stderr, "pyjobd: %s: must not be empty\n", source);
            return -EINVAL;
        }
        *(const char **)field = value;
        return 0;
    case K_ENV: {
        /* From the environment: one entry per line. */
        if (strcmp(source, st->env) != 0)
            return add_env(cfg, value, source);
        char *copy = strdup(value); /* kept for the life of the process */
        for (char *save, *line = strtok_r(copy, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            if (add_env(cfg, line, source) != 0)
                return -EINVAL;
        return 0;
    }
    case K_UINT:
    case K_COUNT:
    case K_BYTES:
        if (parse_number(value, st->kind == K_BYTES, &u) != 0 || u < st->min || u > st->max) {
            fprintf(stderr, "pyjobd: %s: expected %s between %llu and %llu, got '%s'\n", source,
                    st->kind == K_BYTES ? "a size in bytes (suffixes K, M, G, T allowed)"
                                        : "a whole number",
                    st->min, st->max, value);
            return -EINVAL;
        }
        if (st->kind == K_UINT)
            *(unsigned *)field = (unsigned)u;
        else
            *(size_t *)field = (size_t)u;
        return 0;
    case K_SECONDS: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(d) || d < 0 || d > (double)st->max) {
            fprintf(stderr,
                    "pyjobd: %s: expected a number of seconds between 0 and %llu, got '%s'\n",
                    source, st->max, value);
            return -EINVAL;
        }
        *(double *)field = d;
        return 0;
    }
    case K_LOGLEVEL:
        if (log_parse_level(value, (enum log_level *)field) != 0) {
            fprintf(stderr, "pyjobd: %s: expected debug, info, warn or error, got '%s'\n", source,
                    value);
            return -EINVAL;
        }
        return 0;
    case K_FLAG:
        if (strcmp(source, st->env) == 0 && strcmp(value, "1") && strcasecmp(value, "true") &&
            strcasecmp(value, "yes") && strcmp(value, "0") && strcasecmp(value, "false") &&
            strcasecmp(value, "no")) {
            fprintf(stderr, "pyjobd: %s: expected 1/true/yes or 0/false/no, got '%s'\n", source,
                    value);
            return -EINVAL;
        }
        *(int *)field = strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0 ||
                        strcasecmp(value, "yes") == 0;
        return 0;
    case K_CHOICE:
        if (!is_choice(choices_of(st->flag), value)) {
            char expected[128];
            describe_choices(choices_of(st->flag), expected, sizeof(expected));
            fprintf(stderr, "pyjobd: %s: expected %s, got '%s'\n", source, expected, value);
            return -EINVAL;
        }
        *(const char **)field = value;
        return 0;
    }
    return -EINVAL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pyjobd [options]\n\nRuns Python callables sent over HTTP on a "
               "supervised pool of worker processes.\n\noptions (each also settable by "
               "its environment variable; flags win):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(f, "  --%-22s %-29s %s\n", settings[i].flag, settings[i].env, settings[i].help);
    fprintf(f,
            "  --help, --version\n"
            "\nAlso: pyjobd --health-check [URL] exits 0 when URL (default "
            "http://127.0.0.1:$PYJOBD_PORT/healthz) answers 200, for container health checks.\n");
}

static void default_worker_path(struct config *cfg)
{
    char self[4000]; /* leaves room for "/pyjobd-worker" */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        cfg->worker_path = "pyjobd-worker";
        return;
    }
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(cfg->worker_path_buf, sizeof(cfg->worker_path_buf), "%s/pyjobd-worker", self);
    cfg->worker_path = cfg->worker_path_buf;
}

int config_load(struct config *cfg, int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1";
    cfg->port = 8080;
    cfg->workers = cores > 0 ? (unsigned)cores : 1;
    cfg->http_threads = cfg->workers;
    cfg->max_request_bytes = 64u << 20;
    cfg->max_buffered_bytes = 256u << 20;
    cfg->min_transfer_rate = 64u << 10;
    cfg->transfer_grace = 10;
    cfg->max_result_bytes = 64u << 20;
    cfg->max_results_memory = 1u << 30;
    cfg->max_queue = 100000;
    cfg->max_jobs = 100000;
    cfg->result_ttl = 3600;
    cfg->idempotency_ttl = 24 * 3600;
    cfg->max_batch = 10000;
    cfg->max_retries_limit = 3;
    cfg->python_match = "minor";
    cfg->isolation = "tenant";
    cfg->worker_start = "fork";
    cfg->worker_max_procs = UINT_MAX; /* not given: see main.c */
    cfg->min_workers = 1;
    cfg->max_output_bytes = 1u << 20;
    cfg->boot_failure_timeout = 60;
    cfg->shutdown_grace = 30;
    cfg->max_connections = 10000;
    cfg->store = "memory";
    cfg->pg_schema = "pyjobd";
    cfg->node_lease = 10;
    cfg->pg_poll = 1;
    cfg->header_timeout = 30;
    cfg->log_level = LOG_INFO;
    default_worker_path(cfg);

    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && *v && apply(cfg, &settings[i], v, settings[i].env) != 0)
            return -EINVAL;
    }

    struct option opts[NSETTINGS + 3];
    for (size_t i = 0; i < NSETTINGS; i++)
        opts[i] = (struct option){settings[i].flag,
                                  settings[i].kind == K_FLAG ? no_argument : required_argument,
                                  NULL, (int)(i + 256)};
    opts[NSETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    opts[NSETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    opts[NSETTINGS + 2] = (struct option){0, 0, 0, 0};
    optind = 1;
    int c, env_from_flags = 0;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("pyjobd %s\n", PYJOBD_VERSION);
            return 1;
        }
        if (c < 256 || c >= 256 + (int)NSETTINGS) {
            fprintf(stderr, "pyjobd: see --help for the options\n");
            return -EINVAL;
        }
        const struct setting *st = &settings[c - 256];
        char source[64];
        snprintf(source, sizeof(source), "--%s", st->flag);
        /* Flags win over the variable, also for the repeatable --worker-env. */
        if (st->kind == K_ENV && !env_from_flags++)
            cfg->nworker_env = 0;
        if (apply(cfg, st, st->kind == K_FLAG ? "1" : optarg, source) != 0)
            return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "pyjobd: unexpected argument '%s'; see --help\n", argv[optind]);
        return -EINVAL;
    }
    if (strcmp(cfg->store, "memory") != 0 && !config_store_is_pg(cfg->store) &&
        (strncmp(cfg->store, "sqlite:", 7) != 0 || !cfg->store[7])) {
        fprintf(stderr,
                "pyjobd: --store: expected memory, sqlite:PATH or postgresql://..., got '%s'\n",
                cfg->store);
        return -EINVAL;
    }
    if (config_store_is_pg(cfg->store) && (cfg->node_lease < 0.5 || cfg->pg_poll < 0.01)) {
        fprintf(stderr, "pyjobd: --node-lease must be at least 0.5 s and --pg-poll at least "
                        "0.01 s\n");
        return -EINVAL;
    }
    if (cfg->min_workers > cfg->workers)
        cfg->min_workers = cfg->workers;
    return 0;
}
