/*
 * health.c: owns the /healthz and /metrics listener of rtw-webhookd and
 * its short-lived connections. Requests, answers and the metrics text are
 * lib/probe.c's and lib/metrics.c's, as on every daemon; heads are bounded
 * (4 KiB) and must arrive within 5 seconds. Never reports secrets or
 * payloads. Runs on the loop.
 */
#include "config.h"
#include "health.h"
#include "log.h"
#include "net.h"
#include "metrics.h"
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

#define WHK_METRICS_MAX 16384

static void whk_hconn__metrics(const struct whk_worker *w, struct rtw_metrics *t)
{
	const struct whk_metrics *m = &w->m;

	rtw_metrics_family(t, "rtw_webhookd_jobs_total", RTW_METRIC_COUNTER,
			   "Webhook job outcomes recorded by this worker.");
	rtw_metrics_u64(t, "rtw_webhookd_jobs_total", "outcome=\"succeeded\"", m->succeeded);
	rtw_metrics_u64(t, "rtw_webhookd_jobs_total", "outcome=\"failed\"", m->failed);
	rtw_metrics_u64(t, "rtw_webhookd_jobs_total", "outcome=\"retried\"", m->retried);
	rtw_metrics_u64(t, "rtw_webhookd_jobs_total", "outcome=\"refused\"", m->refused);
	rtw_metrics_u64(t, "rtw_webhookd_jobs_total", "outcome=\"released\"", m->released);
	rtw_metrics_counter(t, "rtw_webhookd_claimed_total", "Job attempts claimed by this worker.", m->claimed);
	rtw_metrics_counter(t, "rtw_webhookd_lease_recovered_total", "Expired leases put back in the queue.",
			    m->lease_recovered);
	rtw_metrics_gauge(t, "rtw_webhookd_in_flight", "Jobs claimed and not yet recorded.", w->n_jobs);
	rtw_metrics_gauge(t, "rtw_webhookd_claim_lag_seconds", "Time from run_at to claim, last claimed job.",
			  m->claim_lag_last_s);
	rtw_metrics_gauge(t, "rtw_webhookd_claim_lag_max_seconds", "Largest claim lag seen.", m->claim_lag_max_s);
	rtw_metrics_gauge(
	    t, "rtw_webhookd_queue_jobs",
	    "Queued jobs (due or waiting for a retry), counted up to 100000, sampled every 5 s; -1 before "
	    "the first sample.",
	    m->queue_depth);
	rtw_metrics_gauge(t, "rtw_webhookd_queue_oldest_due_seconds",
			  "How long the most overdue queued job has been due, sampled every 5 s; 0 when none.",
			  m->queue_oldest_due_s);
	rtw_metrics_family(t, "rtw_webhookd_call_duration_seconds", RTW_METRIC_HISTOGRAM,
			   "Webhook calls this worker made, from start to the end of the response (any outcome).");
	rtw_metrics_histogram(t, "rtw_webhookd_call_duration_seconds", NULL, &whk_call_bounds, m->call_bucket,
			      m->call_sum_s);
	rtw_metrics_process(t, "webhookd", whk_db_ready(&w->db));
}

/* Answers a whole request head (rc RTW_OK) or a bad one. A small reply on
 * a fresh socket fits its buffer; a short write just truncates a probe's
 * answer. */
static void whk_hconn__respond(struct whk_hconn *c, int rc)
{
	const struct whk_worker *w = c->h->w;
	struct rtw_probe_reply reply;
	struct rtw_metrics t;
	char text[WHK_METRICS_MAX];

	rtw_metrics_init(&t, text, sizeof(text));
	if (rc == RTW_OK && rtw_probe_route(&c->probe) == RTW_PROBE_METRICS) {
		whk_hconn__metrics(w, &t);
		if (rtw_metrics_end(&t) != RTW_OK)
			log_error("/metrics: the text is longer than %d bytes; answering 500", WHK_METRICS_MAX);
	}
	rtw_probe_answer(&c->probe, rc, "rtw-webhookd", whk_db_ready(&w->db), &t, &reply);
	rtw_probe_send(c->io.fd, &reply, rc == RTW_OK && rtw_probe_head_only(&c->probe));
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
	whk_hconn__respond(c, rc);
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
