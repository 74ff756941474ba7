/*
 * metrics.h: the one Prometheus text writer of the daemons' GET /metrics
 * (rtw-fcgi, rtw-sse, rtw-webhookd): counters, gauges and histograms with
 * fixed buckets, written into a buffer the caller gives, of fixed size.
 * A sample that does not fit is never written in part: the writer stops,
 * remembers the truncation, and rtw_metrics_end() reports it. Pure code,
 * no allocation; the caller owns the counters and the buffer. The one
 * exception is rtw_metrics_process(), which reads /proc/self.
 *
 * Names: every metric is rtw_<daemon>_<what> (daemon: fcgi, sse,
 * webhookd), including the families every daemon has: _pg_up,
 * _build_info and the _process_* ones (doc/operations.md, "Metrics").
 *
 * Use:
 *	char buf[8192];
 *	struct rtw_metrics w;
 *	rtw_metrics_init(&w, buf, sizeof(buf));
 *	rtw_metrics_counter(&w, "rtw_x_total", "Things done.", n);
 *	rtw_metrics_family(&w, "rtw_y", RTW_METRIC_GAUGE, "Per route.");
 *	rtw_metrics_u64(&w, "rtw_y", "route=\"a\"", 3);
 *	if (rtw_metrics_end(&w) != RTW_OK) ... answer 500, log "metrics truncated"
 *	else send w.buf, w.len bytes
 */
#ifndef RTW_METRICS_H
#define RTW_METRICS_H

#include "rtw.h"

/* Most buckets a histogram may have (+Inf not counted). */
#define RTW_HIST_MAX_BUCKETS 16

enum rtw_metric_type { RTW_METRIC_COUNTER, RTW_METRIC_GAUGE, RTW_METRIC_HISTOGRAM };

struct rtw_metrics {
	char *buf;	/* borrowed; NUL-terminated after every call */
	size_t cap;	/* bytes of buf, NUL included */
	size_t len;	/* bytes written, all of them whole lines */
	bool truncated; /* a line did not fit: nothing more is written */
};

/* Fixed upper bounds of a histogram's buckets, ascending, in the unit the
 * samples are observed in (seconds); +Inf is implicit. */
struct rtw_hist_bounds {
	size_t n; /* at most RTW_HIST_MAX_BUCKETS */
	const double *le;
};

/* Starts writing into buf (cap bytes, at least 1; borrowed until done). */
void rtw_metrics_init(struct rtw_metrics *w, char *buf, size_t cap);

/* "# HELP name help" and "# TYPE name type" lines; help may be NULL. */
void rtw_metrics_family(struct rtw_metrics *w, const char *name, enum rtw_metric_type type, const char *help);

/* One sample line, "name{labels} value". labels is NULL or the inside of
 * the braces, already escaped (route="a",status="200"). */
void rtw_metrics_u64(struct rtw_metrics *w, const char *name, const char *labels, uint64_t v);
void rtw_metrics_f64(struct rtw_metrics *w, const char *name, const char *labels, double v);

/* A family of one unlabelled sample: the HELP/TYPE lines and the value. */
void rtw_metrics_counter(struct rtw_metrics *w, const char *name, const char *help, uint64_t v);
void rtw_metrics_gauge(struct rtw_metrics *w, const char *name, const char *help, double v);

/* The samples of one histogram (the family lines are written apart, once,
 * with rtw_metrics_family): name_bucket{labels,le=".."} cumulated from
 * counts, which holds b->n + 1 per-bucket counts (the last one: above the
 * largest bound), then name_sum and name_count. */
void rtw_metrics_histogram(struct rtw_metrics *w, const char *name, const char *labels, const struct rtw_hist_bounds *b,
			   const uint64_t *counts, double sum);

/* The bucket a sample v falls in: the first i with v <= le[i], or b->n
 * (above every bound). For callers that count with their own integers or
 * atomics. */
size_t rtw_hist_bucket(const struct rtw_hist_bounds *b, double v);

/* The families every daemon shows, named rtw_<prefix>_... (prefix "fcgi",
 * "sse", "webhookd"): _build_info{version="..."} 1, _pg_up (pg_up: 1 when
 * the daemon can reach PostgreSQL now), and the process's
 * _process_cpu_seconds_total, _process_resident_memory_bytes and
 * _process_open_fds, read from /proc/self (a value that cannot be read is
 * left out, never reported as 0). Cheap: a few small reads, no locks. */
void rtw_metrics_process(struct rtw_metrics *w, const char *prefix, bool pg_up);

/* RTW_OK when every line fitted; RTW_ERROR when the text was truncated
 * (w->len then covers the whole lines written before the first that did
 * not fit: the caller must not serve it as complete). */
int rtw_metrics_end(const struct rtw_metrics *w) RTW_WUR;

#endif
