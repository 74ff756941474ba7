/*
 * http.c: owns the HTTP face of rtw-fcgi for one accepted FastCGI request:
 * reading the CGI variables (nginx's and Apache mod_proxy_fcgi's), routing,
 * the method/media-type/size checks, CORS (preflights included) and writing
 * the response. Runs on the worker thread that accepted the request; knows
 * nothing about messages beyond handing them to handlers.c.
 */
#include "config.h"
#include "fcgi.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FCG_ALLOW_MESSAGES "GET, POST, OPTIONS"
#define FCG_ALLOW_WEBHOOK "GET, OPTIONS"
#define FCG_PREFLIGHT_MAX_AGE 600
#define FCG_ORIGINS_TTL_MS 1500

/* ---- fcg_buf ---- */

int fcg_buf_add(struct fcg_buf *b, const void *data, size_t n)
{
	if (n > b->max - b->len)
		return RTW_ERROR;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return RTW_ERROR;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return RTW_OK;
}

int fcg_buf_str(struct fcg_buf *b, const char *s)
{
	return fcg_buf_add(b, s, strlen(s));
}

int fcg_buf_printf(struct fcg_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return RTW_ERROR;
	return fcg_buf_add(b, tmp, (size_t)n);
}

int fcg_buf_json_str(struct fcg_buf *b, const char *s)
{
	/* jansson does the escaping (and checks UTF-8). */
	json_t *j = json_string(s);
	char *enc = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	int rc = enc ? fcg_buf_str(b, enc) : RTW_ERROR;
	free(enc);
	json_decref(j);
	return rc;
}

void fcg_buf_free(struct fcg_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- responses ---- */

static bool fcg__json_list_has(const json_t *arr, const char *item)
{
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v) {
		const char *s = json_string_value(v);
		if (s && (strcmp(s, "*") == 0 || strcasecmp(s, item) == 0))
			return true;
	}
	return false;
}

/* Is the request's Origin allowed? The deployment's list first, then the
 * widget's own (once known), else the union of all enabled widgets'. */
static bool fcg__cors_allowed(struct fcg_req *r)
{
	if (!r->origin)
		return false;
	if (rtw_list_has(r->w->cfg->http_cors_origins, r->origin))
		return true;
	if (r->widget)
		return r->widget->exists && r->widget->enabled && fcg__json_list_has(r->widget->origins, r->origin);
	return fcg_origin_any_widget(r->w, r->origin);
}

static void fcg__send_head(struct fcg_req *r, int status, size_t len, bool preflight)
{
	struct fcg_buf *h = &r->w->head;
	int rc = RTW_OK;

	r->status = status;
	h->len = 0;
	rc |= fcg_buf_printf(h, "Status: %d %s\r\n", status, rtw_http_reason(status));
	if (!preflight)
		rc |= fcg_buf_printf(h,
				     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
				     "Cache-Control: no-store\r\n",
				     len);
	if (r->origin) {
		rc |= fcg_buf_str(h, "Vary: Origin\r\n");
		if (fcg__cors_allowed(r)) {
			rc |= fcg_buf_str(h, "Access-Control-Allow-Origin: ");
			rc |= fcg_buf_str(h, r->origin);
			rc |= fcg_buf_str(h, "\r\n");
			if (preflight)
				rc |= fcg_buf_printf(h,
						     "Access-Control-Allow-Methods: %s\r\n"
						     "Access-Control-Allow-Headers: Authorization, Content-Type, "
						     "Idempotency-Key\r\n"
						     "Access-Control-Max-Age: %d\r\n",
						     r->allow ? r->allow : FCG_ALLOW_MESSAGES, FCG_PREFLIGHT_MAX_AGE);
			else
				rc |= fcg_buf_str(h, "Access-Control-Expose-Headers: Retry-After\r\n");
		}
	}
	if (r->allow && (status == 405 || preflight))
		rc |= fcg_buf_printf(h, "Allow: %s\r\n", r->allow);
	if (r->retry_after > 0)
		rc |= fcg_buf_printf(h, "Retry-After: %d\r\n", r->retry_after);
	rc |= fcg_buf_str(h, "\r\n");
	if (rc != RTW_OK)
		log_error("worker %d: response head too large", r->w->id);
	FCGX_PutStr(h->p, (int)h->len, r->w->fx.out);
}

void fcg_send(struct fcg_req *r, int status, const char *body, size_t len)
{
	fcg__send_head(r, status, len, false);
	if (len)
		FCGX_PutStr(body, (int)len, r->w->fx.out);
}

void fcg_send_error(struct fcg_req *r, const struct msg_error *err)
{
	char *j = msg_error_json(err);
	if ((err->status == 503 || err->status == 429) && r->retry_after <= 0)
		r->retry_after = 1;
	if (!j) {
		static const char oom[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";
		r->retry_after = 1;
		fcg_send(r, 503, oom, sizeof(oom) - 1);
		return;
	}
	fcg_send(r, err->status, j, strlen(j));
	free(j);
}

void fcg_fail(struct fcg_req *r, int status, const char *code, const char *field, const char *fmt, ...)
{
	struct msg_error err;
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	msg_error_set(&err, status, code, field, "%s", text);
	fcg_send_error(r, &err);
}

void fcg_unavailable(struct fcg_req *r)
{
	r->retry_after = 1;
	fcg_fail(r, 503, "unavailable", NULL, "database unavailable; nothing was written");
}

/* ---- widget registry cache ---- */

static void fcg__widget_clear(struct fcg_widget *e)
{
	json_decref(e->origins);
	json_decref(e->hosts);
	memset(e, 0, sizeof(*e));
}

const struct fcg_widget *fcg_widget_get(struct fcg_worker *w, const char *key, bool *lost)
{
	uint64_t now = rtw_now_ms();
	struct fcg_widget *slot = NULL, *oldest = &w->widgets[0];
	const char *params[1] = {key};
	PGresult *res;

	*lost = false;
	for (int i = 0; i < FCG_WIDGET_CACHE; i++) {
		struct fcg_widget *e = &w->widgets[i];
		if (e->key[0] && strcmp(e->key, key) == 0) {
			if (now - e->fetched_ms < FCG_WIDGET_TTL_MS)
				return e;
			slot = e;
			break;
		}
		if (e->fetched_ms < oldest->fetched_ms)
			oldest = e;
	}
	if (!slot)
		slot = oldest;
	res = fcg_db_run(&w->db, "widget", 1, params, PGRES_TUPLES_OK, NULL);
	if (!res) {
		*lost = true;
		return NULL;
	}
	fcg__widget_clear(slot);
	snprintf(slot->key, sizeof(slot->key), "%s", key);
	slot->fetched_ms = now;
	if (PQntuples(res) == 1) {
		slot->exists = true;
		slot->enabled = PQgetvalue(res, 0, 0)[0] == 't';
		slot->origins = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
		slot->hosts = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	}
	if (!json_is_array(slot->origins)) {
		json_decref(slot->origins);
		slot->origins = json_array();
	}
	if (!json_is_array(slot->hosts)) {
		json_decref(slot->hosts);
		slot->hosts = json_array();
	}
	PQclear(res);
	return slot;
}

bool fcg_origin_any_widget(struct fcg_worker *w, const char *origin)
{
	uint64_t now = rtw_now_ms();
	if (rtw_list_has(w->cfg->http_cors_origins, origin))
		return true;
	if (!w->all_origins || now - w->all_origins_ms >= FCG_ORIGINS_TTL_MS) {
		PGresult *res = fcg_db_run(&w->db, "origins_all", 0, NULL, PGRES_TUPLES_OK, NULL);
		if (res) {
			json_decref(w->all_origins);
			w->all_origins = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
			w->all_origins_ms = now;
			PQclear(res);
		}
	}
	return w->all_origins && fcg__json_list_has(w->all_origins, origin);
}

/* ---- request parsing and routing ---- */

static int fcg__hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes n bytes of in into out (outlen bytes); RTW_ERROR when it
 * does not fit or holds NUL. plus: '+' means space (query strings). */
int fcg_urldecode(const char *in, size_t n, char *out, size_t outlen, bool plus);
int fcg_urldecode(const char *in, size_t n, char *out, size_t outlen, bool plus)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i];
		if (c == '%' && i + 2 < n && fcg__hex(in[i + 1]) >= 0 && fcg__hex(in[i + 2]) >= 0) {
			c = fcg__hex(in[i + 1]) * 16 + fcg__hex(in[i + 2]);
			i += 2;
		} else if (plus && c == '+') {
			c = ' ';
		}
		if (c == 0 || o + 1 >= outlen)
			return RTW_ERROR;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return RTW_OK;
}

/* The request path: PATH_INFO when the server put the whole path there
 * (nginx with our config), else REQUEST_URI without its query (Apache
 * mod_proxy_fcgi, spawn-fcgi setups), else SCRIPT_NAME + PATH_INFO. */
static int fcg__path(struct fcg_req *r, FCGX_ParamArray env)
{
	const char *pi = FCGX_GetParam("PATH_INFO", env);
	const char *uri = FCGX_GetParam("REQUEST_URI", env);
	const char *sn = FCGX_GetParam("SCRIPT_NAME", env);
	char tmp[sizeof(r->path)];

	if (pi && strncmp(pi, "/v1/", 4) == 0)
		return snprintf(r->path, sizeof(r->path), "%s", pi) < (int)sizeof(r->path) ? RTW_OK : RTW_ERROR;
	if (uri && uri[0] == '/') {
		size_t n = strcspn(uri, "?#");
		return fcg_urldecode(uri, n, r->path, sizeof(r->path), false);
	}
	if (snprintf(tmp, sizeof(tmp), "%s%s", sn ? sn : "", pi ? pi : "") >= (int)sizeof(tmp))
		return RTW_ERROR;
	memcpy(r->path, tmp, sizeof(tmp));
	return RTW_OK;
}

/* Matches /v1/streams/{id}/messages and /v1/webhooks/{id}. A malformed
 * stream id is a 400 (contract: invalid_field); returns RTW_DECLINED then. */
static int fcg__route(struct fcg_req *r)
{
	const char *p = r->path;
	size_t n;

	if (strncmp(p, "/v1/streams/", 12) == 0) {
		p += 12;
		n = strcspn(p, "/");
		if (strcmp(p + n, "/messages") != 0 && strcmp(p + n, "/messages/") != 0)
			return RTW_ERROR;
		if (n == 0 || n > MSG_ID_MAX)
			return RTW_DECLINED;
		memcpy(r->stream_id, p, n);
		r->stream_id[n] = '\0';
		if (!msg_valid_stream_id(r->stream_id))
			return RTW_DECLINED;
		r->route = FCG_ROUTE_MESSAGES;
		r->allow = FCG_ALLOW_MESSAGES;
		return RTW_OK;
	}
	if (strncmp(p, "/v1/webhooks/", 13) == 0) {
		p += 13;
		n = strlen(p);
		if (n && p[n - 1] == '/')
			n--;
		if (n == 0 || n >= sizeof(r->job_id))
			return RTW_ERROR;
		memcpy(r->job_id, p, n);
		r->job_id[n] = '\0';
		if (!msg_valid_id(r->job_id))
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

/* Reads the body into w->body; RTW_DECLINED when it exceeds the limit. */
static int fcg__read_body(struct fcg_req *r)
{
	struct fcg_buf *b = &r->w->body;
	char chunk[16384];
	int got;

	b->len = 0;
	b->max = (size_t)r->w->cfg->http_max_body;
	while ((got = FCGX_GetStr(chunk, sizeof(chunk), r->w->fx.in)) > 0) {
		if (fcg_buf_add(b, chunk, (size_t)got) != RTW_OK)
			return RTW_DECLINED;
	}
	if (!b->p && fcg_buf_add(b, "", 0) != RTW_OK)
		return RTW_ERROR;
	return RTW_OK;
}

static void fcg__post(struct fcg_req *r)
{
	int max = r->w->cfg->http_max_body;
	int rc;

	if (r->content_length > max) {
		fcg_fail(r, 413, "payload_too_large", NULL, "request body is larger than the limit of %d bytes", max);
		return;
	}
	if (!fcg__is_json(r->content_type)) {
		fcg_fail(r, 415, "unsupported_media_type", NULL, "content type must be application/json");
		return;
	}
	rc = fcg__read_body(r);
	if (rc == RTW_DECLINED) {
		fcg_fail(r, 413, "payload_too_large", NULL, "request body is larger than the limit of %d bytes", max);
		return;
	}
	if (rc != RTW_OK) {
		fcg_unavailable(r);
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
	return FCG_M_OTHER;
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
	cl = FCGX_GetParam("CONTENT_LENGTH", env);
	r.content_length = (cl && *cl) ? strtoll(cl, NULL, 10) : -1;
	if (!r.method)
		r.method = "GET";
	if (!r.query)
		r.query = "";
	if (r.origin && !*r.origin)
		r.origin = NULL;

	if (fcg__path(&r, env) != RTW_OK) {
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
		fcg__send_head(&r, 204, 0, true);
		goto out;
	}
	if (r.route == FCG_ROUTE_MESSAGES && strcmp(r.method, "POST") == 0)
		fcg__post(&r);
	else if (r.route == FCG_ROUTE_MESSAGES && strcmp(r.method, "GET") == 0)
		fcg_handle_get_messages(&r);
	else if (r.route == FCG_ROUTE_WEBHOOK && strcmp(r.method, "GET") == 0)
		fcg_handle_get_webhook(&r);
	else
		fcg_fail(&r, 405, "method_not_allowed", NULL, "method %s is not allowed here",
			 strlen(r.method) < 16 ? r.method : "given");
out:
	if (r.has_claims)
		tok_claims_free(&r.claims);
	fcg_metrics_request(w->metrics, fcg__mroute(&r), r.status, fcg__now_us() - t0);
	atomic_fetch_sub_explicit(&w->metrics->in_flight, 1, memory_order_relaxed);
}
