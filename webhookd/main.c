/*
 * main.c: rtw-webhookd, the webhook worker: configuration, signals and the
 * one loop (lib/loop.h). A loop pass dispatches what is ready: PostgreSQL
 * (lib/pgconn.c: results, NOTIFY on rtw_jobs → claim, reconnects), curl
 * sockets and curl's timer (finished calls → record), the 100 ms tick
 * (the poll for due retries every webhook.poll_interval_ms, lease
 * recovery, retention, shutdown steps), health connections; retired
 * sources are freed after the pass.
 * SIGTERM/SIGINT: stop claiming, let calls in flight finish for up to
 * WHK_GRACE_MS, release the rest to the queue, exit 0. SIGHUP: reopen log.
 */
#include "config.h"
#include "cfg.h"
#include "daemon.h"
#include "fetch.h"
#include "health.h"
#include "log.h"
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WHK_TICK_MS 100
#define WHK_GRACE_MS 5000

struct whk_main {
	struct whk_worker w;
	struct whk_health *health;
	struct rtw_signal sig;
	struct rtw_timer tick;
	bool quit;
};

static void whk_main__notify(void *arg)
{
	whk_worker_claim(arg);
}

static void whk_main__signal(void *arg, int signo)
{
	struct whk_main *m = arg;

	if (signo == SIGHUP) {
		log_reopen();
	} else {
		log_info("received signal %d", signo);
		whk_worker_stop(&m->w, WHK_GRACE_MS);
	}
}

static void whk_main__tick(void *arg)
{
	struct whk_main *m = arg;
	uint64_t now = rtw_now_ms();

	whk_worker_tick(&m->w, now);
	whk_health_tick(m->health, now);
	if (whk_worker_done(&m->w)) {
		m->quit = true;
	} else if (m->w.stopping && now >= m->w.exit_deadline_ms) {
		log_warn("exiting with %d job(s) unrecorded; their leases will expire", m->w.n_jobs);
		m->quit = true;
	}
}

static int whk_main__identity(char *out, size_t len)
{
	char host[64] = "localhost";
	unsigned char rnd[4];
	char hex[9];

	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		return RTW_ERROR;
	rtw_hex(rnd, sizeof(rnd), hex);
	snprintf(out, len, "%.48s:%d:%s", host, (int)getpid(), hex);
	return RTW_OK;
}

int main(int argc, char **argv)
{
	static struct rtw_cfg cfg;
	static struct whk_main m;
	char err[512];
	sigset_t mask;
	int rc = 1;

	static const struct rtw_prog prog = {"rtw-webhookd",
					     "The webhook worker of rtw: calls third-party URLs for widgets.", NULL,
					     RTW_START_LOG_FILE | RTW_START_WARN_OPEN};

	if ((rc = rtw_start(&prog, argc, argv, &cfg, NULL)) >= 0)
		return rc;
	rc = 1;
	if (!cfg.webhook_secret[0]) {
		log_error("webhook.secret is not set (RTW_WEBHOOK_SECRET); deliveries must be signed");
		goto out_cfg;
	}
	if (cfg.webhook_concurrency < 1 || cfg.webhook_max_attempts < 1 || cfg.webhook_lease_s < 1) {
		log_error("webhook.concurrency, webhook.max_attempts and webhook.lease_s must be at least 1");
		goto out_cfg;
	}
	if ((int64_t)cfg.webhook_lease_s * 1000 <= (int64_t)cfg.webhook_timeout_ms)
		log_warn("webhook.lease_s (%d s) is not longer than webhook.timeout_ms (%d ms): a slow call may be "
			 "retried by another worker while it still runs",
			 cfg.webhook_lease_s, cfg.webhook_timeout_ms);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("could not initialize libcurl");
		goto out_cfg;
	}
	m.w.cfg = &cfg;
	m.w.m.queue_depth = -1; /* no sample yet */
	if (whk_main__identity(m.w.me, sizeof(m.w.me)) != RTW_OK || rtw_loop_init(&m.w.loop) != RTW_OK) {
		log_error("could not start the loop");
		goto out_curl;
	}
	if (whk_db_init(&m.w.db, &m.w.loop, cfg.pgdsn, "rtw_jobs", whk_main__notify, whk_main__notify, &m.w) !=
		RTW_OK ||
	    !(m.w.fetch = whk_fetch_new(&m.w))) {
		/* each has logged its reason (a bad webhook.allow_hosts entry, or memory) */
		log_error("could not start the webhook worker");
		goto out_loop;
	}
	if (cfg.webhook_health_listen[0] &&
	    !(m.health = whk_health_new(&m.w, cfg.webhook_health_listen, err, sizeof(err)))) {
		log_error("%s", err);
		goto out_loop;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (rtw_signal_init(&m.w.loop, &m.sig, &mask, whk_main__signal, &m) != RTW_OK ||
	    rtw_timer_init(&m.w.loop, &m.tick, whk_main__tick, &m) != RTW_OK ||
	    rtw_timer_start(&m.tick, WHK_TICK_MS, WHK_TICK_MS) != RTW_OK) {
		log_error("could not set up signals and timers: %s", strerror(errno));
		goto out_loop;
	}
	log_info("started as %s: concurrency %d, lease %d s, health on %s", m.w.me, cfg.webhook_concurrency,
		 cfg.webhook_lease_s, cfg.webhook_health_listen[0] ? cfg.webhook_health_listen : "(off)");
	whk_db_start(&m.w.db);
	while (!m.quit) {
		if (rtw_loop_run_once(&m.w.loop, -1) != RTW_OK) {
			log_error("event loop failed: %s", strerror(errno));
			goto out_loop;
		}
	}
	log_info("stopped");
	rc = 0;
out_loop:
	/* jobs still in memory: their leases expire and another worker retries */
	while (m.w.jobs) {
		struct whk_job *j = m.w.jobs;
		m.w.jobs = j->next;
		if (m.w.fetch)
			whk_fetch_cancel(m.w.fetch, j);
		whk_fetch_cleanup(j);
		free(j->url);
		free(j->method);
		free(j->headers_json);
		free(j->body_json);
		free(j->stream_id);
		free(j->widget_key);
		free(j->author_id);
		free(j->widget_hosts_json);
		free(j);
	}
	m.w.n_jobs = 0;
	whk_health_free(m.health);
	whk_db_close(&m.w.db);
	whk_fetch_free(m.w.fetch);
	rtw_signal_close(&m.sig);
	rtw_timer_close(&m.tick);
	rtw_loop_close(&m.w.loop);
out_curl:
	curl_global_cleanup();
out_cfg:
	cfg_free(&cfg);
	return rc;
}
