/*
 * frame.c: preformatted SSE frames. A message is serialized and framed
 * ONCE ("id: N\ndata: {...}\n\n") into a refcounted buffer that every
 * recipient's output queue references; the last unref frees it. Pure
 * code: no I/O; runs on the loop thread.
 */
#include "config.h"
#include "sse.h"
#include "msg.h"

#include <stdlib.h>
#include <string.h>

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
