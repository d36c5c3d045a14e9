/*
 * config.h — the server's settings, from flags and PYJOBD_* environment variables
 * (flags win). Every setting has a default that is safe on a developer machine.
 * Strings point into argv or the environment, which live as long as the process.
 */
#ifndef PYJOBD_CONFIG_H
#define PYJOBD_CONFIG_H

#include <stddef.h>

#include "pyjobd/log.h"

#define PYJOBD_VERSION "0.1.0"
#define CONFIG_MAX_WORKER_ENV 64

struct config {
    /* HTTP */
    const char *listen;        /* --listen, default 127.0.0.1 */
    unsigned port;             /* --port, default 8080; 0 = ephemeral */
    unsigned http_threads;     /* --http-threads, default: cores */
    size_t max_request_bytes;  /* --max-request-bytes, default 64 MiB */
    size_t max_buffered_bytes; /* --max-buffered-bytes: all bodies being read, default 256 MiB */
    size_t min_transfer_rate;  /* --min-transfer-rate bytes/s, bodies and responses, 64 KiB */
    double transfer_grace;     /* --transfer-grace seconds before that rate counts, default 10 */
    /* Jobs */
    double default_timeout;      /* --default-timeout, 0 = none */
    size_t max_queue;            /* --max-queue, default 100000 */
    size_t max_jobs;             /* --max-jobs, default 100000 */
    size_t tenant_max_queued;    /* --tenant-max-queued, 0 = only --max-queue */
    unsigned tenant_max_running; /* --tenant-max-running, 0 = any */
    double result_ttl;           /* --result-ttl, default 3600 */
    double idempotency_ttl;      /* --idempotency-ttl, default 86400 */
    size_t max_result_bytes;     /* --max-result-bytes, default 64 MiB */
    size_t max_results_memory;   /* --max-results-memory, default 1 GiB; 0 = unbounded */
    unsigned max_batch;          /* --max-batch, default 10000 */
    unsigned max_retries_limit;  /* --max-retries-limit, default 3 */
    const char *python_match;    /* --python-match minor|exact|none, default minor */
    /* Workers */
    unsigned workers;                                  /* --workers, default: cores */
    unsigned min_workers;                              /* --min-workers, default 1 */
    double idle_timeout;                               /* --idle-timeout, 0 = never */
    unsigned max_tasks_per_worker;                     /* --max-tasks-per-worker, 0 = unlimited */
    size_t worker_max_rss;                             /* --worker-max-rss, 0 = unlimited */
    size_t worker_memory_limit;                        /* --worker-memory-limit, 0 = none */
    unsigned worker_max_procs;                         /* --worker-max-procs; UINT_MAX: not given */
    size_t max_output_bytes;                           /* --max-output-bytes, default 1 MiB */
    double boot_failure_timeout;                       /* --boot-failure-timeout, default 60 */
    double shutdown_grace;                             /* --shutdown-grace, default 30 */
    const char *worker_path;                           /* --worker, default: next to this program */
    const char *worker_cwd;                            /* --worker-cwd */
    const char *worker_init;                           /* --worker-init module:function */
    const char *worker_env[CONFIG_MAX_WORKER_ENV + 1]; /* --worker-env KEY=VALUE ... */
    unsigned nworker_env;
    const char *store;     /* --store memory | sqlite:PATH | postgresql://..., default memory */
    const char *pg_schema; /* --pg-schema, default pyjobd */
    const char *node_name; /* --node-name, default: the host name */
    double node_lease;     /* --node-lease, default 10 */
    double pg_poll;        /* --pg-poll, default 1 */
    /* Security */
    const char *token_file;     /* --token-file: one token per line, optional "name:" */
    int insecure_no_auth;       /* --insecure-no-auth: allow a non-loopback listen without tokens */
    int public_metrics;         /* --public-metrics: /metrics without a token */
    const char *allowed_hosts;  /* --allowed-hosts a,b: Host names served besides loopback */
    const char *cors_origin;    /* --cors-origin a,b: web origins allowed besides our own */
    const char *tls_cert;       /* --tls-cert PEM file */
    const char *tls_key;        /* --tls-key PEM file */
    const char *tls_priorities; /* --tls-priorities: GnuTLS priority string */
    unsigned max_connections;   /* --max-connections, default 10000 */
    double header_timeout;      /* --http-header-timeout, default 30 */
    const char *worker_user;    /* --worker-user NAME */
    const char *worker_uids;    /* --worker-uids FIRST-LAST | off; NULL: the default */
    const char *server_user;    /* --server-user NAME: drop root after starting the zygote */
    int allow_root_workers;     /* --allow-root-workers */
    const char *isolation;      /* --isolation tenant|job|none, default tenant */
    const char *worker_start;   /* --worker-start fork|exec, default fork */
    int allow_shared_worker_uid; /* --allow-shared-worker-uid */
    int allow_insecure_files;    /* --allow-insecure-files: warn instead of refusing */
    enum log_level log_level;    /* --log-level, default info */
    char worker_path_buf[4096];
};

/*
 * Fills *cfg from defaults, then the environment, then argv. Returns 0 to run,
 * 1 when --help or --version was handled (exit 0), or -EINVAL after printing a
 * message that names the bad setting to stderr (exit 2).
 */
int config_load(struct config *cfg, int argc, char **argv);

/* 1 when --store names a PostgreSQL database (postgresql:// or postgres://). */
int config_store_is_pg(const char *store);

#endif
