/*
 * routes.c: what rtw-sse answers to a complete request head: a
 * connection let in over capacity is only answered (conn.c), otherwise the
 * CORS preflight, 404 and 405, GET /healthz, GET /metrics, and the events
 * route: its checks, the client address it counts under (behind a trusted
 * proxy, from X-Forwarded-For), the subscriber's identity (a Bearer token,
 * user_id, or an anonymous id with a minted token, limited per address
 * per minute), its bans (403 banned; bans.c) and when its stream ends
 * (the token's exp), whether a
 * handshake query is needed (always, while the tail position is unknown:
 * the head is then held, see conn.c), the handshake query's answer, and
 * the start of the stream (the 200 head, retry: and the init event).
 * /healthz and /metrics are lib/probe.c's answers (the same bodies as
 * every daemon's, HEAD answered like GET), the text written with
 * lib/metrics.c; the CORS rule, the client address and the anonymous ids
 * are lib's too. Also keeps the delivery-lag histogram that
 * /metrics shows.
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
#include "anonid.h"
#include "cors.h"
#include "metrics.h"
#include "msg.h"
#include "probe.h"
#include "token.h"
#include "ratelimit.h" /* the fixed-memory token buckets rtw-fcgi's limits use */

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUTES_RETRY_1 "Retry-After: 1\r\n"
#define ROUTES_METRICS_MAX 16384 /* the /metrics text: about 5 KiB, up to 2 KiB more of top streams */

/* Upper bounds (seconds) of rtw_sse_delivery_lag_seconds' buckets. */
static const double routes__lag_le[SSE_LAG_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
static const struct rtw_hist_bounds routes__lag_bounds = {SSE_LAG_BUCKETS, routes__lag_le};

void sse_metrics_lag(struct sse_ctx *ctx, double s)
{
	if (s < 0)
		s = 0;
	ctx->m.lag_bucket[rtw_hist_bucket(&routes__lag_bounds, s)]++;
	ctx->m.lag_sum += s;
	if (s > ctx->m.lag_max)
		ctx->m.lag_max = s;
}

void sse_metrics_stage(struct sse_ctx *ctx, enum sse_stage stage, double s)
{
	struct sse_stage_hist *h = &ctx->m.stage[stage];

	if (s < 0)
		s = 0;
	h->bucket[rtw_hist_bucket(&routes__lag_bounds, s)]++;
	h->sum += s;
}

/* ---- the event stream ----------------------------------------------------- */

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
	c->status = 200;
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
		/* a statement error (logged by pg.c): never a non-200 on the
		 * events route, which a standard EventSource would take as final */
		sse_conn_retry_later(c);
		return;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		sse_conn_error(c, 403, "unknown_widget", "widget_key", NULL,
			       "widget_key is not a registered, enabled widget");
		return;
	}
	/* the bans may have been loaded while the head was held */
	if (sse_bans_banned(ctx, c->sub.user->id, c->sub.stream->id)) {
		sse_conn_error(c, 403, "banned", NULL, NULL, "this user is banned from this stream");
		return;
	}
	origin_ok = PQgetvalue(res, 0, 1)[0] == 't';
	if (!PQgetisnull(res, 0, 2) && c->hs->last_id && msg_valid_id(c->hs->last_id)) {
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

/* Counts c under its client address (lib/clientaddr.c: behind a trusted
 * proxy, the address its X-Forwarded-For reports), unless accept already
 * did (a peer that is no proxy). Answers 429 over sse.max_per_ip. */
static int routes__count_client(struct sse_conn *c, const struct sse_req *r)
{
	char key[RTW_CLIENT_KEY_MAX];

	if (c->ipc)
		return RTW_OK;
	rtw_client_key(&c->ctx->trust, c->peer, r->has_xff ? r->xff : NULL, key);
	if (sse_conn_count_addr(c, key) == RTW_OK)
		return RTW_OK;
	sse_conn_error(c, 429, "rate_limited", NULL, "Retry-After: 5\r\n", "too many connections from this address");
	return RTW_ERROR;
}

/* sse.anon_per_ip_per_min: a fresh identity is a fresh per-author rate
 * limit, so how many one address is given is bounded too. Answers 429
 * with Retry-After when its bucket is empty. */
static int routes__anon_allowed(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	char retry[40];
	uint64_t wait_ms;

	if (ctx->anon_rl == NULL || !(wait_ms = rtw_rl_take(ctx->anon_rl, c->ipc->key, "anon", sse_now(ctx))))
		return RTW_OK;
	snprintf(retry, sizeof(retry), "Retry-After: %llu\r\n", (unsigned long long)((wait_ms + 999) / 1000));
	sse_conn_error(c, 429, "rate_limited", NULL, retry, "too many anonymous identities for this address");
	return RTW_ERROR;
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
	snprintf(c->stream_id, sizeof(c->stream_id), "%s", r->stream_id); /* valid: <= 128 */
	if (r->has_widget) {
		if (!msg_valid_uuid(r->widget_key, c->widget)) {
			sse_conn_error(c, 400, "invalid_field", "widget_key", NULL, "widget_key must be a UUID");
			return;
		}
		c->has_widget = true;
	}
	if (routes__count_client(c, r) != RTW_OK)
		return;
	if (ctx->token_mode) {
		if (r->auth_other) {
			sse_conn_error(c, 401, "unauthorized", NULL, NULL,
				       "the Authorization header must be \"Bearer <token>\"");
			return;
		}
		if (r->has_token) {
			struct tok_claims cl;
			const char *why = NULL;
			if (tok_verify_rotating(cfg->auth_secret, cfg->auth_secret_previous, r->token,
						(int64_t)time(NULL), cfg->auth_max_token_ttl_s, &cl, &why) != RTW_OK) {
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
			c->user_kind = "token";
			c->exp_s = cl.exp;
			tok_claims_free(&cl);
		} else {
			if (routes__anon_allowed(c) != RTW_OK)
				return;
			if (rtw_anon_id(user) != RTW_OK) {
				sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1,
					       "could not mint an anonymous id");
				return;
			}
			c->user_kind = "anonymous";
			c->exp_s = (int64_t)time(NULL) + cfg->auth_anon_ttl_s;
			c->hs->minted =
			    tok_mint(cfg->auth_secret, strlen(cfg->auth_secret), user, c->exp_s, r->stream_id, false);
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
		c->user_kind = "open";
	} else if (rtw_anon_id(user) != RTW_OK) {
		sse_conn_error(c, 503, "unavailable", NULL, ROUTES_RETRY_1, "could not mint an anonymous id");
		return;
	} else {
		c->user_kind = "anonymous";
	}
	/* Until the first tail position is known (just after start, or while
	 * PostgreSQL is down at start) a live-only subscriber has no place to
	 * start from: rows committed meanwhile would be lost to it. It waits
	 * in the handshake like one that needs the query: pg.c runs jobs only
	 * once the cursor is known, and while PostgreSQL is away the head is
	 * held (at most sse.hold_max_ms, then 200 with retry:, see conn.c),
	 * never refused: a standard EventSource gives up on any non-200. */
	if (sse_bans_banned(ctx, user, r->stream_id)) {
		sse_conn_error(c, 403, "banned", NULL, NULL, "this user is banned from this stream");
		return;
	}
	/* sse.max_per_user: one token used from many addresses (a leaked or
	 * shared one, or one attacker's many /64s) cannot take the process */
	if (sse_conn_count_user(c, user) != RTW_OK) {
		sse_conn_error(c, 429, "rate_limited", NULL, "Retry-After: 5\r\n",
			       "too many connections for this identity");
		return;
	}
	need_query = c->has_widget || (r->has_last_id && msg_valid_id(r->last_id)) ||
		     (r->has_origin && !rtw_cors_cfg_allows(cfg->http_cors_origins, r->origin)) || !ctx->cursor_valid;
	if (sse_index_add(&ctx->ix, &c->sub, r->stream_id, user) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	c->in_index = true;
	if (r->presence)
		sse_index_want_presence(&ctx->ix, &c->sub);
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

/* ---- /healthz and /metrics (lib/probe.c's answers) ---------------------------- */

static void routes__reply(struct sse_conn *c, const struct rtw_probe_reply *r, bool head_only)
{
	c->probe = true;
	sse_conn_respond(c, r->status, r->ctype, NULL, r->body, r->body_len, head_only);
}

#define ROUTES_TOP_STREAMS 10

/* Presence: the statements' counters and the top streams of this process
 * by viewers (a bounded number of series, whatever the streams). */
static void routes__presence_metrics(const struct sse_ctx *ctx, struct rtw_metrics *w)
{
	const struct sse_stream *top[ROUTES_TOP_STREAMS];
	size_t n = sse_index_top(&ctx->ix, top, ROUTES_TOP_STREAMS);

	rtw_metrics_counter(w, "rtw_sse_presence_puts_total", "Presence puts (heartbeat and changed streams) written.",
			    ctx->pres.puts);
	rtw_metrics_counter(w, "rtw_sse_presence_rows_total", "Stream rows carried by presence puts.",
			    ctx->pres.rows_put);
	rtw_metrics_counter(w, "rtw_sse_presence_frames_total", "Presence frames built (each shared by its stream).",
			    ctx->pres.frames);
	rtw_metrics_family(w, "rtw_sse_stream_viewers", RTW_METRIC_GAUGE,
			   "Distinct viewers of this process's top 10 streams by viewers.");
	for (size_t i = 0; i < n; i++) {
		/* stream ids are A-Za-z0-9._:-: nothing to escape in a label */
		char label[160];
		snprintf(label, sizeof(label), "stream=\"%s\"", top[i]->id);
		rtw_metrics_u64(w, "rtw_sse_stream_viewers", label, (uint64_t)top[i]->users.count);
	}
}

static void routes__metrics(struct sse_conn *c, bool head_only)
{
	struct sse_ctx *ctx = c->ctx;
	const struct sse_metrics *m = &ctx->m;
	char text[ROUTES_METRICS_MAX];
	struct rtw_metrics w;
	struct rtw_probe_reply reply;

	rtw_metrics_init(&w, text, sizeof(text));
	rtw_metrics_gauge(&w, "rtw_sse_connections", "Open client connections.", (double)ctx->n_conns);
	rtw_metrics_gauge(&w, "rtw_sse_max_connections", "Most client connections allowed (sse.max_connections).",
			  (double)ctx->cfg->sse_max_connections);
	rtw_metrics_gauge(&w, "rtw_sse_subscribers", "Connections subscribed to a stream.", (double)ctx->ix.n_subs);
	rtw_metrics_counter(&w, "rtw_sse_events_delivered_total", "Message frames fully written.", m->delivered);
	rtw_metrics_counter(&w, "rtw_sse_bytes_sent_total", "Bytes written to clients.", m->bytes_sent);
	rtw_metrics_counter(&w, "rtw_sse_resume_catchups_total", "Subscribers resumed from a Last-Event-ID.",
			    m->resume_catchups);
	rtw_metrics_counter(&w, "rtw_sse_slow_consumer_cutoffs_total",
			    "Live subscribers whose output overflowed and were caught up.", m->slow_cutoffs);
	rtw_metrics_counter(&w, "rtw_sse_pg_reconnects_total", "PostgreSQL connections re-established.",
			    m->pg_reconnects);
	rtw_metrics_counter(&w, "rtw_sse_tail_rows_total", "Rows read by the tail.", m->tail_rows);
	rtw_metrics_counter(&w, "rtw_sse_connections_rejected_total", "Connections refused at accept.", m->rejected);
	rtw_metrics_counter(&w, "rtw_sse_hold_retries_total",
			    "New streams held sse.hold_max_ms without a position, then told to retry.",
			    m->hold_retries);
	rtw_metrics_counter(&w, "rtw_sse_proxy_header_refused_total",
			    "Connections from sse.proxy_protocol_from whose PROXY protocol header was malformed (400).",
			    m->proxy_refused);
	rtw_metrics_process(&w, "sse", sse_pg_up(ctx));
	rtw_metrics_family(&w, "rtw_sse_delivery_lag_seconds", RTW_METRIC_HISTOGRAM,
			   "Message created_at to dispatch by this process.");
	rtw_metrics_histogram(&w, "rtw_sse_delivery_lag_seconds", NULL, &routes__lag_bounds, m->lag_bucket, m->lag_sum);
	rtw_metrics_gauge(&w, "rtw_sse_delivery_lag_max_seconds", "Largest delivery lag seen.", m->lag_max);
	{
		static const char *const stage_labels[SSE_STAGE_N] = {
		    [SSE_STAGE_TAIL_WAIT] = "stage=\"tail_wait\"",
		    [SSE_STAGE_TAIL_QUERY] = "stage=\"tail_query\"",
		    [SSE_STAGE_FLUSH] = "stage=\"flush\"",
		};
		rtw_metrics_family(&w, "rtw_sse_stage_seconds", RTW_METRIC_HISTOGRAM,
				   "Time spent in each stage of the live path: waiting for the tail query's turn, "
				   "the tail query, one flush round over all connections with output.");
		for (int i = 0; i < SSE_STAGE_N; i++)
			rtw_metrics_histogram(&w, "rtw_sse_stage_seconds", stage_labels[i], &routes__lag_bounds,
					      m->stage[i].bucket, m->stage[i].sum);
	}
	rtw_metrics_counter(&w, "rtw_sse_writes_total", "Writes (sendmsg calls) to client sockets.", m->writes);
	rtw_metrics_counter(&w, "rtw_sse_tail_unsettled_total",
			    "Tail batches that stopped at a row behind the settled horizon (re-polled).",
			    m->tail_unsettled);
	rtw_metrics_counter(&w, "rtw_sse_coalesce_holds_total",
			    "Flushes that held some connection's live frames (within their sse.coalesce_ms budget).",
			    m->coalesce_holds);
	rtw_metrics_gauge(&w, "rtw_sse_tls_handshaking", "TLS handshakes in progress (sse.tls_max_handshakes).",
			  (double)ctx->tls_accepting);
	rtw_metrics_counter(&w, "rtw_sse_tls_handshakes_total", "TLS handshakes completed on sse.tls_listen.",
			    m->tls_handshakes);
	rtw_metrics_counter(&w, "rtw_sse_tls_failed_total",
			    "TLS handshakes that failed (not TLS, such as plain HTTP, or no common protocol).",
			    m->tls_failed);
	rtw_metrics_counter(&w, "rtw_sse_tls_timeouts_total",
			    "TLS handshakes not done within sse.header_timeout_ms (closed).", m->tls_timeouts);
	rtw_metrics_counter(&w, "rtw_sse_tls_refused_total",
			    "TLS connections closed at accept: sse.tls_max_handshakes were in progress.",
			    m->tls_refused);
	rtw_metrics_counter(&w, "rtw_sse_tls_reloads_total", "Certificates reloaded on SIGHUP.", m->tls_reloads);
	rtw_metrics_counter(&w, "rtw_sse_tls_reload_failures_total",
			    "SIGHUP reloads that failed (the certificate loaded before stays).",
			    m->tls_reload_failures);
	rtw_metrics_gauge(&w, "rtw_sse_tail_leader",
			  "1 when this process leads the shared tail of its database (sse.shared_tail).",
			  ctx->leader ? 1.0 : 0.0);
	rtw_metrics_counter(&w, "rtw_sse_tail_leader_takes_total",
			    "Times this process became the shared tail's leader.", m->leader_takes);
	rtw_metrics_counter(&w, "rtw_sse_tail_skipped_total",
			    "Settled ranges passed without a query: no subscriber here to any of their streams.",
			    m->tail_skipped);
	rtw_metrics_counter(&w, "rtw_sse_tail_gaps_total",
			    "Settled ranges that did not start at this process's cursor (a note was missed).",
			    m->tail_gaps);
	rtw_metrics_counter(&w, "rtw_sse_tail_own_total",
			    "Tails a follower ran on its own: the leader was silent while rows waited.", m->tail_own);
	rtw_metrics_gauge(&w, "rtw_sse_relay_state",
			  "The host relay (sse.relay): 0 off, 1 detached (on its own), 2 serving, 3 attached (fed).",
			  (double)ctx->relay.state);
	rtw_metrics_gauge(&w, "rtw_sse_relay_peers", "Processes this one feeds as the host relay's server.",
			  (double)ctx->relay.npeers);
	rtw_metrics_counter(&w, "rtw_sse_relay_rows_total", "Rows dispatched from the host relay's batches.",
			    m->relay_rows);
	rtw_metrics_counter(&w, "rtw_sse_relay_leaves_total",
			    "Times this process left the relay's server: silent for a poll interval while rows waited.",
			    ctx->relay.leaves);
	routes__presence_metrics(ctx, &w);
	rtw_probe_metrics(&w, &reply);
	if (reply.status != 200)
		log_error("could not write /metrics: %.*s", (int)strcspn(reply.body, "\n"), reply.body);
	routes__reply(c, &reply, head_only);
}

static void routes__healthz(struct sse_conn *c, bool head_only)
{
	struct rtw_probe_reply reply;

	rtw_probe_healthz("rtw-sse", sse_pg_up(c->ctx), &reply);
	routes__reply(c, &reply, head_only);
}

/* ---- routing --------------------------------------------------------------- */

void sse_route(struct sse_conn *c, const struct sse_req *r)
{
	if (c->over) {
		sse_conn_refuse_over(c, r);
		return;
	}
	if (r->method == HTTP_OPTIONS) {
		sse_conn_respond(c, 204, "text/plain",
				 "Access-Control-Allow-Methods: GET, OPTIONS\r\n"
				 "Access-Control-Allow-Headers: Authorization, Last-Event-ID, Cache-Control\r\n"
				 "Access-Control-Max-Age: 600\r\n",
				 "", 0, false);
		return;
	}
	if (r->route == SSE_ROUTE_NONE) {
		sse_conn_error(c, 404, "not_found", NULL, NULL, "no such resource");
		return;
	}
	if (r->route == SSE_ROUTE_HEALTHZ || r->route == SSE_ROUTE_METRICS) {
		/* the probes answer HEAD like GET, as on every daemon */
		bool head_only = r->method == HTTP_HEAD;
		if (r->method != HTTP_GET && !head_only)
			sse_conn_error(c, 405, "method_not_allowed", NULL, "Allow: GET, HEAD, OPTIONS\r\n",
				       "only GET and HEAD are allowed here");
		else if (r->route == SSE_ROUTE_HEALTHZ)
			routes__healthz(c, head_only);
		else
			routes__metrics(c, head_only);
		return;
	}
	if (r->method != HTTP_GET) {
		sse_conn_error(c, 405, "method_not_allowed", NULL, "Allow: GET, OPTIONS\r\n",
			       "only GET is allowed here");
		return;
	}
	routes__events(c, r);
}
