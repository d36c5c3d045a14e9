/*
 * blob.h — immutable, reference-counted byte buffers.
 *
 * Payloads (pickled callables, arguments, results) are decoded once from the
 * request and then shared by the job record, snapshots handed to the API and the
 * frame sent to a worker, without copying. A blob's bytes never change after
 * blob_new() returns to its creator's caller; the count is atomic, so refs may be
 * taken and dropped from any thread.
 */
#ifndef PYJOBD_BLOB_H
#define PYJOBD_BLOB_H

#include <stddef.h>
#include <stdint.h>

struct blob;

/* New blob of len bytes (uninitialized; fill through blob_mutable_data() before
 * sharing it). Returns a new reference, or NULL when out of memory. */
struct blob *blob_new(size_t len);

/* New blob holding a copy of data[0..len). New reference, NULL on ENOMEM. */
struct blob *blob_new_copy(const void *data, size_t len);

/* Takes another reference. Accepts NULL (returns NULL). */
struct blob *blob_ref(struct blob *b);

/* Drops a reference; the last one frees the blob. Accepts NULL. */
void blob_unref(struct blob *b);

const uint8_t *blob_data(const struct blob *b);
uint8_t *blob_mutable_data(struct blob *b); /* only while the creator is filling it */
size_t blob_len(const struct blob *b);

/* Shrinks the visible length (e.g. after decoding into an upper-bound buffer). */
void blob_truncate(struct blob *b, size_t len);

#endif
