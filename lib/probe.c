/*
 * probe.c: owns parsing a health/metrics request head (http-parser) and
 * formatting the response head for rtw-fcgi's and rtw-webhookd's probe
 * listeners. No I/O, no state beyond the struct rtw_probe it is given.
 */
#include "config.h"
#include "probe.h"

#include <stdio.h>
#include <string.h>

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
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
			 "%sConnection: close\r\n\r\n",
			 status, rtw_http_reason(status), ctype, body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	return n < 0 || (size_t)n >= cap ? -1 : n;
}
