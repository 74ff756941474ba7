/*
 * loop.c: rtw-sse's main() and its one epoll loop: the listening socket
 * (SO_REUSEPORT, so several processes may share the port; each is
 * correct on its own), a tick timer (header timeouts, heartbeats), the
 * PostgreSQL timer (reconnect backoff, safety poll, re-poll behind the
 * horizon), signals through signalfd (SIGTERM/SIGINT: end every stream
 * and exit; SIGHUP: reopen the log), and the PostgreSQL socket.
 *
 * Phase order of one pass: every ready event (accepts, client reads and
 * writes, PostgreSQL input and the dispatch of its rows, timers), then
 * start the next query, flush connections with new output, start a query
 * again (drained connections may want a catch-up), and finally free the
 * connections closed during the pass.
 */
#include "config.h"
#include "daemon.h"
#include "sse.h"
#include "log.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define LOOP_TICK_MS 200
#define LOOP_EVENTS 256
#define LOOP_TRIM_BURST 256	 /* connections accepted since the last trim */
#define LOOP_TRIM_MS (60 * 1000) /* trim after fewer, at most this often */

void sse_ctx_mod_fd(struct sse_ctx *ctx, int fd, void *handle, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = handle};

	if (epoll_ctl(ctx->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
		log_error("could not change epoll registration: %s", strerror(errno));
}

void sse_pg_timer_arm(struct sse_ctx *ctx, uint64_t ms)
{
	struct itimerspec its = {{0, 0}, {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L}};

	if (ms == 0)
		its.it_value.tv_nsec = 1; /* 0 would disarm */
	timerfd_settime(ctx->pgtimer_fd, 0, &its, NULL);
}

void sse_metrics_lag(struct sse_ctx *ctx, double s)
{
	static const double bounds[SSE_LAG_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
	int i;

	if (s < 0)
		s = 0;
	for (i = 0; i < SSE_LAG_BUCKETS && s > bounds[i]; i++)
		;
	ctx->m.lag_bucket[i]++;
	ctx->m.lag_sum += s;
	ctx->m.lag_count++;
	if (s > ctx->m.lag_max)
		ctx->m.lag_max = s;
}

/* "host:port", "[v6]:port" or ":port" (any address). */

static void loop__raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("could not raise the open file limit: %s", strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_info("open file limit %llu (more connections need more processes on the same port)",
			 (unsigned long long)rl.rlim_cur);
}

static int loop__add(struct sse_ctx *ctx, int fd, void *handle)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = handle};
	return epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void loop__drain_fd(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
}

/* Gives the heap's free pages back after a burst of connections. Each
 * handshake's transient allocations (init JSON, tokens, query results)
 * interleave with the long-lived connection structs, so free() alone
 * cannot shrink the heap; malloc_trim also releases whole free pages in
 * its middle (madvise). Runs from the tick once a burst is over (no accept
 * during the last tick), so its cost (a walk of the free lists) is paid
 * once per burst, not per connection. */
static void loop__trim(struct sse_ctx *ctx)
{
	uint64_t since = ctx->m.accepted - ctx->trim_accepted;
	bool quiet = ctx->m.accepted == ctx->trim_last_accepted;

	ctx->trim_last_accepted = ctx->m.accepted;
	if (since == 0 || !quiet || !sse_list_empty(&ctx->heads))
		return;
	if (since < LOOP_TRIM_BURST && ctx->now_ms - ctx->trim_ms < LOOP_TRIM_MS)
		return;
	malloc_trim(0);
	ctx->trim_accepted = ctx->m.accepted;
	ctx->trim_ms = ctx->now_ms;
}

static void loop__signal(struct sse_ctx *ctx)
{
	struct signalfd_siginfo si;

	while (read(ctx->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_reopen();
			log_info("log reopened");
		} else {
			log_info("received signal %u; closing streams", si.ssi_signo);
			ctx->stopping = true;
		}
	}
}

static int loop__run(struct sse_ctx *ctx)
{
	struct epoll_event evs[LOOP_EVENTS];

	while (!ctx->stopping) {
		int n = epoll_wait(ctx->epfd, evs, LOOP_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait failed: %s", strerror(errno));
			return RTW_ERROR;
		}
		ctx->now_ms = rtw_now_ms();
		for (int i = 0; i < n; i++) {
			enum sse_handle_kind *h = evs[i].data.ptr;
			switch (*h) {
			case SSE_H_LISTEN: sse_conn_accept(ctx); break;
			case SSE_H_TICK:
				loop__drain_fd(ctx->tick_fd);
				sse_conn_tick(ctx);
				loop__trim(ctx);
				break;
			case SSE_H_PGTIMER:
				loop__drain_fd(ctx->pgtimer_fd);
				sse_pg_timer(ctx);
				break;
			case SSE_H_SIGNAL: loop__signal(ctx); break;
			case SSE_H_PG: sse_pg_event(ctx, evs[i].events); break;
			case SSE_H_CONN: sse_conn_event((struct sse_conn *)h, evs[i].events); break;
			}
		}
		sse_pg_kick(ctx);
		sse_conn_flush_dirty(ctx);
		sse_pg_kick(ctx);
		sse_conn_free_closed(ctx);
	}
	sse_conn_shutdown_all(ctx);
	sse_conn_free_closed(ctx);
	return RTW_OK;
}

int main(int argc, char **argv)
{
	struct rtw_cfg cfg;
	struct sse_ctx ctx;
	char err[256];
	sigset_t sigs;
	struct itimerspec tick = {{0, LOOP_TICK_MS * 1000000L}, {0, LOOP_TICK_MS * 1000000L}};
	int rc = 1;

	memset(&ctx, 0, sizeof(ctx));
	static const struct rtw_prog prog = {"rtw-sse",
					     "The Server-Sent Events daemon of rtw: live and resumed event streams.",
					     NULL, RTW_START_LOG_FILE | RTW_START_WARN_OPEN | RTW_START_NEED_SECRET};

	if ((rc = rtw_start(&prog, argc, argv, &cfg, NULL)) >= 0)
		return rc;
	rc = 1;
	ctx.cfg = &cfg;
	ctx.token_mode = strcmp(cfg.auth_mode, "token") == 0;
	if (cfg.sse_batch_rows < 1 || cfg.sse_outbuf_max < 1024 || cfg.sse_max_header_bytes < 256) {
		log_error("sse.batch_rows, sse.outbuf_max or sse.max_header_bytes is too small");
		goto out_cfg;
	}
	loop__raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	ctx.h_listen = SSE_H_LISTEN;
	ctx.h_tick = SSE_H_TICK;
	ctx.h_pgtimer = SSE_H_PGTIMER;
	ctx.h_signal = SSE_H_SIGNAL;
	ctx.h_pg = SSE_H_PG;
	ctx.pg_fd = -1;
	sse_list_init(&ctx.heads);
	sse_list_init(&ctx.conns);
	sse_list_init(&ctx.closed);
	sse_list_init(&ctx.jobs);
	ctx.now_ms = ctx.last_hb_ms = rtw_now_ms();
	ctx.heartbeat = sse_frame_static(": hb\n\n", 6);
	ctx.parser = sse_reqparser_new((size_t)cfg.sse_max_header_bytes);
	ctx.rbuf = malloc((size_t)cfg.sse_max_header_bytes + SSE_RBUF_SLACK);
	ctx.trim_ms = ctx.now_ms;
	if (ctx.heartbeat == NULL || ctx.parser == NULL || ctx.rbuf == NULL || sse_index_init(&ctx.ix) != RTW_OK ||
	    sse_htab_init(&ctx.ips, 64) != RTW_OK) {
		log_error("out of memory");
		goto out_cfg;
	}
	ctx.listen_fd = rtw_listen_tcp(cfg.sse_listen, "sse.listen", RTW_LISTEN_NONBLOCK | RTW_LISTEN_REUSEPORT, 4096,
				       err, sizeof(err));
	if (ctx.listen_fd < 0) {
		log_error("%s", err);
		goto out_cfg;
	}
	ctx.epfd = epoll_create1(EPOLL_CLOEXEC);
	ctx.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ctx.pgtimer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ctx.signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	ctx.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (ctx.epfd < 0 || ctx.tick_fd < 0 || ctx.pgtimer_fd < 0 || ctx.signal_fd < 0 ||
	    loop__add(&ctx, ctx.listen_fd, &ctx.h_listen) != 0 || loop__add(&ctx, ctx.tick_fd, &ctx.h_tick) != 0 ||
	    loop__add(&ctx, ctx.pgtimer_fd, &ctx.h_pgtimer) != 0 ||
	    loop__add(&ctx, ctx.signal_fd, &ctx.h_signal) != 0) {
		log_error("could not set up the event loop: %s", strerror(errno));
		goto out_cfg;
	}
	timerfd_settime(ctx.tick_fd, 0, &tick, NULL);
	log_info("listening on %s", cfg.sse_listen);
	sse_pg_start(&ctx);
	if (loop__run(&ctx) == RTW_OK)
		rc = 0;
	sse_pg_close(&ctx);
	log_info("stopped");
out_cfg:
	sse_index_free(&ctx.ix);
	sse_htab_free(&ctx.ips);
	free(ctx.heartbeat);
	sse_reqparser_free(ctx.parser);
	free(ctx.rbuf);
	cfg_free(&cfg);
	return rc;
}
