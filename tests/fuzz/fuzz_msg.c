/*
 * fuzz_msg.c: libFuzzer driver for lib/msg.c and lib/msg_json.c. Feeds
 * arbitrary bodies to msg_decode, the decoded filters and arbitrary JSON
 * to msg_filter_decode,
 * and decoded messages and raw pieces to msg_serialize, and checks their
 * invariants (abort() on a violation). Built with -DRTW_LIBFUZZER it is a
 * libFuzzer target; without it, main() replays the files and directories
 * named on the command line (the committed corpus, under make check).
 *
 * Input: byte 0 picks the path stream, the rest is the body.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_msg: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static const char *const streams[] = {
    "1",
    "live:42",
    "a.b_c-D",
    "",
    "bad stream",
    "s/../x",
    "s123456789abcdefxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxx",
    "s123456789abcdefxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxx",
};

static bool is_400_code(const char *c)
{
	static const char *const codes[] = {"invalid_json",	"invalid_field", "missing_field",
					    "unexpected_field", "unknown_type",	 "stream_mismatch"};
	for (size_t i = 0; i < RTW_ARRAY_LEN(codes); i++) {
		if (strcmp(c, codes[i]) == 0)
			return true;
	}
	return false;
}

static void check_error(const struct msg_error *e)
{
	char *j;
	json_t *parsed;

	CHECK(e->status == 400);
	CHECK(e->code != NULL && is_400_code(e->code));
	CHECK(e->message[0] != '\0' && strlen(e->message) < sizeof(e->message));
	j = msg_error_json(e);
	CHECK(j != NULL);
	parsed = json_loads(j, 0, NULL);
	CHECK(parsed != NULL);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(parsed, "error"), "code")), e->code) == 0);
	json_decref(parsed);
	free(j);
}

static void check_filter(const json_t *message)
{
	struct msg_filter f;
	struct msg_error e;

	if (msg_filter_decode(message, 100, 1000, &f, &e) != RTW_OK) {
		check_error(&e);
		return;
	}
	CHECK(f.limit >= 1 && f.limit <= 1000);
	CHECK(!f.has_since || msg_valid_id(f.since_id));
	CHECK(!f.has_before || msg_valid_id(f.before_id));
	CHECK(!f.desc || json_is_string(json_object_get(message, "order")));
	CHECK(!f.has_from || (isfinite(f.from_ts) && f.from_ts >= 0));
	CHECK(!f.has_to || (isfinite(f.to_ts) && f.to_ts >= 0));
	CHECK(!(f.has_from && f.has_to) || f.from_ts <= f.to_ts);
}

/* Serializes a decoded message as the SSE fan-out would, and checks that
 * the output is JSON that gives every field back. */
static void check_serialize_decoded(const struct msg_in *m)
{
	struct msg_stored st;
	char ts[40], *payload, *out;
	size_t len;
	json_t *j;

	payload =
	    m->message != NULL ? json_dumps(m->message, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ALLOW_NUL) : strdup("{}");
	CHECK(payload != NULL);
	snprintf(ts, sizeof(ts), "%.17g", m->timestamp);
	st = (struct msg_stored){.id = "1",
				 .stream_id = m->stream_id,
				 .author_id = m->has_author ? m->author_id : "anon",
				 .to_user_id = m->has_to_user ? m->to_user_id : NULL,
				 .message_json = payload,
				 .timestamp = ts,
				 .type = msg_type_name(m->type),
				 .widget_key = m->widget_key,
				 .created_at = "2026-11-27T22:00:00.123456Z"};
	out = msg_serialize(&st, &len);
	CHECK(out != NULL);
	CHECK(strlen(out) == len);
	CHECK(memchr(out, '\n', len) == NULL);
	j = json_loadb(out, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	CHECK(j != NULL);
	CHECK(strcmp(json_string_value(json_object_get(j, "stream_id")), m->stream_id) == 0);
	CHECK(strcmp(json_string_value(json_object_get(j, "widget_key")), m->widget_key) == 0);
	CHECK((json_object_get(j, "to_user_id") != NULL) == m->has_to_user);
	if (m->message != NULL)
		CHECK(json_equal(json_object_get(j, "message"), m->message));
	CHECK(json_number_value(json_object_get(j, "timestamp")) == m->timestamp);
	json_decref(j);
	free(out);
	free(payload);
}

static void check_decoded(const struct msg_in *m)
{
	char canon[MSG_UUID_LEN + 1];

	CHECK(m->type != MSG_INIT);
	CHECK(msg_valid_stream_id(m->stream_id));
	CHECK(msg_valid_uuid(m->widget_key, canon) && strcmp(canon, m->widget_key) == 0);
	CHECK(!m->has_author || msg_valid_user_id(m->author_id));
	CHECK(m->has_to_user == (m->type == MSG_PRIVATE));
	CHECK(!m->has_to_user || msg_valid_user_id(m->to_user_id));
	CHECK(isfinite(m->timestamp) && m->timestamp >= 0 && !signbit(m->timestamp));
	CHECK(m->message != NULL || m->type == MSG_REQUEST);
	CHECK(m->message == NULL || !json_is_null(m->message));
	if (m->type == MSG_REQUEST)
		check_filter(m->message);
	check_serialize_decoded(m);
}

/* msg_serialize on raw pieces of the input: never crashes, and gives valid
 * JSON whenever the pieces are. */
static void check_serialize_raw(const char *text, size_t size)
{
	/* pieces separated by '\x01': message_json, timestamp, author_id, to_user_id */
	char *copy = malloc(size + 1), *piece[4] = {"{}", "0", "a", NULL}, *p, *out;
	size_t n = 0, len;
	json_t *j, *ts, *a, *t;

	CHECK(copy != NULL);
	memcpy(copy, text, size);
	copy[size] = '\0';
	p = copy;
	while (n < 4) {
		char *sep = strchr(p, '\x01');
		piece[n++] = p;
		if (sep == NULL)
			break;
		*sep = '\0';
		p = sep + 1;
	}
	struct msg_stored st = {.id = "9",
				.stream_id = "s",
				.author_id = piece[2],
				.to_user_id = piece[3],
				.message_json = piece[0],
				.timestamp = piece[1],
				.type = "broadcast",
				.widget_key = "6b9f652a-63fd-47d7-a3bc-418c1096eb8c",
				.created_at = "2026-11-27T22:00:00.123456Z"};
	out = msg_serialize(&st, &len);
	j = json_loads(piece[0], JSON_DECODE_ANY, NULL);
	ts = json_loads(piece[1], JSON_DECODE_ANY, NULL);
	a = json_string(piece[2]);
	t = piece[3] != NULL ? json_string(piece[3]) : NULL;
	if (out != NULL) {
		json_t *o;
		CHECK(strlen(out) == len);
		CHECK(memchr(out, '\n', len) == NULL);
		o = json_loadb(out, len, JSON_ALLOW_NUL, NULL);
		/* message_json gets a cheap structural check, not a parse: the
		 * output is valid JSON when the pieces are (and jansson can
		 * read it when it can read the timestamp: 1e999 is valid JSON) */
		if (j != NULL && ts != NULL)
			CHECK(o != NULL);
		if (o != NULL) {
			CHECK(strcmp(json_string_value(json_object_get(o, "author_id")), piece[2]) == 0);
			if (j != NULL)
				CHECK(json_equal(json_object_get(o, "message"), j));
		}
		json_decref(o);
		free(out);
	} else if (j != NULL && json_is_number(ts) && a != NULL && (piece[3] == NULL || t != NULL)) {
		/* valid pieces serialize, unless the timestamp text has the
		 * white space around it that jansson skips */
		size_t tl = strlen(piece[1]);
		CHECK(strspn(piece[1], " \t\r\n") > 0 || strchr(" \t\r\n", piece[1][tl - 1]) != NULL);
	}
	json_decref(a);
	json_decref(t);
	json_decref(ts);
	json_decref(j);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_in m;
	struct msg_error e;
	const char *body;
	json_t *j;

	if (size < 1)
		return 0;
	body = (const char *)data + 1;
	size--;

	if (msg_decode(body, size, streams[data[0] % RTW_ARRAY_LEN(streams)], &m, &e) == RTW_OK) {
		check_decoded(&m);
		msg_in_clear(&m);
		CHECK(m.message == NULL);
	} else {
		check_error(&e);
		CHECK(m.message == NULL);
	}

	/* the same bytes as filters (any JSON value, as the GET layer might pass) */
	j = json_loadb(body, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (j != NULL) {
		check_filter(j);
		json_decref(j);
	}

	check_serialize_raw(body, size);

	/* the validators on the raw text */
	if (size < 512) {
		char s[512], u[MSG_UUID_LEN + 1];
		memcpy(s, body, size);
		s[size] = '\0';
		(void)msg_valid_stream_id(s);
		(void)msg_valid_user_id(s);
		if (msg_valid_uuid(s, u))
			CHECK(strlen(u) == MSG_UUID_LEN);
		if (msg_valid_id(s))
			CHECK(strtoull(s, NULL, 10) <= INT64_MAX && s[0] != '0');
	}
	return 0;
}

#define FUZZ_NAME "fuzz_msg"
#include "replay.h"
