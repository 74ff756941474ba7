/*
 * health.c: owns rtw-fcgi's small HTTP listener for GET /healthz and
 * GET /metrics (fcgi.health_listen), its own PostgreSQL connection for
 * the health check, and the Prometheus text of the metrics the workers
 * count (struct fcg_metrics, atomics). Runs on one thread of its own with
 * blocking I/O: accept, read the request head (http-parser, at most 4 KiB,
 * 2 s timeout), answer, close. Never touches a worker's state.
 */
#include "config.h"
#include "fcgi.h"
#include "net.h"
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

static const int fcg_m__status[FCG_M_NSTATUS - 1] = {200, 201, 202, 204, 400, 401, 403,
						     404, 405, 409, 413, 415, 429, 503};
static const char *const fcg_m__route[FCG_M_NROUTES] = {"messages_post", "messages_get", "webhook_get", "other"};
/* upper bounds in microseconds, and as Prometheus prints them */
static const uint64_t fcg_m__le_us[FCG_M_NBUCKETS] = {1000,   2500,   5000,    10000,	25000,	 50000,	  100000,
						      250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const fcg_m__le[FCG_M_NBUCKETS] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
						      "0.25",  "0.5",	 "1",	  "2.5",  "5",	   "10"};

void fcg_metrics_request(struct fcg_metrics *m, enum fcg_mroute route, int status, uint64_t us)
{
	int s = FCG_M_NSTATUS - 1, b = FCG_M_NBUCKETS;

	for (int i = 0; i < FCG_M_NSTATUS - 1; i++)
		if (fcg_m__status[i] == status) {
			s = i;
			break;
		}
	for (int i = 0; i < FCG_M_NBUCKETS; i++)
		if (us <= fcg_m__le_us[i]) {
			b = i;
			break;
		}
	FCG_COUNT(m, requests[route][s], 1);
	FCG_COUNT(m, dur_bucket[route][b], 1);
	FCG_COUNT(m, dur_sum_us[route], us);
}

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static int fcg_health__metrics(struct fcg_health *h, struct fcg_buf *o)
{
	struct fcg_metrics *m = h->m;
	int rc = RTW_OK;

	rc |= fcg_buf_str(o, "# HELP rtw_fcgi_requests_total Requests answered, by route and status.\n"
			     "# TYPE rtw_fcgi_requests_total counter\n");
	for (int r = 0; r < FCG_M_NROUTES; r++)
		for (int s = 0; s < FCG_M_NSTATUS; s++) {
			unsigned long long v = LD(m->requests[r][s]);
			if (!v)
				continue;
			if (s < FCG_M_NSTATUS - 1)
				rc |= fcg_buf_printf(o, "rtw_fcgi_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
						     fcg_m__route[r], fcg_m__status[s], v);
			else
				rc |= fcg_buf_printf(o, "rtw_fcgi_requests_total{route=\"%s\",status=\"other\"} %llu\n",
						     fcg_m__route[r], v);
		}
	rc |= fcg_buf_str(o, "# HELP rtw_fcgi_request_duration_seconds Time from a request's start to its answer.\n"
			     "# TYPE rtw_fcgi_request_duration_seconds histogram\n");
	for (int r = 0; r < FCG_M_NROUTES; r++) {
		unsigned long long cum = 0;
		for (int b = 0; b <= FCG_M_NBUCKETS; b++) {
			cum += LD(m->dur_bucket[r][b]);
			rc |=
			    fcg_buf_printf(o, "rtw_fcgi_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
					   fcg_m__route[r], b < FCG_M_NBUCKETS ? fcg_m__le[b] : "+Inf", cum);
		}
		rc |= fcg_buf_printf(o, "rtw_fcgi_request_duration_seconds_sum{route=\"%s\"} %.6f\n", fcg_m__route[r],
				     (double)LD(m->dur_sum_us[r]) / 1e6);
		rc |= fcg_buf_printf(o, "rtw_fcgi_request_duration_seconds_count{route=\"%s\"} %llu\n", fcg_m__route[r],
				     cum);
	}
	const struct {
		const char *name, *type, *help;
		unsigned long long v;
	} scalars[] = {
	    {"rtw_fcgi_group_commit_batches_total", "counter", "Transactions written by the group committer.",
	     LD(m->gc_batches)},
	    {"rtw_fcgi_group_commit_rows_total", "counter", "Messages written by the group committer.", LD(m->gc_rows)},
	    {"rtw_fcgi_pg_reconnects_total", "counter", "Worker connections to PostgreSQL made again after a loss.",
	     LD(m->pg_reconnects)},
	    {"rtw_fcgi_rate_limited_total", "counter", "Messages refused with 429 rate_limited.", LD(m->rate_limited)},
	    {"rtw_fcgi_requests_in_flight", "gauge", "Requests being served now.",
	     (unsigned long long)atomic_load_explicit(&m->in_flight, memory_order_relaxed)},
	    {"rtw_fcgi_workers", "gauge", "Worker threads (fcgi.workers).", (unsigned long long)h->cfg->fcgi_workers},
	};
	for (size_t i = 0; i < RTW_ARRAY_LEN(scalars); i++)
		rc |= fcg_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", scalars[i].name, scalars[i].help,
				     scalars[i].name, scalars[i].type, scalars[i].name, scalars[i].v);
	return rc == RTW_OK ? RTW_OK : RTW_ERROR;
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

static void fcg_health__reply(int fd, int status, const char *ctype, const char *body, size_t bl, bool head_only)
{
	char head[256];
	int hl = rtw_probe_response_head(head, sizeof(head), status, ctype, bl);

	if (hl < 0)
		return;
	if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) != hl || head_only)
		return;
	for (size_t off = 0; off < bl;) {
		ssize_t n = send(fd, body + off, bl - off, MSG_NOSIGNAL);
		if (n <= 0)
			return; /* the send timeout bounds a stuck scraper */
		off += (size_t)n;
	}
}

static void fcg_health__serve(struct fcg_health *h, int fd)
{
	struct timeval tv = {.tv_sec = FCG_HEALTH_IO_TIMEOUT_S};
	struct rtw_probe q;
	char buf[FCG_HEALTH_HEAD_MAX];
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
	if (rc != RTW_OK) {
		static const char bad[] = "bad request\n";
		fcg_health__reply(fd, 400, "text/plain", bad, sizeof(bad) - 1, false);
		return;
	}

	bool head_only = rtw_probe_head_only(&q);
	switch (rtw_probe_route(&q)) {
	case RTW_PROBE_BAD_METHOD: {
		static const char body[] = "method not allowed\n";
		fcg_health__reply(fd, 405, "text/plain", body, sizeof(body) - 1, false);
		break;
	}
	case RTW_PROBE_HEALTHZ: {
		static const char up[] = "{\"status\":\"ok\"}\n";
		static const char down[] = "{\"status\":\"unavailable\",\"error\":\"database unreachable\"}\n";
		if (fcg_health__db_ok(h))
			fcg_health__reply(fd, 200, "application/json", up, sizeof(up) - 1, head_only);
		else
			fcg_health__reply(fd, 503, "application/json", down, sizeof(down) - 1, head_only);
		break;
	}
	case RTW_PROBE_METRICS: {
		struct fcg_buf o = {.max = 1024 * 1024};
		if (fcg_health__metrics(h, &o) == RTW_OK)
			fcg_health__reply(fd, 200, "text/plain; version=0.0.4", o.p, o.len, head_only);
		else
			fcg_health__reply(fd, 503, "text/plain", "out of memory\n", 14, head_only);
		fcg_buf_free(&o);
		break;
	}
	case RTW_PROBE_NOT_FOUND: {
		static const char body[] = "not found\n";
		fcg_health__reply(fd, 404, "text/plain", body, sizeof(body) - 1, head_only);
		break;
	}
	}
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
