/*
 * probe.h: the one implementation of GET /healthz and GET /metrics for
 * every daemon: a bounded request-head reader over http-parser for the
 * small listeners (rtw-fcgi's health thread, rtw-webhookd's loop), the
 * route, the answer to each route (struct rtw_probe_reply), the /healthz
 * body, and the response head. HEAD is answered like GET, without the
 * body, everywhere. rtw-sse parses its own requests (sse/req.c) and uses
 * rtw_probe_healthz() and lib/metrics.h for the bodies.
 *
 * The /healthz body, the same on every daemon (application/json):
 *	200 {"status":"ok","service":"rtw-fcgi"}
 *	503 {"status":"unavailable","service":"rtw-fcgi","error":"database unreachable"}
 * 200 means the daemon can reach PostgreSQL now (its own check: a query
 * on rtw-fcgi, the connection's state on rtw-sse and rtw-webhookd).
 *
 * Pure code but for rtw_probe_send(); each listener owns its sockets.
 */
#ifndef RTW_PROBE_H
#define RTW_PROBE_H

#include "rtw.h"
#include "metrics.h"

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

/* What to answer: status, content type and body (borrowed: a static
 * string or the caller's metrics buffer). */
struct rtw_probe_reply {
	int status;
	const char *ctype;
	const char *body;
	size_t body_len;
};

#define RTW_PROBE_CTYPE_METRICS "text/plain; version=0.0.4"

/* The /healthz answer of service ("rtw-fcgi", "rtw-sse", "rtw-webhookd";
 * a static string) when PostgreSQL is reachable (db_ok) or not. */
void rtw_probe_healthz(const char *service, bool db_ok, struct rtw_probe_reply *out);

/* The /metrics answer for the text written into metrics (its buffer
 * borrowed until the reply is sent): 200, or 500 when it was truncated or
 * is NULL (could not be made). For daemons that parse their own requests
 * (rtw-sse); rtw_probe_answer() uses it too. */
void rtw_probe_metrics(const struct rtw_metrics *metrics, struct rtw_probe_reply *out);

/* The answer to a request after rtw_probe_feed() returned rc (RTW_OK or
 * RTW_ERROR: 400): 405 for other methods, 404 for other paths, /healthz
 * as rtw_probe_healthz(). For /metrics, metrics is the text (its buffer
 * borrowed until the reply is sent): 500 when it was truncated or is
 * NULL (could not be made). metrics is only read for RTW_PROBE_METRICS. */
void rtw_probe_answer(const struct rtw_probe *p, int rc, const char *service, bool db_ok,
		      const struct rtw_metrics *metrics, struct rtw_probe_reply *out);

/* Sends the head and, unless head_only, the body of r on fd (blocking or
 * not: on a non-blocking socket a reply that does not fit the socket
 * buffer is cut short, as probes are small). RTW_OK when all was sent;
 * callers may ignore it: a scraper that went away is nothing to act on. */
int rtw_probe_send(int fd, const struct rtw_probe_reply *r, bool head_only);

#endif
