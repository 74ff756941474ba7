/*
 * test_clientaddr.c: unit tests of the client-address rule (lib/clientaddr.c):
 * parsing http.trusted_proxies, matching, and the X-Forwarded-For walk
 * (an untrusted peer's header is ignored; the rightmost untrusted hop
 * wins; garbage stops the walk; IPv6 counts per /64).
 */
#include "config.h"
#include "clientaddr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_parse(void **state)
{
	struct rtw_trust t;
	char err[160];
	static const char *bad[] = {"nope", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/8x", "[::1]", "1.2.3"};

	assert_int_equal(rtw_trust_parse("127.0.0.0/8, ::1, 10.1.2.3 ,fd00::/8", &t, err, sizeof(err)), RTW_OK);
	assert_int_equal(t.n, 4);
	assert_true(rtw_trust_has(&t, "127.9.9.9"));
	assert_true(rtw_trust_has(&t, "::1"));
	assert_true(rtw_trust_has(&t, "::ffff:127.0.0.1")); /* a dual-stack socket's IPv4 peer */
	assert_true(rtw_trust_has(&t, "10.1.2.3"));
	assert_false(rtw_trust_has(&t, "10.1.2.4"));
	assert_true(rtw_trust_has(&t, "fd12::5"));
	assert_false(rtw_trust_has(&t, "fe80::1"));
	assert_false(rtw_trust_has(&t, ""));
	assert_false(rtw_trust_has(&t, NULL));
	rtw_trust_free(&t);

	assert_int_equal(rtw_trust_parse("", &t, err, sizeof(err)), RTW_OK);
	assert_int_equal(t.n, 0);
	assert_false(rtw_trust_has(&t, "127.0.0.1"));
	rtw_trust_free(&t);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rtw_trust_parse(bad[i], &t, err, sizeof(err)), RTW_ERROR);
		assert_non_null(strstr(err, "http.trusted_proxies"));
		assert_null(t.nets);
	}
}

static void test_key(void **state)
{
	struct rtw_trust t;
	char err[160], k[RTW_CLIENT_KEY_MAX];

	assert_int_equal(rtw_trust_parse("127.0.0.0/8, 10.0.0.0/8", &t, err, sizeof(err)), RTW_OK);
	/* an untrusted peer is the client, whatever it claims */
	rtw_client_key(&t, "203.0.113.7", "198.51.100.1", k);
	assert_string_equal(k, "203.0.113.7");
	/* a trusted peer: the rightmost hop that is not trusted */
	rtw_client_key(&t, "127.0.0.1", "198.51.100.1, 203.0.113.9", k);
	assert_string_equal(k, "203.0.113.9");
	rtw_client_key(&t, "127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.2", k);
	assert_string_equal(k, "203.0.113.9");
	rtw_client_key(&t, "127.0.0.1", " 203.0.113.9:4711 ", k);
	assert_string_equal(k, "203.0.113.9");
	/* no header, or every hop trusted: the leftmost trusted one */
	rtw_client_key(&t, "127.0.0.1", NULL, k);
	assert_string_equal(k, "127.0.0.1");
	rtw_client_key(&t, "127.0.0.1", "10.0.0.5, 10.0.0.6", k);
	assert_string_equal(k, "10.0.0.5");
	/* garbage stops the walk at the last trusted hop */
	rtw_client_key(&t, "127.0.0.1", "203.0.113.9, junk, 10.0.0.6", k);
	assert_string_equal(k, "10.0.0.6");
	rtw_client_key(&t, "127.0.0.1", "", k);
	assert_string_equal(k, "127.0.0.1");
	rtw_client_key(&t, "127.0.0.1", ",", k);
	assert_string_equal(k, "127.0.0.1");
	/* IPv6 counts per /64; bracketed forms are read */
	rtw_client_key(&t, "127.0.0.1", "[2001:db8:1:2:aaaa::1]:443", k);
	assert_string_equal(k, "2001:db8:1:2::/64");
	rtw_client_key(&t, "2001:db8:1:2:bbbb::9", NULL, k);
	assert_string_equal(k, "2001:db8:1:2::/64");
	rtw_client_key(&t, "::ffff:198.51.100.4", NULL, k);
	assert_string_equal(k, "198.51.100.4");
	/* no usable peer */
	rtw_client_key(&t, NULL, "203.0.113.9", k);
	assert_string_equal(k, "unknown");
	rtw_client_key(&t, "", "203.0.113.9", k);
	assert_string_equal(k, "unknown");
	rtw_trust_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse), cmocka_unit_test(test_key)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
