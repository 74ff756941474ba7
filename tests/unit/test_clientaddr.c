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
	static const struct {
		const char *peer, *xff, *want, *why;
	} cases[] = {
	    {"203.0.113.7", "198.51.100.1", "203.0.113.7", "an untrusted peer is the client, whatever it claims"},
	    {"127.0.0.1", "198.51.100.1, 203.0.113.9", "203.0.113.9", "the rightmost hop"},
	    {"127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.2", "203.0.113.9", "the rightmost untrusted hop"},
	    {"127.0.0.1", " 203.0.113.9:4711 ", "203.0.113.9", "blanks and a port"},
	    {"127.0.0.1", NULL, "127.0.0.1", "no header: the peer"},
	    {"127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5", "every hop trusted: the leftmost"},
	    {"127.0.0.1", "203.0.113.9, junk, 10.0.0.6", "10.0.0.6", "garbage stops at the last trusted hop"},
	    {"127.0.0.1", "", "127.0.0.1", "an empty header"},
	    {"127.0.0.1", ",", "127.0.0.1", "only a comma"},
	    {"127.0.0.1", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64", "IPv6 per /64, bracketed"},
	    {"2001:db8:1:2:bbbb::9", NULL, "2001:db8:1:2::/64", "an IPv6 peer per /64"},
	    {"::ffff:198.51.100.4", NULL, "198.51.100.4", "IPv4-mapped is IPv4"},
	    {NULL, "203.0.113.9", "unknown", "no peer"},
	    {"", "203.0.113.9", "unknown", "a peer that is no address"},
	};
	struct rtw_trust t;
	char err[160], k[RTW_CLIENT_KEY_MAX];

	assert_int_equal(rtw_trust_parse("127.0.0.0/8, 10.0.0.0/8", &t, err, sizeof(err)), RTW_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rtw_client_key(&t, cases[i].peer, cases[i].xff, k);
		if (strcmp(k, cases[i].want) != 0)
			fail_msg("%s: got %s, want %s", cases[i].why, k, cases[i].want);
	}
	rtw_trust_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse), cmocka_unit_test(test_key)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
