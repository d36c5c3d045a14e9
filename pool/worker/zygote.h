/*
 * zygote.h — `pyjobd-worker --zygote`: the never-used template that workers are forked
 * from (the protocol is in include/pyjobd/worker.h).
 */
#ifndef PYJOBD_WORKER_ZYGOTE_H
#define PYJOBD_WORKER_ZYGOTE_H

#include "interp.h"

/*
 * Serves fork requests on fd 3 until EOF, then exits: in the zygote it never returns.
 * It returns in each forked worker, with that worker's channel on fd 3, its pipes on
 * 1 and 2, no other fd above 3, its own session, PR_SET_PDEATHSIG armed and the
 * subreaper bit set, and "--zygote" in argv (what ps shows) turned into "--forked":
 * from there on the worker is one that has just started Python (--init is not run
 * here: it runs in each worker). Needs the GIL; Python and cloudpickle are loaded.
 */
void worker_zygote_serve(struct worker_py *py, int argc, char **argv);

#endif
