/*
 * pg.c: rtw-sse's one PostgreSQL connection, non-blocking on the loop:
 * connect and reconnect with backoff, LISTEN rtw_messages, the global
 * (xid, id) tail below the settled horizon rtw_horizon() (see
 * sql/001_init.sql), and the per-connection queries (handshake, catch-up)
 * run one at a time between tail queries. Never blocks; never touches a
 * client socket (it hands rows to conn.c).
 *
 * Phase order for one readable event: PQconsumeInput, every complete
 * result, PQnotifies, then the next query. The loop flushes client output
 * after this returns.
 */
#include "config.h"
#include "sse.h"
#include "log.h"
#include "msg.h"
#include "pgutil.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define PG_ROW_COLS                                                                                                    \
	"m.xid::text, m.id::text, m.stream_id, m.author_id, m.to_user_id, m.message::text, m.ts::text, m.type, "       \
	"m.widget_key::text, rtw_rfc3339(m.created_at), extract(epoch from m.created_at)::text"

/* Rows after $1,$2 in stream order; settled says whether it is below the
 * horizon (deliverable). Unsettled rows come last since they have the
 * larger xids; their presence means: re-poll soon. */
static const char pg__tail_sql[] = "SELECT " PG_ROW_COLS ", m.xid < h.h"
				   " FROM rtw_messages m, (SELECT rtw_horizon() AS h) h"
				   " WHERE (m.xid, m.id) > ($1::xid8, $2::bigint)"
				   " ORDER BY m.xid, m.id LIMIT $3::int";

/* Qualified names: a bare "xid" in ORDER BY would be the text output
 * column, and text order is not stream order ("9" > "10"). */
static const char pg__cursor_sql[] = "SELECT m.xid::text, m.id::text FROM rtw_messages m WHERE m.xid < rtw_horizon()"
				     " ORDER BY m.xid DESC, m.id DESC LIMIT 1";

/* One subscriber's rows in (from, to]: broadcasts, and privates and
 * webhook results addressed to it (broadcast <=> to_user_id IS NULL). */
static const char pg__catchup_sql[] = "SELECT " PG_ROW_COLS " FROM rtw_messages m"
				      " WHERE m.stream_id = $1"
				      " AND (m.xid, m.id) > ($2::xid8, $3::bigint)"
				      " AND (m.xid, m.id) <= ($4::xid8, $5::bigint)"
				      " AND (m.to_user_id IS NULL OR m.to_user_id = $6)"
				      " AND ($7::uuid IS NULL OR m.widget_key = $7::uuid)"
				      " ORDER BY m.xid, m.id LIMIT $8::int";

/* The widget filter exists, the Origin is allowed by a widget, and the
 * resume id's position when it is a message this subscriber may see. */
static const char pg__handshake_sql[] =
    "SELECT CASE WHEN $1::uuid IS NULL THEN true"
    " ELSE EXISTS (SELECT 1 FROM rtw_widgets WHERE widget_key = $1::uuid AND enabled) END,"
    " CASE WHEN $5::text IS NULL THEN false"
    " ELSE EXISTS (SELECT 1 FROM rtw_widgets WHERE enabled AND ($1::uuid IS NULL OR widget_key = $1::uuid)"
    " AND $5::text = ANY (allowed_origins)) END,"
    " (SELECT xid::text FROM rtw_messages WHERE id = $2::bigint AND stream_id = $3"
    " AND (to_user_id IS NULL OR to_user_id = $4))";

static const struct {
	const char *name, *sql;
	int nparams;
} pg__stmts[] = {
    {"sse_tail", pg__tail_sql, 3},
    {"sse_cursor", pg__cursor_sql, 0},
    {"sse_catchup", pg__catchup_sql, 8},
    {"sse_handshake", pg__handshake_sql, 5},
};

enum {
	PG_COL_XID,
	PG_COL_ID,
	PG_COL_STREAM,
	PG_COL_AUTHOR,
	PG_COL_TO,
	PG_COL_MSG,
	PG_COL_TS,
	PG_COL_TYPE,
	PG_COL_WIDGET,
	PG_COL_CREATED,
	PG_COL_EPOCH,
	PG_COL_SETTLED
};

static void pg__lost(struct sse_ctx *ctx, const char *why);
static void pg__send_next(struct sse_ctx *ctx);

bool sse_pg_up(const struct sse_ctx *ctx)
{
	return ctx->pg_state == SSE_PG_READY;
}

static void pg__set_events(struct sse_ctx *ctx, uint32_t ev)
{
	if (ctx->pg_fd < 0 || ev == ctx->pg_events)
		return;
	ctx->pg_events = ev;
	sse_ctx_mod_fd(ctx, ctx->pg_fd, &ctx->h_pg, ev);
}

/* (Re)registers PQsocket, which may change while connecting: with a
 * multi-host DSN libpq closes a refused host's socket and opens the next
 * one, often under the same number, which the close already dropped from
 * epoll. So while connecting it is registered afresh every time. */
static void pg__track_socket(struct sse_ctx *ctx, uint32_t ev)
{
	int fd = PQsocket(ctx->pg);

	if (fd != ctx->pg_fd || ctx->pg_state == SSE_PG_CONNECTING) {
		if (ctx->pg_fd >= 0)
			epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, ctx->pg_fd, NULL);
		ctx->pg_fd = fd;
		ctx->pg_events = 0;
		if (fd >= 0) {
			struct epoll_event e = {.events = ev, .data.ptr = &ctx->h_pg};
			epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &e);
			ctx->pg_events = ev;
		}
		return;
	}
	pg__set_events(ctx, ev);
}

static void pg__schedule_reconnect(struct sse_ctx *ctx)
{
	ctx->pg_state = SSE_PG_DOWN;
	ctx->backoff_ms = ctx->backoff_ms ? ctx->backoff_ms * 2 : 100;
	if (ctx->backoff_ms > 5000)
		ctx->backoff_ms = 5000;
	sse_pg_timer_arm(ctx, ctx->backoff_ms);
}

void sse_pg_close(struct sse_ctx *ctx)
{
	if (ctx->pg_fd >= 0)
		epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, ctx->pg_fd, NULL);
	ctx->pg_fd = -1;
	ctx->pg_events = 0;
	if (ctx->pg) {
		PQfinish(ctx->pg);
		ctx->pg = NULL;
	}
}

static void pg__connect_poll(struct sse_ctx *ctx)
{
	switch (PQconnectPoll(ctx->pg)) {
	case PGRES_POLLING_READING: pg__track_socket(ctx, EPOLLIN); return;
	case PGRES_POLLING_WRITING: pg__track_socket(ctx, EPOLLOUT); return;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(ctx->pg, 1) != 0) {
			pg__lost(ctx, "could not set non-blocking mode");
			return;
		}
		pg__track_socket(ctx, EPOLLIN);
		ctx->pg_state = SSE_PG_SETUP;
		ctx->pg_setup_step = 0;
		ctx->pg_q = SSE_Q_NONE;
		pg__send_next(ctx);
		return;
	default: pg__lost(ctx, PQerrorMessage(ctx->pg)); return;
	}
}

void sse_pg_start(struct sse_ctx *ctx)
{
	/* the DSN wins; the name lets operators find this backend */
	static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *const vals[] = {ctx->cfg->pgdsn, "rtw-sse", NULL};

	ctx->pg = PQconnectStartParams(keys, vals, 1);
	if (ctx->pg == NULL || PQstatus(ctx->pg) == CONNECTION_BAD) {
		pg__lost(ctx, ctx->pg ? PQerrorMessage(ctx->pg) : "out of memory");
		return;
	}
	ctx->pg_state = SSE_PG_CONNECTING;
	pg__track_socket(ctx, EPOLLOUT);
	pg__connect_poll(ctx);
}

static void pg__lost(struct sse_ctx *ctx, const char *why)
{
	char msg[256];
	struct sse_conn *c = ctx->pg_job_conn;
	enum sse_pg_query q = ctx->pg_q;

	snprintf(msg, sizeof(msg), "%s", why ? why : "");
	msg[strcspn(msg, "\r\n")] = '\0';
	log_warn("lost the database connection: %s", msg);
	sse_pg_close(ctx);
	ctx->pg_q = SSE_Q_NONE;
	ctx->pg_job_conn = NULL;
	if (c) {
		c->pg_job = false;
		if (q == SSE_Q_HANDSHAKE)
			sse_conn_handshake_done(c, NULL);
		else
			sse_conn_catchup_done(c, false, false);
	}
	pg__schedule_reconnect(ctx);
}

void sse_pg_timer(struct sse_ctx *ctx)
{
	if (ctx->pg_state == SSE_PG_DOWN) {
		log_info("connecting to the database");
		sse_pg_start(ctx);
		return;
	}
	/* safety poll or a re-poll for rows behind the horizon */
	ctx->tail_wanted = true;
	sse_pg_kick(ctx);
}

static int pg__flush(struct sse_ctx *ctx)
{
	int r = PQflush(ctx->pg);

	if (r < 0) {
		pg__lost(ctx, PQerrorMessage(ctx->pg));
		return RTW_ERROR;
	}
	pg__set_events(ctx, r == 1 ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
	return RTW_OK;
}

static void pg__pos_text(struct sse_pos p, char xid[24], char id[24])
{
	snprintf(xid, 24, "%" PRIu64, p.xid);
	snprintf(id, 24, "%" PRId64, p.id);
}

static int pg__send_prepared(struct sse_ctx *ctx, enum sse_pg_query q, const char *stmt, int n, const char *const *v)
{
	if (!PQsendQueryPrepared(ctx->pg, stmt, n, v, NULL, NULL, 0)) {
		pg__lost(ctx, PQerrorMessage(ctx->pg));
		return RTW_ERROR;
	}
	ctx->pg_q = q;
	return pg__flush(ctx);
}

static void pg__send_setup(struct sse_ctx *ctx)
{
	int ok;

	if (ctx->pg_setup_step == 0)
		ok = PQsendQuery(ctx->pg, "LISTEN rtw_messages");
	else {
		int i = ctx->pg_setup_step - 1;
		ok = PQsendPrepare(ctx->pg, pg__stmts[i].name, pg__stmts[i].sql, pg__stmts[i].nparams, NULL);
	}
	if (!ok) {
		pg__lost(ctx, PQerrorMessage(ctx->pg));
		return;
	}
	ctx->pg_q = SSE_Q_SETUP;
	(void)pg__flush(ctx);
}

static void pg__send_tail(struct sse_ctx *ctx)
{
	char xid[24], id[24], lim[16];
	const char *v[3] = {xid, id, lim};

	pg__pos_text(ctx->cursor, xid, id);
	snprintf(lim, sizeof(lim), "%d", ctx->cfg->sse_batch_rows);
	ctx->tail_wanted = false;
	(void)pg__send_prepared(ctx, SSE_Q_TAIL, "sse_tail", 3, v);
}

static void pg__send_job(struct sse_ctx *ctx, struct sse_conn *c)
{
	ctx->pg_job_conn = c;
	c->pg_job = true;
	if (c->state == SSE_CONN_HANDSHAKE) {
		const char *v[5] = {c->has_widget ? c->widget : NULL, c->hs->last_id, c->sub.stream->id,
				    c->sub.user->id, c->hs->origin};
		(void)pg__send_prepared(ctx, SSE_Q_HANDSHAKE, "sse_handshake", 5, v);
	} else {
		char fx[24], fi[24], tx[24], ti[24], lim[16];
		const char *v[8] = {
		    c->sub.stream->id, fx, fi, tx, ti, c->sub.user->id, c->has_widget ? c->widget : NULL, lim};
		pg__pos_text(c->pos, fx, fi);
		pg__pos_text(ctx->cursor, tx, ti);
		snprintf(lim, sizeof(lim), "%d", ctx->cfg->sse_batch_rows);
		ctx->pg_job_target = ctx->cursor;
		(void)pg__send_prepared(ctx, SSE_Q_CATCHUP, "sse_catchup", 8, v);
	}
}

/* Starts the next query when none is in flight. */
static void pg__send_next(struct sse_ctx *ctx)
{
	if (ctx->pg_q != SSE_Q_NONE || ctx->pg == NULL)
		return;
	if (ctx->pg_state == SSE_PG_SETUP) {
		pg__send_setup(ctx);
		return;
	}
	if (ctx->pg_state != SSE_PG_READY)
		return;
	if (!ctx->cursor_valid) {
		(void)pg__send_prepared(ctx, SSE_Q_CURSOR, "sse_cursor", 0, NULL);
		return;
	}
	for (;;) {
		bool have_jobs = !sse_list_empty(&ctx->jobs);
		if (ctx->tail_wanted && (!ctx->jobs_turn || !have_jobs)) {
			ctx->jobs_turn = true;
			pg__send_tail(ctx);
			return;
		}
		if (!have_jobs)
			return;
		ctx->jobs_turn = false;
		struct sse_conn *c = SSE_CONTAINER(ctx->jobs.next, struct sse_conn, job_link);
		sse_list_del(&c->job_link);
		c->queued_job = false;
		if (c->state == SSE_CONN_CATCHING_UP && sse_pos_cmp(c->pos, ctx->cursor) >= 0) {
			/* already at (or past) the cursor: nothing to fetch */
			sse_conn_catchup_done(c, true, false);
			continue;
		}
		if (c->state != SSE_CONN_HANDSHAKE && c->state != SSE_CONN_CATCHING_UP)
			continue;
		pg__send_job(ctx, c);
		return;
	}
}

void sse_pg_kick(struct sse_ctx *ctx)
{
	pg__send_next(ctx);
}

static bool pg__parse_pos(const char *xid, const char *id, struct sse_pos *out)
{
	char *end;

	errno = 0;
	out->xid = strtoull(xid, &end, 10);
	if (*end || errno)
		return false;
	out->id = strtoll(id, &end, 10);
	return *end == '\0' && errno == 0;
}

static void pg__row(const PGresult *res, int i, struct msg_stored *m)
{
	m->id = PQgetvalue(res, i, PG_COL_ID);
	m->stream_id = PQgetvalue(res, i, PG_COL_STREAM);
	m->author_id = PQgetvalue(res, i, PG_COL_AUTHOR);
	m->to_user_id = PQgetisnull(res, i, PG_COL_TO) ? NULL : PQgetvalue(res, i, PG_COL_TO);
	m->message_json = PQgetvalue(res, i, PG_COL_MSG);
	m->timestamp = PQgetvalue(res, i, PG_COL_TS);
	m->type = PQgetvalue(res, i, PG_COL_TYPE);
	m->widget_key = PQgetvalue(res, i, PG_COL_WIDGET);
	m->created_at = PQgetvalue(res, i, PG_COL_CREATED);
}

static void pg__tail_result(struct sse_ctx *ctx, PGresult *res)
{
	int n = PQntuples(res), i;
	double now = (double)rtw_wall_us() / 1e6;

	ctx->tail_pending = false;
	for (i = 0; i < n; i++) {
		struct sse_pos pos;
		struct msg_stored m;
		const char *to;
		struct sse_stream *st;

		if (PQgetvalue(res, i, PG_COL_SETTLED)[0] != 't') {
			ctx->tail_pending = true;
			break;
		}
		if (!pg__parse_pos(PQgetvalue(res, i, PG_COL_XID), PQgetvalue(res, i, PG_COL_ID), &pos))
			continue;
		ctx->cursor = pos;
		ctx->m.tail_rows++;
		st = sse_index_stream(&ctx->ix, PQgetvalue(res, i, PG_COL_STREAM));
		if (st == NULL)
			continue; /* nobody listens: do not even format it */
		to = PQgetisnull(res, i, PG_COL_TO) ? NULL : PQgetvalue(res, i, PG_COL_TO);
		if (to != NULL && sse_index_user(st, to) == NULL)
			continue;
		pg__row(res, i, &m);
		struct sse_frame *f = sse_frame_row(&m, pos);
		if (f == NULL) {
			log_error("could not format message %s", m.id);
			continue;
		}
		sse_metrics_lag(ctx, now - strtod(PQgetvalue(res, i, PG_COL_EPOCH), NULL));
		sse_conn_dispatch(ctx, f, m.stream_id, to, m.widget_key);
		sse_frame_unref(f);
	}
	if (n == ctx->cfg->sse_batch_rows && !ctx->tail_pending) {
		ctx->tail_wanted = true; /* a full batch: more may follow */
		return;
	}
	if (ctx->tail_pending) {
		ctx->repoll_ms = ctx->repoll_ms ? ctx->repoll_ms * 2 : 5;
		if (ctx->repoll_ms > (uint64_t)ctx->cfg->sse_poll_interval_ms)
			ctx->repoll_ms = (uint64_t)ctx->cfg->sse_poll_interval_ms;
		sse_pg_timer_arm(ctx, ctx->repoll_ms);
	} else {
		ctx->repoll_ms = 0;
		sse_pg_timer_arm(ctx, (uint64_t)ctx->cfg->sse_poll_interval_ms);
	}
}

static void pg__catchup_result(struct sse_ctx *ctx, struct sse_conn *c, PGresult *res)
{
	int n = PQntuples(res);
	bool full = n == ctx->cfg->sse_batch_rows;

	for (int i = 0; i < n; i++) {
		struct sse_pos pos;
		struct msg_stored m;
		struct sse_frame *f;

		if (!pg__parse_pos(PQgetvalue(res, i, PG_COL_XID), PQgetvalue(res, i, PG_COL_ID), &pos))
			continue;
		pg__row(res, i, &m);
		f = sse_frame_row(&m, pos);
		if (f == NULL) {
			log_error("could not format message %s", m.id);
		} else {
			sse_conn_push(c, f, false);
			sse_frame_unref(f);
		}
		c->pos = pos;
	}
	if (!full && sse_pos_cmp(c->pos, ctx->pg_job_target) < 0)
		c->pos = ctx->pg_job_target;
	sse_conn_catchup_done(c, true, full);
}

static void pg__result(struct sse_ctx *ctx, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
	struct sse_conn *c = ctx->pg_job_conn;

	if (!ok) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\r\n")] = '\0';
		log_error("query failed: %s", msg);
	}
	switch (ctx->pg_q) {
	case SSE_Q_SETUP:
		if (ok)
			ctx->pg_setup_step++;
		break;
	case SSE_Q_CURSOR:
		if (ok) {
			if (PQntuples(res) == 1)
				ok = pg__parse_pos(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), &ctx->cursor);
			ctx->cursor_valid = ok;
			ctx->tail_wanted = true;
		}
		break;
	case SSE_Q_TAIL:
		if (ok)
			pg__tail_result(ctx, res);
		else
			sse_pg_timer_arm(ctx, 1000);
		break;
	case SSE_Q_HANDSHAKE:
		if (c) {
			c->pg_job = false;
			ctx->pg_job_conn = NULL;
			sse_conn_handshake_done(c, ok ? res : NULL);
		}
		break;
	case SSE_Q_CATCHUP:
		if (c) {
			c->pg_job = false;
			ctx->pg_job_conn = NULL;
			if (ok)
				pg__catchup_result(ctx, c, res);
			else
				sse_conn_close(c); /* a statement error would repeat */
		}
		break;
	default: break;
	}
}

static void pg__query_done(struct sse_ctx *ctx)
{
	enum sse_pg_query q = ctx->pg_q;

	ctx->pg_q = SSE_Q_NONE;
	ctx->pg_job_conn = NULL;
	if (q == SSE_Q_SETUP && ctx->pg_setup_step > (int)RTW_ARRAY_LEN(pg__stmts)) {
		ctx->pg_state = SSE_PG_READY;
		ctx->backoff_ms = 0;
		if (ctx->pg_was_ready)
			ctx->m.pg_reconnects++;
		ctx->pg_was_ready = true;
		ctx->tail_wanted = true; /* catch up from the cursor: nothing lost */
		log_info("database connection ready");
	}
}

void sse_pg_event(struct sse_ctx *ctx, uint32_t events)
{
	PGnotify *n;

	if (ctx->pg_state == SSE_PG_CONNECTING) {
		pg__connect_poll(ctx);
		return;
	}
	if (ctx->pg == NULL)
		return;
	if ((events & EPOLLOUT) && pg__flush(ctx) != RTW_OK)
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (!PQconsumeInput(ctx->pg)) {
			pg__lost(ctx, PQerrorMessage(ctx->pg));
			return;
		}
	}
	while (ctx->pg_q != SSE_Q_NONE && !PQisBusy(ctx->pg)) {
		PGresult *res = PQgetResult(ctx->pg);
		if (res == NULL) {
			pg__query_done(ctx);
			break;
		}
		pg__result(ctx, res);
		PQclear(res);
		if (ctx->pg == NULL)
			return;
	}
	while ((n = PQnotifies(ctx->pg)) != NULL) {
		ctx->tail_wanted = true;
		PQfreemem(n);
	}
	if (PQstatus(ctx->pg) == CONNECTION_BAD) {
		pg__lost(ctx, PQerrorMessage(ctx->pg));
		return;
	}
	pg__send_next(ctx);
}
