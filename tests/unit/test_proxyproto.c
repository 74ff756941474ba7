/*
 * test_proxyproto.c: unit tests of the PROXY protocol header parser
 * (lib/proxyproto.c): version 1 lines and version 2 headers that name a
 * client, those that name none (UNKNOWN, LOCAL, AF_UNIX, unspecified),
 * every prefix of a valid header asking for more, an HTTP request
 * declined at its first byte, and malformed or oversized headers refused.
 */
#include "config.h"
#include "proxyproto.h"
#include "clientaddr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static const unsigned char v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A version 2 header: cmd, family, then body (blen bytes). */
static size_t v2(unsigned char *out, int cmd, int fam, const unsigned char *body, size_t blen)
{
	memcpy(out, v2sig, 12);
	out[12] = (unsigned char)(0x20 | cmd);
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen > 0)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

/* Every proper prefix of data[0..n) asks for more; the whole parses. */
static void whole(const void *data, size_t n, size_t want_len, const char *want_addr)
{
	struct rtw_proxy pp;

	for (size_t k = 1; k < want_len; k++)
		if (rtw_proxy_parse(data, k, &pp) != RTW_AGAIN)
			fail_msg("prefix of %zu bytes did not ask for more", k);
	assert_int_equal(rtw_proxy_parse(data, n, &pp), RTW_OK);
	assert_int_equal(pp.len, want_len);
	assert_string_equal(pp.addr, want_addr);
}

static void test_v1(void **state)
{
	static const struct {
		const char *in, *addr;
	} ok[] = {
	    {"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n", "203.0.113.7"},
	    {"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", "2001:db8::1"},
	    {"PROXY TCP6 ::ffff:203.0.113.9 ::1 1 2\r\n", "203.0.113.9"},
	    {"PROXY UNKNOWN\r\n", ""},
	    {"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", ""},
	};
	static const char *bad[] = {
	    "PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n",      /* a field missing */
	    "PROXY TCP4 203.0.113.7  192.0.2.1 40000 443\r\n", /* two spaces */
	    "PROXY TCP4 203.0.113.7 192.0.2.1 40000 443 \r\n", /* trailing space */
	    "PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",	       /* family mismatch */
	    "PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",  /* port */
	    "PROXY TCP4 203.0.113.7 192.0.2.1 040 443\r\n",    /* leading zero */
	    "PROXY TCP4 203.0.113.7 192.0.2.1 -1 443\r\n",     /* sign */
	    "PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",	       /* not TCP */
	    "PROXY TCP4 203.0.113.7 192.0.2.1 1 2 3\r\n",      /* a field too many */
	    "PROXY TCP4 203.0.113.7\n192.0.2.1 1 2\r\n",       /* bare LF */
	    "PROXY UNKNOWNX\r\n",			       /* not UNKNOWN */
	};
	char longline[200];
	struct rtw_proxy pp;

	for (size_t i = 0; i < RTW_ARRAY_LEN(ok); i++) {
		char buf[160];
		size_t n = strlen(ok[i].in);
		/* the request that follows is not the header's */
		snprintf(buf, sizeof(buf), "%sGET / HTTP/1.1\r\n", ok[i].in);
		whole(buf, strlen(buf), n, ok[i].addr);
	}
	for (size_t i = 0; i < RTW_ARRAY_LEN(bad); i++)
		if (rtw_proxy_parse(bad[i], strlen(bad[i]), &pp) != RTW_ERROR)
			fail_msg("accepted: %s", bad[i]);
	/* no CRLF within 107 bytes: refused, never buffered on */
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY ", 6);
	assert_int_equal(rtw_proxy_parse(longline, RTW_PROXY_V1_MAX - 1, &pp), RTW_AGAIN);
	assert_int_equal(rtw_proxy_parse(longline, RTW_PROXY_V1_MAX, &pp), RTW_ERROR);
	assert_int_equal(rtw_proxy_parse(longline, sizeof(longline), &pp), RTW_ERROR);
}

static void test_v2(void **state)
{
	unsigned char h[RTW_PROXY_MAX + 64], body[RTW_PROXY_MAX];
	static const unsigned char a4[12] = {203, 0, 113, 7, 192, 0, 2, 1, 0x9c, 0x40, 0x01, 0xbb};
	unsigned char a6[36] = {0x20, 0x01, 0x0d, 0xb8};
	struct rtw_proxy pp;
	size_t n;

	a6[15] = 1;
	n = v2(h, 1, 0x11, a4, sizeof(a4));
	whole(h, n, n, "203.0.113.7");
	n = v2(h, 1, 0x21, a6, sizeof(a6));
	whole(h, n, n, "2001:db8::1");
	/* TLVs after the addresses are skipped */
	memcpy(body, a4, sizeof(a4));
	memcpy(body + sizeof(a4), "\x04\x00\x02ok", 5);
	n = v2(h, 1, 0x11, body, sizeof(a4) + 5);
	whole(h, n, n, "203.0.113.7");
	/* LOCAL, unspecified, AF_UNIX: no address, the peer stays */
	n = v2(h, 0, 0x11, a4, sizeof(a4));
	whole(h, n, n, "");
	n = v2(h, 1, 0x00, NULL, 0);
	whole(h, n, n, "");
	memset(body, 0, 216);
	n = v2(h, 1, 0x31, body, 216);
	whole(h, n, n, "");
	/* refused: addresses cut short, unknown family or command, version 1
	 * in the binary form, longer than RTW_PROXY_MAX */
	n = v2(h, 1, 0x21, a6, 20);
	assert_int_equal(rtw_proxy_parse(h, n, &pp), RTW_ERROR);
	n = v2(h, 1, 0x41, a4, sizeof(a4));
	assert_int_equal(rtw_proxy_parse(h, n, &pp), RTW_ERROR);
	n = v2(h, 2, 0x11, a4, sizeof(a4));
	assert_int_equal(rtw_proxy_parse(h, n, &pp), RTW_ERROR);
	n = v2(h, 1, 0x11, a4, sizeof(a4));
	h[12] = 0x11;
	assert_int_equal(rtw_proxy_parse(h, n, &pp), RTW_ERROR);
	n = v2(h, 1, 0x11, body, RTW_PROXY_MAX - 16);
	assert_int_equal(rtw_proxy_parse(h, 16, &pp), RTW_AGAIN);
	n = v2(h, 1, 0x11, body, RTW_PROXY_MAX - 15);
	assert_int_equal(rtw_proxy_parse(h, 16, &pp), RTW_ERROR);
}

static void test_declined(void **state)
{
	static const char *http[] = {"GET /v1/streams/s/events HTTP/1.1\r\n", "POST / HTTP/1.1\r\n",
				     "PRI * HTTP/2.0\r\n", "\r\nGET / HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n"};
	struct rtw_proxy pp;

	for (size_t i = 0; i < RTW_ARRAY_LEN(http); i++)
		if (rtw_proxy_parse(http[i], strlen(http[i]), &pp) != RTW_DECLINED)
			fail_msg("not declined: %s", http[i]);
	/* the first bytes that tell */
	assert_int_equal(rtw_proxy_parse("G", 1, &pp), RTW_DECLINED);
	assert_int_equal(rtw_proxy_parse("P", 1, &pp), RTW_AGAIN);
	assert_int_equal(rtw_proxy_parse("PO", 2, &pp), RTW_DECLINED);
	assert_int_equal(rtw_proxy_parse("\r\n\r\n", 4, &pp), RTW_AGAIN);
	assert_int_equal(rtw_proxy_parse("\r\nG", 3, &pp), RTW_DECLINED);
}

static void test_option_name(void **state)
{
	struct rtw_trust t;
	char err[160];

	assert_int_equal(rtw_trust_parse_opt("sse.proxy_protocol_from", "10.0.0.0/8, nope", &t, err, sizeof(err)),
			 RTW_ERROR);
	assert_non_null(strstr(err, "sse.proxy_protocol_from: \""));
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(rtw_trust_parse_opt("sse.proxy_protocol_from", "", &t, err, sizeof(err)), RTW_OK);
	assert_false(rtw_trust_has(&t, "127.0.0.1"));
	rtw_trust_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_v1), cmocka_unit_test(test_v2),
					   cmocka_unit_test(test_declined), cmocka_unit_test(test_option_name)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
