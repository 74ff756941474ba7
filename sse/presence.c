/*
 * presence.c: presence in rtw-sse: every sse.presence_interval_ms this
 * process writes its per-stream counts (connections, distinct viewers,
 * up to 1000 viewer ids) to PostgreSQL with one call of
 * rtw_presence_put() (sql/009_presence.sql), carrying only the streams
 * whose subscribers came or went since the last put (subs.c keeps that
 * list), which is also the process's heartbeat; then, when some
 * subscribers asked for presence=1, it reads the sums over every live
 * process for their streams in one query and sends presence frames to
 * them when the counts changed (at most one per stream every
 * PRESENCE_FRAME_MS). A put's cost depends on how many streams changed,
 * never on how many viewers a stream has. At a clean shutdown it removes
 * its rows; a killed process's rows expire with its heartbeat.
 *
 * Tier: below pg.c (which sends the statements this file prepares and
 * hands their answers back) and loop.c; above conn.c (frames) and subs.c
 * (counts). Runs on the loop thread; talks to PostgreSQL itself only in
 * sse_presence_drop, after the loop has ended.
 */
#include "config.h"
#include "sse.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRESENCE_USERS_MAX 1000	  /* ids per (process, stream) row */
#define PRESENCE_FRAME_MS 5000	  /* least time between two frames of a stream */
#define PRESENCE_DROP_TIMEOUT "2" /* seconds, connect of the shutdown's statement */

static void presence__timer(void *arg)
{
	struct sse_ctx *ctx = arg;

	/* pg.c sends it when the loop kicks it at the end of this pass */
	ctx->pres.put_wanted = true;
}

int sse_presence_start(struct sse_ctx *ctx)
{
	struct sse_presence *p = &ctx->pres;
	uint64_t ms = (uint64_t)ctx->cfg->sse_presence_interval_ms;
	unsigned char rnd[4];
	char host[64] = "", hex[9];

	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		return RTW_ERROR;
	rtw_hex(rnd, sizeof(rnd), hex);
	snprintf(p->instance, sizeof(p->instance), "%s:%d:%s", host, (int)getpid(), hex);
	/* two missed puts and a second of slack: a process that stops
	 * putting drops out of every sum within 2 intervals + 1 s */
	snprintf(p->ttl_ms, sizeof(p->ttl_ms), "%llu", (unsigned long long)(2 * ms + 1000));
	p->full = true;
	if (rtw_timer_init(&ctx->loop, &p->timer, presence__timer, ctx) != RTW_OK ||
	    rtw_timer_start(&p->timer, ms, ms) != RTW_OK)
		return RTW_ERROR;
	return RTW_OK;
}

/* {"s": stream, "c": connections, "v": viewers, "u": [up to 1000 ids]} */
static json_t *presence__row(const struct sse_stream *st)
{
	json_t *users = json_array();
	size_t n = 0;

	for (size_t b = 0; b < st->users.nbuckets && n < PRESENCE_USERS_MAX; b++) {
		for (const struct sse_hentry *e = st->users.buckets[b]; e && n < PRESENCE_USERS_MAX; e = e->next, n++)
			json_array_append_new(users, json_string(e->key));
	}
	return json_pack("{s:s,s:I,s:I,s:o}", "s", st->id, "c", (json_int_t)st->n_subs, "v",
			 (json_int_t)st->users.count, "u", users);
}

/* The rows of the next put: the streams gone and changed since the last
 * one, or every stream (full). Marks them written. */
static json_t *presence__put_rows(struct sse_ctx *ctx, bool full)
{
	struct sse_index *ix = &ctx->ix;
	json_t *rows = json_array();

	while (!sse_list_empty(&ix->gone)) {
		struct sse_gone *g = SSE_CONTAINER(ix->gone.next, struct sse_gone, link);
		/* back already: its changed row below replaces the old one */
		if (!full && sse_index_stream(ix, g->id) == NULL)
			json_array_append_new(rows, json_pack("{s:s,s:i}", "s", g->id, "c", 0));
		sse_list_del(&g->link);
		free(g);
	}
	ix->gone_lost = false;
	if (full) {
		for (size_t b = 0; b < ix->streams.nbuckets; b++) {
			for (struct sse_hentry *e = ix->streams.buckets[b]; e; e = e->next) {
				struct sse_stream *st = SSE_CONTAINER(e, struct sse_stream, he);
				json_array_append_new(rows, presence__row(st));
				sse_list_del(&st->changed);
				st->put = true;
			}
		}
		return rows;
	}
	while (!sse_list_empty(&ix->changed)) {
		struct sse_stream *st = SSE_CONTAINER(ix->changed.next, struct sse_stream, changed);
		json_array_append_new(rows, presence__row(st));
		sse_list_del(&st->changed);
		st->put = true;
	}
	return rows;
}

static bool presence__put(struct sse_ctx *ctx, const char *v[4])
{
	struct sse_presence *p = &ctx->pres;
	bool full = p->full || ctx->ix.gone_lost;
	json_t *rows = presence__put_rows(ctx, full);

	p->rows = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
	if (p->rows == NULL) {
		log_error("out of memory writing presence; trying again at the next interval");
		json_decref(rows);
		p->full = true;
		return false;
	}
	p->rows_put += json_array_size(rows);
	json_decref(rows);
	p->full = false;
	p->put_full = full;
	v[0] = p->instance;
	v[1] = p->ttl_ms;
	v[2] = p->rows;
	v[3] = full ? "true" : "false";
	return true;
}

/* The streams with presence subscribers as a text[] literal; false when
 * there are none. Stream ids are A-Za-z0-9._:- only, so quoting each is
 * enough (and keeps a stream named NULL a string). */
static bool presence__get(struct sse_ctx *ctx, const char *v[4])
{
	struct sse_presence *p = &ctx->pres;
	const struct sse_htab *t = &ctx->ix.streams;
	size_t cap = 2, len = 0;
	char *out;

	for (size_t b = 0; b < t->nbuckets; b++) {
		for (const struct sse_hentry *e = t->buckets[b]; e; e = e->next) {
			const struct sse_stream *st = SSE_CONTAINER(e, struct sse_stream, he);
			if (st->n_presence > 0)
				cap += strlen(st->id) + 3;
		}
	}
	if (cap == 2 || (out = malloc(cap + 1)) == NULL)
		return false;
	out[len++] = '{';
	for (size_t b = 0; b < t->nbuckets; b++) {
		for (const struct sse_hentry *e = t->buckets[b]; e; e = e->next) {
			const struct sse_stream *st = SSE_CONTAINER(e, struct sse_stream, he);
			if (st->n_presence > 0)
				len +=
				    (size_t)snprintf(out + len, cap + 1 - len, "%s\"%s\"", len > 1 ? "," : "", st->id);
		}
	}
	out[len++] = '}';
	out[len] = '\0';
	p->rows = out;
	v[0] = out;
	return true;
}

bool sse_presence_next(struct sse_ctx *ctx, enum sse_pg_query *q, const char **stmt, int *n, const char *v[4])
{
	struct sse_presence *p = &ctx->pres;

	if (p->put_wanted) {
		p->put_wanted = false;
		if (!presence__put(ctx, v))
			return false;
		*q = SSE_Q_PRESENCE_PUT;
		*stmt = "sse_presence_put";
		*n = 4;
		return true;
	}
	if (p->get_wanted) {
		p->get_wanted = false;
		if (!presence__get(ctx, v))
			return false;
		*q = SSE_Q_PRESENCE_GET;
		*stmt = "sse_presence_get";
		*n = 1;
		return true;
	}
	return false;
}

/* Sends the counts to the stream's presence subscribers (only_waiting:
 * to those that have had none yet). */
static void presence__frame(struct sse_ctx *ctx, struct sse_stream *st, uint64_t conns, uint64_t viewers,
			    bool only_waiting)
{
	char buf[400];
	int len = snprintf(buf, sizeof(buf),
			   "data: {\"type\":\"presence\",\"stream_id\":\"%s\",\"timestamp\":0,\"widget_key\":null,"
			   "\"message\":{\"connections\":%llu,\"viewers\":%llu}}\n\n",
			   st->id, (unsigned long long)conns, (unsigned long long)viewers);
	struct sse_frame *f;

	if (len < 0 || (size_t)len >= sizeof(buf) || (f = sse_frame_raw(buf, (size_t)len)) == NULL) {
		log_error("could not format a presence frame");
		return;
	}
	st->presence_new = sse_conn_dispatch_presence(st, f, only_waiting);
	sse_frame_unref(f);
	ctx->pres.frames++;
}

/* The sums for the streams with presence subscribers: a frame where they
 * changed (at most one per stream every PRESENCE_FRAME_MS), and the
 * current counts to subscribers that have had none yet. */
static void presence__got(struct sse_ctx *ctx, PGresult *res)
{
	uint64_t now = sse_now(ctx);

	for (int i = 0; i < PQntuples(res); i++) {
		struct sse_stream *st = sse_index_stream(&ctx->ix, PQgetvalue(res, i, 0));
		uint64_t conns = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		uint64_t viewers = strtoull(PQgetvalue(res, i, 2), NULL, 10);
		bool changed;

		if (st == NULL || st->n_presence == 0)
			continue;
		changed = !st->framed || conns != st->frame_conns || viewers != st->frame_viewers;
		if (changed && (!st->framed || now - st->frame_ms >= PRESENCE_FRAME_MS)) {
			st->framed = true;
			st->frame_conns = conns;
			st->frame_viewers = viewers;
			st->frame_ms = now;
			presence__frame(ctx, st, conns, viewers, false);
		} else if (st->presence_new) {
			presence__frame(ctx, st, conns, viewers, true);
		}
	}
}

void sse_presence_done(struct sse_ctx *ctx, enum sse_pg_query q, PGresult *res)
{
	struct sse_presence *p = &ctx->pres;

	free(p->rows);
	p->rows = NULL;
	if (q == SSE_Q_PRESENCE_GET) {
		if (res)
			presence__got(ctx, res);
		return;
	}
	if (res == NULL || PQntuples(res) != 1) {
		/* what it carried is lost: the next put carries everything */
		p->full = true;
		return;
	}
	p->puts++;
	p->known = true;
	if (PQgetvalue(res, 0, 0)[0] == 't' && !p->put_full) {
		/* PostgreSQL forgot this process (a crash emptied the unlogged
		 * tables, or its heartbeat expired long ago): all again, now */
		log_info("presence rows lost; writing every stream again");
		p->full = true;
		p->put_wanted = true;
		return;
	}
	p->get_wanted = true;
}

void sse_presence_drop(struct sse_ctx *ctx)
{
	static const char *const keys[] = {"dbname", "fallback_application_name", "connect_timeout", "options", NULL};
	const char *vals[] = {ctx->cfg->pgdsn, "rtw-sse", PRESENCE_DROP_TIMEOUT, "-c statement_timeout=2000", NULL};
	const char *v[1] = {ctx->pres.instance};
	PGconn *conn;
	PGresult *res;

	if (!ctx->pres.known)
		return;
	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("could not remove the presence rows (they expire): %.*s",
			 (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
		PQfinish(conn);
		return;
	}
	res = PQexecParams(conn, "SELECT rtw_presence_drop($1)", 1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("could not remove the presence rows (they expire): %.*s",
			 (int)strcspn(PQresultErrorMessage(res), "\n"), PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(conn);
}

void sse_presence_close(struct sse_ctx *ctx)
{
	rtw_timer_close(&ctx->pres.timer);
	free(ctx->pres.rows);
	ctx->pres.rows = NULL;
}
