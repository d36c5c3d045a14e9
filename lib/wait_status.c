/*
 * wait_status.c — how a process ended, in words (include/pyjobd/wait_status.h).
 */
#include "pyjobd/wait_status.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

void wait_status_describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        snprintf(buf, len, "was killed by signal SIG%s (%d)%s", name ? name : "?", WTERMSIG(status),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended with wait status 0x%x", status);
    }
}
