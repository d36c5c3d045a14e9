/*
 * spec_codec.h — a job request (struct job_spec) as bytes and back: what a schedule
 * keeps of the job it submits at each tick (the SQLite store's schedules table). The
 * bytes are a frame of lib/frame.c's format, one field per member.
 */
#ifndef PYJOBD_SPEC_CODEC_H
#define PYJOBD_SPEC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/job.h"

/* The request's members that a submission keeps (payload, options, retry policy,
 * metadata, owner; not idempotency keys nor times). 0 (*out malloc'd) or -ENOMEM. */
int spec_encode(const struct job_spec *spec, uint8_t **out, size_t *len);

/* Back into a zeroed *spec (the caller releases it). 0, -EPROTO (not such bytes),
 * -ENOMEM. */
int spec_decode(const uint8_t *buf, size_t len, struct job_spec *spec);

#endif
