/*
 * buf.c: owns struct fcg_buf, rtw-fcgi's growable byte buffer with a hard
 * maximum (request bodies, response heads and bodies). Tier 0 of fcgi/:
 * calls nothing else in fcgi/. Each buffer belongs to one worker thread.
 */
#include "config.h"
#include "fcgi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fcg_buf_add(struct fcg_buf *b, const void *data, size_t n)
{
	if (n > b->max - b->len)
		return RTW_ERROR;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
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

int fcg_buf_str(struct fcg_buf *b, const char *s)
{
	return fcg_buf_add(b, s, strlen(s));
}

int fcg_buf_printf(struct fcg_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return RTW_ERROR;
	return fcg_buf_add(b, tmp, (size_t)n);
}

int fcg_buf_json_str(struct fcg_buf *b, const char *s)
{
	/* jansson does the escaping (and checks UTF-8). */
	json_t *j = json_string(s);
	char *enc = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	int rc = enc ? fcg_buf_str(b, enc) : RTW_ERROR;
	free(enc);
	json_decref(j);
	return rc;
}

void fcg_buf_shrink(struct fcg_buf *b, size_t keep)
{
	if (b->cap > keep)
		fcg_buf_free(b);
	b->len = 0;
}

void fcg_buf_free(struct fcg_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
