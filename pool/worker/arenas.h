/*
 * arenas.h — pymalloc's arenas in 2 MiB chunks on transparent huge pages, so that
 * forking a worker (a horse per job) copies few page-table entries; see arenas.c.
 */
#ifndef PYJOBD_WORKER_ARENAS_H
#define PYJOBD_WORKER_ARENAS_H

/* Before Python is initialised: pymalloc takes its arenas from here. */
void worker_arenas_install(void);

/* Makes the chunks huge pages of this process's own (a fork's child shares, and
 * splits, its parent's); best effort. Before a worker forks its first horse. */
void worker_arenas_collapse(void);

#endif
