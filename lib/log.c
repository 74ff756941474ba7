/*
 * log.c: owns the process's log destination, level and format (text for
 * people, or one JSON object per line for collectors). Thread-safe: each
 * line is formatted into a bounded local buffer and written with one
 * write(2), so lines from several threads never interleave and no caller,
 * however long its message or fields, can make a line longer than
 * LOG_LINE_MAX.
 */
#include "config.h"
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "rtw";
static enum log_level log_min = LOG_LVL_INFO;
static bool log_as_json;
static char log_path[512];
static int log_fd = 2;

static int log__open(void)
{
	if (log_path[0] == '\0')
		return 2;
	return open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_init(const char *prog, const char *level, const char *path)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	int found = -1;

	log_prog = prog;
	for (size_t i = 0; i < RTW_ARRAY_LEN(names); i++)
		if (level && strcmp(level, names[i]) == 0)
			found = (int)i;
	if (found < 0)
		return RTW_ERROR;
	log_min = (enum log_level)found;
	if (path && path[0] && strcmp(path, "-") != 0)
		snprintf(log_path, sizeof(log_path), "%s", path);
	else
		log_path[0] = '\0';
	int fd = log__open();
	if (fd < 0)
		return RTW_ERROR;
	log_fd = fd;
	return RTW_OK;
}

int log_set_format(const char *format)
{
	if (format && strcmp(format, "text") == 0)
		log_as_json = false;
	else if (format && strcmp(format, "json") == 0)
		log_as_json = true;
	else
		return RTW_ERROR;
	return RTW_OK;
}

void log_reopen(void)
{
	if (log_path[0] == '\0')
		return;
	int fd = log__open();
	if (fd < 0)
		return;
	int old = log_fd;
	log_fd = fd;
	if (old > 2)
		close(old);
}

bool log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

static void log__emit(char *line, size_t n)
{
	if (n > LOG_LINE_MAX - 1)
		n = LOG_LINE_MAX - 1;
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, n);
	RTW_UNUSED(w);
}

/* A string value cut to max bytes (on a UTF-8 boundary), so a client-chosen
 * value cannot crowd out the rest of the line; bytes that are not UTF-8
 * become '?' (JSON holds text only). */
static json_t *log__cut(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	char copy[LOG_MSG_MAX + 1];
	if (n > LOG_MSG_MAX)
		n = LOG_MSG_MAX;
	for (size_t i = 0; i < n; i++)
		copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	return json_stringn(copy, n);
}

/* Text form of one value into out: bare when it is one plain word, else
 * JSON-encoded (quoted, escaped). Returns its length, 0 when it does not
 * fit. */
static size_t log__text_value(char *out, size_t cap, json_t *v)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t i = 0;
		while (s[i] && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f && !strchr("\"=\\", s[i]))
			i++;
		if (i > 0 && s[i] == '\0' && i < cap) {
			memcpy(out, s, i);
			return i;
		}
	}
	size_t need = json_dumpb(v, out, cap, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
	return need <= cap ? need : 0;
}

static void log__line(enum log_level lvl, const char *msg, json_t *fields)
{
	static const char *tags[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
	static const char *names[] = {"debug", "info", "warn", "error"};
	char line[LOG_LINE_MAX], ts[40];
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	if (!log_as_json) {
		n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld UTC %s[%d] %s: %.*s",
				      (long)(tv.tv_usec / 1000), log_prog, (int)getpid(), tags[lvl], LOG_MSG_MAX, msg);
		const char *key;
		json_t *v;
		json_object_foreach (fields, key, v) {
			char val[LOG_VALUE_MAX * 6 + 8]; /* a cut string, escaped */
			if (json_is_null(v))
				continue;
			json_t *c = json_is_string(v) ? log__cut(json_string_value(v), LOG_VALUE_MAX) : json_incref(v);
			size_t k = c ? log__text_value(val, sizeof(val), c) : 0;
			json_decref(c);
			int m = k ? snprintf(line + n, sizeof(line) - n, " %s=%.*s", key, (int)k, val) : 0;
			if (m < 0 || (size_t)m >= sizeof(line) - n)
				break; /* the line is full: it ends before this field */
			n += (size_t)m;
		}
		log__emit(line, n);
		return;
	}
	/* RFC 3339 with milliseconds, UTC */
	size_t t = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + t, sizeof(ts) - t, ".%03ldZ", (long)(tv.tv_usec / 1000));
	json_t *o = json_object();
	json_object_set_new_nocheck(o, "ts", json_string_nocheck(ts));
	json_object_set_new_nocheck(o, "level", json_string_nocheck(names[lvl]));
	json_object_set_new_nocheck(o, "daemon", json_string(log_prog));
	json_object_set_new_nocheck(o, "pid", json_integer(getpid()));
	json_object_set_new_nocheck(o, "msg", log__cut(msg, LOG_MSG_MAX));
	const char *key;
	json_t *v;
	json_object_foreach (fields, key, v) {
		if (json_object_get(o, key))
			continue; /* the fixed keys keep their meaning */
		if (json_is_string(v))
			json_object_set_new(o, key, log__cut(json_string_value(v), LOG_VALUE_MAX));
		else
			json_object_set(o, key, v);
	}
	n = o ? json_dumpb(o, line, sizeof(line) - 1, JSON_COMPACT | JSON_REAL_PRECISION(9)) : 0;
	if (n == 0 || n > sizeof(line) - 1) {
		/* still too long (many fields of escaped bytes): the fixed keys
		 * only, the message cut so that even six-fold escaping fits */
		json_t *s = json_pack("{s:O, s:O, s:O, s:O, s:o, s:b}", "ts", json_object_get(o, "ts"), "level",
				      json_object_get(o, "level"), "daemon", json_object_get(o, "daemon"), "pid",
				      json_object_get(o, "pid"), "msg", log__cut(msg, LOG_MSG_MAX / 2), "truncated", 1);
		n = s ? json_dumpb(s, line, sizeof(line) - 1, JSON_COMPACT) : 0;
		json_decref(s);
		if (n > sizeof(line) - 1)
			n = 0;
	}
	json_decref(o);
	if (n)
		log__emit(line, n);
}

void log_write(enum log_level lvl, const char *fmt, ...)
{
	char msg[LOG_MSG_MAX + 1];
	va_list ap;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m < 0)
		msg[0] = '\0';
	log__line(lvl, msg, NULL);
}

void log_event(enum log_level lvl, const char *msg, json_t *fields)
{
	if (lvl < log_min)
		return;
	log__line(lvl, msg, fields);
}
