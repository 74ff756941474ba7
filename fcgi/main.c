/*
 * main.c: owns the rtw-fcgi process: configuration and logging, the
 * FastCGI listen socket (or the inherited one, fd 0, under spawn-fcgi or
 * mod_fcgid), the worker threads and the signals. The main thread only
 * waits for signals: SIGHUP reopens the log; SIGTERM/SIGINT stop accepting,
 * let the requests in flight finish, and exit 0. A worker waiting for the
 * next request on a kept connection (nginx's fastcgi_keep_conn) sits in a
 * read that the listen socket's shutdown does not end: main interrupts
 * those idle workers with SIGUSR1 (a handler that does nothing, installed
 * without SA_RESTART, so the read fails with EINTR).
 *
 * Each worker thread owns one struct fcg_worker: it accepts a request,
 * serves it (http.c) and finishes it, on its own PostgreSQL connection.
 * One more thread (health.c) answers /healthz and /metrics on
 * fcgi.health_listen. The top tier of fcgi/: nothing calls into it.
 */

/* Rate-limit buckets per process: fixed memory (about 24 bytes each). */
#define FCG_RL_BUCKETS 16384
#include "config.h"
#include "daemon.h"
#include "fcgi.h"
#include "log.h"
#include "ratelimit.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long SIGTERM waits for requests in flight before exiting anyway. */
#define FCG_DRAIN_S 20

static atomic_bool fcg__stopping; /* set once by the main thread on SIGTERM */

static void fcg__wake(int sig)
{
	(void)sig; /* only there to make a blocked read return EINTR */
}

/* One of the process's token-bucket tables, shared by all workers (left
 * NULL when rate is 0: that limit is off). Seeded at random, so nobody can
 * aim keys at one set of buckets. */
static int fcg__rate_limiter(int rate, int burst, const char *what, struct rtw_rl **out)
{
	uint64_t seed;

	if (rate <= 0)
		return RTW_OK;
	if (rtw_random(&seed, sizeof(seed)) != RTW_OK || !(*out = rtw_rl_new(rate, burst, FCG_RL_BUCKETS, seed))) {
		log_error("could not set up the rate limiter");
		return RTW_ERROR;
	}
	log_info("rate limit: %d %s, burst %d (per process)", rate, what, burst);
	return RTW_OK;
}

static void *fcg__worker_main(void *arg)
{
	struct fcg_worker *w = arg;

	if (fcg_db_ready(&w->db) != RTW_OK)
		log_warn("worker %d: database unavailable at start; will retry on demand", w->id);
	while (!atomic_load(&fcg__stopping)) {
		atomic_store(&w->busy, false);
		if (atomic_load(&fcg__stopping) || FCGX_Accept_r(&w->fx) < 0)
			break;
		atomic_store(&w->busy, true);
		fcg_serve(w);
		FCGX_Finish_r(&w->fx);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct rtw_cfg cfg;
	char err[512];
	struct fcg_worker *workers = NULL;
	pthread_t *tids = NULL;
	struct fcg_gc *gc = NULL;
	struct rtw_rl *rl = NULL, *rl_ip = NULL, *rl_user = NULL;
	struct rtw_trust trust = {NULL, 0};
	struct fcg_metrics *metrics = NULL;
	struct fcg_health *health = NULL;
	int listen_fd, started = 0, rc = 1;
	const char *unix_path = NULL; /* unlinked at exit */
	sigset_t sigs;

	static const struct rtw_prog prog = {"rtw-fcgi",
					     "The FastCGI application of rtw: ingest, history, webhook job status.",
					     NULL, RTW_START_LOG_FILE | RTW_START_WARN_OPEN | RTW_START_NEED_SECRET};

	if ((rc = rtw_start(&prog, argc, argv, &cfg, NULL)) >= 0)
		return rc;
	rc = 1;
	if (cfg.fcgi_workers < 1 || cfg.fcgi_workers > 1024) {
		log_error("fcgi.workers must be between 1 and 1024");
		goto out;
	}

	/* Signals: the workers inherit the blocked set; main waits for them. */
	signal(SIGPIPE, SIG_IGN);
	struct sigaction wake = {.sa_handler = fcg__wake}; /* no SA_RESTART */
	sigemptyset(&wake.sa_mask);
	sigaction(SIGUSR1, &wake, NULL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (FCGX_Init() != 0) {
		log_error("could not initialize libfcgi");
		goto out;
	}
	if (cfg.fcgi_socket[0] == '\0') {
		listen_fd = 0; /* FCGI_LISTENSOCK_FILENO, from spawn-fcgi or mod_fcgid */
		log_info("using the inherited FastCGI socket (fd 0)");
	} else {
		listen_fd = FCGX_OpenSocket(cfg.fcgi_socket, cfg.fcgi_backlog);
		if (listen_fd < 0) {
			log_error("could not listen on \"%s\": %s", cfg.fcgi_socket, strerror(errno));
			goto out;
		}
		if (!strchr(cfg.fcgi_socket, ':')) { /* libfcgi's rule: no ':' means a unix socket path */
			char *end;
			long mode = strtol(cfg.fcgi_socket_mode, &end, 8);
			if (*end || end == cfg.fcgi_socket_mode || mode < 0 || mode > 0777) {
				log_error("fcgi.socket_mode must be octal permissions such as 0660");
				close(listen_fd);
				goto out;
			}
			if (chmod(cfg.fcgi_socket, (mode_t)mode) != 0)
				log_warn("could not set the mode of \"%s\": %s", cfg.fcgi_socket, strerror(errno));
			unix_path = cfg.fcgi_socket;
		}
		log_info("listening on %s with %d workers", cfg.fcgi_socket, cfg.fcgi_workers);
	}

	metrics = calloc(1, sizeof(*metrics));
	gc = fcg_gc_new(cfg.fcgi_group_commit_max, metrics);
	workers = calloc((size_t)cfg.fcgi_workers, sizeof(*workers));
	tids = calloc((size_t)cfg.fcgi_workers, sizeof(*tids));
	if (!metrics || !gc || !workers || !tids) {
		log_error("out of memory");
		goto out;
	}
	if (fcg__rate_limiter(cfg.fcgi_rate_limit_per_s, cfg.fcgi_rate_limit_burst, "messages/s per author and stream",
			      &rl) != RTW_OK ||
	    fcg__rate_limiter(cfg.fcgi_rate_limit_per_user_per_s, cfg.fcgi_rate_limit_per_user_burst,
			      "messages/s per author over all streams", &rl_user) != RTW_OK)
		goto out;
	if (rtw_trust_parse(cfg.http_trusted_proxies, &trust, err, sizeof(err)) != RTW_OK) {
		log_error("%s", err);
		goto out;
	}
	if (fcg__rate_limiter(cfg.fcgi_rate_limit_per_ip_per_s, cfg.fcgi_rate_limit_per_ip_burst,
			      "POSTs/s per client address", &rl_ip) != RTW_OK)
		goto out;
	if (cfg.fcgi_health_listen[0]) {
		/* A clash on this side port must not stop ingest: report it loudly, go on. */
		if (!(health = fcg_health_start(&cfg, metrics, err, sizeof(err))))
			log_error("/healthz and /metrics disabled: %s", err);
		else
			log_info("health and metrics on http://%s", cfg.fcgi_health_listen);
	}
	for (int i = 0; i < cfg.fcgi_workers; i++) {
		struct fcg_worker *w = &workers[i];
		w->id = i;
		w->cfg = &cfg;
		w->listen_fd = listen_fd;
		w->gc = gc;
		w->rl = rl;
		w->rl_ip = rl_ip;
		w->rl_user = rl_user;
		w->trust = &trust;
		w->metrics = metrics;
		w->db.metrics = metrics;
		w->db.cfg = &cfg;
		w->db.worker_id = i;
		w->out.max = SIZE_MAX;
		w->head.max = 64 * 1024;
		uint64_t seed; /* the token cache's hash key */
		if (rtw_random(&seed, sizeof(seed)) != RTW_OK || sem_init(&w->gc_sem, 0, 0) != 0) {
			log_error("could not start worker thread %d", i);
			break;
		}
		tok_cache_init(&w->tokens, seed);
		FCGX_InitRequest(&w->fx, listen_fd, 0);
		if (pthread_create(&tids[i], NULL, fcg__worker_main, w) != 0) {
			log_error("could not start worker thread %d", i);
			break;
		}
		started++;
	}

	rc = started == cfg.fcgi_workers ? 0 : 1;
	for (;;) {
		int sig;
		if (rc != 0 || sigwait(&sigs, &sig) != 0)
			break;
		if (sig == SIGHUP) {
			log_reopen();
			continue;
		}
		log_info("received %s; finishing requests in flight", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}

	/* Stop accepting: blocked accept() calls return once the listen
	 * socket is shut down; requests in flight run to completion. */
	atomic_store(&fcg__stopping, true);
	FCGX_ShutdownPending();
	shutdown(listen_fd, SHUT_RDWR);
	struct timespec deadline, tick;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += FCG_DRAIN_S;
	for (int i = 0; i < started; i++) {
		/* Idle on a kept connection: interrupt its read, again every
		 * 50 ms, since a worker may turn idle just after a request. */
		for (;;) {
			if (!atomic_load(&workers[i].busy))
				pthread_kill(tids[i], SIGUSR1);
			clock_gettime(CLOCK_REALTIME, &tick);
			tick.tv_nsec += 50 * 1000000L;
			if (tick.tv_nsec >= 1000000000L) {
				tick.tv_sec++;
				tick.tv_nsec -= 1000000000L;
			}
			if (tick.tv_sec > deadline.tv_sec ||
			    (tick.tv_sec == deadline.tv_sec && tick.tv_nsec > deadline.tv_nsec))
				tick = deadline;
			int jr = pthread_timedjoin_np(tids[i], NULL, &tick);
			if (jr == 0)
				break;
			if (tick.tv_sec == deadline.tv_sec && tick.tv_nsec == deadline.tv_nsec) {
				log_warn("requests still in flight after %d s; exiting", FCG_DRAIN_S);
				_exit(rc);
			}
		}
		fcg_db_close(&workers[i].db);
		rtw_buf_free(&workers[i].body);
		rtw_buf_free(&workers[i].out);
		rtw_buf_free(&workers[i].head);
		json_decref(workers[i].all_origins);
		for (int k = 0; k < FCG_WIDGET_CACHE; k++) {
			json_decref(workers[i].widgets[k].origins);
			json_decref(workers[i].widgets[k].hosts);
		}
		sem_destroy(&workers[i].gc_sem);
		tok_cache_free(&workers[i].tokens);
		FCGX_Free(&workers[i].fx, 1);
	}
	close(listen_fd);
	if (unix_path)
		unlink(unix_path);
	fcg_health_stop(health);
	health = NULL;
	log_info("stopped");
out:
	fcg_health_stop(health);
	rtw_rl_free(rl);
	rtw_rl_free(rl_ip);
	rtw_rl_free(rl_user);
	rtw_trust_free(&trust);
	free(metrics);
	fcg_gc_free(gc);
	free(workers);
	free(tids);
	cfg_free(&cfg);
	return rc;
}
