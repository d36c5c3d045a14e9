/*
 * privileges.h — the server giving up root once it no longer needs it
 * (server/privileges.c).
 */
#ifndef PYJOBD_PRIVILEGES_H
#define PYJOBD_PRIVILEGES_H

#include <stddef.h>

/*
 * Becomes `user` (a name, or a numeric uid of the user database) for good: its
 * supplementary groups, gid and uid (real, effective, saved), keeping one capability,
 * CAP_KILL, so that it can still signal workers running under other uids (nothing
 * else: no file access beyond the user's, no setuid, no ptrace); sets
 * PR_SET_NO_NEW_PRIVS and makes the process non-dumpable again. Must be called while
 * the process has a single thread (capabilities are per thread: threads started
 * afterwards inherit CAP_KILL). Checks that root cannot be taken back. 0, or -1 with
 * a message in err.
 */
int privileges_drop(const char *user, char *err, size_t errlen);

#endif
