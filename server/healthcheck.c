/*
 * healthcheck.c — `pyjobd --health-check [URL]`: a tiny HTTP(S) client for container
 * HEALTHCHECKs, so the image needs no curl. GET URL with one 3 s deadline for all of
 * it (connect, TLS handshake, request, answer); exit 0 on a 200.
 *
 * The default URL is http://127.0.0.1:$PYJOBD_PORT/healthz, https:// when
 * PYJOBD_TLS_CERT is set (the server's own environment, which a HEALTHCHECK inherits).
 * Over TLS the server must present the certificate in PYJOBD_TLS_CERT when that is
 * set (see tls_start for why that is enough); without it, the system's trust store and
 * the URL's host decide, as for any HTTPS client.
 */
#include "pyjobd/healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 3000

struct target {
    int tls;
    char host[64]; /* numeric IPv4 */
    unsigned port;
    char path[256];
};

/* One connection: plain when tls is NULL. */
struct conn {
    int fd;
    gnutls_session_t tls;
    long long deadline;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events before the deadline. 1 ready, 0 not. */
static int wait_fd(int fd, short events, long long deadline)
{
    long long left = deadline - now_ms();
    struct pollfd p = {.fd = fd, .events = events};
    return left > 0 && poll(&p, 1, (int)left) == 1;
}

/* After GNUTLS_E_AGAIN: waits for what the session was doing (reading or writing). */
static int wait_tls(const struct conn *c)
{
    return wait_fd(c->fd, gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN, c->deadline);
}

/* http[s]://HOST[:PORT][/PATH], HOST a numeric IPv4 address. 0 parsed, -1 not. */
static int parse_url(const char *url, struct target *t)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        t->tls = 0, t->port = 80, p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        t->tls = 1, t->port = 443, p = url + 8;
    } else {
        return -1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof(t->host))
        return -1;
    memcpy(t->host, p, hl);
    t->host[hl] = 0;
    p += hl;
    if (*p == ':') {
        char *end;
        unsigned long v = p[1] >= '0' && p[1] <= '9' ? strtoul(p + 1, &end, 10) : 0;
        if (v == 0 || v > 65535)
            return -1;
        t->port = (unsigned)v;
        p = end;
    }
    if (!*p)
        p = "/";
    if (*p != '/' || strlen(p) >= sizeof(t->path))
        return -1;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f) /* it goes into a request line */
            return -1;
    strcpy(t->path, p);
    return 0;
}

static int conn_send(struct conn *c, const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w;
        if (c->tls) {
            w = gnutls_record_send(c->tls, buf + off, n - off);
            if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED) {
                if (!wait_tls(c))
                    return -1;
                continue;
            }
        } else {
            w = send(c->fd, buf + off, n - off, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (!wait_fd(c->fd, POLLOUT, c->deadline))
                    return -1;
                continue;
            }
        }
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Reads into buf (NUL-terminated) until its first line is complete, the peer closes,
 * buf is full or the deadline passes. Returns the bytes read. */
static size_t conn_recv_line(struct conn *c, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = 0;
    while (got + 1 < cap && !strchr(buf, '\n')) {
        ssize_t r;
        if (c->tls) {
            r = gnutls_record_recv(c->tls, buf + got, cap - 1 - got);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                if (!wait_tls(c))
                    break;
                continue;
            }
        } else {
            r = recv(c->fd, buf + got, cap - 1 - got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (!wait_fd(c->fd, POLLIN, c->deadline))
                    break;
                continue;
            }
        }
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = 0;
    }
    return got;
}

/* 1 when the certificate the server presented is the first one in the file at path. */
static int peer_is(gnutls_session_t s, const char *path)
{
    unsigned n = 0;
    const gnutls_datum_t *peer = gnutls_certificate_get_peers(s, &n);
    gnutls_datum_t pem = {NULL, 0};
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrts = 0;
    int same = 0;
    if (peer && n > 0 && gnutls_load_file(path, &pem) == 0 &&
        gnutls_x509_crt_list_import2(&crts, &ncrts, &pem, GNUTLS_X509_FMT_PEM, 0) == 0 && ncrts > 0)
        same = gnutls_x509_crt_equals2(crts[0], &peer[0]);
    for (unsigned i = 0; i < ncrts; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    gnutls_free(pem.data);
    return same;
}

/*
 * Sets up TLS on c->fd (the session goes to c->tls, its credentials to *cred: both the
 * caller's to free, also on failure) and completes the handshake. pinned: the server's
 * own certificate file (PYJOBD_TLS_CERT), or NULL. 0 done, -1 failed (reported).
 */
static int tls_start(struct conn *c, const struct target *t, const char *pinned, const char *url,
                     gnutls_certificate_credentials_t *cred)
{
    const char *fail = "TLS setup";
    int rc = gnutls_certificate_allocate_credentials(cred);
    if (rc == 0) {
        /* The pinned file is the only trust anchor: GnuTLS trusts a peer certificate
         * found in its trust list as itself. The file may also hold the server's CA,
         * whose other certificates would pass too: so the peer must also be the file's
         * first certificate (peer_is, after the handshake). */
        rc = pinned ? gnutls_certificate_set_x509_trust_file(*cred, pinned, GNUTLS_X509_FMT_PEM)
                    : gnutls_certificate_set_x509_system_trust(*cred);
        if (rc <= 0) {
            fprintf(stderr, "pyjobd --health-check: no trusted certificate in %s%s%s\n",
                    pinned ? pinned : "the system trust store", rc < 0 ? ": " : "",
                    rc < 0 ? gnutls_strerror(rc) : "");
            return -1;
        }
        rc = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    }
    if (rc == 0)
        rc = gnutls_set_default_priority(c->tls);
    if (rc == 0)
        rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, *cred);
    if (rc == 0) {
        /* Pinned: the server is this container's own, reached over loopback by an
         * address, and it must show exactly the certificate it was configured with
         * (checked after the handshake). No CA vouches for a name then, so there is no
         * host name to check; it could only fail for a certificate issued to the
         * service's public name. Otherwise the URL's host is checked as usual. */
        gnutls_session_set_verify_cert(c->tls, pinned ? NULL : t->host, 0);
        gnutls_transport_set_int(c->tls, c->fd);
        fail = "TLS handshake";
        do
            rc = gnutls_handshake(c->tls);
        while (rc < 0 && !gnutls_error_is_fatal(rc) && wait_tls(c));
        if (rc < 0 && !gnutls_error_is_fatal(rc))
            rc = GNUTLS_E_TIMEDOUT;
    }
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t why = {NULL, 0};
        gnutls_certificate_verification_status_print(gnutls_session_get_verify_cert_status(c->tls),
                                                     GNUTLS_CRT_X509, &why, 0);
        fprintf(stderr,
                "pyjobd --health-check: %s: the server's certificate is not trusted%s%s: %s\n", url,
                pinned ? " by PYJOBD_TLS_CERT=" : "", pinned ? pinned : "",
                why.data ? (const char *)why.data : "verification failed");
        gnutls_free(why.data);
        return -1;
    }
    if (rc < 0) {
        fprintf(stderr, "pyjobd --health-check: %s with %s failed: %s\n", fail, url,
                gnutls_strerror(rc));
        return -1;
    }
    if (pinned && !peer_is(c->tls, pinned)) {
        fprintf(stderr,
                "pyjobd --health-check: %s presented a certificate other than the first one "
                "in PYJOBD_TLS_CERT=%s\n",
                url, pinned);
        return -1;
    }
    return 0;
}

/* Connects c->fd to sa before the deadline. 0 connected, else an errno value
 * (ETIMEDOUT when the deadline passed). */
static int connect_by(struct conn *c, const struct sockaddr_in *sa)
{
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    if (!wait_fd(c->fd, POLLOUT, c->deadline))
        return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof(err);
    return getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno;
}

int healthcheck_run(const char *url)
{
    const char *cert = getenv("PYJOBD_TLS_CERT");
    if (cert && !*cert)
        cert = NULL;
    char def[64];
    if (!url) {
        const char *port = getenv("PYJOBD_PORT");
        snprintf(def, sizeof(def), "%s://127.0.0.1:%s/healthz", cert ? "https" : "http",
                 port && *port ? port : "8080");
        url = def;
    }
    struct target t;
    if (parse_url(url, &t) != 0) {
        fprintf(stderr,
                "pyjobd --health-check: expected http[s]://HOST[:PORT][/PATH] with a numeric "
                "IPv4 host, got '%s'\n",
                url);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t.port)};
    if (inet_pton(AF_INET, t.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "pyjobd --health-check: '%s' is not a numeric IPv4 address\n", t.host);
        return 2;
    }
    struct conn c = {.fd = -1, .tls = NULL, .deadline = now_ms() + DEADLINE_MS};
    gnutls_certificate_credentials_t cred = NULL;
    int ok = 0;
    char req[512], resp[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", t.path, t.host);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c.fd < 0) {
        perror("pyjobd --health-check: socket");
        return 1;
    }
    int err = connect_by(&c, &sa);
    if (err) {
        fprintf(stderr, "pyjobd --health-check: cannot connect to %s: %s\n", url,
                err == ETIMEDOUT ? "no answer in time" : strerror(err));
        goto out;
    }
    if (t.tls && tls_start(&c, &t, cert, url, &cred) != 0)
        goto out;
    if (conn_send(&c, req, (size_t)n) != 0 || conn_recv_line(&c, resp, sizeof(resp)) == 0) {
        if (now_ms() < c.deadline)
            fprintf(stderr, "pyjobd --health-check: %s closed the connection without an answer\n",
                    url);
        else
            fprintf(stderr, "pyjobd --health-check: no answer from %s within %d ms\n", url,
                    DEADLINE_MS);
        goto out;
    }
    ok = strncmp(resp, "HTTP/1.1 200", 12) == 0 || strncmp(resp, "HTTP/1.0 200", 12) == 0;
    if (!ok)
        fprintf(stderr, "pyjobd --health-check: %s answered: %.*s\n", url,
                (int)strcspn(resp, "\r\n"), resp);
out:
    if (c.tls)
        gnutls_deinit(c.tls);
    if (cred)
        gnutls_certificate_free_credentials(cred);
    close(c.fd);
    return ok ? 0 : 1;
}
