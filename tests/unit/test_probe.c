/*
 * test_probe.c: unit tests of lib/probe.c, the request-head reader, the
 * answers and the response head of the daemons' /healthz and /metrics.
 */
#include "config.h"
#include "probe.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static int feed_all(struct rtw_probe *p, const char *head, size_t step, size_t max)
{
	size_t n = strlen(head);
	int rc = RTW_AGAIN;

	rtw_probe_init(p);
	for (size_t off = 0; off < n && rc == RTW_AGAIN; off += step)
		rc = rtw_probe_feed(p, head + off, n - off < step ? n - off : step, max);
	return rc;
}

static void test_routes(void **state)
{
	struct rtw_probe p;

	assert_int_equal(feed_all(&p, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1000, 4096), RTW_OK);
	assert_int_equal(rtw_probe_route(&p), RTW_PROBE_HEALTHZ);
	assert_false(rtw_probe_head_only(&p));
	assert_int_equal(feed_all(&p, "GET /metrics?name=x HTTP/1.1\r\n\r\n", 3, 4096), RTW_OK);
	assert_int_equal(rtw_probe_route(&p), RTW_PROBE_METRICS);
	assert_int_equal(feed_all(&p, "HEAD /healthz HTTP/1.0\r\n\r\n", 1, 4096), RTW_OK);
	assert_int_equal(rtw_probe_route(&p), RTW_PROBE_HEALTHZ);
	assert_true(rtw_probe_head_only(&p));
	assert_int_equal(feed_all(&p, "GET /healthzz HTTP/1.1\r\n\r\n", 1000, 4096), RTW_OK);
	assert_int_equal(rtw_probe_route(&p), RTW_PROBE_NOT_FOUND);
	assert_int_equal(feed_all(&p, "POST /healthz HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 1000, 4096), RTW_OK);
	assert_int_equal(rtw_probe_route(&p), RTW_PROBE_BAD_METHOD);
}

static void test_incomplete_and_bad(void **state)
{
	struct rtw_probe p;
	char big[600];

	assert_int_equal(feed_all(&p, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 1000, 4096), RTW_AGAIN);
	assert_int_equal(feed_all(&p, "\x01\x02garbage\r\n\r\n", 1000, 4096), RTW_ERROR);
	/* a head longer than the limit, though well formed so far */
	assert_int_equal(feed_all(&p, "GET /healthz HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 8, 32),
			 RTW_ERROR);
	/* a URL longer than the buffer */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	strcpy(big + sizeof(big) - 20, " HTTP/1.1\r\n\r\n");
	assert_int_equal(feed_all(&p, big, 1000, 4096), RTW_ERROR);
}

static void test_response_head(void **state)
{
	char out[256], tiny[16];
	int n = rtw_probe_response_head(out, sizeof(out), 405, "text/plain", 19);

	assert_true(n > 0 && (size_t)n == strlen(out));
	assert_non_null(strstr(out, "HTTP/1.1 405 Method Not Allowed\r\n"));
	assert_non_null(strstr(out, "Allow: GET, HEAD\r\n"));
	assert_non_null(strstr(out, "Content-Length: 19\r\n"));
	assert_non_null(strstr(out, "\r\nX-RTW-Request-Id: "));
	assert_true(strcmp(out + n - 4, "\r\n\r\n") == 0);
	n = rtw_probe_response_head(out, sizeof(out), 200, "application/json", 3);
	assert_null(strstr(out, "Allow:"));
	assert_int_equal(rtw_probe_response_head(tiny, sizeof(tiny), 200, "text/plain", 1), -1);
}

static void test_healthz_body(void **state)
{
	struct rtw_probe_reply r;

	rtw_probe_healthz("rtw-fcgi", true, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "application/json");
	assert_string_equal(r.body, "{\"status\":\"ok\",\"service\":\"rtw-fcgi\"}\n");
	assert_int_equal(r.body_len, strlen(r.body));
	rtw_probe_healthz("rtw-webhookd", false, &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "{\"status\":\"unavailable\",\"service\":\"rtw-webhookd\",\"error\":"
				    "\"database unreachable\"}\n");
	rtw_probe_healthz("rtw-sse", true, &r);
	assert_non_null(strstr(r.body, "\"service\":\"rtw-sse\""));
}

static void test_answer(void **state)
{
	struct rtw_probe p;
	struct rtw_probe_reply r;
	struct rtw_metrics m;
	char buf[64], tiny[8];
	int rc;

	rc = feed_all(&p, "GET /metrics HTTP/1.1\r\n\r\n", 1000, 4096);
	rtw_metrics_init(&m, buf, sizeof(buf));
	rtw_metrics_counter(&m, "x_total", NULL, 2);
	rtw_probe_answer(&p, rc, "rtw-sse", false, &m, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, RTW_PROBE_CTYPE_METRICS);
	assert_true(r.body == buf && r.body_len == m.len);
	/* a truncated text is never served as if whole */
	rtw_metrics_init(&m, tiny, sizeof(tiny));
	rtw_metrics_counter(&m, "x_total", NULL, 2);
	rtw_probe_answer(&p, rc, "rtw-sse", true, &m, &r);
	assert_int_equal(r.status, 500);
	rtw_probe_answer(&p, rc, "rtw-sse", true, NULL, &r);
	assert_int_equal(r.status, 500);

	rc = feed_all(&p, "HEAD /healthz HTTP/1.1\r\n\r\n", 1000, 4096);
	rtw_probe_answer(&p, rc, "rtw-fcgi", false, NULL, &r);
	assert_int_equal(r.status, 503);
	assert_true(rtw_probe_head_only(&p));
	rc = feed_all(&p, "PUT /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1000, 4096);
	rtw_probe_answer(&p, rc, "rtw-fcgi", true, NULL, &r);
	assert_int_equal(r.status, 405);
	rc = feed_all(&p, "GET /nope HTTP/1.1\r\n\r\n", 1000, 4096);
	rtw_probe_answer(&p, rc, "rtw-fcgi", true, NULL, &r);
	assert_int_equal(r.status, 404);
	rc = feed_all(&p, "\x01garbage\r\n\r\n", 1000, 4096);
	rtw_probe_answer(&p, rc, "rtw-fcgi", true, NULL, &r);
	assert_int_equal(r.status, 400);
}

/* rtw_probe_send over a socket pair: head and body, or the head alone. */
static void test_send(void **state)
{
	struct rtw_probe_reply r;
	char got[512];
	int sv[2];
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	rtw_probe_healthz("rtw-fcgi", true, &r);
	assert_int_equal(rtw_probe_send(sv[0], &r, false), RTW_OK);
	n = recv(sv[1], got, sizeof(got) - 1, 0);
	assert_true(n > 0);
	got[n] = '\0';
	assert_non_null(strstr(got, "HTTP/1.1 200 OK\r\n"));
	assert_true(strcmp(got + n - r.body_len, r.body) == 0);
	assert_int_equal(rtw_probe_send(sv[0], &r, true), RTW_OK);
	n = recv(sv[1], got, sizeof(got) - 1, 0);
	got[n] = '\0';
	assert_true(strcmp(got + n - 4, "\r\n\r\n") == 0);
	close(sv[1]);
	assert_int_equal(rtw_probe_send(sv[0], &r, false), RTW_ERROR);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),	  cmocka_unit_test(test_incomplete_and_bad),
	    cmocka_unit_test(test_response_head), cmocka_unit_test(test_healthz_body),
	    cmocka_unit_test(test_answer),	  cmocka_unit_test(test_send),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
