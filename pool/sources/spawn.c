/*
 * spawn.c — starting the worker program afresh (posix_spawn: this threaded server never
 * forks itself), for a worker when no zygote can fork one, and for the zygote.
 */
#include "sources.h"
#include "pyjobd/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>

int pool__spawn_program(const struct pool *p, char *const argv[], int chan, int out, int err,
                        pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    posix_spawn_file_actions_adddup2(&fa, chan, WORKER_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_FD + 1);
    if (p->cfg.worker_cwd)
        posix_spawn_file_actions_addchdir_np(&fa, p->cfg.worker_cwd);
    /* The server blocks or ignores some signals; the program starts with none of that,
     * in a session of its own (a terminal's Ctrl-C reaches only the server). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    int rc = posix_spawn(pid, p->cfg.worker_path, &fa, &attr, argv, p->worker_envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return -rc;
}
