/*
 * options.h — pyjobd-worker's command line (documented in
 * include/pyjobd/worker.h).
 */
#ifndef PYJOBD_WORKER_OPTIONS_H
#define PYJOBD_WORKER_OPTIONS_H

#include <stddef.h>
#include <sys/resource.h>

struct worker_options {
    const char *init;        /* --init module:function, NULL when not given */
    rlim_t memory_limit;     /* --memory-limit BYTES, 0 when not given */
    const char *limit_arg;   /* the BYTES text as given, for messages */
    const char *user;        /* --user NAME|UID, NULL when not given */
    rlim_t max_procs;        /* --max-procs N: RLIMIT_NPROC, 0 when not given */
    int zygote;              /* --zygote: fork workers on request instead of running jobs */
    int huge_arenas;         /* --huge-arenas: pymalloc on huge pages (arenas.c) */
    size_t max_result_bytes; /* --max-result-bytes BYTES: larger results are refused, 0: any */
    /* --uids FIRST-LAST: jobs run as the uid their frame names, within the range; the
     * worker stays root until then. 0-0 when not given. */
    unsigned long uid_first, uid_last;
};

/*
 * Parses argv (argv[0] excluded). On any error (unknown option, missing or
 * invalid value, option given twice, positional argument) prints one
 * "pyjobd-worker: ..." line to stderr and exits with WORKER_EXIT_BOOT_FAILED.
 */
void worker_options_parse(int argc, char **argv, struct worker_options *o);

#endif
