/*
 * healthcheck.c — `pyjobd --health-check [URL]`: a tiny HTTP client for container
 * HEALTHCHECKs, so the image needs no curl. GET URL (default
 * http://127.0.0.1:$PYJOBD_PORT/healthz) with a 3 s deadline; exit 0 on a 200.
 */
#include "pyjobd/healthcheck.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 3000

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

int healthcheck_run(const char *url)
{
    char def[64];
    if (!url) {
        const char *port = getenv("PYJOBD_PORT");
        snprintf(def, sizeof(def), "http://127.0.0.1:%s/healthz", port && *port ? port : "8080");
        url = def;
    }
    char host[64];
    unsigned port = 80;
    char path[256] = "/";
    if (strncmp(url, "http://", 7) != 0 ||
        sscanf(url + 7, "%63[^:/]:%u%255s", host, &port, path) < 2 || port > 65535) {
        fprintf(stderr,
                "pyjobd --health-check: expected http://HOST:PORT/PATH with a numeric "
                "IPv4 host, got '%s'\n",
                url);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "pyjobd --health-check: '%s' is not a numeric IPv4 address\n", host);
        return 2;
    }
    long long deadline = now_ms() + DEADLINE_MS;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 1;
    int ok = 0;
    char req[512], resp[256] = "";
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || wait_fd(fd, POLLOUT, deadline)) &&
        send(fd, req, (size_t)n, MSG_NOSIGNAL) == n && wait_fd(fd, POLLIN, deadline)) {
        ssize_t got = recv(fd, resp, sizeof(resp) - 1, 0);
        if (got > 0) {
            resp[got] = 0;
            ok = strncmp(resp, "HTTP/1.1 200", 12) == 0 || strncmp(resp, "HTTP/1.0 200", 12) == 0;
            if (!ok)
                fprintf(stderr, "pyjobd --health-check: %s answered: %.*s\n", url,
                        (int)strcspn(resp, "\r\n"), resp);
        }
    }
    if (!ok && !resp[0])
        fprintf(stderr, "pyjobd --health-check: no answer from %s within %d ms\n", url,
                DEADLINE_MS);
    close(fd);
    return ok ? 0 : 1;
}
