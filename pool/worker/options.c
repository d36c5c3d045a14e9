/*
 * options.c — pyjobd-worker's command line: --init module:function,
 * --memory-limit BYTES, --max-procs N, --max-result-bytes BYTES, --uids FIRST-LAST and
 * --user NAME|UID, each as "--opt VALUE" or "--opt=VALUE", at most once, and the flag
 * --zygote.
 * Anything else is a boot failure: the supervisor builds this argv itself, so
 * an unknown option means the server and the worker do not match.
 */
#include "options.h"
#include "pyjobd/uid_range.h"
#include "pyjobd/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void options_fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "pyjobd-worker: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(WORKER_EXIT_BOOT_FAILED);
}

/* Checks the form module:function (both parts non-empty, one colon, no empty
 * dotted component); Python checks the rest when it imports. */
static void options_check_init(const char *spec)
{
    const char *colon = strchr(spec, ':');
    int ok = colon && colon != spec && colon[1] != '\0' && !strchr(colon + 1, ':') &&
             spec[0] != '.' && colon[-1] != '.' && colon[1] != '.' &&
             spec[strlen(spec) - 1] != '.' && !strstr(spec, "..");
    if (!ok)
        options_fail("--init: invalid value '%s': expected the form module:function "
                     "(e.g. mypkg.setup:init_worker)",
                     spec);
}

/* A positive decimal number, digits only (opt names the option, what its unit). */
static rlim_t options_parse_count(const char *opt, const char *what, const char *text)
{
    char msg[200];
    const char *p = text;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == text || *p != '\0') {
        snprintf(msg, sizeof(msg),
                 "%s: invalid value '%%s': expected a positive number of %s (decimal digits "
                 "only)",
                 opt, what);
        options_fail(msg, text);
    }
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno == ERANGE || (rlim_t)v != v || (rlim_t)v == RLIM_INFINITY) {
        snprintf(msg, sizeof(msg), "%s: invalid value '%%s': too large", opt);
        options_fail(msg, text);
    }
    if (v == 0) {
        snprintf(msg, sizeof(msg), "%s: invalid value '%%s': must be greater than 0", opt);
        options_fail(msg, text);
    }
    return (rlim_t)v;
}

/*
 * If arg is the option `name`, returns its value (from "--name=VALUE" or from
 * the next argument, advancing *i); NULL when arg is another option.
 */
static const char *options_value(const char *name, int argc, char **argv, int *i)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        options_fail("%s needs a value", name);
    return argv[++*i];
}

void worker_options_parse(int argc, char **argv, struct worker_options *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = options_value("--init", argc, argv, &i)) != NULL) {
            if (o->init)
                options_fail("%s given more than once", "--init");
            options_check_init(v);
            o->init = v;
        } else if ((v = options_value("--memory-limit", argc, argv, &i)) != NULL) {
            if (o->limit_arg)
                options_fail("%s given more than once", "--memory-limit");
            o->memory_limit = options_parse_count("--memory-limit", "bytes", v);
            o->limit_arg = v;
        } else if ((v = options_value("--max-procs", argc, argv, &i)) != NULL) {
            if (o->max_procs)
                options_fail("%s given more than once", "--max-procs");
            o->max_procs = options_parse_count("--max-procs", "processes", v);
        } else if ((v = options_value("--max-result-bytes", argc, argv, &i)) != NULL) {
            if (o->max_result_bytes)
                options_fail("%s given more than once", "--max-result-bytes");
            o->max_result_bytes = (size_t)options_parse_count("--max-result-bytes", "bytes", v);
        } else if ((v = options_value("--user", argc, argv, &i)) != NULL) {
            if (o->user)
                options_fail("%s given more than once", "--user");
            if (v[0] == '\0')
                options_fail("%s: invalid value '': expected a user name or a numeric uid",
                             "--user");
            o->user = v;
        } else if ((v = options_value("--uids", argc, argv, &i)) != NULL) {
            if (o->uid_first)
                options_fail("%s given more than once", "--uids");
            if (uid_range_parse(v, &o->uid_first, &o->uid_last) != 0)
                options_fail("--uids: invalid value '%s': expected FIRST-LAST, two uids with "
                             "0 < FIRST <= LAST < 2^31",
                             v);
        } else if (strcmp(argv[i], "--huge-arenas") == 0) {
            o->huge_arenas = 1; /* (given twice: no harm) */
        } else if (strcmp(argv[i], "--zygote") == 0) {
            if (o->zygote)
                options_fail("%s given more than once", "--zygote");
            o->zygote = 1;
        } else if (argv[i][0] == '-') {
            options_fail(
                "unknown option '%s' (known: --init module:function, "
                "--huge-arenas, --memory-limit BYTES, --max-procs N, --max-result-bytes BYTES, "
                "--user NAME|UID, --uids FIRST-LAST, --zygote)",
                argv[i]);
        } else {
            options_fail("unexpected argument '%s' (pyjobd-worker takes only options)", argv[i]);
        }
    }
}
