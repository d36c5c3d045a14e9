/*
 * channel.h — blocking frame I/O on the worker's socket (fd 3), with the GIL
 * released while the worker waits so that threads started by jobs keep running.
 */
#ifndef PYJOBD_WORKER_CHANNEL_H
#define PYJOBD_WORKER_CHANNEL_H

#include <Python.h>

#include "pyjobd/frame.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Reads the next whole frame. Returns 1 with *owner (a new reference to a bytes
 * object holding the frame) and *out (pointing into *owner, valid while *owner
 * lives); 0 on EOF before a frame; -EMSGSIZE when the frame declares a payload
 * larger than max_payload (nothing of it is read; out->len and out->type are what its
 * header declared); -EPROTO when the peer closes mid-frame; -ENOMEM; or
 * another -errno from read(). Needs the GIL.
 */
int worker_channel_read(int fd, size_t max_payload, PyObject **owner, struct frame *out);

/* The same, the frame in malloc'd memory (*buf, the caller frees it) instead of a
 * bytes object. Needs the GIL (released while it waits). */
int worker_channel_read_raw(int fd, size_t max_payload, uint8_t **buf, struct frame *out);

/* Writes all of buf. Returns 0, -EPIPE when the peer is gone, or another -errno.
 * Needs the GIL. */
int worker_channel_write(int fd, const uint8_t *buf, size_t len);

#endif
