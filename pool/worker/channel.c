/*
 * channel.c — blocking frame I/O on the worker's socket.
 *
 * A job frame lands in a Python bytes object so that jobs can unpickle from
 * memoryviews of it without a copy, and nothing can outlive the buffer; a horse's
 * reply lands in plain memory (see horse.c: the worker writes no Python object while
 * its horse lives). The GIL
 * is released around every read() and send(): a job may leave threads behind.
 *
 * Between jobs there is nothing to interrupt, so an exception raised by a signal
 * handler while the worker waits (KeyboardInterrupt from SIGINT, typically one
 * meant for a job that already finished) is dropped instead of surfacing in the
 * next job.
 */
#include <Python.h>

#include "channel.h"
#include "pyexc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One read() or send() is capped so that the byte count fits an ssize_t easily. */
#define CHANNEL_MAX_IO ((size_t)1 << 30)

static void channel_drop_signals(void)
{
    if (PyErr_CheckSignals() == 0)
        return;
    PyObject *exc = worker_exc_take();
    if (exc && !PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt)) {
        PyObject *line = worker_exc_line(exc);
        const char *text = line ? PyUnicode_AsUTF8(line) : NULL;
        fprintf(stderr, "pyjobd-worker: a signal handler raised between jobs (ignored): %s\n",
                text ? text : "unknown error");
        Py_XDECREF(line);
    }
    Py_XDECREF(exc);
    PyErr_Clear();
}

/* Reads exactly len bytes. Returns len, fewer on EOF, or -errno. */
static long channel_read_full(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done < CHANNEL_MAX_IO ? len - done : CHANNEL_MAX_IO;
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS;
        n = read(fd, buf + done, want);
        err = errno;
        Py_END_ALLOW_THREADS;
        if (n > 0) {
            done += (size_t)n;
        } else if (n == 0) {
            break;
        } else if (err == EINTR) {
            channel_drop_signals();
        } else {
            return -err;
        }
    }
    return (long)done;
}

static uint32_t channel_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads a frame into a bytes object (*owner, when owner is not NULL) or into
 * malloc'd memory (*raw). */
static int channel_read(int fd, size_t max_payload, PyObject **owner, uint8_t **raw,
                        struct frame *out)
{
    uint8_t header[FRAME_HEADER_SIZE];
    long n = channel_read_full(fd, header, sizeof(header));
    if (n < 0)
        return (int)n;
    if (n == 0)
        return 0;
    if ((size_t)n < sizeof(header))
        return -EPROTO;
    size_t payload = channel_le32(header);
    if (payload > max_payload) {
        out->len = (uint32_t)payload; /* what was declared, for the caller's message */
        out->type = channel_le32(header + 4);
        out->payload = NULL;
        return -EMSGSIZE;
    }

    PyObject *bytes = NULL;
    uint8_t *buf;
    if (owner) {
        bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(header) + payload));
        if (!bytes) {
            PyErr_Clear();
            return -ENOMEM;
        }
        buf = (uint8_t *)PyBytes_AS_STRING(bytes);
    } else if (!(buf = malloc(sizeof(header) + payload))) {
        return -ENOMEM;
    }
    memcpy(buf, header, sizeof(header));
    n = channel_read_full(fd, buf + sizeof(header), payload);
    int rc = n < 0 ? (int)n : (size_t)n < payload ? -EPROTO : 0;
    if (rc == 0 && frame_decode(buf, sizeof(header) + payload, max_payload, out) < 0)
        rc = -EPROTO;
    if (rc != 0) {
        if (owner)
            Py_DECREF(bytes);
        else
            free(buf);
        return rc;
    }
    /* A signal that came while the worker was idle is not the next job's. */
    channel_drop_signals();
    if (owner)
        *owner = bytes;
    else
        *raw = buf;
    return 1;
}

int worker_channel_read(int fd, size_t max_payload, PyObject **owner, struct frame *out)
{
    return channel_read(fd, max_payload, owner, NULL, out);
}

int worker_channel_read_raw(int fd, size_t max_payload, uint8_t **buf, struct frame *out)
{
    return channel_read(fd, max_payload, NULL, buf, out);
}

int worker_channel_write(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done < CHANNEL_MAX_IO ? len - done : CHANNEL_MAX_IO;
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS;
        /* MSG_NOSIGNAL: a job may have restored SIGPIPE's default action. */
        n = send(fd, buf + done, want, MSG_NOSIGNAL);
        err = errno;
        Py_END_ALLOW_THREADS;
        if (n >= 0)
            done += (size_t)n;
        else if (err == EINTR)
            channel_drop_signals();
        else
            return -err;
    }
    return 0;
}
