/*
 * fuzz_sse_req.c: libFuzzer driver for rtw-sse's request-head glue
 * (sse/req.c). Feeds arbitrary bytes as a request head in one piece, in
 * two pieces split where the input says, and (short inputs) one byte at
 * a time; the three must agree, and a complete head must give bounded,
 * NUL-terminated fields and a valid stream id. Also feeds the bytes to
 * sse_url_decode and lib/url.c's rtw_url_decode (in place, into another
 * buffer, into a short one: they must agree). abort() on a violation. Built with -DRTW_LIBFUZZER it
 * is a libFuzzer target; without it, main() (replay.h) replays the files
 * and directories named on the command line.
 *
 * Input: byte 0 picks the split point (byte0 / 255 of the head), byte 1
 * the head size limit, the rest is the head.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "url.h"

#define FUZZ_NAME "fuzz_sse_req"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_sse_req: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static const size_t limits[] = {8192, 64, 512, SSE_TOKEN_MAX + 300, 16, 200};

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

/* Feeds head in pieces of at most step bytes after the first cut bytes;
 * returns the last result (req is the caller's, zeroed). */
static int feed(size_t max, const char *head, size_t len, size_t cut, size_t step, struct sse_req *req)
{
	struct sse_reqparser *p = sse_reqparser_new(max);
	size_t off = 0;
	int rc = RTW_AGAIN;

	CHECK(p != NULL);
	if (cut > 0) {
		rc = sse_reqparser_feed(p, head, cut, req);
		off = cut;
	}
	while (rc == RTW_AGAIN && off < len) {
		size_t n = len - off < step ? len - off : step;
		rc = sse_reqparser_feed(p, head + off, n, req);
		off += n;
	}
	CHECK(rc == RTW_OK || rc == RTW_AGAIN || rc == RTW_ERROR);
	if (rc == RTW_OK) {
		/* more bytes (a pipelined body) change nothing */
		CHECK(sse_reqparser_feed(p, "x", 1, req) == RTW_OK);
	}
	sse_reqparser_free(p);
	return rc;
}

static void check_req(const struct sse_req *r)
{
	CHECK(r->head_done);
	CHECK(TERMINATED(r->stream_id) && TERMINATED(r->widget_key) && TERMINATED(r->last_id));
	CHECK(TERMINATED(r->user_id) && TERMINATED(r->token) && TERMINATED(r->origin));
	CHECK(r->route >= SSE_ROUTE_NONE && r->route <= SSE_ROUTE_METRICS);
	if (r->route == SSE_ROUTE_EVENTS && !r->bad_path)
		CHECK(msg_valid_stream_id(r->stream_id));
	else
		CHECK(r->stream_id[0] == '\0');
	CHECK(!r->bad_path || r->route == SSE_ROUTE_EVENTS);
	CHECK(r->has_widget || r->widget_key[0] == '\0');
	CHECK(r->has_token || r->token[0] == '\0');
	CHECK(r->has_last_id || r->last_id[0] == '\0');
	CHECK(r->has_user || r->user_id[0] == '\0');
	CHECK(r->has_origin || r->origin[0] == '\0');
	CHECK(r->xff_len < sizeof(r->xff) && strlen(r->xff) == r->xff_len && (r->has_xff || r->xff_len == 0));
	CHECK(!(r->auth_other && r->has_token)); /* another scheme is never a token */
	CHECK(r->bad_field == NULL || r->bad_field[0] != '\0');
}

/* Two heads parsed from the same bytes must give the same request. */
static void check_same(const struct sse_req *a, const struct sse_req *b)
{
	CHECK(a->method == b->method && a->route == b->route && a->bad_path == b->bad_path);
	CHECK(a->http10 == b->http10);
	CHECK(strcmp(a->stream_id, b->stream_id) == 0);
	CHECK(a->has_widget == b->has_widget && strcmp(a->widget_key, b->widget_key) == 0);
	CHECK(a->has_last_id == b->has_last_id && strcmp(a->last_id, b->last_id) == 0);
	CHECK(a->has_user == b->has_user && strcmp(a->user_id, b->user_id) == 0);
	CHECK(a->has_token == b->has_token && strcmp(a->token, b->token) == 0);
	CHECK(a->has_origin == b->has_origin && strcmp(a->origin, b->origin) == 0);
	CHECK(a->has_xff == b->has_xff && strcmp(a->xff, b->xff) == 0 && a->auth_other == b->auth_other);
	CHECK((a->bad_field == NULL) == (b->bad_field == NULL));
	CHECK(a->bad_field == NULL || strcmp(a->bad_field, b->bad_field) == 0);
}

/* lib/url.c's decoder, on any bytes: in place and into another buffer
 * agree; the result is never longer than the input and never holds a
 * NUL; a short buffer gives RTW_DECLINED with a prefix of the whole
 * result, or the same error sooner. */
static void check_url_decode(const char *in, size_t len, uint8_t flags)
{
	char *a, *b, small[16];
	unsigned f = flags & 1 ? RTW_URL_PLUS : 0;
	int ra, rb, rs;

	if (len > 8192)
		return;
	a = malloc(len + 1);
	b = malloc(len + 1);
	CHECK(a != NULL && b != NULL);
	memcpy(b, in, len);
	ra = rtw_url_decode(in, len, a, len + 1, f);
	rb = rtw_url_decode(b, len, b, len + 1, f);
	CHECK(ra == rb && (ra == RTW_OK || ra == RTW_ERROR));
	if (ra == RTW_OK) {
		CHECK(strcmp(a, b) == 0);
		CHECK(strlen(a) <= len);
		size_t pct = 0; /* every '%' began a whole escape: 3 bytes became 1 */
		for (size_t i = 0; i < len; i++)
			pct += in[i] == '%';
		CHECK(strlen(a) == len - 2 * pct);
	}
	rs = rtw_url_decode(in, len, small, sizeof(small), f);
	CHECK(rs == RTW_OK || rs == RTW_ERROR || rs == RTW_DECLINED);
	if (rs == RTW_DECLINED) {
		CHECK(strlen(small) == sizeof(small) - 1);
		CHECK(ra == RTW_ERROR || strncmp(a, small, sizeof(small) - 1) == 0);
	} else {
		CHECK(rs == ra);
		if (rs == RTW_OK)
			CHECK(strcmp(a, small) == 0);
	}
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sse_req *whole, *split, *bytes;
	const char *head;
	size_t len, max, cut;
	int rw, rs;

	if (size < 2 || size > 20000)
		return 0;
	head = (const char *)data + 2;
	len = size - 2;
	max = limits[data[1] % RTW_ARRAY_LEN(limits)];
	cut = len * data[0] / 255;

	whole = calloc(1, sizeof(*whole));
	split = calloc(1, sizeof(*split));
	CHECK(whole != NULL && split != NULL);
	rw = feed(max, head, len, 0, len ? len : 1, whole);
	rs = feed(max, head, len, cut, len ? len : 1, split);
	CHECK(rw == rs);
	if (rw == RTW_OK) {
		check_req(whole);
		check_req(split);
		check_same(whole, split);
	} else {
		CHECK(!whole->head_done || whole->too_large);
	}
	if (len <= 400) {
		bytes = calloc(1, sizeof(*bytes));
		CHECK(bytes != NULL);
		CHECK(feed(max, head, len, 0, 1, bytes) == rw);
		if (rw == RTW_OK)
			check_same(whole, bytes);
		free(bytes);
	}
	free(whole);
	free(split);

	/* sse_url_decode on the bytes up to the first NUL */
	if (len < 4096) {
		char s[4096];
		memcpy(s, head, len);
		s[len] = '\0';
		size_t before = strlen(s);
		if (sse_url_decode(s))
			CHECK(strlen(s) <= before);
	}
	check_url_decode(head, len, data[0]);
	return 0;
}

#include "replay.h"
