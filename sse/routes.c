/*
 * routes.c: what rtw-sse answers to a complete request head: the CORS
 * preflight, 404 and 405, GET /healthz, GET /metrics, and the events
 * route: its checks, the subscriber's identity (a token, user_id, or an
 * anonymous id with a minted token), whether a handshake query is
 * needed, the handshake query's answer, and the start of the stream (the
 * 200 head, retry: and the init event). Also keeps the delivery-lag
 * histogram that /metrics shows.
 *
 * Tier: above conn.c (it answers through a connection's output and
 * state), below pg.c (which hands it the handshake's answer) and loop.c
 * (which hands it complete heads). Never touches a socket and never talks
 * to PostgreSQL itself: a connection that needs the handshake query is
 * queued for pg.c, which the loop kicks after the pass. Runs on the loop
 * thread.
 */
#include "config.h"
#include "sse.h"
#include "log.h"
#include "msg.h"
#include "token.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUTES_RETRY_1 "Retry-After: 1\r\n"

/* Upper bounds (seconds) of rtw_sse_delivery_lag_seconds' buckets. */
static const double routes__lag_bounds[SSE_LAG_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};

void sse_metrics_lag(struct sse_ctx *ctx, double s)
{
	int i;

	if (s < 0)
		s = 0;
	for (i = 0; i < SSE_LAG_BUCKETS && s > routes__lag_bounds[i]; i++)
		;
	ctx->m.lag_bucket[i]++;
	ctx->m.lag_sum += s;
	ctx->m.lag_count++;
	if (s > ctx->m.lag_max)
		ctx->m.lag_max = s;
}

/* ---- the event stream ----------------------------------------------------- */

static void routes__anon_id(char *user, size_t cap)
{
	unsigned char rnd[8];
	char hex[17];

	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		memset(rnd, 0, sizeof(rnd));
	rtw_hex(rnd, sizeof(rnd), hex);
	snprintf(user, cap, "anon-%s", hex);
}

static char *routes__init_json(struct sse_conn *c, bool resumed)
{
	struct sse_ctx *ctx = c->ctx;
	const struct sse_hs *hs = c->hs;
	unsigned char rnd[8];
	char cid[17];
	json_t *msg, *root;
	char *out;

	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		return NULL;
	rtw_hex(rnd, sizeof(rnd), cid);
	msg = json_object();
	json_object_set_new(msg, "connection_id", json_string(cid));
	json_object_set_new(msg, "last_event_id",
			    hs->last_id && msg_valid_id(hs->last_id) ? json_string(hs->last_id) : json_null());
	json_object_set_new(msg, "resumed", json_boolean(resumed));
	json_object_set_new(msg, "heartbeat_s", json_integer(ctx->cfg->sse_heartbeat_s));
	if (hs->minted)
		json_object_set_new(msg, "token", json_string(hs->minted));
	root = json_object();
	json_object_set_new(root, "type", json_string("init"));
	json_object_set_new(root, "stream_id", json_string(c->sub.stream->id));
	json_object_set_new(root, "author_id", json_string(c->sub.user->id));
	json_object_set_new(root, "timestamp", json_integer(0));
	json_object_set_new(root, "widget_key", c->has_widget ? json_string(c->widget) : json_null());
	json_object_set_new(root, "message", msg);
	out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	return out;
}

/* Queues the 200 head, retry: and init, and drops what the head left. */
static int routes__start_stream(struct sse_conn *c, bool resumed, bool origin_ok)
{
	char cors[SSE_CORS_MAX];
	char *init = routes__init_json(c, resumed);
	struct sse_frame *f;

	if (init == NULL)
		return RTW_ERROR;
	sse_conn_cors(c, origin_ok, cors, sizeof(cors));
	f = sse_frame_stream_open(cors, c->ctx->cfg->sse_retry_ms, init, strlen(init));
	free(init);
	if (f == NULL)
		return RTW_ERROR;
	sse_conn_push(c, f, false);
	sse_frame_unref(f);
	sse_conn_hs_free(c);
	return RTW_OK;
}

void sse_route_handshake_done(struct sse_conn *c, PGresult *res)
{
	struct sse_ctx *ctx = c->ctx;
	bool resumed = false, origin_ok;

	if (c->state != SSE_CONN_HANDSHAKE)
		return;
	if (res == NULL || PQntuples(res) != 1) {
		sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "database unavailable");
		return;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		sse_conn_error(c, 403, "unknown_widget", "widget_key", NULL,
			       "widget_key is not a registered, enabled widget");
		return;
	}
	origin_ok = PQgetvalue(res, 0, 1)[0] == 't';
	if (!PQgetisnull(res, 0, 2) && c->hs->last_id) {
		char *end;
		errno = 0;
		c->pos.xid = strtoull(PQgetvalue(res, 0, 2), &end, 10);
		c->pos.id = strtoll(c->hs->last_id, NULL, 10);
		resumed = *end == '\0' && errno == 0;
	}
	if (!resumed)
		c->pos = ctx->cursor;
	c->sent_pos = c->pos;
	if (routes__start_stream(c, resumed, origin_ok) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	if (resumed) {
		ctx->m.resume_catchups++;
		sse_conn_set_state(c, SSE_CONN_CATCHING_UP);
		sse_conn_want_job(c);
	} else {
		sse_conn_go_live(c);
	}
}

static void routes__events(struct sse_conn *c, const struct sse_req *r)
{
	struct sse_ctx *ctx = c->ctx;
	const struct rtw_cfg *cfg = ctx->cfg;
	char user[MSG_ID_MAX + 1];
	bool need_query;

	if (r->bad_path) {
		sse_conn_error(c, 400, "invalid_field", "stream_id", NULL,
			       "stream id must be 1-128 characters of A-Za-z0-9._:-");
		return;
	}
	if (r->bad_field) {
		char m[160];
		snprintf(m, sizeof(m), "%s is too long or malformed", r->bad_field);
		sse_conn_error(c, 400, "invalid_field", r->bad_field, NULL, m);
		return;
	}
	if (r->has_widget) {
		if (!msg_valid_uuid(r->widget_key, c->widget)) {
			sse_conn_error(c, 400, "invalid_field", "widget_key", NULL, "widget_key must be a UUID");
			return;
		}
		c->has_widget = true;
	}
	if (ctx->token_mode) {
		if (r->has_token) {
			struct tok_claims cl;
			const char *why = NULL;
			if (tok_verify(cfg->auth_secret, strlen(cfg->auth_secret), r->token, (int64_t)time(NULL), &cl,
				       &why) != RTW_OK) {
				char m[160];
				snprintf(m, sizeof(m), "invalid token: %s", why ? why : "rejected");
				sse_conn_error(c, 401, "unauthorized", NULL, NULL, m);
				return;
			}
			if (!tok_allows_stream(&cl, r->stream_id)) {
				tok_claims_free(&cl);
				sse_conn_error(c, 403, "forbidden", NULL, NULL, "the token does not allow this stream");
				return;
			}
			snprintf(user, sizeof(user), "%s", cl.sub);
			tok_claims_free(&cl);
		} else {
			routes__anon_id(user, sizeof(user));
			c->hs->minted = tok_mint(cfg->auth_secret, strlen(cfg->auth_secret), user,
						 (int64_t)time(NULL) + cfg->auth_anon_ttl_s, r->stream_id, false);
			if (c->hs->minted == NULL) {
				sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "could not mint a token");
				return;
			}
		}
	} else if (r->has_user) {
		if (!msg_valid_user_id(r->user_id)) {
			sse_conn_error(c, 400, "invalid_field", "user_id", NULL, "user_id must be 1-128 characters");
			return;
		}
		memcpy(user, r->user_id, strlen(r->user_id) + 1); /* validated: <= 128 */
	} else {
		routes__anon_id(user, sizeof(user));
	}
	need_query = c->has_widget || (r->has_last_id && msg_valid_id(r->last_id)) ||
		     (r->has_origin && !sse_cors_configured(cfg, r->origin));
	if (need_query && !sse_pg_up(ctx)) {
		sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "database unavailable");
		return;
	}
	/* Until the first tail position is known (just after start, or while
	 * PostgreSQL is down at start) a live-only subscriber has no place to
	 * start from: rows committed meanwhile would be lost to it. Once known,
	 * the cursor survives reconnects, so this only refuses at start-up. */
	if (!ctx->cursor_valid) {
		sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "starting up; no stream position yet");
		return;
	}
	if (sse_index_add(&ctx->ix, &c->sub, r->stream_id, user) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	c->in_index = true;
	if (need_query) {
		/* pg.c sends it when the loop kicks it at the end of this pass */
		sse_conn_set_state(c, SSE_CONN_HANDSHAKE);
		sse_conn_want_job(c);
		return;
	}
	c->pos = c->sent_pos = ctx->cursor;
	if (routes__start_stream(c, false, false) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	sse_conn_go_live(c);
}

/* ---- /healthz and /metrics ------------------------------------------------- */

static void routes__metrics(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	const struct sse_metrics *m = &ctx->m;
	char *buf;
	size_t cap = 4096;
	int n = 0;
	uint64_t cum = 0;

	buf = malloc(cap);
	if (buf == NULL) {
		sse_conn_close(c);
		return;
	}
	/* bounded: a line that does not fit is cut, never written past cap */
#define MPUT(...)                                                                                                      \
	do {                                                                                                           \
		if ((size_t)n < cap)                                                                                   \
			n += snprintf(buf + n, cap - (size_t)n, __VA_ARGS__);                                          \
	} while (0)
	MPUT("# HELP rtw_sse_connections Open client connections.\n# TYPE rtw_sse_connections gauge\n"
	     "rtw_sse_connections %zu\n",
	     ctx->n_conns);
	MPUT("# HELP rtw_sse_subscribers Connections subscribed to a stream.\n# TYPE rtw_sse_subscribers gauge\n"
	     "rtw_sse_subscribers %zu\n",
	     ctx->ix.n_subs);
	MPUT("# TYPE rtw_sse_events_delivered_total counter\nrtw_sse_events_delivered_total %llu\n",
	     (unsigned long long)m->delivered);
	MPUT("# TYPE rtw_sse_bytes_sent_total counter\nrtw_sse_bytes_sent_total %llu\n",
	     (unsigned long long)m->bytes_sent);
	MPUT("# TYPE rtw_sse_resume_catchups_total counter\nrtw_sse_resume_catchups_total %llu\n",
	     (unsigned long long)m->resume_catchups);
	MPUT("# TYPE rtw_sse_slow_consumer_cutoffs_total counter\nrtw_sse_slow_consumer_cutoffs_total %llu\n",
	     (unsigned long long)m->slow_cutoffs);
	MPUT("# TYPE rtw_sse_pg_reconnects_total counter\nrtw_sse_pg_reconnects_total %llu\n",
	     (unsigned long long)m->pg_reconnects);
	MPUT("# TYPE rtw_sse_tail_rows_total counter\nrtw_sse_tail_rows_total %llu\n",
	     (unsigned long long)m->tail_rows);
	MPUT("# TYPE rtw_sse_connections_rejected_total counter\nrtw_sse_connections_rejected_total %llu\n",
	     (unsigned long long)m->rejected);
	MPUT("# TYPE rtw_sse_pg_up gauge\nrtw_sse_pg_up %d\n", sse_pg_up(ctx) ? 1 : 0);
	MPUT("# HELP rtw_sse_delivery_lag_seconds Message created_at to dispatch by this process.\n"
	     "# TYPE rtw_sse_delivery_lag_seconds histogram\n");
	for (int i = 0; i < SSE_LAG_BUCKETS; i++) {
		cum += m->lag_bucket[i];
		MPUT("rtw_sse_delivery_lag_seconds_bucket{le=\"%g\"} %llu\n", routes__lag_bounds[i],
		     (unsigned long long)cum);
	}
	cum += m->lag_bucket[SSE_LAG_BUCKETS];
	MPUT("rtw_sse_delivery_lag_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	MPUT("rtw_sse_delivery_lag_seconds_sum %.6f\nrtw_sse_delivery_lag_seconds_count %llu\n", m->lag_sum,
	     (unsigned long long)m->lag_count);
	MPUT("# TYPE rtw_sse_delivery_lag_max_seconds gauge\nrtw_sse_delivery_lag_max_seconds %.6f\n", m->lag_max);
#undef MPUT
	if (n < 0)
		n = 0;
	if ((size_t)n >= cap)
		n = (int)cap - 1;
	sse_conn_respond(c, 200, "text/plain; version=0.0.4", NULL, buf, (size_t)n);
	free(buf);
}

static void routes__healthz(struct sse_conn *c)
{
	static const char ok[] = "{\"status\":\"ok\"}\n";

	if (sse_pg_up(c->ctx))
		sse_conn_respond(c, 200, "application/json", NULL, ok, sizeof(ok) - 1);
	else
		sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "database unavailable");
}

/* ---- routing --------------------------------------------------------------- */

void sse_route(struct sse_conn *c, const struct sse_req *r)
{
	if (r->method == HTTP_OPTIONS) {
		sse_conn_respond(c, 204, "text/plain",
				 "Access-Control-Allow-Methods: GET, OPTIONS\r\n"
				 "Access-Control-Allow-Headers: Authorization, Last-Event-ID, Cache-Control\r\n"
				 "Access-Control-Max-Age: 600\r\n",
				 "", 0);
		return;
	}
	if (r->route == SSE_ROUTE_NONE) {
		sse_conn_error(c, 404, "not_found", NULL, NULL, "no such resource");
		return;
	}
	if (r->method != HTTP_GET) {
		sse_conn_error(c, 405, "method_not_allowed", NULL, "Allow: GET, OPTIONS\r\n",
			       "only GET is allowed here");
		return;
	}
	switch (r->route) {
	case SSE_ROUTE_HEALTHZ: routes__healthz(c); return;
	case SSE_ROUTE_METRICS: routes__metrics(c); return;
	default: routes__events(c, r); return;
	}
}
