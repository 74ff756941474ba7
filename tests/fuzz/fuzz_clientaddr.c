/*
 * fuzz_clientaddr.c: libFuzzer driver for lib/clientaddr.c, the parser of
 * X-Forwarded-For (bytes a client chooses) and of http.trusted_proxies.
 * Checks that a key is always a short NUL-terminated string ("unknown",
 * an IPv4 address or an IPv6 /64 prefix), that an untrusted peer's key
 * never depends on the header, and that a parsed list matches its own
 * addresses. abort() on a violation. Built with -DRTW_LIBFUZZER it is a
 * libFuzzer target; without it, main() (replay.h) replays the files and
 * directories named on the command line.
 *
 * Input: the first byte picks the mode: even, the rest is an
 * X-Forwarded-For value behind the trusted peer 127.0.0.1 (list
 * "127.0.0.0/8, 10.0.0.0/8, fd00::/8"); odd, the rest is a trusted-proxies
 * list, parsed and then used with its own text as the header.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clientaddr.h"

#define FUZZ_NAME "fuzz_clientaddr"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_clientaddr: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

/* A key is "unknown", an IPv4 address, or "<IPv6>/64". */
static void check_key(const char *k)
{
	unsigned char a[16];
	char buf[RTW_CLIENT_KEY_MAX];
	size_t n = strnlen(k, RTW_CLIENT_KEY_MAX);

	CHECK(n > 0 && n < RTW_CLIENT_KEY_MAX);
	if (strcmp(k, "unknown") == 0 || inet_pton(AF_INET, k, a) == 1)
		return;
	CHECK(n > 3 && strcmp(k + n - 3, "/64") == 0);
	memcpy(buf, k, n - 3);
	buf[n - 3] = '\0';
	CHECK(inet_pton(AF_INET6, buf, a) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtw_trust t;
	char err[160], key[RTW_CLIENT_KEY_MAX], key2[RTW_CLIENT_KEY_MAX];
	char *s;

	if (size == 0)
		return 0;
	s = malloc(size);
	CHECK(s != NULL);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if ((data[0] & 1) == 0) {
		CHECK(rtw_trust_parse("127.0.0.0/8, 10.0.0.0/8, fd00::/8", &t, err, sizeof(err)) == RTW_OK);
		rtw_client_key(&t, "127.0.0.1", s, key);
		check_key(key);
		/* an untrusted peer is itself, whatever the header says */
		rtw_client_key(&t, "203.0.113.5", s, key2);
		CHECK(strcmp(key2, "203.0.113.5") == 0);
	} else if (rtw_trust_parse(s, &t, err, sizeof(err)) == RTW_OK) {
		rtw_client_key(&t, "::1", s, key);
		check_key(key);
	} else {
		CHECK(t.nets == NULL && t.n == 0 && strstr(err, "http.trusted_proxies") != NULL);
	}
	rtw_trust_free(&t);
	free(s);
	return 0;
}

#include "replay.h"
