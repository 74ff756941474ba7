/*
 * probe.c: owns the one /healthz and /metrics behaviour of the daemons:
 * parsing a probe request head (http-parser), choosing the answer, the
 * /healthz body, the response head, and sending it on a socket the
 * listener owns. No state beyond the struct rtw_probe it is given; the
 * only I/O is rtw_probe_send().
 */
#include "config.h"
#include "probe.h"
#include "reqid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int probe__on_url(http_parser *hp, const char *at, size_t len)
{
	struct rtw_probe *p = hp->data;

	if (p->url_len + len >= sizeof(p->url)) {
		p->too_long = true;
		return 1;
	}
	memcpy(p->url + p->url_len, at, len);
	p->url_len += len;
	p->url[p->url_len] = '\0';
	return 0;
}

static int probe__on_headers_complete(http_parser *hp)
{
	((struct rtw_probe *)hp->data)->complete = true;
	return 1; /* stop: a probe has no body worth reading */
}

void rtw_probe_init(struct rtw_probe *p)
{
	memset(p, 0, sizeof(*p));
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
}

int rtw_probe_feed(struct rtw_probe *p, const char *buf, size_t n, size_t max_head)
{
	static const http_parser_settings settings = {
	    .on_url = probe__on_url,
	    .on_headers_complete = probe__on_headers_complete,
	};

	p->got += n;
	http_parser_execute(&p->parser, &settings, buf, n);
	if (p->complete)
		return RTW_OK;
	if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK || p->too_long || p->got > max_head)
		return RTW_ERROR;
	return RTW_AGAIN;
}

enum rtw_probe_route rtw_probe_route(const struct rtw_probe *p)
{
	size_t path_len = strcspn(p->url, "?");

	if (p->parser.method != HTTP_GET && p->parser.method != HTTP_HEAD)
		return RTW_PROBE_BAD_METHOD;
	if (path_len == 8 && strncmp(p->url, "/healthz", 8) == 0)
		return RTW_PROBE_HEALTHZ;
	if (path_len == 8 && strncmp(p->url, "/metrics", 8) == 0)
		return RTW_PROBE_METRICS;
	return RTW_PROBE_NOT_FOUND;
}

bool rtw_probe_head_only(const struct rtw_probe *p)
{
	return p->parser.method == HTTP_HEAD;
}

int rtw_probe_response_head(char *out, size_t cap, int status, const char *ctype, size_t body_len)
{
	char id[RTW_REQID_MAX];

	/* every answer of rtw carries an id (doc/operations.md, "Request ids") */
	rtw_reqid_new(id);
	int n =
	    snprintf(out, cap,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
		     "X-RTW-Request-Id: %s\r\n%sConnection: close\r\n\r\n",
		     status, rtw_http_reason(status), ctype, body_len, id, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

void rtw_probe_healthz(const char *service, bool db_ok, struct rtw_probe_reply *out)
{
	/* one static body per daemon and verdict: nothing to format or free */
	static const struct {
		const char *service, *ok, *down;
	} bodies[] = {
#define PROBE__BODIES(s)                                                                                               \
	{s, "{\"status\":\"ok\",\"service\":\"" s "\"}\n",                                                             \
	 "{\"status\":\"unavailable\",\"service\":\"" s "\",\"error\":\"database unreachable\"}\n"}
	    PROBE__BODIES("rtw-fcgi"),
	    PROBE__BODIES("rtw-sse"),
	    PROBE__BODIES("rtw-webhookd"),
	    PROBE__BODIES("rtw"),
#undef PROBE__BODIES
	};
	size_t i = 0;

	while (i + 1 < RTW_ARRAY_LEN(bodies) && strcmp(bodies[i].service, service) != 0)
		i++;
	out->status = db_ok ? 200 : 503;
	out->ctype = "application/json";
	out->body = db_ok ? bodies[i].ok : bodies[i].down;
	out->body_len = strlen(out->body);
}

static void probe__text(struct rtw_probe_reply *out, int status, const char *body)
{
	out->status = status;
	out->ctype = "text/plain";
	out->body = body;
	out->body_len = strlen(body);
}

void rtw_probe_answer(const struct rtw_probe *p, int rc, const char *service, bool db_ok,
		      const struct rtw_metrics *metrics, struct rtw_probe_reply *out)
{
	if (rc != RTW_OK) {
		probe__text(out, 400, "bad request\n");
		return;
	}
	switch (rtw_probe_route(p)) {
	case RTW_PROBE_BAD_METHOD: probe__text(out, 405, "method not allowed\n"); return;
	case RTW_PROBE_NOT_FOUND: probe__text(out, 404, "not found\n"); return;
	case RTW_PROBE_HEALTHZ: rtw_probe_healthz(service, db_ok, out); return;
	case RTW_PROBE_METRICS: rtw_probe_metrics(metrics, out); return;
	}
}

void rtw_probe_metrics(const struct rtw_metrics *metrics, struct rtw_probe_reply *out)
{
	if (!metrics) {
		probe__text(out, 500, "metrics unavailable\n");
		return;
	}
	if (rtw_metrics_end(metrics) != RTW_OK) {
		probe__text(out, 500, "metrics truncated\n");
		return;
	}
	out->status = 200;
	out->ctype = RTW_PROBE_CTYPE_METRICS;
	out->body = metrics->buf;
	out->body_len = metrics->len;
}

static int probe__send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return RTW_ERROR; /* a send timeout or a full buffer bounds a stuck scraper */
		p += k;
		n -= (size_t)k;
	}
	return RTW_OK;
}

int rtw_probe_send(int fd, const struct rtw_probe_reply *r, bool head_only)
{
	char head[256];
	int hl = rtw_probe_response_head(head, sizeof(head), r->status, r->ctype, r->body_len);

	if (hl < 0 || probe__send_all(fd, head, (size_t)hl) != RTW_OK)
		return RTW_ERROR;
	return head_only ? RTW_OK : probe__send_all(fd, r->body, r->body_len);
}
