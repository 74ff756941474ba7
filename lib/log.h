/*
 * log.h: leveled logging to stderr or a log file, reopened on SIGHUP, as
 * text or as one JSON object per line (log_format). Messages follow
 * PostgreSQL's style: short, factual, lowercase.
 * Never pass a secret or a private message's payload to these functions.
 */
#ifndef RTW_LOG_H
#define RTW_LOG_H

#include "rtw.h"

#include <jansson.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the program name shown in every line, the minimum level ("debug",
 * "info", "warn", "error") and the file ("" or "-" for stderr).
 * Returns RTW_ERROR when the level is unknown or the file cannot be opened. */
int log_init(const char *prog, const char *level, const char *path) RTW_WUR;

/* Reopens the log file (after rotation); safe to call from the loop after
 * a SIGHUP was noted, never from a signal handler. */
void log_reopen(void);

/* Most bytes of one line, newline included; the message is cut at
 * LOG_MSG_MAX bytes and each string field at LOG_VALUE_MAX. */
#define LOG_LINE_MAX 4096
#define LOG_MSG_MAX 1024
#define LOG_VALUE_MAX 256

/* "text" (the default: "2026-01-02 03:04:05.678 UTC prog[pid] INFO: msg")
 * or "json" (one object per line: ts (RFC 3339, ms, UTC), level, daemon,
 * pid, msg, then the event's fields). RTW_ERROR for any other name. */
int log_set_format(const char *format) RTW_WUR;

bool log_enabled(enum log_level lvl);
void log_write(enum log_level lvl, const char *fmt, ...) RTW_PRINTF(2, 3);
/* One line with fields: fields (borrowed, an object of strings, numbers,
 * booleans; NULL for none; null values are left out of text lines) become
 * keys of the JSON object, or " key=value" after the message in text. */
void log_event(enum log_level lvl, const char *msg, json_t *fields);

#define log_debug(...)                                                                                                 \
	do {                                                                                                           \
		if (log_enabled(LOG_LVL_DEBUG))                                                                        \
			log_write(LOG_LVL_DEBUG, __VA_ARGS__);                                                         \
	} while (0)
#define log_info(...) log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LVL_ERROR, __VA_ARGS__)

#endif
