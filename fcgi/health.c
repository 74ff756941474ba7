/*
 * health.c: owns rtw-fcgi's small HTTP listener for GET /healthz and
 * GET /metrics (fcgi.health_listen), its own PostgreSQL connection for
 * the health check, and the Prometheus text of the metrics the workers
 * count (struct fcg_metrics, atomics). The request, the answers and the
 * text format are lib/probe.c's and lib/metrics.c's, as on every daemon.
 * Runs on one thread of its own with blocking I/O: accept, read the
 * request head (http-parser, at most 4 KiB, 2 s timeout), answer, close.
 * Never touches a worker's state. Tier 0 of fcgi/: calls nothing else in
 * fcgi/; http.c counts through fcg_metrics_request(), main.c starts it.
 */
#include "config.h"
#include "fcgi.h"
#include "net.h"
#include "metrics.h"
#include "probe.h"
#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define FCG_HEALTH_HEAD_MAX 4096
#define FCG_HEALTH_IO_TIMEOUT_S 2
#define FCG_HEALTH_CACHE_MS 1000

struct fcg_health {
	const struct rtw_cfg *cfg;
	struct fcg_metrics *m;
	int fd;
	pthread_t tid;
	atomic_bool stop;
	/* health-check connection and its cached verdict (health thread only) */
	PGconn *conn;
	uint64_t checked_ms;
	bool checked, ok;
};

/* ---- metrics ---- */

#define FCG_METRICS_MAX (64 * 1024) /* the whole text; ~12 KiB with every status of every route */

static const int fcg_m__status[FCG_M_NSTATUS - 1] = {200, 201, 202, 204, 400, 401, 403,
						     404, 405, 409, 413, 415, 429, 503};
static const char *const fcg_m__route[FCG_M_NROUTES] = {"messages_post",  "messages_get", "webhook_get", "publish_post",
							"message_delete", "bans",	  "other"};
/* request duration buckets, upper bounds in seconds */
static const double fcg_m__le[FCG_M_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
						 0.25,	0.5,	1,     2.5,  5,	    10};
static const struct rtw_hist_bounds fcg_m__bounds = {FCG_M_NBUCKETS, fcg_m__le};

void fcg_metrics_request(struct fcg_metrics *m, enum fcg_mroute route, int status, uint64_t us)
{
	int s = FCG_M_NSTATUS - 1;

	for (int i = 0; i < FCG_M_NSTATUS - 1; i++)
		if (fcg_m__status[i] == status) {
			s = i;
			break;
		}
	FCG_COUNT(m, requests[route][s], 1);
	FCG_COUNT(m, dur_bucket[route][rtw_hist_bucket(&fcg_m__bounds, (double)us / 1e6)], 1);
	FCG_COUNT(m, dur_sum_us[route], us);
}

#define LD(x) ((uint64_t)atomic_load_explicit(&(x), memory_order_relaxed))

static void fcg_health__metrics(struct fcg_health *h, struct rtw_metrics *w, bool pg_up)
{
	struct fcg_metrics *m = h->m;
	char labels[64];

	rtw_metrics_family(w, "rtw_fcgi_requests_total", RTW_METRIC_COUNTER, "Requests answered, by route and status.");
	for (int r = 0; r < FCG_M_NROUTES; r++)
		for (int s = 0; s < FCG_M_NSTATUS; s++) {
			uint64_t v = LD(m->requests[r][s]);
			if (!v)
				continue;
			if (s < FCG_M_NSTATUS - 1)
				snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", fcg_m__route[r],
					 fcg_m__status[s]);
			else
				snprintf(labels, sizeof(labels), "route=\"%s\",status=\"other\"", fcg_m__route[r]);
			rtw_metrics_u64(w, "rtw_fcgi_requests_total", labels, v);
		}
	rtw_metrics_family(w, "rtw_fcgi_request_duration_seconds", RTW_METRIC_HISTOGRAM,
			   "Time from a request's start to its answer.");
	for (int r = 0; r < FCG_M_NROUTES; r++) {
		uint64_t counts[FCG_M_NBUCKETS + 1];
		for (int b = 0; b <= FCG_M_NBUCKETS; b++)
			counts[b] = LD(m->dur_bucket[r][b]);
		snprintf(labels, sizeof(labels), "route=\"%s\"", fcg_m__route[r]);
		rtw_metrics_histogram(w, "rtw_fcgi_request_duration_seconds", labels, &fcg_m__bounds, counts,
				      (double)LD(m->dur_sum_us[r]) / 1e6);
	}
	rtw_metrics_counter(w, "rtw_fcgi_group_commit_batches_total", "Transactions written by the group committer.",
			    LD(m->gc_batches));
	rtw_metrics_counter(w, "rtw_fcgi_group_commit_rows_total", "Messages written by the group committer.",
			    LD(m->gc_rows));
	rtw_metrics_counter(w, "rtw_fcgi_pg_reconnects_total",
			    "Worker connections to PostgreSQL made again after a loss.", LD(m->pg_reconnects));
	rtw_metrics_counter(w, "rtw_fcgi_commits_in_doubt_total",
			    "Commits not acknowledged: their wait for the synchronous standby was cancelled.",
			    LD(m->commits_in_doubt));
	rtw_metrics_counter(w, "rtw_fcgi_rate_limited_total", "Messages refused with 429 rate_limited.",
			    LD(m->rate_limited));
	rtw_metrics_gauge(w, "rtw_fcgi_requests_in_flight", "Requests being served now.",
			  (double)atomic_load_explicit(&m->in_flight, memory_order_relaxed));
	rtw_metrics_gauge(w, "rtw_fcgi_workers", "Worker threads (fcgi.workers).", h->cfg->fcgi_workers);
	rtw_metrics_process(w, "fcgi", pg_up);
}

/* ---- health check ---- */

/* Can we reach PostgreSQL? Its own connection (connect_timeout 2 s), kept
 * between checks and made again when lost; the verdict is cached 1 s. */
static bool fcg_health__db_ok(struct fcg_health *h)
{
	uint64_t now = rtw_now_ms();
	PGresult *res;

	if (h->checked && now - h->checked_ms < FCG_HEALTH_CACHE_MS)
		return h->ok;
	h->ok = false;
	for (int attempt = 0; attempt < 2 && !h->ok; attempt++) {
		if (!h->conn || PQstatus(h->conn) != CONNECTION_OK) {
			const char *keys[] = {"dbname",		  "application_name", "connect_timeout",
					      "tcp_user_timeout", "options",	      NULL};
			const char *vals[] = {h->cfg->pgdsn, "rtw-fcgi/health",		  "2",
					      "3000",	     "-c statement_timeout=2000", NULL};
			if (h->conn)
				PQfinish(h->conn);
			h->conn = PQconnectdbParams(keys, vals, 1);
			if (!h->conn || PQstatus(h->conn) != CONNECTION_OK)
				break; /* a fresh connect failed: unreachable */
		}
		res = PQexec(h->conn, "SELECT 1");
		h->ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		PQclear(res);
		if (!h->ok) { /* maybe a stale connection: drop it, try once more */
			PQfinish(h->conn);
			h->conn = NULL;
		}
	}
	if (!h->ok && h->conn) {
		PQfinish(h->conn);
		h->conn = NULL;
	}
	h->checked = true;
	h->checked_ms = rtw_now_ms();
	return h->ok;
}

/* ---- the listener ---- */

/* A lingering close: bytes the client sent that we never read (a body on
 * a probe) would make close() answer with a reset, which can destroy the
 * reply before the client reads it. So say we are done, then read and drop
 * what is left, bounded in bytes and time. */
static void fcg_health__linger(int fd)
{
	struct timeval tv = {.tv_usec = 200 * 1000};
	char sink[4096];
	size_t left = 64 * 1024;
	ssize_t n;

	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (left > 0 && (n = recv(fd, sink, sizeof(sink), 0)) > 0)
		left -= (size_t)n < left ? (size_t)n : left;
}

static void fcg_health__serve(struct fcg_health *h, int fd)
{
	struct timeval tv = {.tv_sec = FCG_HEALTH_IO_TIMEOUT_S};
	struct rtw_probe q;
	struct rtw_probe_reply reply;
	struct rtw_metrics mw;
	char buf[FCG_HEALTH_HEAD_MAX], *text = NULL;
	bool db_ok = false;
	int rc = RTW_AGAIN;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	rtw_probe_init(&q);
	/* The whole head must arrive within the timeout per read and fit in
	 * 4 KiB; anything slower or bigger is dropped. */
	while (rc == RTW_AGAIN) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return;
		rc = rtw_probe_feed(&q, buf, (size_t)n, FCG_HEALTH_HEAD_MAX);
	}
	if (rc == RTW_OK && rtw_probe_route(&q) == RTW_PROBE_HEALTHZ)
		db_ok = fcg_health__db_ok(h);
	if (rc == RTW_OK && rtw_probe_route(&q) == RTW_PROBE_METRICS && (text = malloc(FCG_METRICS_MAX))) {
		rtw_metrics_init(&mw, text, FCG_METRICS_MAX);
		fcg_health__metrics(h, &mw, fcg_health__db_ok(h));
		if (rtw_metrics_end(&mw) != RTW_OK)
			log_error("/metrics: the text is longer than %d bytes; answering 500", FCG_METRICS_MAX);
	}
	rtw_probe_answer(&q, rc, "rtw-fcgi", db_ok, text ? &mw : NULL, &reply);
	rtw_probe_send(fd, &reply, rc == RTW_OK && rtw_probe_head_only(&q));
	free(text);
	fcg_health__linger(fd);
}

static void *fcg_health__main(void *arg)
{
	struct fcg_health *h = arg;

	while (!atomic_load(&h->stop)) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					usleep(100 * 1000);
				continue;
			}
			break; /* the socket was shut down: stopping */
		}
		fcg_health__serve(h, fd);
		close(fd);
	}
	return NULL;
}

struct fcg_health *fcg_health_start(const struct rtw_cfg *cfg, struct fcg_metrics *m, char *err, size_t errlen)
{
	struct fcg_health *h = NULL;
	int fd = rtw_listen_tcp(cfg->fcgi_health_listen, "fcgi.health_listen", 0, 64, err, errlen);

	if (fd < 0)
		return NULL;
	if (!(h = calloc(1, sizeof(*h)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->cfg = cfg;
	h->m = m;
	h->fd = fd;
	if (pthread_create(&h->tid, NULL, fcg_health__main, h) != 0) {
		snprintf(err, errlen, "could not start the health thread");
		goto fail;
	}
	return h;
fail:
	free(h);
	close(fd);
	return NULL;
}

void fcg_health_stop(struct fcg_health *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, true);
	shutdown(h->fd, SHUT_RDWR); /* wakes the blocked accept() */
	pthread_join(h->tid, NULL);
	close(h->fd);
	if (h->conn)
		PQfinish(h->conn);
	free(h);
}
