/*
 * runner.h — runs one job: unpickle the call, make it, pickle the outcome.
 */
#ifndef PYJOBD_WORKER_RUNNER_H
#define PYJOBD_WORKER_RUNNER_H

#include <Python.h>

#include "interp.h"
#include "pyjobd/frame.h"

/*
 * Runs the FRAME_JOB `job`, whose bytes live in `owner` (borrowed; the job only
 * reads it through memoryviews that keep it alive). Starts `reply` (the caller
 * then finishes or resets it) as a FRAME_RESULT or FRAME_ERROR; whatever the
 * call does, including raising SystemExit, ends up in the reply. Flushes
 * sys.stdout and sys.stderr before returning. Returns 0, or -EPROTO when the
 * job's fields are malformed (reply untouched). Needs the GIL.
 *
 * When the call raises MemoryError, py->oom_reserve is unmapped (and set to NULL)
 * before the reply is built; the caller takes it back after sending the reply.
 *
 * When the call forks (os.fork) and the child returns here, the child exits
 * with status 0 instead: only the worker itself may answer on fd 3.
 */
int worker_runner_run(struct worker_py *py, PyObject *owner, const struct frame *job,
                      struct frame_builder *reply);

#endif
