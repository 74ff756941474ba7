/*
 * url.h: the one URL decoding and query-string splitting of rtw (rtw-fcgi's
 * paths and history filters, rtw-sse's stream ids and query parameters).
 * A malformed escape ('%' not followed by two hex digits) is always
 * refused, never passed through: the daemons answer 400 invalid_field.
 * Pure code.
 */
#ifndef RTW_URL_H
#define RTW_URL_H

#include "rtw.h"

/* rtw_url_decode flags */
#define RTW_URL_PLUS 1u /* '+' means a space (query strings) */

/* Percent-decodes the n bytes of in into out (cap bytes, NUL included);
 * out may be in itself, decoding never lengthens. RTW_OK; RTW_ERROR when
 * an escape is malformed or the result would hold a NUL byte (%00);
 * RTW_DECLINED when it does not fit in cap (out is then cut, NUL ended). */
int rtw_url_decode(const char *in, size_t n, char *out, size_t cap, unsigned flags) RTW_WUR;

/* One name=value pair of a query string, still encoded; both point into
 * the query string (borrowed). */
struct rtw_query_pair {
	const char *name;
	size_t name_len;
	const char *value; /* "" (value_len 0) when the pair has no '=' */
	size_t value_len;
	bool has_eq;
};

/* Splits the next pair off *q (a query string without its '?', pairs
 * separated by '&'), advancing *q past it. False at the end. Empty pairs
 * ("a=1&&b=2") are returned too, with empty names. */
bool rtw_query_next(const char **q, struct rtw_query_pair *p);

#endif
