/*
 * http.h — the HTTP front end: libmicrohttpd on an epoll thread pool, feeding
 * complete requests to api_handle() and holding long-poll connections suspended
 * (no thread is held per waiter). It also owns the transport's defences: bearer
 * authentication, body and connection limits, the header deadline that cuts off
 * slow-loris clients, and TLS. It tells the api who asks: the tenant of the token
 * and its role (struct api_request).
 */
#ifndef PYJOBD_HTTP_H
#define PYJOBD_HTTP_H

#include <stddef.h>

struct api;
struct auth;
struct http_server;

struct origin_policy;

/* TLS 1.3 and 1.2 only; AEAD ciphers (AES-GCM, ChaCha20-Poly1305) with ECDHE key
 * exchange (forward secrecy) only; the server's order wins (--tls-priorities). The
 * groups are elliptic curves only: TLS 1.3 would otherwise also offer finite-field DH
 * (ffdhe2048-8192), and a client asking for ffdhe8192 costs the server about 0.7 s of
 * CPU per handshake instead of a millisecond. */
#define HTTP_TLS_PRIORITIES                                                                        \
    "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:"           \
    "+CHACHA20-POLY1305:+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"              \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"                 \
    "%SERVER_PRECEDENCE"

struct http_config {
    const char *listen; /* numeric IPv4 or IPv6 address */
    unsigned port;      /* 0 = ephemeral */
    unsigned threads;
    size_t max_request_bytes;
    size_t max_buffered_bytes; /* all bodies being read together; beyond it 503 */
    size_t min_transfer_rate;  /* bytes/s a body or a response averages after the grace */
    double transfer_grace;     /* seconds */
    unsigned max_connections;  /* beyond it: 503 and close */
    double header_timeout;     /* seconds for a request's headers (and keep-alive idle) */
    const struct auth *auth;   /* NULL or no tokens: no authentication, the user is admin */
    int metrics_open;          /* 1: /metrics needs no token (api_config.public_metrics too) */
    const struct origin_policy *origin; /* Host and Origin checks (borrowed); NULL: none */
    const char *tls_cert_pem;           /* both set: HTTPS (PEM text, borrowed) */
    const char *tls_key_pem;
    const char *tls_priorities; /* GnuTLS priority string; NULL: the built-in strict one */
    struct api *api;            /* borrowed; outlives the server */
};

/* Binds and starts serving. NULL on failure, with a message in err. */
struct http_server *http_start(const struct http_config *cfg, char *err, size_t errlen);

/* The bound port (useful with port 0). */
unsigned http_port(const struct http_server *s);

/* Waits up to drain_ms for open connections to finish, then stops and frees.
 * Accepts NULL. */
void http_stop(struct http_server *s, int drain_ms);

#endif
