/*
 * reqid.c: validates the request ids a front sends and makes new ones
 * (reqid.h). No I/O but OpenSSL's RAND_bytes; thread-safe.
 */
#include "config.h"
#include "reqid.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

bool rtw_reqid_valid(const char *s)
{
	static const char extra[] = "!#$%&'*+-.^_`|~@";
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (n >= RTW_REQID_MAX - 1 || (!alnum && !strchr(extra, c)))
			return false;
	}
	return n > 0;
}

void rtw_reqid_new(char out[RTW_REQID_MAX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1) {
		/* never seen; an id need not be secret, only distinct enough */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		for (size_t i = 0; i < sizeof(b); i++, x = x * 6364136223846793005u + 1442695040888963407u)
			b[i] = (unsigned char)(x >> 56);
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * sizeof(b)] = '\0';
}

void rtw_reqid_pick(const char *given, bool trusted, char out[RTW_REQID_MAX])
{
	if (trusted && rtw_reqid_valid(given))
		snprintf(out, RTW_REQID_MAX, "%s", given);
	else
		rtw_reqid_new(out);
}
