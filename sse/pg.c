/*
 * pg.c: rtw-sse's query policy on its one PostgreSQL connection (the
 * connection half, with its reconnect backoff, is lib/pgconn.c): LISTEN
 * and the prepared statements after every connect, the global (xid, id)
 * tail below the settled horizon rtw_horizon() (see sql/003_horizon.sql),
 * shared per database when sse.shared_tail is on: the process holding the
 * leader lock tails and publishes each settled range (NOTIFY rtw_settled),
 * the others read behind it with a plain range scan or pass ranges of
 * streams they do not serve, notice a missed note from the positions, and
 * tail alone when the leader falls silent (doc/architecture.md, "The
 * shared tail"); with the host relay (relay.c, sse.relay), an attached
 * process UNLISTENs and dispatches the server's batches instead of
 * tailing (sse_pg_relayed), reading from PostgreSQL only a range it
 * missed, and LISTENs again when the relay is lost, while the server
 * hands every batch its tail reads to relay.c; and the per-connection
 * queries (handshake, catch-up
 * batches bounded in rows and bytes) run one at a time between tail
 * queries, and only once the tail position is known, and presence.c's
 * statements when they are due, and the load of the bans in force (LISTEN
 * rtw_bans; bans.c); the safety poll and the re-poll behind
 * the horizon on its own timer. Never blocks; never touches a
 * client socket. Tier: below loop.c only; it hands rows and catch-up
 * batches down to conn.c and the handshake's answer to routes.c.
 *
 * Per readable event (lib/pgconn.c's order): every complete result, the
 * end of the query (the next one is sent), then notifications (the tail
 * is sent when the loop kicks after the pass). The loop flushes client
 * output after the pass.
 */
#include "config.h"
#include "sse.h"
#include "log.h"
#include "msg.h"
#include "pgutil.h"
#include "row.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

/* The position's xid, the stored message (lib/row.h), the epoch of
 * created_at (delivery lag). */
#define PG_ROW_COLS "m.xid::text, " RTW_ROW_COLS ", extract(epoch from m.created_at)::text"

/* The shared tail's advisory locks (class 0x72747773, 'rtws'; not
 * rtw_mark_class(), whose locks hold the horizon), both session-level so
 * they die with their session: the leader's (key 1), taken by whoever gets
 * it first, and the followers' mark (key 2), held shared by every process
 * of the shared tail. The leader's tail asks whether anyone else holds the
 * mark (a lock never conflicts with its own holder): when nobody does, its
 * note would wake nobody and is not sent. */
#define PG_LOCK_CLASS "1920235379"
#define PG_LEADER_LOCK PG_LOCK_CLASS ", 1"
#define PG_FOLLOWER_LOCK PG_LOCK_CLASS ", 2"
#define PG_FOLLOWERS_NONE "SELECT pg_try_advisory_xact_lock(" PG_FOLLOWER_LOCK ") AS alone"

/* Rows after $1,$2 in stream order; settled says whether it is below the
 * horizon (deliverable). Unsettled rows come last since they have the
 * larger xids; their presence means: re-poll soon. */
static const char pg__tail_sql[] = "SELECT " PG_ROW_COLS ", m.xid < h.h, f.alone"
				   " FROM rtw_messages m, (SELECT rtw_horizon() AS h) h, (" PG_FOLLOWERS_NONE ") f"
				   " WHERE (m.xid, m.id) > ($1::xid8, $2::bigint)"
				   " ORDER BY m.xid, m.id LIMIT $3::int";

/* A follower's read behind the leader (sse.shared_tail): rows in
 * (cursor, settled], which the leader's tail proved settled, so no
 * horizon: one range scan of rtw_messages_order. The tail's columns, every
 * row settled. */
static const char pg__range_sql[] = "SELECT " PG_ROW_COLS ", true FROM rtw_messages m"
				    " WHERE (m.xid, m.id) > ($1::xid8, $2::bigint)"
				    " AND (m.xid, m.id) <= ($3::xid8, $4::bigint)"
				    " ORDER BY m.xid, m.id LIMIT $5::int";

/* A follower's poll: lead if nobody does, and whether any row lies past
 * the cursor (one index probe; nothing is read when nothing is new). */
static const char pg__probe_sql[] =
    "SELECT pg_try_advisory_lock(" PG_LEADER_LOCK "),"
    " EXISTS (SELECT 1 FROM rtw_messages m WHERE (m.xid, m.id) > ($1::xid8, $2::bigint))";

/* An attached process's poll (sse.relay): the probe's shape, never the
 * lock (a leader does not stay attached). */
static const char pg__behind_sql[] =
    "SELECT false, EXISTS (SELECT 1 FROM rtw_messages m WHERE (m.xid, m.id) > ($1::xid8, $2::bigint))";

/* The leader's note of a settled range (the payload: sse.h, SSE_NOTE_MAX).
 * A NOTIFY takes an xid, so its commit would wait for the WAL flush (and a
 * synchronous standby): a note is lost with the server anyway, so it does
 * not wait. */
static const char pg__note_sql[] = "SELECT set_config('synchronous_commit', 'off', true), pg_notify('rtw_settled', $1)";

/* Qualified names: a bare "xid" in ORDER BY would be the text output
 * column, and text order is not stream order ("9" > "10"). */
static const char pg__cursor_sql[] = "SELECT m.xid::text, m.id::text FROM rtw_messages m WHERE m.xid < rtw_horizon()"
				     " ORDER BY m.xid DESC, m.id DESC LIMIT 1";

/* One subscriber's rows in (from, to]: broadcasts, and privates and
 * webhook results addressed to it (broadcast <=> to_user_id IS NULL), and
 * the redact rows routed the same way, but no redacted message (its
 * redact row, later in the range, tells the client what went), at
 * most $8 rows and about $9 bytes: the innermost query reads at most $8
 * rows, the outer one keeps those whose bytes before them (each row
 * counted as its message text plus PG_ROW_OVERHEAD for the other columns
 * and the framing) are under $9, so the first row is always sent and a
 * batch is at most $9 plus one message. o_got (the rows read) tells the
 * caller whether the range may hold more: o_got = $8, or rows left out. */
#define PG_ROW_OVERHEAD "256"
/* The row limit of a connection's first catch-up batch; each batch not cut
 * by bytes doubles it (up to sse.batch_rows), one cut by bytes makes it
 * twice the rows kept: the query never reads far more rows than it sends
 * (octet_length of a big message costs its whole text). */
#define PG_CATCHUP_ROWS0 64
static const char pg__catchup_sql[] =
    "SELECT * FROM (SELECT b.*, sum(b.o_len) OVER (ORDER BY b.o_xid, b.o_id) AS o_run, count(*) OVER () AS o_got"
    " FROM (SELECT " PG_ROW_COLS ", m.xid AS o_xid, m.id AS o_id,"
    " octet_length(m.message::text) + " PG_ROW_OVERHEAD " AS o_len"
    " FROM rtw_messages m"
    " WHERE m.stream_id = $1"
    " AND (m.xid, m.id) > ($2::xid8, $3::bigint)"
    " AND (m.xid, m.id) <= ($4::xid8, $5::bigint)"
    " AND (m.to_user_id IS NULL OR m.to_user_id = $6)"
    " AND ($7::uuid IS NULL OR m.widget_key = $7::uuid)"
    " AND m.redacted_by IS NULL"
    " ORDER BY m.xid, m.id LIMIT $8::int) b) c"
    " WHERE c.o_run - c.o_len < $9::bigint ORDER BY c.o_xid, c.o_id";

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

/* presence.c's: this process's changed streams and heartbeat, and the
 * sums over every live process (sql/009_presence.sql). */
static const char pg__presence_put_sql[] = "SELECT rtw_presence_put($1, $2::int, $3::jsonb, $4::bool)";
static const char pg__presence_get_sql[] =
    "SELECT stream_id, connections, viewers FROM rtw_presence_counts($1::text[])";

/* bans.c's: the bans in force, as its keys (user, \x01, stream) and
 * their ends in unix seconds (0: none). */
static const char pg__bans_sql[] = "SELECT user_id || chr(1) || stream_id, coalesce(extract(epoch FROM until), 0)::text"
				   " FROM rtw_bans WHERE until IS NULL OR until > now() LIMIT $1::int";

static const struct {
	const char *name, *sql;
	int nparams;
} pg__stmts[] = {
    {"sse_tail", pg__tail_sql, 3},
    {"sse_range", pg__range_sql, 5},
    {"sse_probe", pg__probe_sql, 2},
    {"sse_behind", pg__behind_sql, 2},
    {"sse_note", pg__note_sql, 1},
    {"sse_cursor", pg__cursor_sql, 0},
    {"sse_catchup", pg__catchup_sql, 9},
    {"sse_handshake", pg__handshake_sql, 5},
    {"sse_presence_put", pg__presence_put_sql, 4},
    {"sse_presence_get", pg__presence_get_sql, 1},
    {"sse_bans", pg__bans_sql, 1},
};

/* The setup's first steps, before the statements are prepared. A
 * follower of the shared tail listens to the leader's notes instead of
 * every commit: only the leader LISTENs rtw_messages (pg__send_next); and
 * it takes the followers' mark (skipped when unshared). */
static const char *const pg__listens[] = {"LISTEN rtw_messages", "LISTEN rtw_bans",
					  "SELECT pg_advisory_lock_shared(" PG_FOLLOWER_LOCK ")"};
#define PG_NLISTENS ((int)RTW_ARRAY_LEN(pg__listens))

static const char *pg__listen_sql(const struct sse_ctx *ctx, int step)
{
	if (step == 0 && ctx->cfg->sse_shared_tail)
		return "LISTEN rtw_settled";
	return pg__listens[step];
}

/* Tails with the horizon itself: leader, unshared, or a follower's own. */
static bool pg__tails_alone(const struct sse_ctx *ctx)
{
	if (sse_relay_attached(ctx))
		return false; /* fed by the relay: reads only the ranges it missed */
	return !ctx->cfg->sse_shared_tail || ctx->leader || ctx->own_tail;
}

enum { PG_COL_XID, PG_COL_ROW, PG_COL_EPOCH = PG_COL_ROW + RTW_ROW_NCOLS, PG_COL_SETTLED, PG_COL_ALONE };

static void pg__send_next(struct sse_ctx *ctx);

/* The tail is wanted; rtw_sse_stage_seconds{stage="tail_wait"} times how
 * long it waits for its turn on the connection. */
static void pg__want_tail(struct sse_ctx *ctx)
{
	if (!ctx->tail_wanted)
		ctx->tail_wanted_us = rtw_wall_us();
	ctx->tail_wanted = true;
}

/* The PostgreSQL side's own timer: the safety poll and the re-poll for
 * rows behind the horizon (reconnects are lib/pgconn.c's). */
static void pg__timer_arm(struct sse_ctx *ctx, uint64_t ms)
{
	if (rtw_timer_start(&ctx->pg_timer, ms, 0) != RTW_OK)
		log_error("could not arm the poll timer: %s", strerror(errno));
}

/* The leader (or an unshared process) polls the tail, so the horizon and
 * writer_timeout are computed at least once per interval; a follower
 * probes. */
static void pg__timer(void *arg)
{
	struct sse_ctx *ctx = arg;

	if (sse_relay_attached(ctx) || (ctx->cfg->sse_shared_tail && !ctx->leader))
		ctx->probe_wanted = true;
	else
		pg__want_tail(ctx);
	sse_pg_kick(ctx);
}

/* The query in flight will not be answered: its connection hears so. */
static void pg__abandon(struct sse_ctx *ctx)
{
	struct sse_conn *c = ctx->pg_job_conn;
	enum sse_pg_query q = ctx->pg_q;

	ctx->pg_q = SSE_Q_NONE;
	ctx->pg_job_conn = NULL;
	if (q == SSE_Q_PRESENCE_PUT || q == SSE_Q_PRESENCE_GET)
		sse_presence_done(ctx, q, NULL);
	if (q == SSE_Q_BANS)
		ctx->bans.wanted = true; /* reloaded once connected again */
	if (c) {
		c->pg_job = false;
		if (q == SSE_Q_HANDSHAKE)
			sse_conn_want_job(c); /* held again until the reconnect (or its hold ends) */
		else
			sse_conn_catchup_done(c, false, false);
	}
}

static void pg__on_lost(struct rtw_pgconn *pc, const char *why, void *arg)
{
	struct sse_ctx *ctx = arg;

	(void)pc;
	(void)why; /* logged by lib/pgconn.c */
	ctx->pg_ready = false;
	/* the lock went with the session; a note not sent is found as a gap */
	ctx->leader = false;
	ctx->leader_listening = false;
	ctx->note_wanted = false;
	pg__abandon(ctx);
}

/* Sends q; RTW_ERROR means the connection proved dead (on_lost ran). */
static void pg__sent(struct sse_ctx *ctx, int rc)
{
	if (rc == RTW_AGAIN) /* not READY: cannot happen, pg__send_next checked */
		pg__abandon(ctx);
}

static void pg__on_ready(struct rtw_pgconn *pc, void *arg)
{
	struct sse_ctx *ctx = arg;

	(void)pc;
	ctx->pg_setup_step = 0;
	ctx->pg_q = SSE_Q_NONE;
	/* notes were missed while away: the first tail is our own, and we try
	 * to lead at once */
	ctx->own_tail = true;
	ctx->probe_wanted = ctx->cfg->sse_shared_tail;
	pg__send_next(ctx);
}

static bool pg__parse_pos(const char *xid, const char *id, struct sse_pos *out);

/* "XID:ID" up to a space or the end; *rest after it. */
static bool pg__note_pos(const char *s, struct sse_pos *out, const char **rest)
{
	char xid[24], id[24];
	size_t a = strcspn(s, ":"), b;

	if (a == 0 || a >= sizeof(xid) || s[a] != ':')
		return false;
	b = strcspn(s + a + 1, " ");
	if (b == 0 || b >= sizeof(id))
		return false;
	memcpy(xid, s, a);
	xid[a] = '\0';
	memcpy(id, s + a + 1, b);
	id[b] = '\0';
	*rest = s + a + 1 + b + (s[a + 1 + b] == ' ');
	return pg__parse_pos(xid, id, out);
}

/* Whether none of a note's streams ("*" or nothing: unknown) has a
 * subscriber here. */
static bool pg__serves_none(const struct sse_ctx *ctx, const char *streams)
{
	if (*streams == '\0' || strcmp(streams, "*") == 0)
		return false;
	while (*streams) {
		char id[MSG_ID_MAX + 1];
		size_t n = strcspn(streams, ",");
		if (n == 0 || n > MSG_ID_MAX)
			return false;
		memcpy(id, streams, n);
		id[n] = '\0';
		if (sse_index_stream(&ctx->ix, id) != NULL)
			return false;
		streams += n + (streams[n] == ',');
	}
	return true;
}

/* A follower hears that (from, to] is settled. A range that does not start
 * at the cursor means a note was missed (a reconnect, a new leader): the
 * range read from the cursor covers it. */
static void pg__heard_note(struct sse_ctx *ctx, const char *payload)
{
	struct sse_pos from, to;
	const char *rest;

	if (ctx->leader || !ctx->cfg->sse_shared_tail)
		return; /* its own */
	ctx->settled_heard_ms = rtw_loop_now(&ctx->loop);
	if (!pg__note_pos(payload, &from, &rest) || !pg__note_pos(rest, &to, &rest)) {
		log_warn("ignored a malformed rtw_settled note");
		return;
	}
	if (sse_pos_cmp(to, ctx->settled) > 0)
		ctx->settled = to;
	if (!ctx->cursor_valid || sse_pos_cmp(to, ctx->cursor) <= 0)
		return;
	if (sse_pos_cmp(from, ctx->cursor) != 0) {
		ctx->m.tail_gaps++;
	} else if (ctx->pg_q != SSE_Q_TAIL && !sse_relay_feeding(ctx) && pg__serves_none(ctx, rest)) {
		/* what the tail would do with these rows: nothing (it formats
		 * none for a stream without subscribers); a stream subscribed
		 * later starts at the cursor or catches up from the table */
		ctx->cursor = to;
		ctx->m.tail_skipped++;
		return;
	}
	pg__want_tail(ctx);
}

static void pg__on_notify(struct rtw_pgconn *pc, const char *channel, const char *payload, void *arg)
{
	struct sse_ctx *ctx = arg;

	(void)pc;
	/* sent when the loop kicks, after the pass */
	if (strcmp(channel, "rtw_bans") == 0) {
		ctx->bans.wanted = true;
		sse_relay_bans(ctx);
	} else if (strcmp(channel, "rtw_settled") == 0)
		pg__heard_note(ctx, payload);
	else
		pg__want_tail(ctx);
}

static void pg__pos_text(struct sse_pos p, char xid[24], char id[24])
{
	snprintf(xid, 24, "%" PRIu64, p.xid);
	snprintf(id, 24, "%" PRId64, p.id);
}

static void pg__send_prepared(struct sse_ctx *ctx, enum sse_pg_query q, const char *stmt, int n, const char *const *v)
{
	ctx->pg_q = q;
	pg__sent(ctx, rtw_pgconn_send_prepared(&ctx->pg, stmt, n, v));
}

static void pg__send_setup(struct sse_ctx *ctx)
{
	int i;

	if (ctx->pg_setup_step == 0)
		ctx->pg_listening = !sse_relay_attached(ctx);
	if (ctx->pg_setup_step < PG_NLISTENS && !ctx->pg_listening)
		ctx->pg_setup_step = PG_NLISTENS; /* fed by the host relay: a listener would only be woken */
	if (ctx->pg_setup_step == PG_NLISTENS - 1 && !ctx->cfg->sse_shared_tail)
		ctx->pg_setup_step++; /* no followers' mark */
	i = ctx->pg_setup_step - PG_NLISTENS;
	ctx->pg_q = SSE_Q_SETUP;
	if (ctx->pg_setup_step < PG_NLISTENS)
		pg__sent(ctx, rtw_pgconn_send_query(&ctx->pg, pg__listen_sql(ctx, ctx->pg_setup_step)));
	else
		pg__sent(ctx,
			 rtw_pgconn_send_prepare(&ctx->pg, pg__stmts[i].name, pg__stmts[i].sql, pg__stmts[i].nparams));
}

/* The tail, or a follower's range up to the settled position; false when
 * a follower has nothing to read. */
static bool pg__send_tail(struct sse_ctx *ctx)
{
	char xid[24], id[24], sx[24], si[24], lim[16];
	const char *v[5] = {xid, id, lim, NULL, NULL};
	bool alone = pg__tails_alone(ctx);

	ctx->tail_wanted = false;
	if (!alone && sse_pos_cmp(ctx->cursor, ctx->settled) >= 0)
		return false;
	pg__pos_text(ctx->cursor, xid, id);
	snprintf(lim, sizeof(lim), "%d", ctx->cfg->sse_batch_rows);
	ctx->tail_sent_us = rtw_wall_us();
	sse_metrics_stage(ctx, SSE_STAGE_TAIL_WAIT, (double)(ctx->tail_sent_us - ctx->tail_wanted_us) / 1e6);
	ctx->tail_alone = alone;
	if (alone) {
		ctx->own_tail = false;
		pg__send_prepared(ctx, SSE_Q_TAIL, "sse_tail", 3, v);
	} else {
		pg__pos_text(ctx->settled, sx, si);
		v[2] = sx;
		v[3] = si;
		v[4] = lim;
		pg__send_prepared(ctx, SSE_Q_TAIL, "sse_range", 5, v);
	}
	return true;
}

/* LISTENs (and the followers' mark) when the host relay was lost, none
 * when it feeds this process: then PostgreSQL's NOTIFY does not wake this
 * session (it wakes every listener of the database, whatever the
 * channel). Never the leader: a leader does not attach, and a probe won
 * while attaching is dropped here (pg_advisory_unlock_all). */
static const char pg__listen_shared_sql[] =
    "LISTEN rtw_settled; LISTEN rtw_bans; SELECT pg_advisory_lock_shared(" PG_FOLLOWER_LOCK ")";
static const char pg__listen_alone_sql[] = "LISTEN rtw_messages; LISTEN rtw_bans";
static const char pg__unlisten_sql[] = "UNLISTEN *; SELECT pg_advisory_unlock_all()";

/* The shared tail's own queries, before anything else: the leader's note
 * (followers wait on it), the LISTENs the relay's state asks for, the
 * leader's LISTEN, a follower's probe. */
static bool pg__send_shared(struct sse_ctx *ctx)
{
	if (ctx->note_wanted) {
		const char *v[1] = {ctx->note};
		ctx->note_wanted = false;
		pg__send_prepared(ctx, SSE_Q_NOTE, "sse_note", 1, v);
		return true;
	}
	if (ctx->pg_listening == sse_relay_attached(ctx)) {
		ctx->pg_q = SSE_Q_RELISTEN;
		pg__sent(ctx, rtw_pgconn_send_query(&ctx->pg, ctx->pg_listening		  ? pg__unlisten_sql
							      : ctx->cfg->sse_shared_tail ? pg__listen_shared_sql
											  : pg__listen_alone_sql));
		return true;
	}
	if (ctx->leader && !ctx->leader_listening) {
		ctx->pg_q = SSE_Q_LISTEN;
		/* its own notes would only wake it */
		pg__sent(ctx, rtw_pgconn_send_query(&ctx->pg, "UNLISTEN rtw_settled; LISTEN rtw_messages"));
		return true;
	}
	if (ctx->probe_wanted && !ctx->leader) {
		char xid[24], id[24];
		const char *v[2] = {xid, id};
		ctx->probe_wanted = false;
		pg__pos_text(ctx->cursor, xid, id);
		pg__send_prepared(ctx, SSE_Q_PROBE, sse_relay_attached(ctx) ? "sse_behind" : "sse_probe", 2, v);
		return true;
	}
	return false;
}

static void pg__send_job(struct sse_ctx *ctx, struct sse_conn *c)
{
	ctx->pg_job_conn = c;
	c->pg_job = true;
	if (c->state == SSE_CONN_HANDSHAKE) {
		/* a Last-Event-ID that is no message id is an unknown id (not
		 * resumed), never a failed query */
		const char *last = c->hs->last_id && msg_valid_id(c->hs->last_id) ? c->hs->last_id : NULL;
		const char *v[5] = {c->has_widget ? c->widget : NULL, last, c->sub.stream->id, c->sub.user->id,
				    c->hs->origin};
		pg__send_prepared(ctx, SSE_Q_HANDSHAKE, "sse_handshake", 5, v);
	} else {
		char fx[24], fi[24], tx[24], ti[24], lim[16], bytes[24];
		const char *v[9] = {
		    c->sub.stream->id, fx, fi, tx, ti, c->sub.user->id, c->has_widget ? c->widget : NULL, lim, bytes};
		size_t max = (size_t)ctx->cfg->sse_outbuf_max;
		/* what is left of the output bound (conn.c asks for a batch only
		 * below its low-water mark) */
		pg__pos_text(c->pos, fx, fi);
		pg__pos_text(ctx->cursor, tx, ti);
		if (c->catchup_rows == 0)
			c->catchup_rows = PG_CATCHUP_ROWS0;
		if (c->catchup_rows > (uint32_t)ctx->cfg->sse_batch_rows)
			c->catchup_rows = (uint32_t)ctx->cfg->sse_batch_rows;
		snprintf(lim, sizeof(lim), "%" PRIu32, c->catchup_rows);
		snprintf(bytes, sizeof(bytes), "%zu", c->out_bytes < max ? max - c->out_bytes : 1);
		ctx->pg_job_target = ctx->cursor;
		pg__send_prepared(ctx, SSE_Q_CATCHUP, "sse_catchup", 9, v);
	}
}

/* Starts the next query when none is in flight. */
static void pg__send_next(struct sse_ctx *ctx)
{
	if (ctx->pg_q != SSE_Q_NONE || rtw_pgconn_state(&ctx->pg) != RTW_PGCONN_READY)
		return;
	if (!ctx->pg_ready) {
		pg__send_setup(ctx);
		return;
	}
	if (!ctx->cursor_valid) {
		pg__send_prepared(ctx, SSE_Q_CURSOR, "sse_cursor", 0, NULL);
		return;
	}
	if (pg__send_shared(ctx))
		return;
	/* before handshakes: a banned user's stream is refused once loaded */
	if (sse_bans_due(ctx)) {
		char lim[16];
		const char *v[1] = {lim};
		snprintf(lim, sizeof(lim), "%d", SSE_BANS_MAX);
		pg__send_prepared(ctx, SSE_Q_BANS, "sse_bans", 1, v);
		return;
	}
	{
		/* at most two per interval: they never starve the tail */
		enum sse_pg_query q;
		const char *stmt, *v[4];
		int n;
		if (sse_presence_next(ctx, &q, &stmt, &n, v)) {
			pg__send_prepared(ctx, q, stmt, n, v);
			return;
		}
	}
	for (;;) {
		bool have_jobs = !sse_list_empty(&ctx->jobs);
		if (ctx->tail_wanted && (!ctx->jobs_turn || !have_jobs)) {
			ctx->jobs_turn = true;
			if (pg__send_tail(ctx))
				return;
			continue;
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

/* Adds a stream to the leader's note list unless it is there; "*" once
 * the list would not fit. */
static void pg__note_add(char *list, size_t *len, const char *stream)
{
	size_t n = strlen(stream);

	if (strcmp(list, "*") == 0)
		return;
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && memcmp(p, stream, n) == 0)
			return;
		p += k + (p[k] == ',');
	}
	if (*len + n + 1 + 96 > SSE_NOTE_MAX) { /* 96: the two positions */
		strcpy(list, "*");
		*len = 1;
		return;
	}
	if (*len)
		list[(*len)++] = ',';
	memcpy(list + *len, stream, n + 1);
	*len += n;
}

/* The leader publishes what its tail settled: (from, cursor] and the
 * streams in it, sent before the next query. */
static void pg__note(struct sse_ctx *ctx, struct sse_pos from, const char *streams)
{
	int len = snprintf(ctx->note, sizeof(ctx->note), "%" PRIu64 ":%" PRId64 " %" PRIu64 ":%" PRId64 " %s", from.xid,
			   from.id, ctx->cursor.xid, ctx->cursor.id, streams);

	if (len < 0 || (size_t)len >= sizeof(ctx->note))
		snprintf(ctx->note, sizeof(ctx->note), "%" PRIu64 ":%" PRId64 " %" PRIu64 ":%" PRId64 " *", from.xid,
			 from.id, ctx->cursor.xid, ctx->cursor.id);
	ctx->note_wanted = true;
}

/* Queues one settled row on the subscribers of its stream (or its
 * addressee) here; epoch: created_at's, for the delivery lag. */
static void pg__dispatch(struct sse_ctx *ctx, const struct msg_stored *m, struct sse_pos pos, const char *epoch,
			 double now)
{
	struct sse_stream *st = sse_index_stream(&ctx->ix, m->stream_id);
	const char *to = m->to_user_id;
	struct sse_frame *f;
	double lag;

	if (st == NULL)
		return; /* nobody listens: do not even format it */
	if (to != NULL && sse_index_user(st, to) == NULL)
		return;
	if ((f = sse_frame_row(m, pos)) == NULL) {
		log_error("could not format message %s", m->id);
		return;
	}
	lag = now - strtod(epoch, NULL);
	sse_metrics_lag(ctx, lag);
	f->hold_until_ms = sse_conn_hold_until(ctx, lag); /* conn.c: coalescing */
	sse_conn_dispatch(ctx, f, m->stream_id, to, m->widget_key);
	sse_frame_unref(f);
}

static void pg__tail_result(struct sse_ctx *ctx, PGresult *res)
{
	int n = PQntuples(res), i;
	uint64_t now_us = rtw_wall_us();
	double now = (double)now_us / 1e6;
	bool publish = ctx->cfg->sse_shared_tail && ctx->leader, follower = ctx->cfg->sse_shared_tail && !ctx->leader;
	struct sse_pos from = ctx->cursor;
	char streams[SSE_NOTE_MAX + 1] = "";
	size_t streams_len = 0;

	sse_metrics_stage(ctx, SSE_STAGE_TAIL_QUERY, (double)(now_us - ctx->tail_sent_us) / 1e6);
	ctx->tail_pending = false;
	for (i = 0; i < n; i++) {
		struct sse_pos pos;
		struct msg_stored m;

		if (PQgetvalue(res, i, PG_COL_SETTLED)[0] != 't') {
			ctx->m.tail_unsettled++;
			ctx->tail_pending = true;
			break;
		}
		rtw_row_message(res, i, PG_COL_ROW, &m);
		if (!pg__parse_pos(PQgetvalue(res, i, PG_COL_XID), m.id, &pos))
			continue;
		ctx->cursor = pos;
		ctx->m.tail_rows++;
		if (publish)
			pg__note_add(streams, &streams_len, m.stream_id);
		pg__dispatch(ctx, &m, pos, PQgetvalue(res, i, PG_COL_EPOCH), now);
	}
	/* the host's other processes get the same rows (i: the settled ones) */
	if (sse_pos_cmp(ctx->cursor, from) > 0)
		sse_relay_batch(ctx, from, ctx->cursor, res, i);
	/* no note when no other process holds the followers' mark */
	if (publish && sse_pos_cmp(ctx->cursor, from) > 0 &&
	    (PQnfields(res) <= PG_COL_ALONE || PQgetvalue(res, 0, PG_COL_ALONE)[0] != 't'))
		pg__note(ctx, from, streams);
	if (n == ctx->cfg->sse_batch_rows && !ctx->tail_pending) {
		/* a full batch: more may follow (a follower's own tail goes on
		 * alone, its range goes on to the settled position) */
		if (follower && ctx->tail_alone)
			ctx->own_tail = true;
		pg__want_tail(ctx);
		return;
	}
	if (follower) {
		/* behind the horizon is the leader's business: the probe watches */
		ctx->repoll_ms = 0;
		pg__timer_arm(ctx, (uint64_t)ctx->cfg->sse_poll_interval_ms);
		return;
	}
	if (ctx->tail_pending) {
		ctx->repoll_ms = ctx->repoll_ms ? ctx->repoll_ms * 2 : 5;
		if (ctx->repoll_ms > (uint64_t)ctx->cfg->sse_poll_interval_ms)
			ctx->repoll_ms = (uint64_t)ctx->cfg->sse_poll_interval_ms;
		pg__timer_arm(ctx, ctx->repoll_ms);
	} else {
		ctx->repoll_ms = 0;
		pg__timer_arm(ctx, (uint64_t)ctx->cfg->sse_poll_interval_ms);
	}
}

_Static_assert(PG_COL_EPOCH + 1 == SSE_RELAY_NCOLS, "a relayed row is the tail's columns up to the epoch");

void sse_pg_relayed(struct sse_ctx *ctx, struct sse_pos from, struct sse_pos to, int nrows, const char *const *v)
{
	double now = (double)rtw_wall_us() / 1e6;

	if (sse_pos_cmp(to, ctx->settled) > 0)
		ctx->settled = to; /* the server read it below the horizon */
	ctx->settled_heard_ms = rtw_loop_now(&ctx->loop);
	if (!ctx->cursor_valid || sse_pos_cmp(to, ctx->cursor) <= 0)
		return; /* the cursor query or a range reads up to settled */
	if (sse_pos_cmp(from, ctx->cursor) > 0 || ctx->pg_q == SSE_Q_TAIL) {
		/* rows before from were missed (attached late, a dropped
		 * batch), or a range in flight will move the cursor: read
		 * (cursor, settled] from PostgreSQL instead */
		if (sse_pos_cmp(from, ctx->cursor) > 0)
			ctx->m.tail_gaps++;
		pg__want_tail(ctx);
		return;
	}
	for (int i = 0; i < nrows; i++) {
		const char *const *row = v + (size_t)i * SSE_RELAY_NCOLS;
		struct msg_stored m;
		struct sse_pos pos;

		rtw_row_message_v(row + PG_COL_ROW, &m);
		if (row[PG_COL_XID] == NULL || !pg__parse_pos(row[PG_COL_XID], m.id, &pos) ||
		    sse_pos_cmp(pos, ctx->cursor) <= 0)
			continue; /* the part of the batch dispatched already */
		ctx->cursor = pos;
		ctx->m.tail_rows++;
		ctx->m.relay_rows++;
		pg__dispatch(ctx, &m, pos, row[PG_COL_EPOCH] ? row[PG_COL_EPOCH] : "0", now);
	}
	ctx->cursor = to; /* every row of (from, to] was in the batch */
}

static void pg__catchup_result(struct sse_ctx *ctx, struct sse_conn *c, PGresult *res)
{
	int n = PQntuples(res);
	int got_col = PQfnumber(res, "o_got");
	long got = n > 0 && got_col >= 0 ? strtol(PQgetvalue(res, 0, got_col), NULL, 10) : 0;
	/* more may follow: the row limit was reached, or bytes left rows out */
	bool full = n > 0 && (got >= (long)c->catchup_rows || got > n);

	c->catchup_rows = got > n ? (uint32_t)n * 2 : c->catchup_rows * 2;

	for (int i = 0; i < n; i++) {
		struct sse_pos pos;
		struct msg_stored m;
		struct sse_frame *f;

		rtw_row_message(res, i, PG_COL_ROW, &m);
		if (!pg__parse_pos(PQgetvalue(res, i, PG_COL_XID), m.id, &pos))
			continue;
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

/* A follower's poll answered: it leads now, or the leader has been silent
 * for a whole interval while rows wait past the cursor (it may be stuck;
 * the rows may also be unsettled), so the next tail is its own, horizon and
 * writer_timeout included. */
static void pg__probe_result(struct sse_ctx *ctx, PGresult *res)
{
	uint64_t poll = (uint64_t)ctx->cfg->sse_poll_interval_ms;
	bool won = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	bool behind = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';

	if (sse_relay_attached(ctx)) {
		/* a lock won while attaching is dropped by the relisten; a
		 * server silent for a whole interval while rows wait may be
		 * stuck: on our own for a while */
		if (behind && rtw_loop_now(&ctx->loop) - ctx->settled_heard_ms >= poll)
			sse_relay_leave(ctx, "silent while rows wait");
	} else if (won) {
		ctx->leader = true;
		ctx->m.leader_takes++;
		log_info("leading the shared tail of this database");
		pg__want_tail(ctx);
	} else if (behind && rtw_loop_now(&ctx->loop) - ctx->settled_heard_ms >= poll) {
		ctx->own_tail = true;
		ctx->m.tail_own++;
		pg__want_tail(ctx);
	}
	pg__timer_arm(ctx, poll);
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
			pg__want_tail(ctx);
		}
		break;
	case SSE_Q_TAIL:
		if (ok)
			pg__tail_result(ctx, res);
		else
			pg__timer_arm(ctx, 1000);
		break;
	case SSE_Q_HANDSHAKE:
		if (c) {
			c->pg_job = false;
			ctx->pg_job_conn = NULL;
			sse_route_handshake_done(c, ok ? res : NULL);
		}
		break;
	case SSE_Q_PRESENCE_PUT:
	case SSE_Q_PRESENCE_GET: sse_presence_done(ctx, ctx->pg_q, ok ? res : NULL); break;
	case SSE_Q_BANS: sse_bans_loaded(ctx, ok ? res : NULL); break;
	case SSE_Q_LISTEN: /* one result per statement; the LISTEN's comes last */
		ctx->leader_listening = ok && strcmp(PQcmdStatus(res), "LISTEN") == 0;
		pg__want_tail(ctx); /* commits before the LISTEN took effect */
		break;
	case SSE_Q_PROBE:
		if (ok)
			pg__probe_result(ctx, res);
		else
			pg__timer_arm(ctx, (uint64_t)ctx->cfg->sse_poll_interval_ms);
		break;
	case SSE_Q_CATCHUP:
		if (c) {
			c->pg_job = false;
			ctx->pg_job_conn = NULL;
			if (ok)
				pg__catchup_result(ctx, c, res);
			else {
				sse_conn_why(c, "error");
				sse_conn_close(c); /* a statement error would repeat */
			}
		}
		break;
	default: break;
	}
}

/* The query in flight ended after its last result. */
static void pg__on_done(struct rtw_pgconn *pc, void *arg)
{
	struct sse_ctx *ctx = arg;
	enum sse_pg_query q = ctx->pg_q;

	(void)pc;
	ctx->pg_q = SSE_Q_NONE;
	ctx->pg_job_conn = NULL;
	if (q == SSE_Q_RELISTEN) {
		/* failed or not: the probe and the gap check cover a missing
		 * LISTEN, and a retry would only repeat the failure */
		ctx->pg_listening = !ctx->pg_listening;
		if (ctx->pg_listening) {
			/* on our own again: from the cursor, with the horizon */
			ctx->own_tail = true;
			ctx->probe_wanted = ctx->cfg->sse_shared_tail;
			ctx->bans.wanted = true;
			ctx->settled_heard_ms = rtw_loop_now(&ctx->loop);
			pg__want_tail(ctx);
		}
	}
	if (q == SSE_Q_SETUP && ctx->pg_setup_step >= PG_NLISTENS + (int)RTW_ARRAY_LEN(pg__stmts)) {
		ctx->pg_ready = true;
		if (ctx->pg_was_ready)
			ctx->m.pg_reconnects++;
		ctx->pg_was_ready = true;
		pg__want_tail(ctx);	 /* catch up from the cursor: nothing lost */
		ctx->bans.wanted = true; /* a NOTIFY may have been missed meanwhile */
		log_info("database connection ready");
	}
	pg__send_next(ctx);
}

static void pg__on_result(struct rtw_pgconn *pc, PGresult *res, void *arg)
{
	(void)pc;
	pg__result(arg, res);
}

int sse_pg_start(struct sse_ctx *ctx)
{
	static const struct rtw_pgconn_callbacks cb = {
	    .on_ready = pg__on_ready,
	    .on_result = pg__on_result,
	    .on_done = pg__on_done,
	    .on_notify = pg__on_notify,
	    .on_lost = pg__on_lost,
	};

	if (rtw_timer_init(&ctx->loop, &ctx->pg_timer, pg__timer, ctx) != RTW_OK ||
	    rtw_pgconn_init(&ctx->pg, &ctx->loop, ctx->cfg->pgdsn, "rtw-sse", &cb, ctx) != RTW_OK)
		return RTW_ERROR;
	rtw_pgconn_start(&ctx->pg);
	return RTW_OK;
}

void sse_pg_close(struct sse_ctx *ctx)
{
	/* the query in flight is dropped unanswered: its connection may be freed */
	if (ctx->pg_job_conn) {
		ctx->pg_job_conn->pg_job = false;
		ctx->pg_job_conn = NULL;
	}
	rtw_pgconn_free(&ctx->pg);
	rtw_timer_close(&ctx->pg_timer);
	ctx->pg_ready = false;
}
