/*
 * buf.c: owns struct rtw_buf, the growable byte buffer with a hard maximum
 * every program that collects bytes of unknown length uses (rtw-fcgi's
 * request bodies, response heads and bodies; rtw-webhookd's responses).
 * No I/O, no locking: each buffer belongs to one thread.
 */
#include "config.h"
#include "buf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rtw_buf_add(struct rtw_buf *b, const void *data, size_t n)
{
	if (n > b->max - b->len)
		return RTW_DECLINED;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap - 1 > b->max)
			cap = b->max + 1; /* the maximum is known: never more (max may be SIZE_MAX) */
		char *p = realloc(b->p, cap);
		if (!p)
			return RTW_ERROR;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return RTW_OK;
}

int rtw_buf_str(struct rtw_buf *b, const char *s)
{
	return rtw_buf_add(b, s, strlen(s));
}

int rtw_buf_printf(struct rtw_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return RTW_ERROR;
	return rtw_buf_add(b, tmp, (size_t)n);
}

int rtw_buf_json_str(struct rtw_buf *b, const char *s)
{
	json_t *j = json_string(s);
	char *enc = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	int rc = enc ? rtw_buf_str(b, enc) : RTW_ERROR;
	free(enc);
	json_decref(j);
	return rc;
}

void rtw_buf_shrink(struct rtw_buf *b, size_t keep)
{
	if (b->cap > keep)
		rtw_buf_free(b);
	b->len = 0;
}

void rtw_buf_free(struct rtw_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
