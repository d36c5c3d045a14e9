/*
 * wait_status.h — how a process ended, in words (lib/wait_status.c).
 */
#ifndef PYJOBD_WAIT_STATUS_H
#define PYJOBD_WAIT_STATUS_H

#include <stddef.h>

/* "exited with code N", "was killed by signal SIGKILL (9)[, core dumped]" or "ended
 * with wait status 0x..", for a status from waitpid(). */
void wait_status_describe(int status, char *buf, size_t len);

#endif
