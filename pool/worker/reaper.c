/*
 * reaper.c — the processes a job started, ended with the job: the worker is their
 * subreaper, so a process that leaves its process group or session (setpgid, setsid,
 * a double fork) still becomes the worker's child when its parent dies; after each
 * job the worker kills its children, again and again as their own children are
 * handed to it, until it has none. Runs between jobs, with no Python code running
 * but the threads a job may have left behind.
 */
#include "reaper.h"
#include "pyjobd/worker.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REAP_TIMEOUT_MS 1000

void worker_reaper_enable(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        fprintf(stderr, "pyjobd-worker: prctl(PR_SET_CHILD_SUBREAPER): %s\n", strerror(errno));
        exit(WORKER_EXIT_BOOT_FAILED);
    }
}

/* 1 while the worker has a child (alive or a zombie), 0 when it has none. */
static int has_children(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* Sends SIGKILL to every child of every thread of this process; returns how many. */
static int kill_children(void)
{
    int n = 0;
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks)
        return 0;
    struct dirent *t;
    while ((t = readdir(tasks))) {
        if (t->d_name[0] == '.')
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/task/%.16s/children", t->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        long pid;
        while (fscanf(f, "%ld", &pid) == 1)
            if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
                n++;
        fclose(f);
    }
    closedir(tasks);
    return n;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int worker_reaper_kill_all(void)
{
    if (!has_children())
        return 0;
    long long until = now_ms() + REAP_TIMEOUT_MS;
    while (has_children()) {
        kill_children();
        /* Reap what died; their children become ours and are killed next round. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (!has_children())
            break;
        if (now_ms() >= until)
            return -1;
        struct timespec pause = {.tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
    return 0;
}
