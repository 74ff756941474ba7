/*
 * url.c: owns percent-decoding and splitting query strings for the
 * daemons' request parsers (fcgi/http.c, fcgi/handlers.c, sse/req.c).
 * No I/O, no allocation.
 */
#include "config.h"
#include "url.h"

#include <string.h>

static int url__hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 32) >= 'a' && (c | 32) <= 'f')
		return (c | 32) - 'a' + 10;
	return -1;
}

int rtw_url_decode(const char *in, size_t n, char *out, size_t cap, unsigned flags)
{
	size_t o = 0;

	if (cap == 0)
		return RTW_DECLINED;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i];
		if (c == '%') {
			int hi = i + 1 < n ? url__hex(in[i + 1]) : -1;
			int lo = i + 2 < n ? url__hex(in[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				goto bad;
			c = hi * 16 + lo;
			i += 2;
		} else if (c == '+' && (flags & RTW_URL_PLUS)) {
			c = ' ';
		}
		if (c == 0)
			goto bad;
		if (o + 1 >= cap) {
			out[o] = '\0';
			return RTW_DECLINED;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return RTW_OK;
bad:
	out[o] = '\0';
	return RTW_ERROR;
}

bool rtw_query_next(const char **q, struct rtw_query_pair *p)
{
	const char *s = *q;
	size_t n;
	const char *eq;

	if (!s || !*s)
		return false;
	n = strcspn(s, "&");
	eq = memchr(s, '=', n);
	p->name = s;
	p->name_len = eq ? (size_t)(eq - s) : n;
	p->has_eq = eq != NULL;
	p->value = eq ? eq + 1 : s + n;
	p->value_len = eq ? n - p->name_len - 1 : 0;
	*q = s[n] == '&' ? s + n + 1 : s + n;
	return true;
}
