/*
 * One line per event, timestamp and level first, to stderr and optionally to a log file.
 * Each line is formatted in full and written with one write(2) per destination, so lines from
 * different threads never interleave. Callers never pass secrets: configs, connection strings and
 * tokens are not logged anywhere in this code base; log enterprise numbers and counts instead.
 */
#pragma once

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Opens `path` for appending (creating its directory) when non-NULL and non-empty.
 * Returns 0 or a negative errno. Call once at start-up, before threads start. */
int log_init(enum log_level min_level, const char *path);
void log_deinit(void);
/* Parses "debug", "info", "warn" or "error"; -1 for anything else. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
