/*
 * config.h — the server's settings, from flags and PYJOBD_* environment variables
 * (flags win). Every setting has a default that is safe on a developer machine.
 */
#ifndef PYJOBD_CONFIG_H
#define PYJOBD_CONFIG_H

#include <stddef.h>

#include "pyjobd/log.h"

#define PYJOBD_VERSION "0.1.0"

struct config {
    char listen[64];          /* --listen / PYJOBD_LISTEN, default 127.0.0.1 */
    unsigned port;            /* --port / PYJOBD_PORT, default 8080; 0 = ephemeral */
    unsigned workers;         /* --workers / PYJOBD_WORKERS, default: online cores */
    double default_timeout;   /* --default-timeout / PYJOBD_DEFAULT_TIMEOUT, 0 = none */
    size_t max_request_bytes; /* --max-request-bytes / PYJOBD_MAX_REQUEST_BYTES, 64 MiB */
    unsigned http_threads;    /* --http-threads / PYJOBD_HTTP_THREADS, default: cores */
    enum log_level log_level; /* --log-level / PYJOBD_LOG_LEVEL, default info */
    char worker_path[4096];   /* --worker / PYJOBD_WORKER, default: next to the server */
};

/*
 * Fills *cfg from defaults, then the environment, then argv. Returns 0 to run,
 * 1 when --help or --version was handled (exit 0), or -EINVAL after printing a
 * message that names the bad setting to stderr (exit 2).
 */
int config_load(struct config *cfg, int argc, char **argv);

#endif
