/*
 * test_probe.c: unit tests of lib/probe.c, the request-head reader and
 * response head of the daemons' /healthz and /metrics listeners.
 */
#include "config.h"
#include "probe.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

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
	assert_true(strcmp(out + n - 4, "\r\n\r\n") == 0);
	n = rtw_probe_response_head(out, sizeof(out), 200, "application/json", 3);
	assert_null(strstr(out, "Allow:"));
	assert_int_equal(rtw_probe_response_head(tiny, sizeof(tiny), 200, "text/plain", 1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_incomplete_and_bad),
	    cmocka_unit_test(test_response_head),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
