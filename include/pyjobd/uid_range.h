/*
 * uid_range.h — a range of uids, "FIRST-LAST" (lib/uid_range.c): --worker-uids of the
 * server and --uids of the worker it hands the range to.
 */
#ifndef PYJOBD_UID_RANGE_H
#define PYJOBD_UID_RANGE_H

/* Parses "FIRST-LAST", decimal digits only, 0 < FIRST <= LAST < 2^31 - 1: 0 and both
 * set, or -1 (both 0). */
int uid_range_parse(const char *text, unsigned long *first, unsigned long *last);

#endif
