/*
 * test_whk_addr.c: unit tests of webhookd/addr.c, the webhook target
 * address classifier, host matching and the host:port allow-list
 * (cmocka). Pure; no network.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "../../webhookd/addr.h"

static void expect_class(const char *text, enum whk_addr_class want)
{
	enum whk_addr_class got = whk_addr_classify_text(text);
	if (got != want)
		fail_msg("%s: got %s, want %s", text, whk_addr_class_name(got), whk_addr_class_name(want));
}

static void test_v4_internal(void **state)
{
	expect_class("0.0.0.0", WHK_ADDR_UNSPECIFIED);
	expect_class("0.1.2.3", WHK_ADDR_UNSPECIFIED);
	expect_class("127.0.0.1", WHK_ADDR_LOOPBACK);
	expect_class("127.255.255.254", WHK_ADDR_LOOPBACK);
	expect_class("10.0.0.1", WHK_ADDR_PRIVATE);
	expect_class("10.255.255.255", WHK_ADDR_PRIVATE);
	expect_class("172.16.0.1", WHK_ADDR_PRIVATE);
	expect_class("172.31.255.255", WHK_ADDR_PRIVATE);
	expect_class("192.168.1.1", WHK_ADDR_PRIVATE);
	expect_class("169.254.169.254", WHK_ADDR_LINK_LOCAL);
	expect_class("100.64.0.1", WHK_ADDR_SHARED);
	expect_class("100.127.255.255", WHK_ADDR_SHARED);
	expect_class("224.0.0.1", WHK_ADDR_MULTICAST);
	expect_class("239.255.255.250", WHK_ADDR_MULTICAST);
	expect_class("255.255.255.255", WHK_ADDR_BROADCAST);
	expect_class("240.0.0.1", WHK_ADDR_RESERVED);
	expect_class("192.0.0.8", WHK_ADDR_RESERVED);
	expect_class("192.0.2.10", WHK_ADDR_RESERVED);
	expect_class("198.18.0.1", WHK_ADDR_RESERVED);
	expect_class("198.19.255.255", WHK_ADDR_RESERVED);
	expect_class("198.51.100.7", WHK_ADDR_RESERVED);
	expect_class("203.0.113.9", WHK_ADDR_RESERVED);
}

static void test_v4_public_edges(void **state)
{
	expect_class("8.8.8.8", WHK_ADDR_PUBLIC);
	expect_class("1.1.1.1", WHK_ADDR_PUBLIC);
	expect_class("11.0.0.1", WHK_ADDR_PUBLIC);	/* just past 10/8 */
	expect_class("9.255.255.255", WHK_ADDR_PUBLIC); /* just before 10/8 */
	expect_class("172.15.255.255", WHK_ADDR_PUBLIC);
	expect_class("172.32.0.0", WHK_ADDR_PUBLIC);
	expect_class("100.63.255.255", WHK_ADDR_PUBLIC);
	expect_class("100.128.0.0", WHK_ADDR_PUBLIC);
	expect_class("126.255.255.255", WHK_ADDR_PUBLIC);
	expect_class("128.0.0.0", WHK_ADDR_PUBLIC);
	expect_class("169.253.255.255", WHK_ADDR_PUBLIC);
	expect_class("192.167.255.255", WHK_ADDR_PUBLIC);
	expect_class("198.17.255.255", WHK_ADDR_PUBLIC);
	expect_class("198.20.0.0", WHK_ADDR_PUBLIC);
	expect_class("223.255.255.255", WHK_ADDR_PUBLIC);
}

static void test_v6(void **state)
{
	expect_class("::", WHK_ADDR_UNSPECIFIED);
	expect_class("::1", WHK_ADDR_LOOPBACK);
	expect_class("[::1]", WHK_ADDR_LOOPBACK);
	expect_class("fc00::1", WHK_ADDR_PRIVATE);
	expect_class("fdff:ffff::1", WHK_ADDR_PRIVATE);
	expect_class("fe80::1", WHK_ADDR_LINK_LOCAL);
	expect_class("febf::1", WHK_ADDR_LINK_LOCAL);
	expect_class("fec0::1", WHK_ADDR_PRIVATE);
	expect_class("ff02::1", WHK_ADDR_MULTICAST);
	expect_class("ff05::2", WHK_ADDR_MULTICAST);
	expect_class("2001:db8::1", WHK_ADDR_RESERVED);
	expect_class("64:ff9b::7f00:1", WHK_ADDR_RESERVED);
	expect_class("64:ff9b::808:808", WHK_ADDR_RESERVED);
	expect_class("64:ff9b:1::1", WHK_ADDR_RESERVED);
	expect_class("100::1", WHK_ADDR_RESERVED);
	expect_class("2001::1", WHK_ADDR_RESERVED); /* Teredo */
	expect_class("::2", WHK_ADDR_UNSPECIFIED);  /* compatible form of 0.0.0.2 */
	expect_class("2606:4700:4700::1111", WHK_ADDR_PUBLIC);
	expect_class("2a00:1450:4001:80b::200e", WHK_ADDR_PUBLIC);
}

static void test_v6_embedded_v4(void **state)
{
	expect_class("::ffff:127.0.0.1", WHK_ADDR_LOOPBACK);
	expect_class("[::ffff:127.0.0.1]", WHK_ADDR_LOOPBACK);
	expect_class("::ffff:7f00:1", WHK_ADDR_LOOPBACK);
	expect_class("::ffff:10.0.0.1", WHK_ADDR_PRIVATE);
	expect_class("::ffff:169.254.169.254", WHK_ADDR_LINK_LOCAL);
	expect_class("::ffff:8.8.8.8", WHK_ADDR_PUBLIC);
	expect_class("::127.0.0.1", WHK_ADDR_LOOPBACK);	       /* IPv4-compatible */
	expect_class("::ffff:0:127.0.0.1", WHK_ADDR_LOOPBACK); /* IPv4-translated */
	expect_class("2002:7f00:1::1", WHK_ADDR_RESERVED);     /* 6to4 of 127.0.0.1 */
	expect_class("2002:c0a8:101::1", WHK_ADDR_RESERVED);   /* 6to4 of 192.168.1.1 */
	expect_class("2002:808:808::1", WHK_ADDR_PUBLIC);      /* 6to4 of 8.8.8.8 */
}

static void test_text_forms(void **state)
{
	/* Only canonical literals are parsed here; integer, octal and hex
	 * forms are left to the resolver and judged on the connected address. */
	expect_class("2130706433", WHK_ADDR_INVALID);
	expect_class("0177.0.0.1", WHK_ADDR_INVALID);
	expect_class("0x7f000001", WHK_ADDR_INVALID);
	expect_class("example.com", WHK_ADDR_INVALID);
	expect_class("", WHK_ADDR_INVALID);
	expect_class("[]", WHK_ADDR_INVALID);
	expect_class("[::1", WHK_ADDR_INVALID);
	assert_int_equal(whk_addr_classify_text(NULL), WHK_ADDR_INVALID);
}

static void test_sockaddr(void **state)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	struct sockaddr un = {.sa_family = AF_UNIX};

	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &in.sin_addr), 1);
	assert_int_equal(whk_addr_classify((struct sockaddr *)&in, sizeof(in)), WHK_ADDR_LOOPBACK);
	/* a short length is not trusted */
	assert_int_equal(whk_addr_classify((struct sockaddr *)&in, 4), WHK_ADDR_INVALID);
	assert_int_equal(inet_pton(AF_INET, "93.184.216.34", &in.sin_addr), 1);
	assert_int_equal(whk_addr_classify((struct sockaddr *)&in, sizeof(in)), WHK_ADDR_PUBLIC);
	assert_int_equal(inet_pton(AF_INET6, "::ffff:192.168.0.1", &in6.sin6_addr), 1);
	assert_int_equal(whk_addr_classify((struct sockaddr *)&in6, sizeof(in6)), WHK_ADDR_PRIVATE);
	assert_int_equal(whk_addr_classify(&un, sizeof(un)), WHK_ADDR_INVALID);
	assert_int_equal(whk_addr_classify(NULL, 0), WHK_ADDR_INVALID);
}

static void test_class_names(void **state)
{
	assert_string_equal(whk_addr_class_name(WHK_ADDR_LOOPBACK), "loopback");
	assert_string_equal(whk_addr_class_name(WHK_ADDR_PUBLIC), "public");
	assert_string_equal(whk_addr_class_name(WHK_ADDR_INVALID), "invalid");
}

static void test_host_match(void **state)
{
	assert_true(whk_host_match("example.com", "example.com"));
	assert_true(whk_host_match("Example.COM", "example.com"));
	assert_true(whk_host_match("example.com.", "example.com"));
	assert_false(whk_host_match("example.com", "example.org"));
	assert_false(whk_host_match("evilexample.com", "example.com"));
	assert_false(whk_host_match("example.com.evil.net", "example.com"));
	assert_true(whk_host_match("api.example.com", "*.example.com"));
	assert_true(whk_host_match("a.b.example.com", "*.example.com"));
	assert_false(whk_host_match("example.com", "*.example.com"));
	assert_false(whk_host_match("badexample.com", "*.example.com"));
	assert_true(whk_host_match("[::1]", "::1"));
	assert_true(whk_host_match("::1", "[::1]"));
	assert_false(whk_host_match("", "example.com"));
	assert_false(whk_host_match("example.com", ""));
	assert_false(whk_host_match(NULL, "x"));
}

static struct sockaddr_in v4(const char *ip, unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	return sa;
}

static struct sockaddr_in6 v6(const char *ip, unsigned port)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
	return sa;
}

#define ALLOWS(list, host, sa) whk_allow_match(list, host, (const struct sockaddr *)&(sa), sizeof(sa))

/* Issue 10, finding 1: an allow-list entry used to match the host alone
 * and then skip the address check for every port. An entry now opens one
 * address (or one name's resolution) on one port, judged on what is
 * connected to, whatever the URL spelled. */
static void test_allow_match(void **state)
{
	struct sockaddr_in lo = v4("127.0.0.1", 8080), lo_other = v4("127.0.0.1", 5432), lo2 = v4("127.0.0.2", 8080);
	struct sockaddr_in6 mapped = v6("::ffff:127.0.0.1", 8080), six = v6("::1", 8080), six_other = v6("::1", 8081);

	/* the allowed address and port, whatever host the URL spelled */
	assert_true(ALLOWS("127.0.0.1:8080", "127.0.0.1", lo));
	assert_true(ALLOWS("127.0.0.1:8080", "2130706433", lo));
	assert_true(ALLOWS("127.0.0.1:8080", NULL, lo));
	assert_true(ALLOWS("127.0.0.1:8080", "x", mapped));
	/* any other port or address of the same host: refused */
	assert_false(ALLOWS("127.0.0.1:8080", "127.0.0.1", lo_other));
	assert_false(ALLOWS("127.0.0.1:8080", "127.0.0.1", lo2));
	assert_false(ALLOWS("127.0.0.1:8080", "127.0.0.1", six));
	/* a name opens what it resolves to, on its port only */
	assert_true(ALLOWS("localhost:8080", "localhost", lo));
	assert_true(ALLOWS("localhost:8080", "LOCALHOST.", six));
	assert_false(ALLOWS("localhost:8080", "localhost", lo_other));
	assert_false(ALLOWS("localhost:8080", "127.0.0.1", lo));
	assert_true(ALLOWS("*.hooks.test:8080", "a.hooks.test", lo));
	assert_false(ALLOWS("*.hooks.test:8080", "hooks.test", lo));
	/* IPv6 literals in brackets */
	assert_true(ALLOWS("[::1]:8080", "[::1]", six));
	assert_false(ALLOWS("[::1]:8080", "[::1]", six_other));
	/* lists: spaces and empty entries ignored, any entry may match */
	assert_true(ALLOWS(" a.test:1 ,, 127.0.0.1:8080 ", "x", lo));
	assert_false(ALLOWS("a.test:1,b.test:8080", "x", lo));
	/* nothing opens anything without a valid entry */
	assert_false(ALLOWS("", "127.0.0.1", lo));
	assert_false(ALLOWS(NULL, "127.0.0.1", lo));
	assert_false(ALLOWS("127.0.0.1", "127.0.0.1", lo));
	assert_false(ALLOWS("127.0.0.1:8080x", "127.0.0.1", lo));
	assert_false(whk_allow_match("127.0.0.1:8080", "127.0.0.1", NULL, 0));
	assert_false(whk_allow_match("127.0.0.1:8080", "127.0.0.1", (const struct sockaddr *)&lo, 4));
}

static void test_allow_list_check(void **state)
{
	static const char *const good[] = {"", "127.0.0.1:8080", "localhost:1, [::1]:65535", "*.x.test:443,",
					   " a.test:80 , b.test:81 "};
	static const char *const bad[] = {"127.0.0.1",	    "localhost:", ":80",     "a.test:0", "a.test:65536",
					  "a.test:8o",	    "::1:80",	  "[::1]80", "[::1]",	 "a.test:123456",
					  "x:80,127.0.0.1", "[]:80x"};
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (whk_allow_list_check(good[i], err, sizeof(err)) != RTW_OK)
			fail_msg("\"%s\" refused: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (whk_allow_list_check(bad[i], err, sizeof(err)) != RTW_ERROR)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(strstr(err, "expected host:port"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v4_internal), cmocka_unit_test(test_v4_public_edges),
	    cmocka_unit_test(test_v6),		cmocka_unit_test(test_v6_embedded_v4),
	    cmocka_unit_test(test_text_forms),	cmocka_unit_test(test_sockaddr),
	    cmocka_unit_test(test_class_names), cmocka_unit_test(test_host_match),
	    cmocka_unit_test(test_allow_match), cmocka_unit_test(test_allow_list_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
