/*
 * horse.h — a job in a process of its own (--isolation job): the worker forks a
 * "horse" for the job, the horse runs it and hands the reply back, and everything
 * the job left (threads, patched modules, children) dies with the horse.
 */
#ifndef PYJOBD_WORKER_HORSE_H
#define PYJOBD_WORKER_HORSE_H

#include "interp.h"
#include "pyjobd/frame.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Runs `job` (read into `owner`, not yet unpickled: the worker itself never runs a
 * job's code) in a forked child and returns the length of the reply frame it sent
 * (one whole FRAME_RESULT or FRAME_ERROR, in *reply, malloc'd) once the child and every
 * process it started are dead; a reply declared longer than py->max_result_bytes +
 * WORKER_REPLY_SLACK is not read, and the worker's own result_too_large reply is
 * returned instead (the child killed all the same). When the child gives no reply it does not
 * return: the worker ends as the child did (the same exit code or signal), or with
 * WORKER_EXIT_PROTOCOL and a line on stderr when the child replied with something
 * else or closed its pipe and went on running. uid (not 0): the horse becomes it
 * before it unpickles anything (--uids; the worker itself stays root). Needs the GIL.
 */
size_t worker_horse_run(struct worker_py *py, PyObject *owner, const struct frame *job, uid_t uid,
                        uint8_t **reply);

#endif
