/*
 * healthcheck.h — `pyjobd --health-check [URL]` for container HEALTHCHECKs.
 */
#ifndef PYJOBD_HEALTHCHECK_H
#define PYJOBD_HEALTHCHECK_H

/*
 * GETs url (http:// or https://, a numeric IPv4 host; NULL: 127.0.0.1:$PYJOBD_PORT/healthz,
 * over https when PYJOBD_TLS_CERT is set, else http) within 3 s. Over TLS with
 * PYJOBD_TLS_CERT set, the server must present the first certificate of that file (the
 * server's own; no host name check); without it, the system trust store and the URL's
 * host verify the server. Returns the exit status: 0 healthy, 1 unhealthy, 2 bad usage.
 */
int healthcheck_run(const char *url);

#endif
