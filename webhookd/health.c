/*
 * health.c: owns the /healthz and /metrics listener of rtw-webhookd and
 * its short-lived connections. Requests are parsed with http-parser;
 * heads are bounded (4 KiB) and must arrive within 5 seconds. Never
 * reports secrets or payloads. Runs on the loop.
 */
#include "config.h"
#include "health.h"
#include "log.h"
#include "net.h"
#include "probe.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define WHK_HEALTH_HEAD_MAX 4096
#define WHK_HEALTH_TIMEOUT_MS 5000
#define WHK_HEALTH_MAX_CONNS 64

struct whk_hconn {
	struct rtw_io io; /* first: released through &io */
	struct whk_health *h;
	struct whk_hconn *prev, *next;
	uint64_t accepted_ms;
	struct rtw_probe probe;
};

struct whk_health {
	struct whk_worker *w;
	struct rtw_io io;
	int fd;
	struct whk_hconn *conns;
	int n_conns;
};

static void whk_hconn__release(struct rtw_io *io);

static void whk_hconn__close(struct whk_hconn *c)
{
	struct whk_health *h = c->h;

	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->n_conns--;
	rtw_loop_retire(&h->w->loop, &c->io, whk_hconn__release);
	close(c->io.fd);
}

static void whk_hconn__release(struct rtw_io *io)
{
	free((struct whk_hconn *)io);
}

static void whk_hconn__reply(struct whk_hconn *c, int status, const char *ctype, const char *body)
{
	char head[256];
	size_t bl = strlen(body);
	int hl = rtw_probe_response_head(head, sizeof(head), status, ctype, bl);

	/* a small reply on a fresh socket fits its buffer; short writes just
	 * truncate a probe's answer */
	if (hl > 0 && send(c->io.fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && bl && !rtw_probe_head_only(&c->probe))
		(void)send(c->io.fd, body, bl, MSG_NOSIGNAL);
}

static void whk_hconn__metrics(struct whk_hconn *c)
{
	const struct whk_worker *w = c->h->w;
	const struct whk_metrics *m = &w->m;
	char buf[2048];

	snprintf(buf, sizeof(buf),
		 "# HELP rtw_webhook_jobs_total Webhook job outcomes recorded by this worker.\n"
		 "# TYPE rtw_webhook_jobs_total counter\n"
		 "rtw_webhook_jobs_total{outcome=\"succeeded\"} %llu\n"
		 "rtw_webhook_jobs_total{outcome=\"failed\"} %llu\n"
		 "rtw_webhook_jobs_total{outcome=\"retried\"} %llu\n"
		 "rtw_webhook_jobs_total{outcome=\"refused\"} %llu\n"
		 "rtw_webhook_jobs_total{outcome=\"released\"} %llu\n"
		 "# HELP rtw_webhook_claimed_total Job attempts claimed by this worker.\n"
		 "# TYPE rtw_webhook_claimed_total counter\n"
		 "rtw_webhook_claimed_total %llu\n"
		 "# HELP rtw_webhook_lease_recovered_total Expired leases put back in the queue.\n"
		 "# TYPE rtw_webhook_lease_recovered_total counter\n"
		 "rtw_webhook_lease_recovered_total %llu\n"
		 "# HELP rtw_webhook_in_flight Jobs claimed and not yet recorded.\n"
		 "# TYPE rtw_webhook_in_flight gauge\n"
		 "rtw_webhook_in_flight %d\n"
		 "# HELP rtw_webhook_claim_lag_seconds Time from run_at to claim, last claimed job.\n"
		 "# TYPE rtw_webhook_claim_lag_seconds gauge\n"
		 "rtw_webhook_claim_lag_seconds %.6f\n"
		 "# HELP rtw_webhook_claim_lag_max_seconds Largest claim lag seen.\n"
		 "# TYPE rtw_webhook_claim_lag_max_seconds gauge\n"
		 "rtw_webhook_claim_lag_max_seconds %.6f\n"
		 "# HELP rtw_webhook_db_up 1 when the PostgreSQL connection is up.\n"
		 "# TYPE rtw_webhook_db_up gauge\n"
		 "rtw_webhook_db_up %d\n",
		 (unsigned long long)m->succeeded, (unsigned long long)m->failed, (unsigned long long)m->retried,
		 (unsigned long long)m->refused, (unsigned long long)m->released, (unsigned long long)m->claimed,
		 (unsigned long long)m->lease_recovered, w->n_jobs, m->claim_lag_last_s, m->claim_lag_max_s,
		 whk_db_ready(&w->db) ? 1 : 0);
	whk_hconn__reply(c, 200, "text/plain; version=0.0.4", buf);
}

static void whk_hconn__respond(struct whk_hconn *c)
{
	switch (rtw_probe_route(&c->probe)) {
	case RTW_PROBE_BAD_METHOD: whk_hconn__reply(c, 405, "text/plain", "method not allowed\n"); break;
	case RTW_PROBE_HEALTHZ:
		if (whk_db_ready(&c->h->w->db))
			whk_hconn__reply(c, 200, "application/json", "{\"status\":\"ok\"}\n");
		else
			whk_hconn__reply(c, 503, "application/json",
					 "{\"status\":\"unavailable\",\"error\":\"database unreachable\"}\n");
		break;
	case RTW_PROBE_METRICS: whk_hconn__metrics(c); break;
	case RTW_PROBE_NOT_FOUND: whk_hconn__reply(c, 404, "text/plain", "not found\n"); break;
	}
}

static void whk_hconn__io(void *arg, uint32_t events)
{
	struct whk_hconn *c = arg;
	char buf[WHK_HEALTH_HEAD_MAX];
	ssize_t n = recv(c->io.fd, buf, sizeof(buf), 0);
	int rc;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		whk_hconn__close(c);
		return;
	}
	rc = rtw_probe_feed(&c->probe, buf, (size_t)n, WHK_HEALTH_HEAD_MAX);
	if (rc == RTW_AGAIN)
		return;
	if (rc == RTW_OK)
		whk_hconn__respond(c);
	else
		whk_hconn__reply(c, 400, "text/plain", "bad request\n");
	whk_hconn__close(c);
}

static void whk_health__accept(void *arg, uint32_t events)
{
	struct whk_health *h = arg;

	for (;;) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct whk_hconn *c;
		if (fd < 0)
			return;
		if (h->n_conns >= WHK_HEALTH_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->h = h;
		c->accepted_ms = rtw_now_ms();
		rtw_probe_init(&c->probe);
		if (rtw_loop_add(&h->w->loop, &c->io, fd, EPOLLIN, whk_hconn__io, c) != RTW_OK) {
			close(fd);
			free(c);
			continue;
		}
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->n_conns++;
	}
}

struct whk_health *whk_health_new(struct whk_worker *w, const char *addr, char *err, size_t errlen)
{
	struct whk_health *h = NULL;
	int fd = rtw_listen_tcp(addr, "webhook.health_listen", RTW_LISTEN_NONBLOCK, 64, err, errlen);

	if (fd < 0)
		return NULL;
	if (!(h = calloc(1, sizeof(*h)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->w = w;
	h->fd = fd;
	if (rtw_loop_add(&w->loop, &h->io, fd, EPOLLIN, whk_health__accept, h) != RTW_OK) {
		snprintf(err, errlen, "could not watch the health socket");
		goto fail;
	}
	return h;
fail:
	free(h);
	close(fd);
	return NULL;
}

void whk_health_tick(struct whk_health *h, uint64_t now_ms)
{
	struct whk_hconn *c = h ? h->conns : NULL;

	while (c) {
		struct whk_hconn *next = c->next;
		if (now_ms - c->accepted_ms > WHK_HEALTH_TIMEOUT_MS)
			whk_hconn__close(c);
		c = next;
	}
}

void whk_health_free(struct whk_health *h)
{
	if (!h)
		return;
	while (h->conns)
		whk_hconn__close(h->conns);
	rtw_loop_del(&h->w->loop, &h->io);
	close(h->fd);
	free(h);
}
