/*
 * fake_pool.h — knobs of the fake pool the api fuzz harnesses link (fake_pool.c).
 */
#ifndef PYJOBD_FUZZ_FAKE_POOL_H
#define PYJOBD_FUZZ_FAKE_POOL_H

#include "pyjobd/pool.h"

struct fake_pool_knobs {
    int jobs_exist;       /* every job id is found (else -ENOENT, or -ESTALE below) */
    int jobs_stale;       /* lookups of absent jobs answer -ESTALE */
    unsigned status;      /* low bits: enum job_status; higher bits: optional parts */
    unsigned error_type;  /* failed jobs: which enum job_error_type */
    unsigned submit_rc;   /* index into the fake's return codes */
    unsigned cancel_rc;   /* same, for cancel (low 3 bits), delete (next 3), resize */
    int watch_calls_back; /* pool_watch calls back at once (else it fails) */
    const char *owner;    /* owner of every job */
};

/* Sets what the fake pool answers until the next call. */
void fake_pool_set(const struct fake_pool_knobs *k);

#endif
