/*
 * loop.c: rtw-sse's main() and its one event loop (lib/loop.c): the
 * listening socket (SO_REUSEPORT, so several processes may share the
 * port; each is correct on its own) and the TLS one when sse.tls_listen is
 * set, a tick timer (header timeouts,
 * heartbeats, heap trim), signals (SIGTERM/SIGINT: end every stream and
 * exit; SIGHUP: reopen the log, reload the TLS certificate), the client sockets (their callback hands
 * complete heads to routes.c) and, through pg.c, the PostgreSQL socket and
 * timers, relay.c's sockets and retry timer (sse.relay), presence.c's
 * put timer and the end of a coalescing hold (sse.coalesce_ms, conn.c)
 * or of a flush slice (sse.flush_slice_ms). The top tier of sse/: it
 * calls into the other files, and none calls it.
 *
 * Phase order of one pass: every ready event (accepts, client reads and
 * writes, complete heads routed, PostgreSQL input and the dispatch of its
 * rows, timers), then the pass hook: start the next query (a handshake
 * routed this pass), flush connections with new output, start a query
 * again (drained connections may want a catch-up), and finally free the
 * connections closed during the pass.
 */
#include "config.h"
#include "daemon.h"
#include "sse.h"
#include "log.h"
#include "net.h"
#include "ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOOP_TICK_MS 200
#define LOOP_TRIM_BURST 256	 /* connections accepted since the last trim */
#define LOOP_TRIM_MS (60 * 1000) /* trim after fewer, at most this often */
#define LOOP_ANON_BUCKETS 16384	 /* client addresses the anonymous-identity limit tracks at once */

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
	if (since < LOOP_TRIM_BURST && sse_now(ctx) - ctx->trim_ms < LOOP_TRIM_MS)
		return;
	malloc_trim(0);
	ctx->trim_accepted = ctx->m.accepted;
	ctx->trim_ms = sse_now(ctx);
}

static void loop__tick(void *arg)
{
	struct sse_ctx *ctx = arg;

	sse_conn_tick(ctx);
	loop__trim(ctx);
}

/* A coalescing hold ended, or a cut flush round goes on (conn.c): the
 * pass hook flushes what is due. */
static void loop__flush_due(void *arg)
{
	((struct sse_ctx *)arg)->flush_due_ms = 0;
}

static void loop__signal(void *arg, int signo)
{
	struct sse_ctx *ctx = arg;

	if (signo == SIGHUP) {
		log_reopen();
		log_info("log reopened");
		/* a renewed certificate: new connections get it, streams
		 * keep theirs; a bad one is logged and the old one stays */
		if (ctx->tls_ctx && sse_tls_load(ctx) != RTW_OK)
			log_info("TLS certificate unchanged");
		return;
	}
	log_info("received signal %d; closing streams", signo);
	ctx->stopping = true;
	rtw_loop_stop(&ctx->loop);
}

static void loop__listen(void *arg, uint32_t events)
{
	(void)events;
	sse_conn_accept(arg, false);
}

static void loop__listen_tls(void *arg, uint32_t events)
{
	(void)events;
	sse_conn_accept(arg, true);
}

/* sse.tls_listen: the certificate, the scratch buffer writes are made
 * from, the listening socket. RTW_OK (also when TLS is off), or
 * RTW_ERROR (logged). */
static int loop__tls_start(struct sse_ctx *ctx)
{
	char err[256];

	if (!ctx->cfg->sse_tls_listen[0])
		return RTW_OK;
	if (sse_tls_load(ctx) != RTW_OK)
		return RTW_ERROR;
	ctx->tls_wbuf = malloc(SSE_TLS_RECORD);
	if (ctx->tls_wbuf == NULL) {
		log_error("out of memory");
		return RTW_ERROR;
	}
	ctx->tls_listen_fd = rtw_listen_tcp(ctx->cfg->sse_tls_listen, "sse.tls_listen",
					    RTW_LISTEN_NONBLOCK | RTW_LISTEN_REUSEPORT, 4096, err, sizeof(err));
	if (ctx->tls_listen_fd < 0) {
		log_error("%s", err);
		return RTW_ERROR;
	}
	if (rtw_loop_add(&ctx->loop, &ctx->tls_listen_io, ctx->tls_listen_fd, EPOLLIN, loop__listen_tls, ctx) !=
	    RTW_OK) {
		log_error("could not set up the event loop: %s", strerror(errno));
		return RTW_ERROR;
	}
	log_info("listening on %s (TLS)", ctx->cfg->sse_tls_listen);
	return RTW_OK;
}

/* A client socket: its I/O is conn.c's; a complete head is routed. */
static void loop__conn(void *arg, uint32_t events)
{
	struct sse_conn *c = arg;
	const struct sse_req *r = sse_conn_event(c, events);

	if (r != NULL)
		sse_route(c, r);
}

/* After every pass's events: start the next query, flush connections
 * with new output, start a query again (drained connections may want a
 * catch-up), and free the connections closed during the pass. */
static void loop__pass_end(void *arg)
{
	struct sse_ctx *ctx = arg;

	sse_pg_kick(ctx);
	sse_conn_flush_dirty(ctx);
	sse_pg_kick(ctx);
	sse_conn_free_closed(ctx);
}

int main(int argc, char **argv)
{
	struct rtw_cfg cfg;
	struct sse_ctx ctx;
	char err[256];
	sigset_t sigs;
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
	if (rtw_trust_parse(cfg.http_trusted_proxies, &ctx.trust, err, sizeof(err)) != RTW_OK) {
		log_error("%s", err);
		goto out_cfg;
	}
	if (rtw_trust_parse_opt("sse.proxy_protocol_from", cfg.sse_proxy_protocol_from, &ctx.pp_from, err,
				sizeof(err)) != RTW_OK) {
		log_error("%s", err);
		goto out_cfg;
	}
	if (ctx.token_mode && cfg.sse_anon_per_ip_per_min > 0) {
		uint64_t seed;
		/* a bucket per address: the minute's allowance at once, refilled evenly */
		if (rtw_random(&seed, sizeof(seed)) != RTW_OK ||
		    (ctx.anon_rl = rtw_rl_new(cfg.sse_anon_per_ip_per_min / 60.0, cfg.sse_anon_per_ip_per_min,
					      LOOP_ANON_BUCKETS, seed)) == NULL) {
			log_error("could not set up the anonymous identity limit");
			goto out_cfg;
		}
	}
	loop__raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);

	ctx.listen_fd = ctx.reserve_fd = ctx.tls_listen_fd = -1;
	ctx.conn_io = loop__conn;
	sse_list_init(&ctx.heads);
	sse_list_init(&ctx.conns);
	sse_list_init(&ctx.closed);
	sse_list_init(&ctx.jobs);
	sse_list_init(&ctx.dirty);
	sse_list_init(&ctx.held);
	if (rtw_loop_init(&ctx.loop) != RTW_OK) {
		log_error("could not set up the event loop: %s", strerror(errno));
		goto out_cfg;
	}
	ctx.last_hb_ms = sse_now(&ctx);
	ctx.parser = sse_reqparser_new((size_t)cfg.sse_max_header_bytes);
	ctx.rbuf = malloc((size_t)cfg.sse_max_header_bytes + SSE_RBUF_SLACK);
	ctx.trim_ms = sse_now(&ctx);
	if (sse_conn_setup(&ctx) != RTW_OK || ctx.parser == NULL || ctx.rbuf == NULL ||
	    sse_index_init(&ctx.ix) != RTW_OK || sse_htab_init(&ctx.ips, 64) != RTW_OK ||
	    sse_htab_init(&ctx.idents, 64) != RTW_OK || sse_bans_init(&ctx.bans) != RTW_OK) {
		log_error("out of memory");
		goto out_loop;
	}
	ctx.listen_fd = rtw_listen_tcp(cfg.sse_listen, "sse.listen", RTW_LISTEN_NONBLOCK | RTW_LISTEN_REUSEPORT, 4096,
				       err, sizeof(err));
	if (ctx.listen_fd < 0) {
		log_error("%s", err);
		goto out_loop;
	}
	ctx.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (rtw_loop_add(&ctx.loop, &ctx.listen_io, ctx.listen_fd, EPOLLIN, loop__listen, &ctx) != RTW_OK ||
	    rtw_timer_init(&ctx.loop, &ctx.tick, loop__tick, &ctx) != RTW_OK ||
	    rtw_timer_start(&ctx.tick, LOOP_TICK_MS, LOOP_TICK_MS) != RTW_OK ||
	    rtw_timer_init(&ctx.loop, &ctx.flush_timer, loop__flush_due, &ctx) != RTW_OK ||
	    rtw_signal_init(&ctx.loop, &ctx.signals, &sigs, loop__signal, &ctx) != RTW_OK) {
		log_error("could not set up the event loop: %s", strerror(errno));
		goto out_loop;
	}
	rtw_loop_hook_add(&ctx.loop, &ctx.pass_end, loop__pass_end, &ctx);
	log_info("listening on %s", cfg.sse_listen);
	if (loop__tls_start(&ctx) != RTW_OK)
		goto out_loop;
	if (sse_presence_start(&ctx) != RTW_OK || sse_relay_start(&ctx) != RTW_OK || sse_pg_start(&ctx) != RTW_OK) {
		log_error("could not set up the database connection");
		goto out_pg;
	}
	if (rtw_loop_run(&ctx.loop) == RTW_OK)
		rc = 0;
	else
		log_error("epoll_wait failed: %s", strerror(errno));
	sse_conn_shutdown_all(&ctx);
	sse_presence_drop(&ctx);
out_pg:
	sse_presence_close(&ctx);
	sse_pg_close(&ctx);
	sse_relay_close(&ctx.relay);
	sse_conn_free_closed(&ctx); /* after the query in flight was dropped */
	log_info("stopped");
out_loop:
	rtw_loop_hook_del(&ctx.loop, &ctx.pass_end);
	rtw_loop_del(&ctx.loop, &ctx.listen_io);
	rtw_loop_del(&ctx.loop, &ctx.tls_listen_io);
	rtw_timer_close(&ctx.tick);
	rtw_timer_close(&ctx.flush_timer);
	rtw_signal_close(&ctx.signals);
	rtw_loop_close(&ctx.loop);
	if (ctx.listen_fd >= 0)
		close(ctx.listen_fd);
	if (ctx.tls_listen_fd >= 0)
		close(ctx.tls_listen_fd);
	if (ctx.reserve_fd >= 0)
		close(ctx.reserve_fd);
out_cfg:
	sse_index_free(&ctx.ix);
	sse_htab_free(&ctx.ips);
	sse_htab_free(&ctx.idents);
	sse_bans_free(&ctx.bans);
	rtw_trust_free(&ctx.trust);
	rtw_trust_free(&ctx.pp_from);
	rtw_rl_free(ctx.anon_rl);
	sse_conn_teardown(&ctx);
	sse_reqparser_free(ctx.parser);
	free(ctx.rbuf);
	sse_tls_free(&ctx);
	free(ctx.tls_wbuf);
	cfg_free(&cfg);
	return rc;
}
