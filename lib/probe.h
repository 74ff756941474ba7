/*
 * probe.h: the request side of the daemons' tiny HTTP listeners for
 * GET /healthz and GET /metrics (rtw-fcgi's health thread, rtw-webhookd's
 * loop): a bounded request-head reader over http-parser, the route, and
 * the response head. Pure code, no I/O; each listener owns its sockets.
 */
#ifndef RTW_PROBE_H
#define RTW_PROBE_H

#include "rtw.h"

#include <http_parser.h>

enum rtw_probe_route {
	RTW_PROBE_HEALTHZ,
	RTW_PROBE_METRICS,
	RTW_PROBE_NOT_FOUND,
	RTW_PROBE_BAD_METHOD /* anything but GET and HEAD: 405 */
};

struct rtw_probe {
	http_parser parser;
	char url[256];
	size_t url_len;
	size_t got;
	bool complete;
	bool too_long;
};

void rtw_probe_init(struct rtw_probe *p);

/* Feeds bytes of the request head: RTW_OK when it is complete, RTW_AGAIN
 * when more is needed, RTW_ERROR when it is malformed or longer than
 * max_head bytes (answer 400). */
int rtw_probe_feed(struct rtw_probe *p, const char *buf, size_t n, size_t max_head) RTW_WUR;

/* After RTW_OK: what was asked for. */
enum rtw_probe_route rtw_probe_route(const struct rtw_probe *p);

/* True for HEAD: answer with the head only. */
bool rtw_probe_head_only(const struct rtw_probe *p);

/* Writes the response head (Connection: close, Cache-Control: no-store,
 * Allow on 405) into out; returns its length, or -1 when cap is short. */
int rtw_probe_response_head(char *out, size_t cap, int status, const char *ctype, size_t body_len) RTW_WUR;

#endif
