/*
 * pgconn.h: the connection half of an async libpq client on the loop
 * (lib/loop.h): non-blocking connect and poll, sending one query at a
 * time and flushing it, results and notifications delivered to callbacks,
 * and reconnects with one backoff policy (100 ms doubling to 5 s, each
 * delay jittered down to half). What to send, and when, is the daemon's:
 * its query policy (setup statements, LISTEN, queues) sits on top.
 * Single-threaded: runs on the loop's thread; never blocks.
 *
 * States (enum rtw_pgconn_state) and the only legal moves (the table
 * pgconn__legal[] in pgconn.c); one setter changes the state and aborts on
 * any other move:
 *
 *   CLOSED      -> CONNECTING                  rtw_pgconn_start
 *   CONNECTING  -> READY | BACKOFF | CLOSED    connected, failed, close
 *   READY       -> BUSY | BACKOFF | CLOSED     send, lost, close
 *   BUSY        -> READY | BACKOFF | CLOSED    last result read, lost, close
 *   BACKOFF     -> CONNECTING | CLOSED         the reconnect timer, close
 *
 *   CLOSED: no connection, nothing scheduled (before start, after close).
 *   CONNECTING: PQconnectPoll under way.
 *   READY: connected, no query in flight: the owner may send one.
 *   BUSY: one query in flight; its results arrive through on_result, then
 *         on_done (back to READY).
 *   BACKOFF: the connection failed or was lost; the reconnect timer runs.
 *
 * Callbacks run from the loop, or from rtw_pgconn_send_* when the send
 * finds the connection dead. They may send, close, or start again; after
 * a callback returns, the connection looks at its state afresh.
 */
#ifndef RTW_PGCONN_H
#define RTW_PGCONN_H

#include "loop.h"

#include <libpq-fe.h>

enum rtw_pgconn_state {
	RTW_PGCONN_CLOSED,
	RTW_PGCONN_CONNECTING,
	RTW_PGCONN_READY,
	RTW_PGCONN_BUSY,
	RTW_PGCONN_BACKOFF,
	RTW_PGCONN_NSTATES
};

#define RTW_PGCONN_BACKOFF_MIN_MS 100
#define RTW_PGCONN_BACKOFF_MAX_MS 5000

struct rtw_pgconn;

struct rtw_pgconn_callbacks {
	/* Connected (state READY): send the setup (LISTEN, PREPARE, ...). */
	void (*on_ready)(struct rtw_pgconn *pc, void *arg);
	/* One result of the query in flight (state BUSY), success or a
	 * statement error. res is borrowed: cleared after the call (never
	 * PQclear it; copy what you keep, or take it with
	 * rtw_pgconn_take_result). Not const, as libpq's PQcmdTuples
	 * wants it so. A result that reports the loss of the connection (SQLSTATE
	 * class 08, 57P01-57P03) is not delivered: on_lost runs instead.
	 * Required. */
	void (*on_result)(struct rtw_pgconn *pc, PGresult *res, void *arg);
	/* The query in flight ended after its last result (state READY): the
	 * owner may send the next one. May be NULL. */
	void (*on_done)(struct rtw_pgconn *pc, void *arg);
	/* One notification; channel and payload are borrowed (freed after the
	 * call). Delivered after the results read in the same pass. May be
	 * NULL. */
	void (*on_notify)(struct rtw_pgconn *pc, const char *channel, const char *payload, void *arg);
	/* The connection failed or was lost (state BACKOFF); the query in
	 * flight, if any, is abandoned: its remaining results never come. why
	 * is one line, borrowed. The reconnect is already scheduled. May be
	 * NULL. */
	void (*on_lost)(struct rtw_pgconn *pc, const char *why, void *arg);
};

/* Fields are the connection's; use the accessors below. */
struct rtw_pgconn {
	enum rtw_pgconn_state state;
	struct rtw_loop *loop;
	struct rtw_io io;
	struct rtw_timer timer; /* reconnect backoff */
	PGconn *conn;
	char *conninfo;
	char *app_name;
	struct rtw_pgconn_callbacks cb;
	void *arg;
	uint64_t backoff_ms; /* the last delay's base; 0 after a connect */
	uint64_t gen;	     /* bumped per connection: callbacks may replace it */
	bool was_ready;	     /* READY at least once (for the log and counter) */
	uint64_t reconnects; /* times READY again after a loss */
	PGresult *res;	     /* the result on_result is looking at */
	char err[256];	     /* the last failure, one line */
};

/* Sets pc up in state CLOSED. conninfo (a libpq connection string or URI)
 * and app_name (fallback_application_name: the string wins) are copied;
 * cb is copied; arg is passed to every callback. Creates the backoff
 * timer on loop. RTW_ERROR when out of memory or timerfd. */
int rtw_pgconn_init(struct rtw_pgconn *pc, struct rtw_loop *loop, const char *conninfo, const char *app_name,
		    const struct rtw_pgconn_callbacks *cb, void *arg) RTW_WUR;

/* CLOSED -> CONNECTING: starts connecting. A connect that fails at once
 * goes to BACKOFF through on_lost. A no-op in any other state. */
void rtw_pgconn_start(struct rtw_pgconn *pc);

/* Any -> CLOSED: finishes the connection (a query in flight is abandoned
 * without a callback) and stops the timer. rtw_pgconn_start may follow. */
void rtw_pgconn_close(struct rtw_pgconn *pc);

/* Closes and releases everything pc holds but pc itself. Outside a loop
 * pass, or keep pc allocated until the pass ends (see lib/loop.h). */
void rtw_pgconn_free(struct rtw_pgconn *pc);

/* READY -> BUSY: sends one query (PQsendQuery, PQsendQueryParams,
 * PQsendPrepare, PQsendQueryPrepared; text parameters and results) and
 * flushes what it can. Arguments are copied by libpq before return.
 * RTW_OK; RTW_AGAIN when the state is not READY (nothing sent); RTW_ERROR
 * when the connection proved dead: it is in BACKOFF and on_lost has run
 * before this returns. */
int rtw_pgconn_send_query(struct rtw_pgconn *pc, const char *sql) RTW_WUR;
int rtw_pgconn_send_params(struct rtw_pgconn *pc, const char *sql, int nparams, const char *const *params) RTW_WUR;
int rtw_pgconn_send_prepare(struct rtw_pgconn *pc, const char *name, const char *sql, int nparams) RTW_WUR;
int rtw_pgconn_send_prepared(struct rtw_pgconn *pc, const char *name, int nparams, const char *const *params) RTW_WUR;

static inline enum rtw_pgconn_state rtw_pgconn_state(const struct rtw_pgconn *pc)
{
	return pc->state;
}

/* Inside on_result only: takes the result being delivered, which the
 * caller then owns (PQclear it); for an owner that must wait for on_done
 * before it may act on it (a statement counts only once its transaction
 * ended). NULL outside on_result or when taken already. */
PGresult *rtw_pgconn_take_result(struct rtw_pgconn *pc) RTW_WUR;

/* READY or BUSY. */
static inline bool rtw_pgconn_up(const struct rtw_pgconn *pc)
{
	return pc->state == RTW_PGCONN_READY || pc->state == RTW_PGCONN_BUSY;
}

/* The libpq connection while up (borrowed: for PQescape*, PQbackendPID;
 * never send, read or finish through it), else NULL. */
static inline PGconn *rtw_pgconn_pg(const struct rtw_pgconn *pc)
{
	return rtw_pgconn_up(pc) ? pc->conn : NULL;
}

/* The last failure as one line ("" before any). */
static inline const char *rtw_pgconn_error(const struct rtw_pgconn *pc)
{
	return pc->err;
}

/* "closed", "connecting", "ready", "busy", "backoff". */
const char *rtw_pgconn_state_name(enum rtw_pgconn_state s);

/* True when moving from one state to another is legal (the table). */
bool rtw_pgconn_legal(enum rtw_pgconn_state from, enum rtw_pgconn_state to);

/* The backoff policy, pure so it can be tested: the next base delay after
 * prev (0: none yet) is 100 ms, then double, at most 5 s; the delay used
 * is base - base/2 * r / 2^32 for a random r, so within [base/2, base]. */
uint64_t rtw_pgconn_backoff_next(uint64_t prev_ms);
uint64_t rtw_pgconn_backoff_jitter(uint64_t base_ms, uint32_t r);

/* Copies text into out (n bytes, truncated) on one line: each run of
 * spaces, tabs and newlines becomes one space, none leads or trails. For
 * libpq's multi-line messages. */
void rtw_pgconn_oneline(const char *text, char *out, size_t n);

#endif
