/*
 * http.c: owns the HTTP face of rtw-fcgi for one accepted FastCGI request:
 * reading the CGI variables (nginx's and Apache mod_proxy_fcgi's), the
 * path (percent-decoded by lib/url.c), routing, the method, media-type
 * and size checks, reading the body, and counting the request in the
 * metrics. Tier 5 of fcgi/, under main.c only: calls publish.c, bans.c,
 * handlers.c, respond.c, lib/buf.c and health.c's counters. Runs on the worker thread
 * that accepted the request; knows nothing about messages beyond handing
 * them to handlers.c.
 */
#include "config.h"
#include "clientaddr.h"
#include "fcgi.h"
#include "log.h"
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The request path: PATH_INFO when the server put the whole path there
 * (nginx with our config), else REQUEST_URI without its query (Apache
 * mod_proxy_fcgi, spawn-fcgi setups), else SCRIPT_NAME + PATH_INFO.
 * RTW_ERROR: a malformed %-escape (400); RTW_DECLINED: too long (404). */
static int fcg__path(struct fcg_req *r, FCGX_ParamArray env)
{
	const char *pi = FCGX_GetParam("PATH_INFO", env);
	const char *uri = FCGX_GetParam("REQUEST_URI", env);
	const char *sn = FCGX_GetParam("SCRIPT_NAME", env);
	char tmp[sizeof(r->path)];

	if (pi && strncmp(pi, "/v1/", 4) == 0)
		return snprintf(r->path, sizeof(r->path), "%s", pi) < (int)sizeof(r->path) ? RTW_OK : RTW_DECLINED;
	if (uri && uri[0] == '/') {
		size_t n = strcspn(uri, "?#");
		return rtw_url_decode(uri, n, r->path, sizeof(r->path), 0);
	}
	if (snprintf(tmp, sizeof(tmp), "%s%s", sn ? sn : "", pi ? pi : "") >= (int)sizeof(tmp))
		return RTW_DECLINED;
	memcpy(r->path, tmp, sizeof(tmp));
	return RTW_OK;
}

/* The last path segment p (one trailing '/' allowed) as an id into out:
 * a positive decimal, anything else names nothing (RTW_ERROR: 404). */
static int fcg__id_segment(const char *p, char *out, size_t cap)
{
	size_t n = strlen(p);

	if (n && p[n - 1] == '/')
		n--;
	if (n == 0 || n >= cap)
		return RTW_ERROR;
	memcpy(out, p, n);
	out[n] = '\0';
	return msg_valid_id(out) ? RTW_OK : RTW_ERROR;
}

/* The ban routes (bans.c), after "/v1/bans" or "/v1/streams/{id}/bans"
 * (r->stream_id set, else empty: every stream): the list, or one user's
 * ban. The user id is the whole rest of the path, percent-decoded, since
 * a user id may hold a '/'; an invalid one is 400 (fcg_handle_ban).
 * RTW_ERROR: no such route (404). */
static int fcg__route_bans(struct fcg_req *r, const char *rest)
{
	if (strcmp(rest, "") == 0 || strcmp(rest, "/") == 0) {
		r->route = FCG_ROUTE_BANS;
		r->allow = FCG_ALLOW_BANS;
		return RTW_OK;
	}
	if (rest[0] != '/')
		return RTW_ERROR;
	r->route = FCG_ROUTE_BAN;
	r->allow = FCG_ALLOW_BAN;
	/* too long for a user id: left empty, which the handler refuses */
	if (strlen(rest + 1) < sizeof(r->user_id))
		memcpy(r->user_id, rest + 1, strlen(rest + 1) + 1);
	return RTW_OK;
}

/* Matches /v1/streams/{id}/messages, /v1/streams/{id}/messages/{id},
 * /v1/streams/{id}/presence, /v1/webhooks/{id}, /v1/messages and the ban
 * routes (/v1/bans..., /v1/streams/{id}/bans...). A
 * malformed stream id is a 400 (contract: invalid_field); returns
 * RTW_DECLINED then. */
static int fcg__route(struct fcg_req *r)
{
	const char *p = r->path;
	size_t n;

	if (strcmp(p, "/v1/messages") == 0 || strcmp(p, "/v1/messages/") == 0) {
		r->route = FCG_ROUTE_PUBLISH;
		r->allow = FCG_ALLOW_PUBLISH;
		return RTW_OK;
	}

	if (strncmp(p, "/v1/bans", 8) == 0)
		return fcg__route_bans(r, p + 8);
	if (strncmp(p, "/v1/streams/", 12) == 0) {
		p += 12;
		n = strcspn(p, "/");
		if (strncmp(p + n, "/bans", 5) == 0 && n > 0 && n <= MSG_ID_MAX) {
			memcpy(r->stream_id, p, n);
			r->stream_id[n] = '\0';
			if (!msg_valid_stream_id(r->stream_id))
				return RTW_DECLINED;
			return fcg__route_bans(r, p + n + 5);
		}
		bool presence = strcmp(p + n, "/presence") == 0 || strcmp(p + n, "/presence/") == 0;
		bool one = strncmp(p + n, "/messages/", 10) == 0 && p[n + 10] != '\0';
		if (!presence && !one && strcmp(p + n, "/messages") != 0 && strcmp(p + n, "/messages/") != 0)
			return RTW_ERROR;
		if (one && fcg__id_segment(p + n + 10, r->msg_id, sizeof(r->msg_id)) != RTW_OK)
			return RTW_ERROR;
		if (n == 0 || n > MSG_ID_MAX)
			return RTW_DECLINED;
		memcpy(r->stream_id, p, n);
		r->stream_id[n] = '\0';
		if (!msg_valid_stream_id(r->stream_id))
			return RTW_DECLINED;
		r->route = presence ? FCG_ROUTE_PRESENCE : one ? FCG_ROUTE_MESSAGE : FCG_ROUTE_MESSAGES;
		r->allow = presence ? FCG_ALLOW_PRESENCE : one ? FCG_ALLOW_MESSAGE : FCG_ALLOW_MESSAGES;
		return RTW_OK;
	}
	if (strncmp(p, "/v1/webhooks/", 13) == 0) {
		if (fcg__id_segment(p + 13, r->job_id, sizeof(r->job_id)) != RTW_OK)
			return RTW_ERROR;
		r->route = FCG_ROUTE_WEBHOOK;
		r->allow = FCG_ALLOW_WEBHOOK;
		return RTW_OK;
	}
	return RTW_ERROR;
}

static bool fcg__is_json(const char *ct)
{
	static const char want[] = "application/json";
	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	ct += sizeof(want) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

#define FCG_BUF_KEEP (1u << 20)

/* The body limit of the route: a batch of backend messages may be larger. */
static int fcg__max_body(const struct fcg_req *r)
{
	return r->route == FCG_ROUTE_PUBLISH ? r->w->cfg->http_max_batch_body : r->w->cfg->http_max_body;
}

/* Reads the body into w->body; RTW_DECLINED when it exceeds the limit. */
static int fcg__read_body(struct fcg_req *r)
{
	struct rtw_buf *b = &r->w->body;
	char chunk[16384];
	int got;

	b->len = 0;
	b->max = (size_t)fcg__max_body(r);
	while ((got = FCGX_GetStr(chunk, sizeof(chunk), r->w->fx.in)) > 0) {
		if (rtw_buf_add(b, chunk, (size_t)got) != RTW_OK)
			return RTW_DECLINED;
	}
	if (!b->p && rtw_buf_add(b, "", 0) != RTW_OK)
		return RTW_ERROR;
	return RTW_OK;
}

/* Reads a JSON body into w->body, answering 413, 415 or 503 itself
 * (RTW_ERROR then). optional: an empty body (a PUT without one) needs no
 * content type. */
static int fcg__json_body(struct fcg_req *r, bool optional)
{
	int max = fcg__max_body(r);
	int rc;

	if (r->content_length > max) {
		fcg_fail(r, 413, "payload_too_large", NULL, "request body is larger than the limit of %d bytes", max);
		return RTW_ERROR;
	}
	if (!(optional && r->content_length <= 0) && !fcg__is_json(r->content_type)) {
		fcg_fail(r, 415, "unsupported_media_type", NULL, "content type must be application/json");
		return RTW_ERROR;
	}
	rc = fcg__read_body(r);
	if (rc == RTW_DECLINED) {
		fcg_fail(r, 413, "payload_too_large", NULL, "request body is larger than the limit of %d bytes", max);
		return RTW_ERROR;
	}
	if (rc != RTW_OK) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	/* a chunked body came without a length */
	if (r->w->body.len > 0 && !fcg__is_json(r->content_type)) {
		fcg_fail(r, 415, "unsupported_media_type", NULL, "content type must be application/json");
		return RTW_ERROR;
	}
	return RTW_OK;
}

static void fcg__post(struct fcg_req *r)
{
	if (fcg__json_body(r, false) != RTW_OK)
		return;
	if (r->route == FCG_ROUTE_PUBLISH) {
		fcg_handle_publish(r);
		/* A worker keeps its buffers between requests, which spares a
		 * publisher's next batch the page faults of fresh memory; but not
		 * beyond FCG_BUF_KEEP, or every worker would hold a large one. */
		if (r->w->body.cap > FCG_BUF_KEEP)
			rtw_buf_free(&r->w->body);
		if (r->w->out.cap > FCG_BUF_KEEP)
			rtw_buf_free(&r->w->out);
		return;
	}
	fcg_handle_post(r);
}

static uint64_t fcg__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static enum fcg_mroute fcg__mroute(const struct fcg_req *r)
{
	if (r->route == FCG_ROUTE_MESSAGES && strcmp(r->method, "POST") == 0)
		return FCG_M_MESSAGES_POST;
	if (r->route == FCG_ROUTE_MESSAGES && strcmp(r->method, "GET") == 0)
		return FCG_M_MESSAGES_GET;
	if (r->route == FCG_ROUTE_WEBHOOK && strcmp(r->method, "GET") == 0)
		return FCG_M_WEBHOOK_GET;
	if (r->route == FCG_ROUTE_PUBLISH && strcmp(r->method, "POST") == 0)
		return FCG_M_PUBLISH_POST;
	if (r->route == FCG_ROUTE_MESSAGE && strcmp(r->method, "DELETE") == 0)
		return FCG_M_MESSAGE_DELETE;
	if (r->route == FCG_ROUTE_BANS || r->route == FCG_ROUTE_BAN)
		return FCG_M_BANS;
	return FCG_M_OTHER;
}

/* The route as a pattern (no stream id, no query: nothing a client chose
 * grows the line), or the path itself when nothing matched. */
static const char *fcg__route_name(const struct fcg_req *r)
{
	switch (r->route) {
	case FCG_ROUTE_MESSAGES: return "/v1/streams/{id}/messages";
	case FCG_ROUTE_PRESENCE: return "/v1/streams/{id}/presence";
	case FCG_ROUTE_WEBHOOK: return "/v1/webhooks/{id}";
	case FCG_ROUTE_PUBLISH: return "/v1/messages";
	case FCG_ROUTE_MESSAGE: return "/v1/streams/{id}/messages/{id}";
	case FCG_ROUTE_BANS: return r->stream_id[0] ? "/v1/streams/{id}/bans" : "/v1/bans";
	case FCG_ROUTE_BAN: return r->stream_id[0] ? "/v1/streams/{id}/bans/{user_id}" : "/v1/bans/{user_id}";
	case FCG_ROUTE_NONE: break;
	}
	return r->path;
}

/* The request's one log line (log_requests): what was asked, what was
 * answered, for whom; never a header value or the query (tokens). */
static void fcg__log_request(const struct fcg_req *r, uint64_t duration_us)
{
	char client[RTW_CLIENT_KEY_MAX];
	json_t *f;

	rtw_client_key(r->w->trust, r->remote_addr, r->forwarded_for, client);
	f = json_pack("{s:s, s:s, s:i, s:s?, s:f, s:I, s:s?, s:s?, s:s, s:s}", "method",
		      strlen(r->method) < 16 ? r->method : "other", "route", fcg__route_name(r), "status", r->status,
		      "error", r->error_code, "duration_ms", (double)duration_us / 1000.0, "bytes",
		      (json_int_t)r->bytes, "stream", r->stream_id[0] ? r->stream_id : NULL, "widget",
		      r->widget && r->widget->exists ? r->widget->key : NULL, "client", client, "request_id",
		      r->request_id);
	log_event(LOG_LVL_INFO, "request", f);
	json_decref(f);
}

void fcg_serve(struct fcg_worker *w)
{
	FCGX_ParamArray env = w->fx.envp;
	struct fcg_req r;
	const char *cl;
	int rc;
	uint64_t t0 = fcg__now_us();

	atomic_fetch_add_explicit(&w->metrics->in_flight, 1, memory_order_relaxed);
	memset(&r, 0, sizeof(r));
	r.w = w;
	r.method = FCGX_GetParam("REQUEST_METHOD", env);
	r.query = FCGX_GetParam("QUERY_STRING", env);
	r.origin = FCGX_GetParam("HTTP_ORIGIN", env);
	r.content_type = FCGX_GetParam("CONTENT_TYPE", env);
	r.authorization = FCGX_GetParam("HTTP_AUTHORIZATION", env);
	r.idem_key = FCGX_GetParam("HTTP_IDEMPOTENCY_KEY", env);
	r.remote_addr = FCGX_GetParam("REMOTE_ADDR", env);
	r.forwarded_for = FCGX_GetParam("HTTP_X_FORWARDED_FOR", env);
	cl = FCGX_GetParam("CONTENT_LENGTH", env);
	r.content_length = (cl && *cl) ? strtoll(cl, NULL, 10) : -1;
	if (!r.method)
		r.method = "GET";
	if (!r.query)
		r.query = "";
	if (r.origin && !*r.origin)
		r.origin = NULL;
	/* FastCGI parameters are the web server's own (a client's headers
	 * arrive as HTTP_*): nginx's $request_id (conf/nginx.conf.in) or
	 * Apache mod_unique_id's UNIQUE_ID; else one of ours */
	const char *given = FCGX_GetParam("REQUEST_ID", env);
	rtw_reqid_pick(given ? given : FCGX_GetParam("UNIQUE_ID", env), true, r.request_id);

	rc = fcg__path(&r, env);
	if (rc == RTW_ERROR) {
		fcg_fail(&r, 400, "invalid_field", "path", "the path holds a malformed %%-escape");
		goto out;
	}
	if (rc != RTW_OK) {
		fcg_fail(&r, 404, "not_found", NULL, "no such resource");
		goto out;
	}
	rc = fcg__route(&r);
	if (rc == RTW_DECLINED) {
		fcg_fail(&r, 400, "invalid_field", "stream_id",
			 "stream id must be 1 to 128 characters of A-Za-z0-9._:-");
		goto out;
	}
	if (rc != RTW_OK) {
		fcg_fail(&r, 404, "not_found", NULL, "no such resource");
		goto out;
	}
	if (strcmp(r.method, "OPTIONS") == 0) {
		fcg_send_preflight(&r);
		goto out;
	}
	if ((r.route == FCG_ROUTE_MESSAGES || r.route == FCG_ROUTE_PUBLISH) && strcmp(r.method, "POST") == 0)
		fcg__post(&r);
	else if (r.route == FCG_ROUTE_MESSAGES && strcmp(r.method, "GET") == 0)
		fcg_handle_get_messages(&r);
	else if (r.route == FCG_ROUTE_WEBHOOK && strcmp(r.method, "GET") == 0)
		fcg_handle_get_webhook(&r);
	else if (r.route == FCG_ROUTE_PRESENCE && strcmp(r.method, "GET") == 0)
		fcg_handle_get_presence(&r);
	else if (r.route == FCG_ROUTE_MESSAGE && strcmp(r.method, "DELETE") == 0)
		fcg_handle_delete_message(&r);
	else if (r.route == FCG_ROUTE_BAN && strcmp(r.method, "PUT") == 0) {
		if (fcg__json_body(&r, true) == RTW_OK)
			fcg_handle_ban(&r);
	} else if ((r.route == FCG_ROUTE_BAN && strcmp(r.method, "DELETE") == 0) ||
		   (r.route == FCG_ROUTE_BANS && strcmp(r.method, "GET") == 0))
		fcg_handle_ban(&r);
	else
		fcg_fail(&r, 405, "method_not_allowed", NULL, "method %s is not allowed here",
			 strlen(r.method) < 16 ? r.method : "given");
out:
	if (r.has_claims)
		tok_claims_free(&r.claims);
	uint64_t took = fcg__now_us() - t0;
	fcg_metrics_request(w->metrics, fcg__mroute(&r), r.status, took);
	if (w->cfg->log_requests && log_enabled(LOG_LVL_INFO))
		fcg__log_request(&r, took);
	atomic_fetch_sub_explicit(&w->metrics->in_flight, 1, memory_order_relaxed);
}
