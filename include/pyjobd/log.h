/*
 * log.h — one line per event on stderr: "2026-11-25T20:00:00.123Z level message".
 * The level is process-wide (set once by main before threads start).
 */
#ifndef PYJOBD_LOG_H
#define PYJOBD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);

/* Parses "debug" | "info" | "warn" | "error". Returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
