/*
 * handlers.c: owns what rtw-fcgi does with a routed request: identity
 * (token or open mode), the widget registry check, writing broadcasts and
 * privates (through the group committer or alone), queueing webhook jobs,
 * Idempotency-Key records, history pages (request and its GET alias),
 * webhook job status, presence counts, the ban check of every POST
 * (commit.c's inserts for broadcasts and privates) and redaction (DELETE
 * of a message). Tier 3 of fcgi/: calls respond.c, widget.c, commit.c,
 * db.c and lib/buf.c (and lib/ratelimit.c); called by http.c, and by
 * publish.c and bans.c for identity, limits and Idempotency-Key. Runs on the
 * worker thread; every write is one transaction, so a failure leaves
 * nothing behind.
 */
#include "config.h"
#include "anonid.h"
#include "fcgi.h"
#include "log.h"
#include "ratelimit.h"
#include "row.h"
#include "url.h"

#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- identity ---- */

/* Token mode: verifies the Bearer token (401) and, when stream is given,
 * the streams claim (403 forbidden). Open mode: nothing to check. Sends
 * the error itself and returns RTW_ERROR on failure. */
static int fcg__auth(struct fcg_req *r, const char *stream)
{
	const struct rtw_cfg *cfg = r->w->cfg;
	const char *why = NULL, *tok;

	if (strcmp(cfg->auth_mode, "open") == 0)
		return RTW_OK;
	tok = r->authorization;
	if (!tok || strncasecmp(tok, "Bearer ", 7) != 0) {
		fcg_fail(r, 401, "unauthorized", NULL, "a bearer token is required");
		return RTW_ERROR;
	}
	tok += 7;
	while (*tok == ' ')
		tok++;
	if (tok_cache_verify(&r->w->tokens, cfg->auth_secret, cfg->auth_secret_previous, tok, (int64_t)time(NULL),
			     cfg->auth_max_token_ttl_s, &r->claims, &why) != RTW_OK) {
		fcg_fail(r, 401, "unauthorized", NULL, "invalid token: %s", why ? why : "rejected");
		return RTW_ERROR;
	}
	r->has_claims = true;
	if (stream && !tok_allows_stream(&r->claims, stream)) {
		fcg_fail(r, 403, "forbidden", NULL, "the token does not allow stream %s", stream);
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* The author of a request: the token's sub (a different client value is
 * 403 author_mismatch; a service token may name any author), or in open
 * mode the client's value or a fresh anonymous id. */
static int fcg__author(struct fcg_req *r, const char *client, char out[MSG_ID_MAX + 1])
{
	if (r->has_claims && !(r->claims.service && client)) {
		if (client && strcmp(client, r->claims.sub) != 0) {
			fcg_fail(r, 403, "author_mismatch", "author_id", "author_id must equal the token's subject");
			return RTW_ERROR;
		}
		snprintf(out, MSG_ID_MAX + 1, "%s", r->claims.sub);
		return RTW_OK;
	}
	if (client) {
		snprintf(out, MSG_ID_MAX + 1, "%s", client);
		return RTW_OK;
	}
	if (rtw_anon_id(out) != RTW_OK) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* Registered and enabled, or 403 unknown_widget (503 when the database is
 * away). Sets r->widget, which also decides CORS from here on. */
static int fcg__widget(struct fcg_req *r, const char *key)
{
	bool lost;
	const struct fcg_widget *wd = fcg_widget_get(r->w, key, &lost);
	if (!wd) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	r->widget = wd;
	if (!wd->exists || !wd->enabled) {
		fcg_fail(r, 403, "unknown_widget", "widget_key", "widget_key is not a registered, enabled widget");
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* 429 rate_limited with Retry-After: wait_ms in whole seconds, rounded up. */
static int fcg__rate_limited(struct fcg_req *r, uint64_t wait_ms, const char *from_whom)
{
	FCG_COUNT(r->w->metrics, rate_limited, 1);
	r->retry_after = (int)((wait_ms + 999) / 1000);
	fcg_fail(r, 429, "rate_limited", NULL, "too many requests from %s; retry in %d s", from_whom, r->retry_after);
	return RTW_ERROR;
}

/* Per (author, stream) token bucket of this process, and per author over
 * all streams, shared by posts and history reads (request and GET): 429
 * when one is empty. Checked after the widget, so the answer carries the
 * widget's CORS headers. */
static int fcg__rate_limit(struct fcg_req *r, const char *author)
{
	uint64_t wait_ms;

	/* a platform's backend speaks for many authors: no per-author bucket */
	if (r->has_claims && r->claims.service)
		return RTW_OK;
	if (r->w->rl && (wait_ms = rtw_rl_take(r->w->rl, author, r->stream_id, rtw_now_ms())))
		return fcg__rate_limited(r, wait_ms, "this author on this stream");
	/* and over all streams: one identity must not write the per-stream
	 * rate to each of a thousand streams */
	if (r->w->rl_user && (wait_ms = rtw_rl_take(r->w->rl_user, author, "", rtw_now_ms())))
		return fcg__rate_limited(r, wait_ms, "this author");
	return RTW_OK;
}

/* Per client address token bucket of this process (lib/clientaddr.c's
 * rule: behind a trusted proxy, its X-Forwarded-For): the limit no fresh
 * identity gets around, since every anonymous viewer may mint one. 429
 * rate_limited with Retry-After when it is empty. */
static int fcg__rate_limit_addr(struct fcg_req *r)
{
	char key[RTW_CLIENT_KEY_MAX];
	uint64_t wait_ms;

	if (!r->w->rl_ip)
		return RTW_OK;
	rtw_client_key(r->w->trust, r->remote_addr, r->forwarded_for, key);
	if (!(wait_ms = rtw_rl_take(r->w->rl_ip, key, "addr", rtw_now_ms())))
		return RTW_OK;
	return fcg__rate_limited(r, wait_ms, "this address");
}

/* A service token speaks for the platform, which decides for itself whom
 * it publishes for: its POSTs are not checked against bans. */
static bool fcg__checks_bans(const struct fcg_req *r)
{
	return !(r->has_claims && r->claims.service);
}

static void fcg__fail_banned(struct fcg_req *r)
{
	fcg_fail(r, 403, "banned", NULL, "this user is banned from stream %s", r->stream_id);
}

/* A ban of author on r's stream, or on every stream (sql/012_moderation.sql):
 * 403 banned. Checked on every POST, so a ban holds from its commit on:
 * broadcasts and privates in their insert (commit.c), the POSTs that
 * insert no message (request, webhook) here, with one indexed read on the
 * primary key of rtw_bans. */
static int fcg__banned(struct fcg_req *r, const char *author)
{
	const char *params[2] = {author, r->stream_id};
	PGresult *res;
	bool banned;

	if (!fcg__checks_bans(r))
		return RTW_OK;
	if (!(res = fcg_db_run(&r->w->db, "banned", 2, params, PGRES_TUPLES_OK, NULL)) || PQntuples(res) != 1) {
		PQclear(res);
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	banned = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!banned)
		return RTW_OK;
	fcg__fail_banned(r);
	return RTW_ERROR;
}

/* ---- history (request and GET) ---- */

/* The lowest and highest stream positions (xid, id): the bounds of a page
 * without since_id or before_id (xid8 is unsigned 64-bit, ids are
 * positive bigints). */
#define FCG_POS_MIN_XID "0"
#define FCG_POS_MIN_ID "0"
#define FCG_POS_MAX_XID "18446744073709551615"
#define FCG_POS_MAX_ID "9223372036854775807"

/* A worker keeps at most this much response buffer between requests: a
 * large history page would otherwise pin its size for the worker's life. */
#define FCG_OUT_KEEP (64 * 1024)

static void fcg__fmt_double(double d, char out[32])
{
	snprintf(out, 32, "%.17g", d);
}

/* The stream position (xid) of id, which must be a broadcast of r's
 * stream. RTW_ERROR after answering 400 invalid_field (naming field) or
 * 503. */
static int fcg__history_pos(struct fcg_req *r, const char *id, const char *field, char xid[32])
{
	const char *pp[2] = {id, r->stream_id};
	PGresult *pos = fcg_db_run(&r->w->db, "hist_pos", 2, pp, PGRES_TUPLES_OK, NULL);

	if (!pos) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	if (PQntuples(pos) != 1) {
		PQclear(pos);
		fcg_fail(r, 400, "invalid_field", field, "%s is not a broadcast of this stream", field);
		return RTW_ERROR;
	}
	snprintf(xid, 32, "%s", PQgetvalue(pos, 0, 0));
	PQclear(pos);
	return RTW_OK;
}

/* history.max_scan: a page with from_timestamp or to_timestamp, whose
 * rows the filter rejects one by one (a range that matches little walked
 * the widget's whole history: seconds of PostgreSQL per request on a long
 * stream), walks at most scan broadcasts of its range (hist_scan_*).
 * cap_id: the last of them when the range holds more, the page's next id
 * if the page is not cut before it; "" otherwise. range: the page's
 * stream, widget and bounds. RTW_ERROR after answering 503. */
static int fcg__history_cap(struct fcg_req *r, const char *const range[6], bool desc, const char *scan, char cap_id[32])
{
	const char *pp[7] = {range[0], range[1], range[2], range[3], range[4], range[5], scan};
	PGresult *res = fcg_db_run(&r->w->db, desc ? "hist_cap_desc" : "hist_cap_asc", 7, pp, PGRES_TUPLES_OK, NULL);

	if (!res) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	if (PQntuples(res) == 1)
		snprintf(cap_id, 32, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return RTW_OK;
}

/*
 * One history page in stream order (asc) or its reverse (desc), built in
 * w->out from rows read one at a time (single-row mode), so neither a
 * whole PGresult nor more than one message beyond history.max_bytes is
 * ever held. The page ends after f.limit messages, or before the message
 * that would take the body past history.max_bytes; never before its first
 * message, so a client paging with the next id always progresses. The
 * next id (next_since_id asc, next_before_id desc) is the last message
 * shown, set when another row exists (limit + 1 rows are asked for), or
 * the last broadcast walked when history.max_scan cut the walk
 * (fcg__history_cap).
 */
static void fcg__history(struct fcg_req *r, const char *widget_key, const char *author, const json_t *filters)
{
	const struct rtw_cfg *cfg = r->w->cfg;
	struct fcg_db *db = &r->w->db;
	struct rtw_buf *o = &r->w->out;
	struct msg_filter f;
	struct msg_error err;
	PGresult *row;
	char from[32] = "0", to[32] = "Infinity", lim[16], lo[32] = FCG_POS_MIN_XID, hi[32] = FCG_POS_MAX_XID;
	char last_id[32] = "", cap_id[32] = "", scan[16];
	int rc = RTW_OK, db_rc = RTW_OK, shown = 0;
	bool more = false;

	if (msg_filter_decode(filters, cfg->history_default_limit, cfg->history_max_limit, &f, &err) != RTW_OK) {
		fcg_send_error(r, &err);
		return;
	}
	if (f.has_since && fcg__history_pos(r, f.since_id, "since_id", lo) != RTW_OK)
		return;
	if (f.has_before && fcg__history_pos(r, f.before_id, "before_id", hi) != RTW_OK)
		return;
	if (f.has_from)
		fcg__fmt_double(f.from_ts, from);
	if (f.has_to)
		fcg__fmt_double(f.to_ts, to);
	snprintf(lim, sizeof(lim), "%d", f.limit + 1);
	snprintf(scan, sizeof(scan), "%d", cfg->history_max_scan);
	const char *params[10] = {r->stream_id,
				  widget_key,
				  from,
				  to,
				  lim,
				  lo,
				  f.has_since ? f.since_id : FCG_POS_MIN_ID,
				  hi,
				  f.has_before ? f.before_id : FCG_POS_MAX_ID,
				  scan};
	const char *range[6] = {params[0], params[1], params[5], params[6], params[7], params[8]};
	bool scanned = f.has_from || f.has_to;
	if (scanned && fcg__history_cap(r, range, f.desc, scan, cap_id) != RTW_OK)
		return;
	if (fcg_db_stream(db,
			  scanned ? (f.desc ? "hist_scan_desc" : "hist_scan_asc") : (f.desc ? "hist_desc" : "hist_asc"),
			  scanned ? 10 : 9, params) != RTW_OK) {
		fcg_unavailable(r);
		return;
	}
	o->len = 0;
	o->max = SIZE_MAX;
	rc |= rtw_buf_str(o, "{\"type\":\"request\",\"stream_id\":");
	rc |= rtw_buf_json_str(o, r->stream_id);
	rc |= rtw_buf_str(o, ",\"widget_key\":");
	rc |= rtw_buf_json_str(o, widget_key);
	rc |= rtw_buf_str(o, ",\"author_id\":");
	rc |= rtw_buf_json_str(o, author);
	rc |= rtw_buf_str(o, ",\"timestamp\":0,\"message\":{\"messages\":[");
	while (rc == RTW_OK && (row = fcg_db_row(db, &db_rc)) != NULL) {
		struct msg_stored s;
		size_t len;
		char *js;

		if (shown == f.limit) {
			more = true;
			PQclear(row);
			break;
		}
		rtw_row_message(row, 0, 0, &s);
		if (!(js = msg_serialize(&s, &len))) {
			rc = RTW_ERROR;
		} else if (shown > 0 && o->len + 1 + len > (size_t)cfg->history_max_bytes) {
			more = true;
		} else {
			if (shown++)
				rc |= rtw_buf_add(o, ",", 1);
			rc |= rtw_buf_add(o, js, len);
			snprintf(last_id, sizeof(last_id), "%s", s.id);
		}
		free(js);
		PQclear(row);
		if (more)
			break;
	}
	/* a page that stopped early drops the rest of its rows */
	if (fcg_db_stream_end(db) != RTW_OK || db_rc != RTW_OK) {
		fcg_unavailable(r);
		goto out;
	}
	if (!more && cap_id[0]) {
		/* cut by history.max_scan: the next page starts after the cap */
		more = true;
		snprintf(last_id, sizeof(last_id), "%s", cap_id);
	}
	rc |= rtw_buf_str(o, f.desc ? "],\"next_before_id\":" : "],\"next_since_id\":");
	rc |= more ? rtw_buf_json_str(o, last_id) : rtw_buf_str(o, "null");
	rc |= rtw_buf_str(o, "}}");
	if (rc != RTW_OK) {
		log_error("worker %d: could not format a history page", r->w->id);
		fcg_unavailable(r);
		goto out;
	}
	fcg_send(r, 200, o->p, o->len);
out:
	rtw_buf_shrink(o, FCG_OUT_KEEP);
}

/* ---- writes ---- */

/* The webhook URL of a message: a string or {"url": ...}. */
static const char *fcg__webhook_url(const json_t *m)
{
	return json_is_string(m) ? json_string_value(m) : json_string_value(json_object_get(m, "url"));
}

/* True when host equals pattern, or pattern is "*.example.com" and host
 * a subdomain of example.com (rtw-webhookd matches the same way). */
static bool fcg__host_match(const char *host, const char *pattern)
{
	size_t hn = strlen(host), pn = strlen(pattern);

	if (pn > 2 && pattern[0] == '*' && pattern[1] == '.')
		return hn > pn - 1 && strcasecmp(host + hn - (pn - 1), pattern + 1) == 0;
	return strcasecmp(host, pattern) == 0;
}

/* The deployment's and the widget's webhook rules that need no
 * connection: no anonymous requester (webhook.refuse_anonymous: 403
 * forbidden; "anon-" ids are the ones rtw-sse and open mode mint); only
 * http and https; a widget host list required (webhook.require_widget_hosts)
 * and, when there is one, only its hosts (address checks after DNS are
 * rtw-webhookd's, which applies all of these again). */
static int fcg__webhook_policy(struct fcg_req *r, const char *url, const char *author)
{
	const struct rtw_cfg *cfg = r->w->cfg;
	const char *p = strstr(url, "://");
	char host[256];
	size_t n;

	if (cfg->webhook_refuse_anonymous && strncmp(author, "anon-", 5) == 0) {
		fcg_fail(r, 403, "forbidden", NULL, "anonymous viewers may not call webhooks");
		return RTW_ERROR;
	}
	if (!p || !((p - url == 4 && strncasecmp(url, "http", 4) == 0) ||
		    (p - url == 5 && strncasecmp(url, "https", 5) == 0))) {
		fcg_fail(r, 403, "webhook_target_refused", "message", "webhook URLs must use http or https");
		return RTW_ERROR;
	}
	if (json_array_size(r->widget->hosts) == 0) {
		if (!cfg->webhook_require_widget_hosts)
			return RTW_OK;
		fcg_fail(r, 403, "webhook_target_refused", "message", "this widget has no webhook hosts");
		return RTW_ERROR;
	}
	/* lib/msg.c let no userinfo through: the host starts the authority */
	p += 3;
	n = strcspn(p, "/?#\\");
	if (*p == '[') {
		const char *e = memchr(p, ']', n);
		n = e ? (size_t)(e + 1 - p) : n;
	} else {
		const char *c = memchr(p, ':', n);
		n = c ? (size_t)(c - p) : n;
	}
	if (n == 0 || n >= sizeof(host)) {
		fcg_fail(r, 403, "webhook_target_refused", "message", "webhook URL has no usable host");
		return RTW_ERROR;
	}
	memcpy(host, p, n);
	host[n] = '\0';
	size_t i;
	json_t *v;
	json_array_foreach (r->widget->hosts, i, v) {
		if (json_string_value(v) && fcg__host_match(host, json_string_value(v)))
			return RTW_OK;
	}
	fcg_fail(r, 403, "webhook_target_refused", "message", "webhook host %s is not allowed for this widget",
		 strlen(host) < 100 ? host : "given");
	return RTW_ERROR;
}

/* The queued caps (webhook.widget_max_queued, webhook.author_max_queued):
 * 429 rate_limited over either, with Retry-After one call timeout (by
 * then the worker has taken or finished jobs of the queue), 503 when the
 * database is away. A race between two requests may queue one more. */
static int fcg__webhook_quota(struct fcg_req *r, const char *widget, const char *author)
{
	const struct rtw_cfg *cfg = r->w->cfg;
	char wcap[16], acap[16];
	const char *params[4] = {widget, author, wcap, acap};
	PGresult *res;
	bool over;

	if (cfg->webhook_widget_max_queued == 0 && cfg->webhook_author_max_queued == 0)
		return RTW_OK;
	snprintf(wcap, sizeof(wcap), "%d", cfg->webhook_widget_max_queued);
	snprintf(acap, sizeof(acap), "%d", cfg->webhook_author_max_queued);
	if (!(res = fcg_db_run(&r->w->db, "job_quota", 4, params, PGRES_TUPLES_OK, NULL))) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	over = (cfg->webhook_widget_max_queued && atoi(PQgetvalue(res, 0, 0)) >= cfg->webhook_widget_max_queued) ||
	       (cfg->webhook_author_max_queued && atoi(PQgetvalue(res, 0, 1)) >= cfg->webhook_author_max_queued);
	PQclear(res);
	if (!over)
		return RTW_OK;
	FCG_COUNT(r->w->metrics, rate_limited, 1);
	r->retry_after = (cfg->webhook_timeout_ms + 999) / 1000;
	fcg_fail(r, 429, "rate_limited", NULL, "too many queued webhooks for this widget or author; retry in %d s",
		 r->retry_after);
	return RTW_ERROR;
}

/* Inserts the job and formats the 202 envelope into w->out. RTW_OK,
 * RTW_AGAIN (unavailable). */
static int fcg__webhook_write(struct fcg_req *r, const struct msg_in *m, const char *author)
{
	const json_t *msg = m->message;
	const char *url = fcg__webhook_url(msg);
	const char *method = json_is_object(msg) ? json_string_value(json_object_get(msg, "method")) : NULL;
	json_t *hj = json_is_object(msg) ? json_object_get(msg, "headers") : NULL;
	json_t *bj = json_is_object(msg) ? json_object_get(msg, "body") : NULL;
	char *headers = json_is_object(hj) ? json_dumps(hj, JSON_COMPACT) : NULL;
	char *body = (bj && !json_is_null(bj)) ? json_dumps(bj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	struct rtw_buf *o = &r->w->out;
	char ts[32];
	PGresult *res;
	int rc = RTW_OK;

	fcg__fmt_double(m->timestamp, ts);
	const char *params[8] = {r->stream_id, m->widget_key, author, url, method ? method : "POST", headers, body, ts};
	res = fcg_db_run(&r->w->db, "job_ins", 8, params, PGRES_TUPLES_OK, NULL);
	free(headers);
	free(body);
	if (!res)
		return RTW_AGAIN;
	o->len = 0;
	o->max = SIZE_MAX;
	rc |= rtw_buf_str(o, "{\"type\":\"webhook\",\"stream_id\":");
	rc |= rtw_buf_json_str(o, r->stream_id);
	rc |= rtw_buf_str(o, ",\"author_id\":");
	rc |= rtw_buf_json_str(o, author);
	rc |= rtw_buf_str(o, ",\"widget_key\":");
	rc |= rtw_buf_json_str(o, m->widget_key);
	rc |= rtw_buf_str(o, ",\"timestamp\":0,\"created_at\":");
	rc |= rtw_buf_json_str(o, PQgetvalue(res, 0, 1));
	rc |= rtw_buf_str(o, ",\"message\":{\"job_id\":");
	rc |= rtw_buf_json_str(o, PQgetvalue(res, 0, 0));
	rc |= rtw_buf_str(o, ",\"status\":\"queued\",\"url\":");
	rc |= rtw_buf_json_str(o, url);
	rc |= rtw_buf_str(o, "}}");
	PQclear(res);
	return rc == RTW_OK ? RTW_OK : RTW_AGAIN;
}

/* Formats a written broadcast/private into w->out. */
static int fcg__message_format(struct fcg_req *r, const struct msg_in *m, const struct fcg_gc_item *it)
{
	struct msg_stored s = {
	    .id = it->id,
	    .stream_id = r->stream_id,
	    .author_id = it->author,
	    .to_user_id = m->has_to_user ? m->to_user_id : NULL,
	    .message_json = it->message,
	    .timestamp = it->ts,
	    .type = msg_type_name(m->type),
	    .widget_key = m->widget_key,
	    .created_at = it->created_at,
	};
	size_t len;
	char *js = msg_serialize(&s, &len);
	struct rtw_buf *o = &r->w->out;
	int rc;

	if (!js)
		return RTW_ERROR;
	o->len = 0;
	o->max = SIZE_MAX;
	rc = rtw_buf_add(o, js, len);
	free(js);
	return rc;
}

/* 1 to MSG_IDEM_KEY_MAX printable ASCII characters (space included): the
 * key is stored as text, so bytes that are not UTF-8 would fail in
 * PostgreSQL (a 503 for a client's mistake), and control characters have
 * no business in a header value. */
static bool fcg__idem_key_valid(const char *key)
{
	size_t n = 0;

	for (; key[n]; n++)
		if ((unsigned char)key[n] < 0x20 || (unsigned char)key[n] > 0x7e)
			return false;
	return n >= 1 && n <= MSG_IDEM_KEY_MAX;
}

/* Writes the message (no idempotency) and formats the answer into w->out;
 * *status receives 201/202. RTW_OK, RTW_DECLINED (its author is banned:
 * 403 sent, nothing written) or RTW_AGAIN (unavailable). */
static int fcg__write(struct fcg_req *r, const struct msg_in *m, const char *author, bool in_txn, int *status)
{
	struct fcg_gc_item it = {.m = m, .author = author, .check_ban = fcg__checks_bans(r), .sem = &r->w->gc_sem};
	int rc;

	if (m->type == MSG_WEBHOOK) {
		*status = 202;
		return fcg__webhook_write(r, m, author);
	}
	*status = 201;
	if (!in_txn && r->w->cfg->fcgi_group_commit_max > 1)
		fcg_gc_submit(r->w->gc, &r->w->db, &it);
	else
		fcg_insert_one(&r->w->db, &it);
	if (it.rc == RTW_DECLINED) {
		fcg__fail_banned(r);
		return RTW_DECLINED;
	}
	rc = it.rc == RTW_OK ? fcg__message_format(r, m, &it) : RTW_AGAIN;
	fcg_gc_item_clear(&it);
	return rc == RTW_OK ? RTW_OK : RTW_AGAIN;
}

static void fcg__rollback(struct fcg_db *db)
{
	if (db->state == FCG_DB_READY && fcg_db_cmd(db, "ROLLBACK") == RTW_ERROR)
		log_warn("worker %d: rollback failed", db->worker_id);
}

/* fcg_idempotent's writer for one message of the per-stream POST. */
struct fcg__one {
	const struct msg_in *m;
	const char *author;
};

static int fcg__write_one(struct fcg_req *r, void *arg, int *status)
{
	const struct fcg__one *one = arg;
	return fcg__write(r, one->m, one->author, true, status);
}

/*
 * Idempotency-Key: one transaction. Claim (scope, author, key) with ON
 * CONFLICT DO NOTHING: a concurrent request with the same key waits on the
 * unique index until the first commits, then finds its row. The claimer
 * writes (write, inside the transaction) and stores the answer; anyone
 * else replays it (same body) or gets 409 (different body), and writes
 * nothing.
 */
void fcg_idempotent(struct fcg_req *r, const char *scope, const char *author, fcg_write_fn write, void *arg)
{
	struct fcg_db *db = &r->w->db;
	struct rtw_buf *body = &r->w->body;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char hash[2 * SHA256_DIGEST_LENGTH + 1], st[8];
	PGresult *res = NULL;
	int status = 0, rc;

	if (!fcg__idem_key_valid(r->idem_key)) {
		fcg_fail(r, 400, "invalid_field", "Idempotency-Key",
			 "Idempotency-Key must be 1 to %d printable ASCII characters", MSG_IDEM_KEY_MAX);
		return;
	}
	SHA256((const unsigned char *)body->p, body->len, digest);
	rtw_hex(digest, sizeof(digest), hash);
	const char *key_params[5] = {scope, author, r->idem_key, hash, NULL};

	if (fcg_db_cmd(db, "BEGIN") != RTW_OK)
		goto unavailable;
	if (!(res = fcg_db_run(db, "idem_claim", 4, key_params, PGRES_TUPLES_OK, NULL)))
		goto unavailable;
	if (PQntuples(res) == 0) {
		PQclear(res);
		if (!(res = fcg_db_run(db, "idem_get", 3, key_params, PGRES_TUPLES_OK, NULL)) || PQntuples(res) != 1)
			goto unavailable;
		if (fcg_db_cmd(db, "COMMIT") != RTW_OK)
			goto unavailable;
		if (strcmp(PQgetvalue(res, 0, 0), hash) != 0) {
			fcg_fail(r, 409, "idempotency_conflict", "Idempotency-Key",
				 "this Idempotency-Key was used with a different body");
		} else {
			int stored = atoi(PQgetvalue(res, 0, 1));
			const char *text = PQgetvalue(res, 0, 2);
			fcg_send(r, stored, text, strlen(text));
		}
		PQclear(res);
		return;
	}
	PQclear(res);
	res = NULL;
	rc = write(r, arg, &status);
	if (rc == RTW_DECLINED) {
		/* the writer answered (a refusal): nothing is kept */
		fcg__rollback(db);
		return;
	}
	if (rc != RTW_OK)
		goto unavailable;
	snprintf(st, sizeof(st), "%d", status);
	key_params[3] = st;
	key_params[4] = r->w->out.p;
	if (!(res = fcg_db_run(db, "idem_set", 5, key_params, PGRES_COMMAND_OK, NULL)))
		goto unavailable;
	PQclear(res);
	if (fcg_db_cmd(db, "COMMIT") != RTW_OK) {
		/* the outcome is unknown; a retry with the key tells */
		res = NULL;
		goto unavailable;
	}
	fcg_send(r, status, r->w->out.p, r->w->out.len);
	return;
unavailable:
	PQclear(res);
	fcg__rollback(db);
	fcg_unavailable(r);
}

int fcg_req_auth(struct fcg_req *r, const char *stream)
{
	return fcg__auth(r, stream);
}

int fcg_req_limits(struct fcg_req *r, const char *author)
{
	return fcg__rate_limit_addr(r) == RTW_OK && fcg__rate_limit(r, author) == RTW_OK ? RTW_OK : RTW_ERROR;
}

void fcg_handle_post(struct fcg_req *r)
{
	struct rtw_buf *body = &r->w->body;
	struct msg_in m;
	struct msg_error err;
	char author[MSG_ID_MAX + 1];
	int status, rc;

	memset(&m, 0, sizeof(m));
	if (fcg__auth(r, r->stream_id) != RTW_OK)
		return;
	if (msg_decode(body->p, body->len, r->stream_id, &m, &err) != RTW_OK) {
		fcg_send_error(r, &err);
		return;
	}
	if (r->idem_key && !fcg__idem_key_valid(r->idem_key)) {
		fcg_fail(r, 400, "invalid_field", "Idempotency-Key",
			 "Idempotency-Key must be 1 to %d printable ASCII characters", MSG_IDEM_KEY_MAX);
		goto out;
	}
	if (fcg__author(r, m.has_author ? m.author_id : NULL, author) != RTW_OK)
		goto out;
	if (fcg__widget(r, m.widget_key) != RTW_OK)
		goto out;
	if (fcg__rate_limit_addr(r) != RTW_OK || fcg__rate_limit(r, author) != RTW_OK)
		goto out;
	/* broadcasts and privates: in their insert */
	if ((m.type == MSG_REQUEST || m.type == MSG_WEBHOOK) && fcg__banned(r, author) != RTW_OK)
		goto out;
	if (m.type == MSG_REQUEST) {
		/* a read: Idempotency-Key has nothing to protect */
		fcg__history(r, m.widget_key, author, m.message);
		goto out;
	}
	if (m.type == MSG_WEBHOOK && (fcg__webhook_policy(r, fcg__webhook_url(m.message), author) != RTW_OK ||
				      fcg__webhook_quota(r, m.widget_key, author) != RTW_OK))
		goto out;
	if (r->idem_key) {
		struct fcg__one one = {.m = &m, .author = author};
		fcg_idempotent(r, r->stream_id, author, fcg__write_one, &one);
		goto out;
	}
	if ((rc = fcg__write(r, &m, author, false, &status)) != RTW_OK) {
		if (rc != RTW_DECLINED)
			fcg_unavailable(r);
		goto out;
	}
	fcg_send(r, status, r->w->out.p, r->w->out.len);
out:
	msg_in_clear(&m);
}

/* ---- GET /v1/streams/{id}/messages ---- */

/* Query parameters become the filter object msg_filter_decode reads. */
static int fcg__query_filters(struct fcg_req *r, json_t *filters, char widget[MSG_UUID_LEN + 1], bool *has_widget,
			      char author[MSG_ID_MAX + 1], bool *has_author)
{
	const char *q = r->query;
	struct rtw_query_pair kv;
	char name[32], val[512];

	while (rtw_query_next(&q, &kv)) {
		int rc = rtw_url_decode(kv.name, kv.name_len, name, sizeof(name), RTW_URL_PLUS);
		if (rc == RTW_ERROR) {
			fcg_fail(r, 400, "invalid_field", "query", "the query holds a malformed %%-escape");
			return RTW_ERROR;
		}
		if (rc != RTW_OK)
			name[0] = '\0'; /* an unknown, over-long name: ignored */
		if (name[0] && rtw_url_decode(kv.value, kv.value_len, val, sizeof(val), RTW_URL_PLUS) != RTW_OK) {
			fcg_fail(r, 400, "invalid_field", name, "%s is not a valid value", name);
			return RTW_ERROR;
		}
		if (!name[0] || val[0] == '\0') {
			/* empty values are absent (since_id= on the first page) */
		} else if (strcmp(name, "widget_key") == 0) {
			if (!msg_valid_uuid(val, widget)) {
				fcg_fail(r, 400, "invalid_field", "widget_key", "widget_key must be a UUID");
				return RTW_ERROR;
			}
			*has_widget = true;
		} else if (strcmp(name, "author_id") == 0 && !r->has_claims) {
			if (!msg_valid_user_id(val)) {
				fcg_fail(r, 400, "invalid_field", "author_id", "author_id is not a valid id");
				return RTW_ERROR;
			}
			memcpy(author, val, strlen(val) + 1); /* <= MSG_ID_MAX, checked above */
			*has_author = true;
		} else if (strcmp(name, "since_id") == 0 || strcmp(name, "before_id") == 0 ||
			   strcmp(name, "order") == 0) {
			/* checked by msg_filter_decode, as in a request */
			json_object_set_new(filters, name, json_string(val));
		} else if (strcmp(name, "limit") == 0) {
			char *end;
			long long l = strtoll(val, &end, 10);
			if (*end || val[0] < '0' || val[0] > '9' || strlen(val) > 9) {
				fcg_fail(r, 400, "invalid_field", "limit", "limit must be an integer from 1 to %d",
					 r->w->cfg->history_max_limit);
				return RTW_ERROR;
			}
			json_object_set_new(filters, "limit", json_integer(l));
		} else if (strcmp(name, "from_timestamp") == 0 || strcmp(name, "to_timestamp") == 0) {
			char *end;
			double d = strtod(val, &end);
			if (*end || !isfinite(d) || d < 0 || !((val[0] >= '0' && val[0] <= '9') || val[0] == '.')) {
				fcg_fail(r, 400, "invalid_field",
					 strcmp(name, "to_timestamp") ? "from_timestamp" : "to_timestamp",
					 "%s must be a finite number >= 0", name);
				return RTW_ERROR;
			}
			json_object_set_new(filters, name, json_real(d));
		}
		/* other parameters (access_token, cache busters) are ignored */
	}
	return RTW_OK;
}

void fcg_handle_get_messages(struct fcg_req *r)
{
	json_t *filters = json_object();
	char widget[MSG_UUID_LEN + 1], client_author[MSG_ID_MAX + 1], author[MSG_ID_MAX + 1];
	bool has_widget = false, has_author = false;

	if (!filters) {
		fcg_unavailable(r);
		return;
	}
	if (fcg__auth(r, r->stream_id) != RTW_OK)
		goto out;
	if (fcg__query_filters(r, filters, widget, &has_widget, client_author, &has_author) != RTW_OK)
		goto out;
	if (!has_widget) {
		fcg_fail(r, 400, "missing_field", "widget_key", "widget_key is required");
		goto out;
	}
	if (fcg__author(r, has_author ? client_author : NULL, author) != RTW_OK)
		goto out;
	if (fcg__widget(r, widget) != RTW_OK)
		goto out;
	if (fcg__rate_limit(r, author) != RTW_OK)
		goto out;
	fcg__history(r, widget, author, filters);
out:
	json_decref(filters);
}

/* ---- GET /v1/webhooks/{job_id} ---- */

static json_t *fcg__col(PGresult *res, int col, bool integer)
{
	if (PQgetisnull(res, 0, col))
		return json_null();
	if (integer)
		return json_integer(strtoll(PQgetvalue(res, 0, col), NULL, 10));
	return json_string(PQgetvalue(res, 0, col));
}

void fcg_handle_get_webhook(struct fcg_req *r)
{
	const char *params[1] = {r->job_id};
	PGresult *res;
	json_t *j;

	if (fcg__auth(r, NULL) != RTW_OK)
		return;
	if (!(res = fcg_db_run(&r->w->db, "job_get", 1, params, PGRES_TUPLES_OK, NULL))) {
		fcg_unavailable(r);
		return;
	}
	/* Only the requester or an admin: anyone else learns nothing, not even
	 * that the job exists. */
	if (PQntuples(res) != 1 ||
	    (r->has_claims && !r->claims.admin && strcmp(PQgetvalue(res, 0, 5), r->claims.sub) != 0)) {
		PQclear(res);
		fcg_fail(r, 404, "not_found", NULL, "no such webhook job");
		return;
	}
	j = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "job_id",
		      fcg__col(res, 0, false), "status", fcg__col(res, 1, false), "attempts", fcg__col(res, 2, true),
		      "http_status", fcg__col(res, 3, true), "error", fcg__col(res, 4, false), "author_id",
		      fcg__col(res, 5, false), "stream_id", fcg__col(res, 6, false), "widget_key",
		      fcg__col(res, 7, false), "url", fcg__col(res, 8, false), "method", fcg__col(res, 9, false),
		      "created_at", fcg__col(res, 10, false), "started_at", fcg__col(res, 11, false), "finished_at",
		      fcg__col(res, 12, false), "updated_at", fcg__col(res, 13, false), "run_at",
		      fcg__col(res, 14, false), "response", fcg__col(res, 15, false), "result_message_id",
		      fcg__col(res, 16, false));
	PQclear(res);
	fcg_send_json(r, 200, j);
}

/* ---- GET /v1/streams/{id}/presence ---- */

/* The sums rtw-sse processes wrote (sql/009_presence.sql); the token
 * rules of history: a token may read a stream it is allowed. Admins also
 * get up to 1000 viewer ids. */
void fcg_handle_get_presence(struct fcg_req *r)
{
	const char *params[1] = {r->stream_id};
	struct rtw_buf *o = &r->w->out;
	PGresult *res = NULL, *users = NULL;
	int rc = RTW_OK;

	if (fcg__auth(r, r->stream_id) != RTW_OK)
		return;
	if (!(res = fcg_db_run(&r->w->db, "presence", 1, params, PGRES_TUPLES_OK, NULL)) || PQntuples(res) != 1)
		goto unavailable;
	if (r->has_claims && r->claims.admin &&
	    (!(users = fcg_db_run(&r->w->db, "presence_users", 1, params, PGRES_TUPLES_OK, NULL)) ||
	     PQntuples(users) != 1))
		goto unavailable;
	o->len = 0;
	o->max = SIZE_MAX;
	rc |= rtw_buf_str(o, "{\"stream_id\":");
	rc |= rtw_buf_json_str(o, r->stream_id);
	rc |= rtw_buf_printf(o, ",\"connections\":%s,\"viewers\":%s,\"updated_at\":", PQgetvalue(res, 0, 0),
			     PQgetvalue(res, 0, 1));
	rc |= rtw_buf_json_str(o, PQgetvalue(res, 0, 2));
	if (users) {
		rc |= rtw_buf_str(o, ",\"users\":");
		rc |= rtw_buf_str(o, PQgetvalue(users, 0, 0));
	}
	rc |= rtw_buf_str(o, "}");
	if (rc != RTW_OK)
		goto unavailable;
	fcg_send(r, 200, o->p, o->len);
	PQclear(res);
	PQclear(users);
	return;
unavailable:
	PQclear(res);
	PQclear(users);
	fcg_unavailable(r);
}

/* ---- DELETE /v1/streams/{id}/messages/{id} ---- */

/* Redaction (sql/012_moderation.sql, rtw_redact): the message's author or
 * an admin token stores a redact row in stream order, which rtw-sse
 * routes like the original. Open mode has no identity to check: the
 * author_id query parameter names who redacts, and only the author may.
 * 404 for an id that is not a message of the stream; a second DELETE
 * answers the first redact row. */
void fcg_handle_delete_message(struct fcg_req *r)
{
	char who[MSG_ID_MAX + 1], client[MSG_ID_MAX + 1];
	const char *params[4] = {r->stream_id, r->msg_id, who, "false"};
	bool has_client = false, lost;
	struct msg_stored s;
	PGresult *res;
	json_t *ignored = NULL;
	char widget[MSG_UUID_LEN + 1];
	bool has_widget = false;
	char *js;
	size_t len;
	int status;

	if (fcg__auth(r, r->stream_id) != RTW_OK)
		return;
	if (!r->has_claims) {
		if (!(ignored = json_object())) {
			fcg_unavailable(r);
			return;
		}
		/* the history query's reader gives author_id (and ignores the rest) */
		int rc = fcg__query_filters(r, ignored, widget, &has_widget, client, &has_client);
		json_decref(ignored);
		if (rc != RTW_OK)
			return;
		if (!has_client) {
			fcg_fail(r, 400, "missing_field", "author_id", "author_id is required in open mode");
			return;
		}
	}
	if (fcg__author(r, has_client ? client : NULL, who) != RTW_OK)
		return;
	if (r->has_claims && r->claims.admin)
		params[3] = "true";
	if (fcg__rate_limit_addr(r) != RTW_OK || fcg__rate_limit(r, who) != RTW_OK)
		return;
	if (!(res = fcg_db_run(&r->w->db, "redact", 4, params, PGRES_TUPLES_OK, NULL)) || PQntuples(res) != 1) {
		PQclear(res);
		fcg_unavailable(r);
		return;
	}
	status = atoi(PQgetvalue(res, 0, 0));
	if (status == 404) {
		fcg_fail(r, 404, "not_found", NULL, "stream %s holds no message %s", r->stream_id, r->msg_id);
		goto out;
	}
	if (status != 200) {
		fcg_fail(r, 403, "forbidden", NULL, "only the message's author or an admin may delete it");
		goto out;
	}
	rtw_row_message(res, 0, 1, &s);
	/* the message's widget decides CORS, as for its POST */
	r->widget = fcg_widget_get(r->w, s.widget_key, &lost);
	if (!(js = msg_serialize(&s, &len))) {
		fcg_unavailable(r);
		goto out;
	}
	fcg_send(r, 200, js, len);
	free(js);
out:
	PQclear(res);
}
