/*
 * healthcheck.h — `pyjobd --health-check [URL]` for container HEALTHCHECKs.
 */
#ifndef PYJOBD_HEALTHCHECK_H
#define PYJOBD_HEALTHCHECK_H

/* GETs url (NULL: http://127.0.0.1:$PYJOBD_PORT/healthz). Returns the exit status:
 * 0 healthy, 1 unhealthy, 2 bad usage. */
int healthcheck_run(const char *url);

#endif
