/*
 * privileges.c — the server giving up root (include/pyjobd/privileges.h). With
 * --server-user, a root server starts the worker zygote (which keeps root, to give each
 * tenant's workers their uid) and then becomes an ordinary user that can only still
 * signal its workers.
 */
#include "pyjobd/privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct passwd *find_user(const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw && *user && user[strspn(user, "0123456789")] == '\0')
        pw = getpwuid((uid_t)strtoul(user, NULL, 10));
    return pw;
}

/* Permitted and effective: CAP_KILL alone (or nothing with keep 0). */
static int caps_set(int keep)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (keep)
        d[0].effective = d[0].permitted = 1u << CAP_KILL;
    return (int)syscall(SYS_capset, &h, d);
}

/* 1 when the effective and permitted sets are CAP_KILL alone. */
static int caps_are_kill_only(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0)
        return 0;
    return d[0].effective == 1u << CAP_KILL && d[0].permitted == 1u << CAP_KILL &&
           d[0].inheritable == 0 && d[1].effective == 0 && d[1].permitted == 0;
}

int privileges_drop(const char *user, char *err, size_t errlen)
{
    struct passwd *pw = find_user(user);
    if (!pw) {
        snprintf(err, errlen, "--server-user %s: no such user (neither a name nor a uid)", user);
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (uid == 0) {
        snprintf(err, errlen, "--server-user %s: that is root; name an unprivileged user", user);
        return -1;
    }
    const char *step = NULL;
    if (initgroups(pw->pw_name, gid) != 0)
        step = "initgroups";
    else if (setresgid(gid, gid, gid) != 0)
        step = "setresgid";
    else if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        step = "prctl(PR_SET_KEEPCAPS)";
    else if (setresuid(uid, uid, uid) != 0)
        step = "setresuid";
    else if (caps_set(1) != 0)
        step = "capset(CAP_KILL)";
    else if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
        step = "prctl(PR_SET_KEEPCAPS, 0)";
    else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        step = "prctl(PR_SET_NO_NEW_PRIVS)";
    if (step) {
        snprintf(err, errlen, "--server-user %s: %s: %s", user, step, strerror(errno));
        return -1;
    }
    /* A uid change makes the process dumpable again when fs.suid_dumpable says so. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || !caps_are_kill_only()) {
        snprintf(err, errlen,
                 "--server-user %s: root (or a capability beyond CAP_KILL) could be "
                 "taken back; refusing to run",
                 user);
        return -1;
    }
    return 0;
}
