/*
 * log.c: owns the process's log destination and level. Thread-safe: each
 * line is formatted into a local buffer and written with one write(2).
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

void log_write(enum log_level lvl, const char *fmt, ...)
{
	static const char *tags[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
	char line[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	size_t n;

	if (lvl < log_min)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld UTC %s[%d] %s: ", (long)(tv.tv_usec / 1000), log_prog,
			      (int)getpid(), tags[lvl]);
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, n);
	RTW_UNUSED(w);
}
