/*
 * metrics.c: owns formatting the Prometheus text exposition format (0.0.4)
 * into a bounded buffer for every daemon's GET /metrics. Each line is
 * formatted whole or not at all: a line that does not fit marks the text
 * truncated and stops all further output. No allocation; no I/O but
 * rtw_metrics_process()'s reads of /proc/self.
 */
#include "config.h"
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void rtw_metrics_init(struct rtw_metrics *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->truncated = cap == 0;
	if (cap)
		buf[0] = '\0';
}

/* Appends one formatted line, or nothing when it would not fit. */
RTW_PRINTF(2, 3) static void metrics__line(struct rtw_metrics *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->truncated)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= w->cap - w->len) {
		w->truncated = true;
		w->buf[w->len] = '\0'; /* drop the partial line */
		return;
	}
	w->len += (size_t)n;
}

void rtw_metrics_family(struct rtw_metrics *w, const char *name, enum rtw_metric_type type, const char *help)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	if (help)
		metrics__line(w, "# HELP %s %s\n", name, help);
	metrics__line(w, "# TYPE %s %s\n", name, types[type]);
}

void rtw_metrics_u64(struct rtw_metrics *w, const char *name, const char *labels, uint64_t v)
{
	if (labels)
		metrics__line(w, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	else
		metrics__line(w, "%s %llu\n", name, (unsigned long long)v);
}

void rtw_metrics_f64(struct rtw_metrics *w, const char *name, const char *labels, double v)
{
	if (labels)
		metrics__line(w, "%s{%s} %.6f\n", name, labels, v);
	else
		metrics__line(w, "%s %.6f\n", name, v);
}

void rtw_metrics_counter(struct rtw_metrics *w, const char *name, const char *help, uint64_t v)
{
	rtw_metrics_family(w, name, RTW_METRIC_COUNTER, help);
	rtw_metrics_u64(w, name, NULL, v);
}

void rtw_metrics_gauge(struct rtw_metrics *w, const char *name, const char *help, double v)
{
	rtw_metrics_family(w, name, RTW_METRIC_GAUGE, help);
	if (v == (double)(int64_t)v)
		metrics__line(w, "%s %lld\n", name, (long long)v); /* counts print as integers */
	else
		rtw_metrics_f64(w, name, NULL, v);
}

void rtw_metrics_histogram(struct rtw_metrics *w, const char *name, const char *labels, const struct rtw_hist_bounds *b,
			   const uint64_t *counts, double sum)
{
	const char *sep = labels ? "," : "";
	unsigned long long cum = 0;

	if (!labels)
		labels = "";
	for (size_t i = 0; i <= b->n && i <= RTW_HIST_MAX_BUCKETS; i++) {
		cum += counts[i];
		if (i < b->n)
			metrics__line(w, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, b->le[i], cum);
		else
			metrics__line(w, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
	}
	if (labels[0]) {
		metrics__line(w, "%s_sum{%s} %.6f\n", name, labels, sum);
		metrics__line(w, "%s_count{%s} %llu\n", name, labels, cum);
	} else {
		metrics__line(w, "%s_sum %.6f\n", name, sum);
		metrics__line(w, "%s_count %llu\n", name, cum);
	}
}

size_t rtw_hist_bucket(const struct rtw_hist_bounds *b, double v)
{
	for (size_t i = 0; i < b->n; i++)
		if (v <= b->le[i])
			return i;
	return b->n;
}

int rtw_metrics_end(const struct rtw_metrics *w)
{
	return w->truncated ? RTW_ERROR : RTW_OK;
}

/* ---- the families every daemon has ---- */

/* utime + stime of this process, seconds; -1 when unreadable. Fields 14
 * and 15 of /proc/self/stat, counted after the command name, which may
 * hold spaces and parentheses: so start after its last ')'. */
static double metrics__cpu_seconds(void)
{
	char buf[1024];
	unsigned long long ut, st;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n;
	char *p;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
	if (!p || hz <= 0 || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)hz;
}

/* Resident set size in bytes (second field of /proc/self/statm, pages); -1 when unreadable. */
static double metrics__rss_bytes(void)
{
	unsigned long long size, res;
	FILE *f = fopen("/proc/self/statm", "re");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%llu %llu", &size, &res);
	fclose(f);
	if (n != 2)
		return -1;
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

/* Open file descriptors (entries of /proc/self/fd, less the one reading it); -1 when unreadable. */
static double metrics__open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return (double)(n - 1);
}

void rtw_metrics_process(struct rtw_metrics *w, const char *prefix, bool pg_up)
{
	char name[96], labels[64];
	double v;

	snprintf(name, sizeof(name), "rtw_%s_build_info", prefix);
	snprintf(labels, sizeof(labels), "version=\"%s\"", PACKAGE_VERSION);
	rtw_metrics_family(w, name, RTW_METRIC_GAUGE, "Always 1; the version of this daemon in its label.");
	rtw_metrics_u64(w, name, labels, 1);
	snprintf(name, sizeof(name), "rtw_%s_pg_up", prefix);
	rtw_metrics_gauge(w, name, "1 when this daemon can reach PostgreSQL now.", pg_up ? 1 : 0);
	if ((v = metrics__cpu_seconds()) >= 0) {
		snprintf(name, sizeof(name), "rtw_%s_process_cpu_seconds_total", prefix);
		rtw_metrics_family(w, name, RTW_METRIC_COUNTER, "User and system CPU time of this process.");
		rtw_metrics_f64(w, name, NULL, v);
	}
	if ((v = metrics__rss_bytes()) >= 0) {
		snprintf(name, sizeof(name), "rtw_%s_process_resident_memory_bytes", prefix);
		rtw_metrics_gauge(w, name, "Resident memory of this process.", v);
	}
	if ((v = metrics__open_fds()) >= 0) {
		snprintf(name, sizeof(name), "rtw_%s_process_open_fds", prefix);
		rtw_metrics_gauge(w, name, "Open file descriptors of this process.", v);
	}
}
