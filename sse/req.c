/*
 * req.c: the request-head glue of rtw-sse over http-parser: feeds bytes,
 * enforces the head size limit, and extracts the route, the stream id,
 * the query parameters (widget_key, access_token, last_event_id,
 * user_id, presence) and the headers rtw-sse uses (Last-Event-ID,
 * Authorization, Origin, X-Forwarded-For). Headers win over query parameters (an EventSource reconnect
 * sends the fresh Last-Event-ID header with the original URL). URL
 * decoding and query splitting are lib/url.c's, as in rtw-fcgi. Pure
 * code: no I/O; runs on the loop thread.
 */
#include "config.h"
#include "sse.h"
#include "msg.h"
#include "url.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQ_FIELD_MAX 32

enum req_hdr { REQ_HDR_OTHER, REQ_HDR_LAST_ID, REQ_HDR_AUTH, REQ_HDR_ORIGIN, REQ_HDR_XFF, REQ_HDR_REQID };

struct sse_reqparser {
	http_parser hp;
	size_t max_bytes, fed;
	struct sse_req *req;
	bool in_value;
	bool field_long;
	size_t field_len;
	char field[REQ_FIELD_MAX + 1];
	size_t value_len;
	bool value_long;
	char value[SSE_TOKEN_MAX + 16];
	size_t url_len;
	char *url; /* max_bytes + 1 */
	bool hdr_last_id, hdr_auth;
};

static enum req_hdr req__which(const struct sse_reqparser *p)
{
	if (p->field_long)
		return REQ_HDR_OTHER;
	if (strcasecmp(p->field, "last-event-id") == 0)
		return REQ_HDR_LAST_ID;
	if (strcasecmp(p->field, "authorization") == 0)
		return REQ_HDR_AUTH;
	if (strcasecmp(p->field, "origin") == 0)
		return REQ_HDR_ORIGIN;
	if (strcasecmp(p->field, "x-forwarded-for") == 0)
		return REQ_HDR_XFF;
	if (strcasecmp(p->field, "x-request-id") == 0)
		return REQ_HDR_REQID;
	return REQ_HDR_OTHER;
}

static void req__copy(struct sse_req *req, char *dst, size_t cap, const char *src, size_t len, const char *name,
		      bool *has)
{
	if (len >= cap) {
		req->bad_field = name;
		return;
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
	*has = true;
}

/* A complete header line: keep the few we use. */
static void req__header_done(struct sse_reqparser *p)
{
	struct sse_req *req = p->req;
	const char *v = p->value;
	size_t n = p->value_len;

	p->value[n] = '\0';
	switch (req__which(p)) {
	case REQ_HDR_LAST_ID:
		if (p->value_long) {
			req->bad_field = "Last-Event-ID";
			break;
		}
		req__copy(req, req->last_id, sizeof(req->last_id), v, n, "Last-Event-ID", &req->has_last_id);
		p->hdr_last_id = true;
		break;
	case REQ_HDR_AUTH:
		if (p->value_long) {
			req->bad_field = "Authorization";
			break;
		}
		if (n > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
			v += 7;
			n -= 7;
			while (n > 0 && *v == ' ') {
				v++;
				n--;
			}
			req__copy(req, req->token, sizeof(req->token), v, n, "Authorization", &req->has_token);
		}
		/* another scheme, or Bearer without a token: refused (401),
		 * never taken as no identity at all */
		req->auth_other = !req->has_token;
		p->hdr_auth = true;
		break;
	case REQ_HDR_ORIGIN:
		if (!p->value_long)
			req__copy(req, req->origin, sizeof(req->origin), v, n, "Origin", &req->has_origin);
		break;
	case REQ_HDR_REQID:
		/* an invalid id is not an error: the request gets one of ours */
		req->has_request_id = !p->value_long && rtw_reqid_valid(v);
		if (req->has_request_id)
			memcpy(req->request_id, v, n + 1);
		break;
	default: break;
	}
	p->field_len = p->value_len = 0;
	p->field_long = p->value_long = false;
	p->field[0] = '\0';
}

/* Appends len bytes of an X-Forwarded-For value, keeping the rightmost
 * SSE_XFF_MAX - 1 bytes (the client is read from the right end). */
static void req__xff_add(struct sse_req *req, const char *at, size_t len)
{
	const size_t cap = sizeof(req->xff) - 1;

	if (len > cap) {
		at += len - cap;
		len = cap;
		req->xff_len = 0;
		req->xff_cut = true;
	} else if (req->xff_len + len > cap) {
		size_t drop = req->xff_len + len - cap;
		memmove(req->xff, req->xff + drop, req->xff_len - drop);
		req->xff_len -= (uint32_t)drop;
		req->xff_cut = true;
	}
	/* a NUL or control byte makes its hop "not an address" (the walk
	 * stops there), never a shorter string */
	for (size_t i = 0; i < len; i++)
		req->xff[req->xff_len + i] = (unsigned char)at[i] < 0x20 && at[i] != '\t' ? '?' : at[i];
	req->xff_len += (uint32_t)len;
	req->xff[req->xff_len] = '\0';
	req->has_xff = true;
}

/* The head is complete: a cut X-Forwarded-For starts after its first
 * comma (the hop there may have lost its start). */
static void req__xff_done(struct sse_req *req)
{
	char *comma;

	if (!req->xff_cut)
		return;
	comma = strchr(req->xff, ',');
	if (comma == NULL) {
		req->xff[0] = '\0';
		req->xff_len = 0;
		return;
	}
	req->xff_len -= (uint32_t)(comma + 1 - req->xff);
	memmove(req->xff, comma + 1, req->xff_len + 1);
}

static int req__on_url(http_parser *hp, const char *at, size_t len)
{
	struct sse_reqparser *p = hp->data;

	if (p->url_len + len > p->max_bytes)
		return 1;
	memcpy(p->url + p->url_len, at, len);
	p->url_len += len;
	return 0;
}

static int req__on_field(http_parser *hp, const char *at, size_t len)
{
	struct sse_reqparser *p = hp->data;

	if (p->in_value) {
		req__header_done(p);
		p->in_value = false;
	}
	if (p->field_len + len > REQ_FIELD_MAX) {
		p->field_long = true;
		return 0;
	}
	memcpy(p->field + p->field_len, at, len);
	p->field_len += len;
	p->field[p->field_len] = '\0';
	return 0;
}

static int req__on_value(http_parser *hp, const char *at, size_t len)
{
	struct sse_reqparser *p = hp->data;

	if (!p->in_value && !p->field_long && req__which(p) == REQ_HDR_XFF && p->req->has_xff)
		req__xff_add(p->req, ",", 1); /* another X-Forwarded-For line */
	p->in_value = true;
	if (!p->field_long && req__which(p) == REQ_HDR_XFF) {
		req__xff_add(p->req, at, len);
		return 0;
	}
	if (p->field_long || req__which(p) == REQ_HDR_OTHER)
		return 0; /* not kept: do not spend the buffer */
	if (p->value_len + len >= sizeof(p->value)) {
		p->value_long = true;
		return 0;
	}
	memcpy(p->value + p->value_len, at, len);
	p->value_len += len;
	return 0;
}

bool sse_url_decode(char *s)
{
	size_t n = strlen(s);

	return rtw_url_decode(s, n, s, n + 1, RTW_URL_PLUS) == RTW_OK;
}

static bool req__named(const struct rtw_query_pair *kv, const char *name)
{
	return kv->name_len == strlen(name) && strncmp(kv->name, name, kv->name_len) == 0;
}

/* Reads the query parameters rtw-sse knows; q is the URL buffer after the
 * '?', decoded in place (a value never grows, and the pair after it was
 * already split off). Pairs without '=' are ignored. */
static void req__query(struct sse_reqparser *p, char *q)
{
	struct sse_req *req = p->req;
	const char *cur = q;
	struct rtw_query_pair kv;

	while (rtw_query_next(&cur, &kv)) {
		char *v = q + (kv.value - q);
		if (!kv.has_eq)
			continue;
		if (rtw_url_decode(kv.value, kv.value_len, v, kv.value_len + 1, RTW_URL_PLUS) != RTW_OK) {
			req->bad_field = "query";
		} else if (req__named(&kv, "widget_key")) {
			req__copy(req, req->widget_key, sizeof(req->widget_key), v, strlen(v), "widget_key",
				  &req->has_widget);
		} else if (req__named(&kv, "access_token") && !p->hdr_auth) {
			req__copy(req, req->token, sizeof(req->token), v, strlen(v), "access_token", &req->has_token);
		} else if (req__named(&kv, "last_event_id") && !p->hdr_last_id) {
			req__copy(req, req->last_id, sizeof(req->last_id), v, strlen(v), "last_event_id",
				  &req->has_last_id);
		} else if (req__named(&kv, "user_id")) {
			req__copy(req, req->user_id, sizeof(req->user_id), v, strlen(v), "user_id", &req->has_user);
		} else if (req__named(&kv, "presence")) {
			req->presence = strcmp(v, "1") == 0;
		}
	}
}

/* The head is complete: route the URL and read its query. */
static int req__on_headers_complete(http_parser *hp)
{
	struct sse_reqparser *p = hp->data;
	struct sse_req *req = p->req;
	char *path = p->url, *q;
	static const char pre[] = "/v1/streams/", suf[] = "/events";

	if (p->in_value)
		req__header_done(p);
	req__xff_done(req);
	p->url[p->url_len] = '\0';
	req->method = hp->method;
	req->http10 = hp->http_major == 1 && hp->http_minor == 0;
	q = strchr(path, '?');
	if (q)
		*q++ = '\0';
	if (strcmp(path, "/healthz") == 0) {
		req->route = SSE_ROUTE_HEALTHZ;
	} else if (strcmp(path, "/metrics") == 0) {
		req->route = SSE_ROUTE_METRICS;
	} else if (strncmp(path, pre, sizeof(pre) - 1) == 0) {
		char *sid = path + sizeof(pre) - 1;
		size_t n = strlen(sid);
		if (n > sizeof(suf) - 1 && strcmp(sid + n - (sizeof(suf) - 1), suf) == 0) {
			sid[n - (sizeof(suf) - 1)] = '\0';
			if (strchr(sid, '/') == NULL) {
				req->route = SSE_ROUTE_EVENTS;
				if (!sse_url_decode(sid) || !msg_valid_stream_id(sid))
					req->bad_path = true;
				else
					strcpy(req->stream_id, sid);
			}
		}
	}
	req__query(p, q);
	req->head_done = true;
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings req__settings = {
    .on_url = req__on_url,
    .on_header_field = req__on_field,
    .on_header_value = req__on_value,
    .on_headers_complete = req__on_headers_complete,
};

struct sse_reqparser *sse_reqparser_new(size_t max_bytes)
{
	struct sse_reqparser *p = malloc(sizeof(*p));

	if (p == NULL)
		return NULL;
	p->url = malloc(max_bytes + 1);
	if (p->url == NULL) {
		free(p);
		return NULL;
	}
	p->max_bytes = max_bytes;
	sse_reqparser_reset(p);
	return p;
}

void sse_reqparser_reset(struct sse_reqparser *p)
{
	char *url = p->url;
	size_t max_bytes = p->max_bytes;

	memset(p, 0, offsetof(struct sse_reqparser, value));
	p->url = url;
	p->max_bytes = max_bytes;
	p->url_len = 0;
	p->hdr_last_id = p->hdr_auth = false;
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
}

void sse_reqparser_free(struct sse_reqparser *p)
{
	if (p == NULL)
		return;
	free(p->url);
	free(p);
}

int sse_reqparser_feed(struct sse_reqparser *p, const char *data, size_t len, struct sse_req *req)
{
	size_t n;

	p->req = req;
	if (req->head_done)
		return RTW_OK;
	n = http_parser_execute(&p->hp, &req__settings, data, len);
	p->fed += n;
	if (req->head_done) {
		if (p->fed > p->max_bytes) {
			req->too_large = true;
			return RTW_ERROR;
		}
		return RTW_OK;
	}
	if (HTTP_PARSER_ERRNO(&p->hp) != HPE_OK || n != len) {
		/* on_url refusing more bytes is the size limit */
		req->too_large = HTTP_PARSER_ERRNO(&p->hp) == HPE_CB_url;
		return RTW_ERROR;
	}
	if (p->fed > p->max_bytes) {
		req->too_large = true;
		return RTW_ERROR;
	}
	return RTW_AGAIN;
}
