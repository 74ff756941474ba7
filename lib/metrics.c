/*
 * metrics.c: owns formatting the Prometheus text exposition format (0.0.4)
 * into a bounded buffer for every daemon's GET /metrics. Each line is
 * formatted whole or not at all: a line that does not fit marks the text
 * truncated and stops all further output. No I/O, no allocation.
 */
#include "config.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
