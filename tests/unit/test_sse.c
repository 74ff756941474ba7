/*
 * test_sse.c: unit tests of rtw-sse's pure parts: frame formatting and
 * sharing, stream heads and whole responses (sse/frame.c), the subscriber index (sse/subs.c) and the
 * request-head glue over http-parser (sse/req.c).
 */
#include "config.h"
#include "sse.h"
#include "msg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- frames ---- */

static void test_frame_event(void **state)
{
	struct sse_pos pos = {731, 42};
	struct sse_frame *f = sse_frame_event("42", "{\"a\":1}", 7, pos);
	static const char want[] = "id: 42\ndata: {\"a\":1}\n\n";

	assert_non_null(f);
	assert_int_equal(f->len, sizeof(want) - 1);
	assert_memory_equal(f->data, want, sizeof(want) - 1);
	assert_true(f->has_pos);
	assert_int_equal(f->pos.xid, 731);
	assert_int_equal(f->pos.id, 42);
	/* shared: the last unref frees (ASan/valgrind check the balance) */
	assert_ptr_equal(sse_frame_ref(f), f);
	assert_int_equal(f->refs, 2);
	sse_frame_unref(f);
	assert_int_equal(f->refs, 1);
	sse_frame_unref(f);
}

static void test_frame_refuses_newlines(void **state)
{
	struct sse_pos pos = {1, 1};
	/* a newline in the data would split the event: never framed */
	assert_null(sse_frame_event("1", "{\"a\":\n1}", 8, pos));
	assert_null(sse_frame_event("1\n", "{}", 2, pos));
}

static void test_frame_row(void **state)
{
	struct msg_stored m = {
	    .id = "7",
	    .stream_id = "s1",
	    .author_id = "bob",
	    .to_user_id = "alice",
	    .message_json = "{\"text\": \"line1\\nline2\", \"n\": [1, 2]}",
	    .timestamp = "2365.123",
	    .type = "private",
	    .widget_key = "6b9f652a-63fd-47d7-a3bc-418c1096eb8c",
	    .created_at = "2026-11-27T22:00:00.123456Z",
	};
	struct sse_pos pos = {9, 7};
	struct sse_frame *f = sse_frame_row(&m, pos);
	char *s;

	assert_non_null(f);
	s = strndup(f->data, f->len);
	assert_true(strncmp(s, "id: 7\ndata: {", 13) == 0);
	assert_true(strcmp(s + strlen(s) - 3, "}\n\n") == 0);
	/* exactly one data line: the payload's escaped newline stays escaped */
	assert_int_equal(strchr(s + 12, '\n') - s, (long)strlen(s) - 2);
	assert_non_null(strstr(s, "\"to_user_id\":\"alice\""));
	assert_non_null(strstr(s, "\"timestamp\":2365.123"));
	assert_non_null(strstr(s, "\"message\":{\"text\":\"line1\\nline2\",\"n\":[1,2]}"));
	free(s);
	sse_frame_unref(f);
}

static void test_frame_response(void **state)
{
	static const char body[] = "{\"status\":\"ok\"}\n";
	static const char want[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
				   "Content-Length: 16\r\nCache-Control: no-store\r\nConnection: close\r\n"
				   "Retry-After: 1\r\n\r\n{\"status\":\"ok\"}\n";
	struct sse_frame *f =
	    sse_frame_response(503, "application/json", "Retry-After: 1\r\n", body, sizeof(body) - 1, false);
	const char *cl, *end;

	assert_non_null(f);
	assert_int_equal(f->len, sizeof(want) - 1);
	assert_memory_equal(f->data, want, sizeof(want) - 1);
	assert_false(f->has_pos);
	sse_frame_unref(f);

	/* Content-Length is computed: it always equals the body's length */
	for (size_t blen = 0; blen < 300; blen += 37) {
		char b[300];
		memset(b, 'x', blen);
		f = sse_frame_response(429, "application/json", NULL, b, blen, false);
		assert_non_null(f);
		cl = memmem(f->data, f->len, "Content-Length: ", 16);
		end = memmem(f->data, f->len, "\r\n\r\n", 4);
		assert_non_null(cl);
		assert_non_null(end);
		assert_int_equal(strtoul(cl + 16, NULL, 10), blen);
		assert_int_equal(f->data + f->len - (end + 4), blen);
		sse_frame_unref(f);
	}
	/* HEAD: the head declares the body it leaves out */
	f = sse_frame_response(200, "application/json", NULL, body, sizeof(body) - 1, true);
	assert_non_null(f);
	assert_non_null(memmem(f->data, f->len, "Content-Length: 16\r\n", 20));
	assert_memory_equal(f->data + f->len - 4, "\r\n\r\n", 4);
	assert_null(memmem(f->data, f->len, body, sizeof(body) - 1));
	sse_frame_unref(f);
}

static void test_frame_stream_open(void **state)
{
	static const char init[] = "{\"type\":\"init\"}";
	static const char want[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
				   "X-Accel-Buffering: no\r\nConnection: close\r\nVary: Origin\r\n\r\n"
				   "retry: 2000\n\ndata: {\"type\":\"init\"}\n\n";
	struct sse_frame *f = sse_frame_stream_open("Vary: Origin\r\n", 2000, init, sizeof(init) - 1);

	assert_non_null(f);
	assert_int_equal(f->len, sizeof(want) - 1);
	assert_memory_equal(f->data, want, sizeof(want) - 1);
	assert_false(f->has_pos);
	sse_frame_unref(f);
	/* a newline would end the init event early */
	assert_null(sse_frame_stream_open(NULL, 2000, "{\n}", 3));
}

/* The answer to a stream that cannot start now: the same head, retry:, no
 * event (a standard EventSource reconnects; any non-200 would end it). */
static void test_frame_stream_retry(void **state)
{
	static const char want[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
				   "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 1234\n\n";
	struct sse_frame *f = sse_frame_stream_retry(NULL, 1234);

	assert_non_null(f);
	assert_int_equal(f->len, sizeof(want) - 1);
	assert_memory_equal(f->data, want, sizeof(want) - 1);
	assert_false(f->has_pos);
	sse_frame_unref(f);
}

static void test_frame_static(void **state)
{
	struct sse_frame *hb = sse_frame_static(": hb\n\n", 6);

	assert_non_null(hb);
	sse_frame_ref(hb);
	sse_frame_unref(hb);
	sse_frame_unref(hb); /* never freed by unref */
	assert_memory_equal(hb->data, ": hb\n\n", 6);
	assert_false(hb->has_pos);
	free(hb);
}

static void test_pos_order(void **state)
{
	struct sse_pos a = {10, 5}, b = {10, 6}, c = {11, 1};

	assert_true(sse_pos_cmp(a, b) < 0);
	assert_true(sse_pos_cmp(b, c) < 0); /* xid first: ids need not grow along the order */
	assert_true(sse_pos_cmp(c, a) > 0);
	assert_int_equal(sse_pos_cmp(a, a), 0);
}

/* ---- subscriber index ---- */

static int count(struct sse_link *head)
{
	int n = 0;
	for (struct sse_link *l = head->next; l != head; l = l->next)
		n++;
	return n;
}

static void test_index(void **state)
{
	struct sse_index ix;
	struct sse_sub subs[300];
	char user[32], stream[32];

	assert_int_equal(sse_index_init(&ix), RTW_OK);
	/* 3 streams x 100 subscribers, users u0..u9 (10 subscribers each) */
	for (int i = 0; i < 300; i++) {
		memset(&subs[i], 0, sizeof(subs[i]));
		snprintf(stream, sizeof(stream), "s%d", i % 3);
		snprintf(user, sizeof(user), "u%d", (i / 3) % 10);
		assert_int_equal(sse_index_add(&ix, &subs[i], stream, user), RTW_OK);
	}
	assert_int_equal(ix.n_subs, 300);
	struct sse_stream *st = sse_index_stream(&ix, "s1");
	assert_non_null(st);
	assert_int_equal(st->n_subs, 100);
	assert_int_equal(count(&st->subs), 100);
	struct sse_user *u = sse_index_user(st, "u4");
	assert_non_null(u);
	assert_int_equal(count(&u->subs), 10);
	assert_null(sse_index_user(st, "nobody"));
	assert_null(sse_index_stream(&ix, "s9"));
	/* every user entry of s1 holds only s1's subscribers */
	for (struct sse_link *l = u->subs.next; l != &u->subs; l = l->next) {
		struct sse_sub *s = SSE_CONTAINER(l, struct sse_sub, user_link);
		assert_ptr_equal(s->stream, st);
		assert_ptr_equal(s->user, u);
	}
	/* removal frees empty entries */
	for (int i = 0; i < 300; i++) {
		if (i % 3 == 1 && (i / 3) % 10 == 4)
			sse_index_remove(&ix, &subs[i]);
	}
	st = sse_index_stream(&ix, "s1");
	assert_null(sse_index_user(st, "u4"));
	assert_int_equal(st->n_subs, 90);
	for (int i = 0; i < 300; i++) {
		if (!(i % 3 == 1 && (i / 3) % 10 == 4))
			sse_index_remove(&ix, &subs[i]);
	}
	assert_int_equal(ix.n_subs, 0);
	assert_null(sse_index_stream(&ix, "s0"));
	assert_int_equal(ix.streams.count, 0);
	sse_index_remove(&ix, &subs[0]); /* removing twice is harmless */
	sse_index_free(&ix);
}

/* What presence.c reads: per-stream counts (a user's second connection
 * adds no viewer), the changed list, the gone list for streams whose row
 * was written, presence subscribers, and the top streams by viewers. */
static void test_index_presence(void **state)
{
	struct sse_index ix;
	struct sse_sub subs[12];
	const struct sse_stream *top[3];
	/* stream a: u1 twice, u2; stream b: 5 users; stream c: u1 */
	static const char *const where[12][2] = {{"a", "u1"}, {"a", "u1"}, {"a", "u2"}, {"b", "v1"},
						 {"b", "v2"}, {"b", "v3"}, {"b", "v4"}, {"b", "v5"},
						 {"c", "u1"}, {"d", "w1"}, {"d", "w2"}, {"d", "w2"}};

	(void)state;
	assert_int_equal(sse_index_init(&ix), RTW_OK);
	for (int i = 0; i < 12; i++) {
		memset(&subs[i], 0, sizeof(subs[i]));
		assert_int_equal(sse_index_add(&ix, &subs[i], where[i][0], where[i][1]), RTW_OK);
	}
	struct sse_stream *a = sse_index_stream(&ix, "a");
	assert_int_equal(a->n_subs, 3);
	assert_int_equal(a->users.count, 2);
	assert_int_equal(count(&ix.changed), 4);
	/* top by viewers, ties by connections: b (5 viewers), then a and d
	 * (2 viewers, 3 connections each, in either order), never c */
	assert_int_equal(sse_index_top(&ix, top, 3), 3);
	assert_string_equal(top[0]->id, "b");
	assert_int_equal(top[1]->users.count, 2);
	assert_int_equal(top[2]->users.count, 2);
	assert_int_equal(sse_index_top(&ix, top, 1), 1);
	assert_string_equal(top[0]->id, "b");
	/* as presence.c does after a put: nothing changed, rows written */
	while (!sse_list_empty(&ix.changed)) {
		struct sse_stream *st = SSE_CONTAINER(ix.changed.next, struct sse_stream, changed);
		sse_list_del(&st->changed);
		st->put = true;
	}
	sse_index_want_presence(&ix, &subs[0]);
	sse_index_want_presence(&ix, &subs[0]);
	assert_int_equal(a->n_presence, 1);
	assert_true(a->presence_new);
	assert_int_equal(subs[0].presence, SSE_PRESENCE_WAITING);
	/* u1 leaves a once: a changed, still 2 viewers */
	sse_index_remove(&ix, &subs[0]);
	assert_int_equal(a->n_presence, 0);
	assert_int_equal(a->users.count, 2);
	assert_int_equal(count(&ix.changed), 1);
	assert_ptr_equal(ix.changed.next, &a->changed);
	/* c's last subscriber leaves: its row must go */
	sse_index_remove(&ix, &subs[8]);
	assert_null(sse_index_stream(&ix, "c"));
	assert_int_equal(count(&ix.gone), 1);
	assert_string_equal(SSE_CONTAINER(ix.gone.next, struct sse_gone, link)->id, "c");
	for (int i = 1; i < 12; i++) {
		if (i != 8)
			sse_index_remove(&ix, &subs[i]);
	}
	assert_int_equal(count(&ix.gone), 4);
	assert_int_equal(count(&ix.changed), 0);
	sse_index_free(&ix); /* frees the gone entries */
}

static void test_htab_grows(void **state)
{
	struct sse_htab t;
	struct {
		struct sse_hentry he;
		char key[16];
	} e[1000];

	assert_int_equal(sse_htab_init(&t, 4), RTW_OK);
	for (int i = 0; i < 1000; i++) {
		snprintf(e[i].key, sizeof(e[i].key), "k%d", i);
		e[i].he.key = e[i].key;
		sse_htab_put(&t, &e[i].he, sse_hash(e[i].key));
	}
	assert_true(t.nbuckets >= 1000);
	for (int i = 0; i < 1000; i++)
		assert_ptr_equal(sse_htab_get(&t, e[i].key), &e[i].he);
	sse_htab_del(&t, &e[500].he);
	assert_null(sse_htab_get(&t, "k500"));
	assert_int_equal(t.count, 999);
	sse_htab_free(&t);
}

/* ---- request head ---- */

static int parse(const char *head, size_t max, struct sse_req *req, size_t step)
{
	struct sse_reqparser *p = sse_reqparser_new(max);
	size_t n = strlen(head);
	int r = RTW_AGAIN;

	assert_non_null(p);
	memset(req, 0, sizeof(*req));
	for (size_t off = 0; off < n && r == RTW_AGAIN; off += step)
		r = sse_reqparser_feed(p, head + off, n - off < step ? n - off : step, req);
	sse_reqparser_free(p);
	return r;
}

static void test_req_events(void **state)
{
	static const char head[] =
	    "GET /v1/streams/live-1/events?widget_key=6B9F652A-63fd-47d7-a3bc-418c1096eb8c&last_event_id=5"
	    "&access_token=qtok&user_id=a%20b HTTP/1.1\r\n"
	    "Host: x\r\nOrigin: https://w.example\r\nAccept: text/event-stream\r\n\r\n";
	struct sse_req req;

	/* byte by byte and all at once give the same answer */
	for (size_t step = 1; step <= sizeof(head); step += sizeof(head) - 1) {
		assert_int_equal(parse(head, 8192, &req, step), RTW_OK);
		assert_int_equal(req.route, SSE_ROUTE_EVENTS);
		assert_false(req.bad_path);
		assert_string_equal(req.stream_id, "live-1");
		assert_true(req.has_widget);
		assert_string_equal(req.widget_key, "6B9F652A-63fd-47d7-a3bc-418c1096eb8c");
		assert_true(req.has_last_id);
		assert_string_equal(req.last_id, "5");
		assert_true(req.has_token);
		assert_string_equal(req.token, "qtok");
		assert_true(req.has_user);
		assert_string_equal(req.user_id, "a b");
		assert_true(req.has_origin);
		assert_string_equal(req.origin, "https://w.example");
		assert_null(req.bad_field);
	}
}

static void test_req_headers_win(void **state)
{
	static const char head[] = "GET /v1/streams/s/events?last_event_id=5&access_token=qtok HTTP/1.1\r\n"
				   "Last-Event-ID: 9\r\nauthorization: Bearer htok\r\n\r\n";
	struct sse_req req;

	assert_int_equal(parse(head, 8192, &req, 7), RTW_OK);
	assert_string_equal(req.last_id, "9");
	assert_string_equal(req.token, "htok");
}

static void test_req_routes(void **state)
{
	struct sse_req req;

	assert_int_equal(parse("GET /healthz HTTP/1.1\r\n\r\n", 8192, &req, 100), RTW_OK);
	assert_int_equal(req.route, SSE_ROUTE_HEALTHZ);
	assert_int_equal(parse("GET /metrics HTTP/1.0\r\n\r\n", 8192, &req, 100), RTW_OK);
	assert_int_equal(req.route, SSE_ROUTE_METRICS);
	assert_true(req.http10);
	assert_int_equal(parse("GET /v1/streams/a/b/events HTTP/1.1\r\n\r\n", 8192, &req, 100), RTW_OK);
	assert_int_equal(req.route, SSE_ROUTE_NONE);
	assert_int_equal(parse("GET /v1/streams//events HTTP/1.1\r\n\r\n", 8192, &req, 100), RTW_OK);
	assert_int_equal(req.route, SSE_ROUTE_NONE);
	assert_int_equal(parse("GET /v1/streams/bad%20id/events HTTP/1.1\r\n\r\n", 8192, &req, 100), RTW_OK);
	assert_int_equal(req.route, SSE_ROUTE_EVENTS);
	assert_true(req.bad_path);
	assert_int_equal(parse("POST /v1/streams/s/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 8192, &req, 100),
			 RTW_OK);
	assert_int_equal(req.method, 3 /* HTTP_POST */);
}

static void test_req_limits(void **state)
{
	struct sse_req req;
	char big[12000];

	/* incomplete head: more is needed */
	assert_int_equal(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n", 8192, &req, 5), RTW_AGAIN);
	/* garbage */
	assert_int_equal(parse("\x01\x02 nonsense\r\n\r\n", 8192, &req, 100), RTW_ERROR);
	assert_false(req.too_large);
	/* a head above the limit, fed in pieces or at once */
	snprintf(big, sizeof(big), "GET /healthz HTTP/1.1\r\nX-Pad: %0*d\r\n\r\n", 9000, 0);
	assert_int_equal(parse(big, 8192, &req, 1000), RTW_ERROR);
	assert_true(req.too_large);
	assert_int_equal(parse(big, 8192, &req, sizeof(big)), RTW_ERROR);
	assert_true(req.too_large);
	/* an over-long URL */
	snprintf(big, sizeof(big), "GET /v1/streams/s/events?x=%0*d HTTP/1.1\r\n\r\n", 9000, 0);
	assert_int_equal(parse(big, 8192, &req, 512), RTW_ERROR);
	assert_true(req.too_large);
	/* an over-long token is reported, not truncated */
	snprintf(big, sizeof(big), "GET /v1/streams/s/events HTTP/1.1\r\nAuthorization: Bearer %0*d\r\n\r\n", 5000, 0);
	assert_int_equal(parse(big, 8192, &req, 512), RTW_OK);
	assert_false(req.has_token);
	assert_non_null(req.bad_field);
}

static void test_url_decode(void **state)
{
	char a[] = "a%2Fb+c%41", b[] = "bad%zz", c[] = "nul%00", d[] = "cut%4";

	assert_true(sse_url_decode(a));
	assert_string_equal(a, "a/b cA");
	assert_false(sse_url_decode(b));
	assert_false(sse_url_decode(c));
	assert_false(sse_url_decode(d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_event),
	    cmocka_unit_test(test_frame_refuses_newlines),
	    cmocka_unit_test(test_frame_row),
	    cmocka_unit_test(test_frame_static),
	    cmocka_unit_test(test_frame_response),
	    cmocka_unit_test(test_frame_stream_open),
	    cmocka_unit_test(test_frame_stream_retry),
	    cmocka_unit_test(test_pos_order),
	    cmocka_unit_test(test_index),
	    cmocka_unit_test(test_index_presence),
	    cmocka_unit_test(test_htab_grows),
	    cmocka_unit_test(test_req_events),
	    cmocka_unit_test(test_req_headers_win),
	    cmocka_unit_test(test_req_routes),
	    cmocka_unit_test(test_req_limits),
	    cmocka_unit_test(test_url_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
