/*
 * msg_json.c: owns msg_serialize(), the JSON writer of stored messages in
 * the contract's standard format: one compact line, written by hand for
 * speed (rtw-sse calls it once per event, before fan-out; rtw-fcgi's
 * history and rtwctl tail call it per row), checking the UTF-8 of the
 * strings and the structure of the payload's JSON text from PostgreSQL.
 * No I/O, no globals: safe from any thread.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "msg.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (which starts with a byte >=
 * 0x80), or 0 when it is not one (overlong, surrogate, > U+10FFFF, cut). */
static size_t msg__utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/* Appends s as a quoted JSON string (at most 6 bytes per input byte + 2);
 * NULL when s is not valid UTF-8. */
static char *msg__put_str(char *p, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;

	*p++ = '"';
	while (*u != '\0') {
		unsigned char c = *u;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			*p++ = (char)c;
			u++;
		} else if (c >= 0x80) {
			size_t n = msg__utf8_seq(u);
			if (n == 0)
				return NULL;
			memcpy(p, u, n);
			p += n;
			u += n;
		} else {
			*p++ = '\\';
			switch (c) {
			case '"': *p++ = '"'; break;
			case '\\': *p++ = '\\'; break;
			case '\n': *p++ = 'n'; break;
			case '\r': *p++ = 'r'; break;
			case '\t': *p++ = 't'; break;
			case '\b': *p++ = 'b'; break;
			case '\f': *p++ = 'f'; break;
			default:
				*p++ = 'u';
				*p++ = '0';
				*p++ = '0';
				*p++ = hex[c >> 4];
				*p++ = hex[c & 15];
				break;
			}
			u++;
		}
	}
	*p++ = '"';
	return p;
}

#define MSG__CTL16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1

/* The bytes msg__put_compact stops at outside strings (control characters,
 * space, quote, brackets) and inside strings (control characters, quote,
 * backslash); every other byte is copied as it is. */
static const unsigned char msg__stop_out[256] = {
    MSG__CTL16, MSG__CTL16, [' '] = 1, ['"'] = 1, ['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1,
};
static const unsigned char msg__stop_str[256] = {
    MSG__CTL16,
    MSG__CTL16,
    ['"'] = 1,
    ['\\'] = 1,
};

/* Appends JSON text s[0..n) without the whitespace outside strings, so the
 * result is compact and one line (jsonb::text writes ", " and ": "). Checks
 * only the structure (balanced brackets, closed strings, no raw control
 * characters): the text comes from PostgreSQL and is valid JSON. */
static char *msg__put_compact(char *p, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s, *end = u + n;
	char *start = p;
	size_t depth = 0;

	while (u < end) {
		while (u < end && !msg__stop_out[*u])
			*p++ = (char)*u++;
		if (u == end)
			break;
		switch (*u) {
		case ' ':
		case '\t':
		case '\n':
		case '\r': u++; continue;
		case '{':
		case '[':
			depth++;
			*p++ = (char)*u++;
			continue;
		case '}':
		case ']':
			if (depth-- == 0)
				return NULL;
			*p++ = (char)*u++;
			continue;
		case '"': break;
		default: return NULL;
		}
		/* a string: copy up to the closing quote */
		*p++ = (char)*u++;
		for (;;) {
			while (u < end && !msg__stop_str[*u])
				*p++ = (char)*u++;
			if (u == end || *u < 0x20)
				return NULL;
			if (*u == '"')
				break;
			/* a backslash and the byte it escapes */
			if (u + 1 == end || u[1] < 0x20)
				return NULL;
			*p++ = (char)*u++;
			*p++ = (char)*u++;
		}
		*p++ = (char)*u++;
	}
	return (depth != 0 || p == start) ? NULL : p;
}

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool msg__valid_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0') {
		s++;
	} else if (*s >= '1' && *s <= '9') {
		while (*s >= '0' && *s <= '9')
			s++;
	} else {
		return false;
	}
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

#define MSG__LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

char *msg_serialize(const struct msg_stored *m, size_t *len)
{
	const char *strs[] = {m->id, m->stream_id, m->author_id, m->to_user_id, m->type, m->widget_key, m->created_at};
	size_t cap = 256, n_msg, n_ts;
	char *buf, *p;

	if (m->id == NULL || m->stream_id == NULL || m->author_id == NULL || m->message_json == NULL ||
	    m->timestamp == NULL || m->type == NULL || m->widget_key == NULL || m->created_at == NULL)
		return NULL;
	if (!msg__valid_number(m->timestamp))
		return NULL;
	n_msg = strlen(m->message_json);
	n_ts = strlen(m->timestamp);
	for (size_t i = 0; i < RTW_ARRAY_LEN(strs); i++) {
		if (strs[i] != NULL)
			cap += 6 * strlen(strs[i]);
	}
	if (n_msg > SIZE_MAX / 2 - cap - n_ts)
		return NULL;
	cap += n_msg + n_ts;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;

	p = MSG__LIT(buf, "{\"id\":");
	p = msg__put_str(p, m->id);
	if (p == NULL)
		goto fail;
	p = MSG__LIT(p, ",\"stream_id\":");
	p = msg__put_str(p, m->stream_id);
	if (p == NULL)
		goto fail;
	p = MSG__LIT(p, ",\"author_id\":");
	p = msg__put_str(p, m->author_id);
	if (p == NULL)
		goto fail;
	if (m->to_user_id != NULL) {
		p = MSG__LIT(p, ",\"to_user_id\":");
		p = msg__put_str(p, m->to_user_id);
		if (p == NULL)
			goto fail;
	}
	p = MSG__LIT(p, ",\"message\":");
	p = msg__put_compact(p, m->message_json, n_msg);
	if (p == NULL)
		goto fail;
	p = MSG__LIT(p, ",\"timestamp\":");
	memcpy(p, m->timestamp, n_ts);
	p += n_ts;
	p = MSG__LIT(p, ",\"type\":");
	p = msg__put_str(p, m->type);
	if (p == NULL)
		goto fail;
	p = MSG__LIT(p, ",\"widget_key\":");
	p = msg__put_str(p, m->widget_key);
	if (p == NULL)
		goto fail;
	p = MSG__LIT(p, ",\"created_at\":");
	p = msg__put_str(p, m->created_at);
	if (p == NULL)
		goto fail;
	*p++ = '}';
	*p = '\0';
	if (len != NULL)
		*len = (size_t)(p - buf);
	return buf;
fail:
	free(buf);
	return NULL;
}
