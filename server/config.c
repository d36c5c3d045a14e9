/*
 * config.c — flags and PYJOBD_* environment variables → struct config.
 * One table lists every setting once: its flag, its variable and its parser, so the
 * two spellings cannot drift apart and --help is generated from the same table.
 */
#include "pyjobd/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum kind { K_STR, K_UINT, K_SECONDS, K_BYTES, K_LOGLEVEL, K_PATH };

struct setting {
    const char *flag;
    const char *env;
    enum kind kind;
    size_t offset;
    unsigned long long min, max; /* for K_UINT and K_BYTES */
    const char *help;
};

#define OFF(field) offsetof(struct config, field)

static const struct setting settings[] = {
    {"listen", "PYJOBD_LISTEN", K_STR, OFF(listen), 0, 0,
     "address to listen on (default 127.0.0.1; ::1 for IPv6)"},
    {"port", "PYJOBD_PORT", K_UINT, OFF(port), 0, 65535,
     "TCP port (default 8080; 0 picks a free one and prints it)"},
    {"workers", "PYJOBD_WORKERS", K_UINT, OFF(workers), 1, 1024,
     "worker processes (default: one per core)"},
    {"default-timeout", "PYJOBD_DEFAULT_TIMEOUT", K_SECONDS, OFF(default_timeout), 0, 0,
     "seconds a job may run when it sets no timeout (default 0 = no limit)"},
    {"max-request-bytes", "PYJOBD_MAX_REQUEST_BYTES", K_BYTES, OFF(max_request_bytes), 1024,
     1ull << 40, "largest accepted request body (default 64 MiB)"},
    {"http-threads", "PYJOBD_HTTP_THREADS", K_UINT, OFF(http_threads), 1, 256,
     "HTTP threads (default: one per core)"},
    {"log-level", "PYJOBD_LOG_LEVEL", K_LOGLEVEL, OFF(log_level), 0, 0,
     "debug | info | warn | error (default info)"},
    {"worker", "PYJOBD_WORKER", K_PATH, OFF(worker_path), 0, 0,
     "path of pyjobd-worker (default: next to this program)"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    if (!*s || *s == '-')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    /* Sizes may carry a binary suffix: 64M, 1G. */
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1ull << 10;
    else if (*end == 'M' || *end == 'm')
        mult = 1ull << 20;
    else if (*end == 'G' || *end == 'g')
        mult = 1ull << 30;
    if (mult != 1)
        end++;
    if (*end || v > ULLONG_MAX / mult)
        return -EINVAL;
    v *= mult;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

static int apply(struct config *cfg, const struct setting *st, const char *value,
                 const char *source)
{
    char *field = (char *)cfg + st->offset;
    unsigned long long u;
    int rc = 0;
    switch (st->kind) {
    case K_STR:
    case K_PATH: {
        size_t cap = st->kind == K_STR ? sizeof(cfg->listen) : sizeof(cfg->worker_path);
        if (strlen(value) >= cap) {
            fprintf(stderr, "pyjobd: %s: value too long\n", source);
            return -EINVAL;
        }
        strcpy(field, value);
        return 0;
    }
    case K_UINT:
        rc = parse_uint(value, st->min, st->max, &u);
        if (rc == 0 && strpbrk(value, "KkMmGg"))
            rc = -EINVAL;
        if (rc == 0)
            *(unsigned *)field = (unsigned)u;
        break;
    case K_BYTES:
        rc = parse_uint(value, st->min, st->max, &u);
        if (rc == 0)
            *(size_t *)field = (size_t)u;
        break;
    case K_SECONDS: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(d) || d < 0 || d > 30 * 86400.0) {
            fprintf(stderr,
                    "pyjobd: %s: expected a number of seconds between 0 and 2592000, got "
                    "'%s'\n",
                    source, value);
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
    }
    if (rc != 0) {
        fprintf(stderr, "pyjobd: %s: expected %s between %llu and %llu, got '%s'\n", source,
                st->kind == K_BYTES ? "a size in bytes (suffixes K, M, G allowed)"
                                    : "a whole number",
                st->min, st->max, value);
        return -EINVAL;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pyjobd [options]\n\nRuns Python callables sent over HTTP on a "
               "supervised pool of worker processes.\n\noptions (each also settable by "
               "its environment variable; flags win):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(f, "  --%-20s %-26s %s\n", settings[i].flag, settings[i].env, settings[i].help);
    fprintf(f, "  --help, --version\n");
}

static void default_worker_path(char *out, size_t cap)
{
    char self[4000]; /* leaves room in out for "/pyjobd-worker" */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, cap, "pyjobd-worker");
        return;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    snprintf(out, cap, "%s/pyjobd-worker", self);
}

int config_load(struct config *cfg, int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen, "127.0.0.1");
    cfg->port = 8080;
    cfg->workers = cores > 0 ? (unsigned)cores : 1;
    cfg->http_threads = cfg->workers;
    cfg->max_request_bytes = 64u << 20;
    cfg->log_level = LOG_INFO;
    default_worker_path(cfg->worker_path, sizeof(cfg->worker_path));

    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && *v && apply(cfg, &settings[i], v, settings[i].env) != 0)
            return -EINVAL;
    }

    struct option opts[NSETTINGS + 3];
    for (size_t i = 0; i < NSETTINGS; i++)
        opts[i] = (struct option){settings[i].flag, required_argument, NULL, (int)(i + 256)};
    opts[NSETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    opts[NSETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    opts[NSETTINGS + 2] = (struct option){0, 0, 0, 0};
    optind = 1;
    int c;
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
        if (apply(cfg, st, optarg, source) != 0)
            return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "pyjobd: unexpected argument '%s'; see --help\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}
