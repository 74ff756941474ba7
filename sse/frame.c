/*
 * frame.c: every byte rtw-sse writes to a client is a frame built here: a
 * message serialized and framed ONCE ("id: N\ndata: {...}\n\n") into a
 * refcounted buffer that every recipient's output queue references (the
 * last unref frees it), the head of an event stream with its init event,
 * and whole close-delimited responses (errors, /healthz, /metrics, the
 * refusals at accept) whose Content-Length is computed here, never by
 * hand. Pure code: no I/O, no policy (the callers choose the headers);
 * runs on the loop thread. The bottom tier of sse/, with subs.c and req.c.
 */
#include "config.h"
#include "sse.h"
#include "msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_HEAD_MAX 2048 /* a response head: status line and headers */

static struct sse_frame *frame__alloc(size_t len)
{
	struct sse_frame *f;

	if (len > UINT32_MAX)
		return NULL;
	f = malloc(sizeof(*f) + len);
	if (f == NULL)
		return NULL;
	f->refs = 1;
	f->has_pos = false;
	f->hold_until_ms = 0;
	f->pos.xid = 0;
	f->pos.id = 0;
	f->len = (uint32_t)len;
	return f;
}

struct sse_frame *sse_frame_event(const char *id, const char *json, size_t json_len, struct sse_pos pos)
{
	size_t idlen = strlen(id);
	struct sse_frame *f;
	char *p;

	/* the id and the JSON are single lines: msg_serialize escapes
	 * control characters and ids are digits */
	if (memchr(json, '\n', json_len) != NULL || strpbrk(id, "\r\n") != NULL)
		return NULL;
	f = frame__alloc(4 + idlen + 7 + json_len + 2);
	if (f == NULL)
		return NULL;
	p = f->data;
	memcpy(p, "id: ", 4);
	p += 4;
	memcpy(p, id, idlen);
	p += idlen;
	memcpy(p, "\ndata: ", 7);
	p += 7;
	memcpy(p, json, json_len);
	p += json_len;
	memcpy(p, "\n\n", 2);
	f->has_pos = true;
	f->pos = pos;
	return f;
}

struct sse_frame *sse_frame_raw(const char *bytes, size_t len)
{
	struct sse_frame *f = frame__alloc(len);

	if (f != NULL)
		memcpy(f->data, bytes, len);
	return f;
}

/* head (printf-style, at most FRAME_HEAD_MAX bytes), then body, then
 * tail, as one frame without a position. */
RTW_PRINTF(5, 6)
static struct sse_frame *frame__http(const char *body, size_t blen, const char *tail, size_t tlen, const char *fmt, ...)
{
	char head[FRAME_HEAD_MAX];
	struct sse_frame *f;
	va_list ap;
	int hl;

	va_start(ap, fmt);
	hl = vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	if (hl < 0 || (size_t)hl >= sizeof(head))
		return NULL;
	f = frame__alloc((size_t)hl + blen + tlen);
	if (f == NULL)
		return NULL;
	memcpy(f->data, head, (size_t)hl);
	if (blen)
		memcpy(f->data + hl, body, blen);
	if (tlen)
		memcpy(f->data + (size_t)hl + blen, tail, tlen);
	return f;
}

struct sse_frame *sse_frame_response(int status, const char *ctype, const char *headers, const char *body, size_t blen,
				     bool head_only)
{
	/* HEAD: the same head, declaring the body it leaves out */
	return frame__http(body, head_only ? 0 : blen, NULL, 0,
			   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			   "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
			   status, rtw_http_reason(status), ctype, blen, headers ? headers : "");
}

struct sse_frame *sse_frame_stream_open(const char *headers, int retry_ms, const char *init_json, size_t init_len)
{
	/* the init event is one data: line, like every message */
	if (memchr(init_json, '\n', init_len) != NULL)
		return NULL;
	return frame__http(init_json, init_len, "\n\n", 2,
			   "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
			   "X-Accel-Buffering: no\r\nConnection: close\r\n%s\r\nretry: %d\n\ndata: ",
			   headers ? headers : "", retry_ms);
}

struct sse_frame *sse_frame_stream_retry(const char *headers, int retry_ms)
{
	return frame__http(NULL, 0, NULL, 0,
			   "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
			   "X-Accel-Buffering: no\r\nConnection: close\r\n%s\r\nretry: %d\n\n",
			   headers ? headers : "", retry_ms);
}

struct sse_frame *sse_frame_row(const struct msg_stored *m, struct sse_pos pos)
{
	size_t len;
	char *json = msg_serialize(m, &len);
	struct sse_frame *f;

	if (json == NULL)
		return NULL;
	f = sse_frame_event(m->id, json, len, pos);
	free(json);
	return f;
}

void sse_frame_unref(struct sse_frame *f)
{
	if (f->refs > 0 && --f->refs == 0)
		free(f);
}

struct sse_frame *sse_frame_static(const char *bytes, size_t len)
{
	struct sse_frame *f = sse_frame_raw(bytes, len);

	if (f != NULL)
		f->refs = -1;
	return f;
}
