/*
 * loop.c: rtw-sse's main() and its one epoll loop: the listening socket
 * (SO_REUSEPORT, so several processes may share the port; each is
 * correct on its own), a tick timer (header timeouts, heartbeats), the
 * PostgreSQL timer (reconnect backoff, safety poll, re-poll behind the
 * horizon), signals through signalfd (SIGTERM/SIGINT: end every stream
 * and exit; SIGHUP: reopen the log), and the PostgreSQL socket. The top
 * tier of sse/: it calls into every other file, and none calls it.
 *
 * Phase order of one pass: every ready event (accepts, client reads and
 * writes, complete heads handed to routes.c, PostgreSQL input and the
 * dispatch of its rows, timers), then start the next query (a handshake
 * routed this pass), flush connections with new output, start a query
 * again (drained connections may want a catch-up), and finally free the
 * connections closed during the pass.
 */
#include "config.h"
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
			case SSE_H_CONN: {
				struct sse_conn *c = (struct sse_conn *)h;
				const struct sse_req *r = sse_conn_event(c, evs[i].events);
				if (r != NULL)
					sse_route(c, r);
				break;
			}
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
	if (cfg_load(&cfg, cfg_path_from_args(argc, argv), err, sizeof(err)) != RTW_OK) {
		fprintf(stderr, "rtw-sse: %s\n", err);
		return 1;
	}
	if (log_init("rtw-sse", cfg.log_level, cfg.log_file) != RTW_OK) {
		fprintf(stderr, "rtw-sse: could not open the log\n");
		goto out_cfg;
	}
	ctx.cfg = &cfg;
	ctx.token_mode = strcmp(cfg.auth_mode, "token") == 0;
	if (ctx.token_mode && (cfg.auth_secret == NULL || cfg.auth_secret[0] == '\0')) {
		log_error("auth.secret is required in token mode");
		goto out_cfg;
	}
	if (!ctx.token_mode)
		log_warn("auth.mode is open: identities are taken from requests as given (experiments only)");
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
	ctx.parser = sse_reqparser_new((size_t)cfg.sse_max_header_bytes);
	ctx.rbuf = malloc((size_t)cfg.sse_max_header_bytes + SSE_RBUF_SLACK);
	ctx.trim_ms = ctx.now_ms;
	if (sse_conn_setup(&ctx) != RTW_OK || ctx.parser == NULL || ctx.rbuf == NULL ||
	    sse_index_init(&ctx.ix) != RTW_OK || sse_htab_init(&ctx.ips, 64) != RTW_OK) {
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
	sse_conn_teardown(&ctx);
	sse_reqparser_free(ctx.parser);
	free(ctx.rbuf);
	cfg_free(&cfg);
	return rc;
}
