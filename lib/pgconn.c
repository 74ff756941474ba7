/*
 * pgconn.c: owns one non-blocking libpq connection on the loop: its state
 * machine (the legal moves are the table pgconn__legal[]), the async
 * connect (PQconnectStartParams/PQconnectPoll), flushing, reading results
 * and notifications (PQconsumeInput/PQisBusy/PQgetResult/PQnotifies), and
 * the reconnect backoff. Never decides what to send; never blocks.
 *
 * Phase order for one readable event: flush (when writable), consume
 * input, every complete result of the query in flight (then on_done),
 * notifications, and last a check that the connection is still good.
 */
#include "config.h"
#include "pgconn.h"
#include "log.h"
#include "pgutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pgconn__legal[from] has bit (1 << to) set when from -> to is legal. */
#define PGCONN_BIT(s) (1u << (s))
static const unsigned pgconn__legal[RTW_PGCONN_NSTATES] = {
    [RTW_PGCONN_CLOSED] = PGCONN_BIT(RTW_PGCONN_CONNECTING),
    [RTW_PGCONN_CONNECTING] =
	PGCONN_BIT(RTW_PGCONN_READY) | PGCONN_BIT(RTW_PGCONN_BACKOFF) | PGCONN_BIT(RTW_PGCONN_CLOSED),
    [RTW_PGCONN_READY] = PGCONN_BIT(RTW_PGCONN_BUSY) | PGCONN_BIT(RTW_PGCONN_BACKOFF) | PGCONN_BIT(RTW_PGCONN_CLOSED),
    [RTW_PGCONN_BUSY] = PGCONN_BIT(RTW_PGCONN_READY) | PGCONN_BIT(RTW_PGCONN_BACKOFF) | PGCONN_BIT(RTW_PGCONN_CLOSED),
    [RTW_PGCONN_BACKOFF] = PGCONN_BIT(RTW_PGCONN_CONNECTING) | PGCONN_BIT(RTW_PGCONN_CLOSED),
};

static const char *const pgconn__names[RTW_PGCONN_NSTATES] = {
    [RTW_PGCONN_CLOSED] = "closed", [RTW_PGCONN_CONNECTING] = "connecting", [RTW_PGCONN_READY] = "ready",
    [RTW_PGCONN_BUSY] = "busy",	    [RTW_PGCONN_BACKOFF] = "backoff",
};

const char *rtw_pgconn_state_name(enum rtw_pgconn_state s)
{
	return (unsigned)s < RTW_PGCONN_NSTATES ? pgconn__names[s] : "invalid";
}

bool rtw_pgconn_legal(enum rtw_pgconn_state from, enum rtw_pgconn_state to)
{
	if ((unsigned)from >= RTW_PGCONN_NSTATES || (unsigned)to >= RTW_PGCONN_NSTATES)
		return false;
	return (pgconn__legal[from] & PGCONN_BIT(to)) != 0;
}

/* The one place the state changes. An illegal move is a bug in this file:
 * stop before it corrupts anything. */
static void pgconn__set_state(struct rtw_pgconn *pc, enum rtw_pgconn_state to)
{
	if (!rtw_pgconn_legal(pc->state, to)) {
		log_error("illegal database connection state change %s -> %s", rtw_pgconn_state_name(pc->state),
			  rtw_pgconn_state_name(to));
		abort();
	}
	pc->state = to;
}

uint64_t rtw_pgconn_backoff_next(uint64_t prev_ms)
{
	uint64_t next = prev_ms ? prev_ms * 2 : RTW_PGCONN_BACKOFF_MIN_MS;

	return next > RTW_PGCONN_BACKOFF_MAX_MS ? RTW_PGCONN_BACKOFF_MAX_MS : next;
}

uint64_t rtw_pgconn_backoff_jitter(uint64_t base_ms, uint32_t r)
{
	/* within [base/2, base]: many daemons that lost one server do not all
	 * come back in the same millisecond */
	return base_ms - ((base_ms / 2) * (uint64_t)r >> 32);
}

void rtw_pgconn_oneline(const char *text, char *out, size_t n)
{
	size_t len = 0;

	if (n == 0)
		return;
	for (const char *p = text ? text : ""; *p && len + 1 < n; p++) {
		bool space = *p == '\n' || *p == '\r' || *p == '\t' || *p == ' ';
		if (space && (len == 0 || out[len - 1] == ' '))
			continue; /* no leading or repeated space */
		out[len++] = space ? ' ' : *p;
	}
	while (len && out[len - 1] == ' ')
		len--;
	out[len] = '\0';
}

static void pgconn__io(void *arg, uint32_t events);

/* (Re)registers PQsocket for events; the socket may change while
 * connecting (another host or address, SSL fallback). */
static int pgconn__watch(struct rtw_pgconn *pc, uint32_t events)
{
	int fd = PQsocket(pc->conn);

	if (fd < 0)
		return RTW_ERROR;
	/* While connecting, a multi-host DSN makes libpq close a refused
	 * host's socket and open the next, often under the same number that
	 * the close dropped from epoll: register afresh every time. */
	if (pc->io.registered && (pc->io.fd != fd || pc->state == RTW_PGCONN_CONNECTING))
		rtw_loop_del(pc->loop, &pc->io);
	if (!pc->io.registered)
		return rtw_loop_add(pc->loop, &pc->io, fd, events, pgconn__io, pc);
	return rtw_loop_mod(pc->loop, &pc->io, events);
}

/* Drops the libpq connection; the state is the caller's to set. */
static void pgconn__finish(struct rtw_pgconn *pc)
{
	rtw_loop_del(pc->loop, &pc->io);
	if (pc->conn)
		PQfinish(pc->conn);
	pc->conn = NULL;
}

static void pgconn__lost(struct rtw_pgconn *pc, const char *why)
{
	uint32_t r = 0;
	uint64_t delay;

	rtw_pgconn_oneline(why && why[0] ? why : "unknown error", pc->err, sizeof(pc->err));
	if (pc->state == RTW_PGCONN_CONNECTING)
		log_warn("could not connect to database: %s", pc->err);
	else
		log_warn("lost the database connection: %s", pc->err);
	pgconn__finish(pc);
	pgconn__set_state(pc, RTW_PGCONN_BACKOFF);
	pc->backoff_ms = rtw_pgconn_backoff_next(pc->backoff_ms);
	if (rtw_random(&r, sizeof(r)) != RTW_OK)
		r = 0; /* no jitter is still a delay */
	delay = rtw_pgconn_backoff_jitter(pc->backoff_ms, r);
	if (rtw_timer_start(&pc->timer, delay, 0) != RTW_OK)
		log_error("could not arm the reconnect timer: %s", strerror(errno));
	if (pc->cb.on_lost)
		pc->cb.on_lost(pc, pc->err, pc->arg);
}

/* libpq's notices (and an error the server sends while no query runs, as
 * when it terminates the backend) go to the log, on one line. */
static void pgconn__notice(void *arg, const char *message)
{
	char line[512];

	RTW_UNUSED(arg);
	rtw_pgconn_oneline(message, line, sizeof(line));
	log_info("database: %s", line);
}

static void pgconn__connect(struct rtw_pgconn *pc)
{
	/* the connection string wins; the name lets operators find the backend */
	const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *const vals[] = {pc->conninfo, pc->app_name, NULL};

	pgconn__set_state(pc, RTW_PGCONN_CONNECTING);
	pc->gen++;
	pc->conn = PQconnectStartParams(keys, vals, 1);
	if (pc->conn == NULL || PQstatus(pc->conn) == CONNECTION_BAD) {
		pgconn__lost(pc, pc->conn ? PQerrorMessage(pc->conn) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(pc->conn, pgconn__notice, pc);
	/* libpq: after PQconnectStart, behave as if PQconnectPoll said WRITING */
	if (pgconn__watch(pc, EPOLLOUT) != RTW_OK)
		pgconn__lost(pc, "could not watch the database socket");
}

static void pgconn__connect_poll(struct rtw_pgconn *pc)
{
	switch (PQconnectPoll(pc->conn)) {
	case PGRES_POLLING_READING:
		if (pgconn__watch(pc, EPOLLIN) != RTW_OK)
			pgconn__lost(pc, "could not watch the database socket");
		return;
	case PGRES_POLLING_WRITING:
		if (pgconn__watch(pc, EPOLLOUT) != RTW_OK)
			pgconn__lost(pc, "could not watch the database socket");
		return;
	case PGRES_POLLING_OK: break;
	default: pgconn__lost(pc, PQerrorMessage(pc->conn)); return;
	}
	if (PQsetnonblocking(pc->conn, 1) != 0 || pgconn__watch(pc, EPOLLIN) != RTW_OK) {
		pgconn__lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	pgconn__set_state(pc, RTW_PGCONN_READY);
	pc->backoff_ms = 0;
	if (pc->was_ready)
		pc->reconnects++;
	pc->was_ready = true;
	pc->err[0] = '\0';
	log_info("connected to database");
	if (pc->cb.on_ready)
		pc->cb.on_ready(pc, pc->arg);
}

static void pgconn__timer(void *arg)
{
	struct rtw_pgconn *pc = arg;

	if (pc->state != RTW_PGCONN_BACKOFF)
		return;
	log_info("connecting to database");
	pgconn__connect(pc);
}

/* Sends what libpq holds; EPOLLOUT stays armed while some is left. */
static int pgconn__flush(struct rtw_pgconn *pc)
{
	int r = PQflush(pc->conn);

	if (r < 0) {
		pgconn__lost(pc, PQerrorMessage(pc->conn));
		return RTW_ERROR;
	}
	if (pgconn__watch(pc, EPOLLIN | (r == 1 ? EPOLLOUT : 0)) != RTW_OK) {
		pgconn__lost(pc, "could not watch the database socket");
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* True while the callbacks left pc on the connection conn: a callback may
 * close it, or close and start again (a new PGconn, perhaps at the same
 * address, so the pointer alone does not tell). */
static bool pgconn__same(const struct rtw_pgconn *pc, PGconn *conn, uint64_t gen)
{
	return pc->conn == conn && pc->gen == gen && rtw_pgconn_up(pc);
}

static void pgconn__read(struct rtw_pgconn *pc, uint32_t events)
{
	PGconn *conn = pc->conn;
	uint64_t gen = pc->gen;
	PGnotify *n;

	if ((events & EPOLLOUT) && pgconn__flush(pc) != RTW_OK)
		return;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !PQconsumeInput(conn)) {
		pgconn__lost(pc, PQerrorMessage(conn));
		return;
	}
	while (pc->state == RTW_PGCONN_BUSY && !PQisBusy(conn)) {
		PGresult *res = PQgetResult(conn);
		if (res == NULL) {
			pgconn__set_state(pc, RTW_PGCONN_READY);
			if (pc->cb.on_done)
				pc->cb.on_done(pc, pc->arg);
		} else if (PQresultStatus(res) == PGRES_FATAL_ERROR && pgu_connection_lost(conn, res)) {
			char why[256];
			rtw_pgconn_oneline(PQresultErrorMessage(res), why, sizeof(why));
			PQclear(res);
			pgconn__lost(pc, why);
			return;
		} else {
			pc->res = res;
			pc->cb.on_result(pc, res, pc->arg);
			PQclear(pc->res); /* NULL when taken */
			pc->res = NULL;
		}
		if (!pgconn__same(pc, conn, gen))
			return;
	}
	while ((n = PQnotifies(conn)) != NULL) {
		if (pc->cb.on_notify)
			pc->cb.on_notify(pc, n->relname, n->extra, pc->arg);
		PQfreemem(n);
		if (!pgconn__same(pc, conn, gen))
			return;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		pgconn__lost(pc, PQerrorMessage(conn));
}

static void pgconn__io(void *arg, uint32_t events)
{
	struct rtw_pgconn *pc = arg;

	if (pc->state == RTW_PGCONN_CONNECTING)
		pgconn__connect_poll(pc);
	else if (rtw_pgconn_up(pc))
		pgconn__read(pc, events);
}

int rtw_pgconn_init(struct rtw_pgconn *pc, struct rtw_loop *loop, const char *conninfo, const char *app_name,
		    const struct rtw_pgconn_callbacks *cb, void *arg)
{
	memset(pc, 0, sizeof(*pc));
	pc->state = RTW_PGCONN_CLOSED;
	pc->loop = loop;
	pc->cb = *cb;
	pc->arg = arg;
	pc->conninfo = strdup(conninfo);
	pc->app_name = strdup(app_name);
	if (pc->conninfo == NULL || pc->app_name == NULL ||
	    rtw_timer_init(loop, &pc->timer, pgconn__timer, pc) != RTW_OK) {
		rtw_pgconn_free(pc);
		return RTW_ERROR;
	}
	return RTW_OK;
}

void rtw_pgconn_start(struct rtw_pgconn *pc)
{
	if (pc->state != RTW_PGCONN_CLOSED)
		return;
	pgconn__connect(pc);
}

void rtw_pgconn_close(struct rtw_pgconn *pc)
{
	pgconn__finish(pc);
	rtw_timer_stop(&pc->timer);
	if (pc->state != RTW_PGCONN_CLOSED)
		pgconn__set_state(pc, RTW_PGCONN_CLOSED);
	pc->gen++;
}

void rtw_pgconn_free(struct rtw_pgconn *pc)
{
	if (pc->loop)
		rtw_pgconn_close(pc);
	rtw_timer_close(&pc->timer);
	free(pc->conninfo);
	free(pc->app_name);
	pc->conninfo = pc->app_name = NULL;
}

PGresult *rtw_pgconn_take_result(struct rtw_pgconn *pc)
{
	PGresult *res = pc->res;

	pc->res = NULL;
	return res;
}

/* The common tail of the sends: ok is what PQsend* returned. */
static int pgconn__sent(struct rtw_pgconn *pc, int ok)
{
	if (!ok) {
		pgconn__lost(pc, PQerrorMessage(pc->conn));
		return RTW_ERROR;
	}
	pgconn__set_state(pc, RTW_PGCONN_BUSY);
	return pgconn__flush(pc);
}

int rtw_pgconn_send_query(struct rtw_pgconn *pc, const char *sql)
{
	if (pc->state != RTW_PGCONN_READY)
		return RTW_AGAIN;
	return pgconn__sent(pc, PQsendQuery(pc->conn, sql));
}

int rtw_pgconn_send_params(struct rtw_pgconn *pc, const char *sql, int nparams, const char *const *params)
{
	if (pc->state != RTW_PGCONN_READY)
		return RTW_AGAIN;
	return pgconn__sent(pc, PQsendQueryParams(pc->conn, sql, nparams, NULL, params, NULL, NULL, 0));
}

int rtw_pgconn_send_prepare(struct rtw_pgconn *pc, const char *name, const char *sql, int nparams)
{
	if (pc->state != RTW_PGCONN_READY)
		return RTW_AGAIN;
	return pgconn__sent(pc, PQsendPrepare(pc->conn, name, sql, nparams, NULL));
}

int rtw_pgconn_send_prepared(struct rtw_pgconn *pc, const char *name, int nparams, const char *const *params)
{
	if (pc->state != RTW_PGCONN_READY)
		return RTW_AGAIN;
	return pgconn__sent(pc, PQsendQueryPrepared(pc->conn, name, nparams, params, NULL, NULL, 0));
}
