/*
 * interrupt.h — graceful ends of a running job: pyjobd.SoftTimeout when its soft
 * timeout (FRAME_TAG_SOFT_TIMEOUT) passes, pyjobd.Cancelled when the server asks
 * (WORKER_SIG_INTERRUPT, see include/pyjobd/worker.h), raised in the job's main
 * thread so that its finally blocks and context managers run. The hard timeout stays
 * the server's SIGKILL.
 */
#ifndef PYJOBD_WORKER_INTERRUPT_H
#define PYJOBD_WORKER_INTERRUPT_H

#include <Python.h>

#include <sys/types.h>

/* Creates the built-in module `pyjobd` (SoftTimeout, Cancelled) in sys.modules, for
 * every process forked from this one. 0, or -1 after a "pyjobd-worker: ..." line on
 * stderr. Needs the GIL, on the main thread. */
int worker_interrupt_module_init(void);

/* Installs the signal handling in this worker process (after a zygote's fork: the
 * signal state is the process's own). 0, or -1 after a line on stderr. */
int worker_interrupt_install(void);

/* A FRAME_JOB was read: the next job's number, a request left from the last job
 * dropped, the handler installed again (a job may have replaced it). Needs the GIL. */
void worker_interrupt_job_begin(void);

/* Around the call of the job itself, in the process that runs it: from arm on, an
 * interrupt raises in the job; soft_timeout_ms > 0 arms a timer for SoftTimeout. */
void worker_interrupt_arm(unsigned soft_timeout_ms);
void worker_interrupt_disarm(void);

/* --isolation job: while pid > 0 an interrupt for this job goes on to that process
 * (the horse running it) instead; 0 stops forwarding. Async-signal-safe. */
void worker_interrupt_forward_to(pid_t pid);

/* Blocks (1) or unblocks (0) WORKER_SIG_INTERRUPT in the calling thread: around a fork. */
void worker_interrupt_block(int block);

#endif
