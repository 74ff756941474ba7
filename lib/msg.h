/*
 * msg.h: the message model of the contract (doc: ../shared/api-contract.md
 * "The message"): decoding and validating a client message with jansson,
 * the JSON error shape, history filters (msg.c), and serializing a stored
 * message in the standard format (msg_json.c). Pure code: no I/O, no
 * globals, thread-safe.
 */
#ifndef RTW_MSG_H
#define RTW_MSG_H

#include "rtw.h"

#include <jansson.h>

#define MSG_ID_MAX 128 /* stream, author and user ids */
#define MSG_UUID_LEN 36
#define MSG_IDEM_KEY_MAX 128

enum msg_type { MSG_BROADCAST, MSG_PRIVATE, MSG_WEBHOOK, MSG_REQUEST, MSG_INIT };

/* Why a message (or request) was refused: the HTTP status, the contract's
 * error code, the field at fault (NULL when none) and a short lowercase
 * sentence. code points to a static string; field to a static string or,
 * when it names a key the client invented ("foo", "message.foo"), to
 * field_buf of the same struct (so a copy of the struct borrows from the
 * original: keep the original alive, or use the copy's own field_buf). */
struct msg_error {
	int status;
	const char *code;
	const char *field;
	char message[256];
	char field_buf[MSG_ID_MAX + 16]; /* UTF-8, truncated on a character boundary */
};

/* A decoded, validated client message. */
struct msg_in {
	enum msg_type type;
	char stream_id[MSG_ID_MAX + 1];
	bool has_author;
	char author_id[MSG_ID_MAX + 1];
	bool has_to_user;
	char to_user_id[MSG_ID_MAX + 1];
	json_t *message;		   /* owned reference; NULL only for a request without filters */
	double timestamp;		   /* 0 when absent (request, webhook) */
	char widget_key[MSG_UUID_LEN + 1]; /* canonical lowercase */
};

/* Decodes body (len bytes) as one message posted to the stream path_stream
 * and checks every field rule of the contract. RTW_OK fills *out (release
 * with msg_in_clear); RTW_ERROR fills *err. Does not check what needs the
 * database or the token (widget registration, author_mismatch). */
int msg_decode(const char *body, size_t len, const char *path_stream, struct msg_in *out,
	       struct msg_error *err) RTW_WUR;

/* The checks of msg_decode from step 2 on, for a message already parsed
 * (one element of a batch, parsed with JSON_REJECT_DUPLICATES |
 * JSON_ALLOW_NUL): root is borrowed; a value that is not an object is
 * invalid_json. */
int msg_decode_value(json_t *root, const char *path_stream, struct msg_in *out, struct msg_error *err) RTW_WUR;

void msg_in_clear(struct msg_in *m);

const char *msg_type_name(enum msg_type t);

/* Field validators shared with the HTTP layers. */
bool msg_valid_stream_id(const char *s);
bool msg_valid_user_id(const char *s);
/* Accepts a UUID in any case; writes the canonical lowercase form. */
bool msg_valid_uuid(const char *s, char out[MSG_UUID_LEN + 1]);
/* A decimal message or job id: 1-19 digits, no sign, no leading zero. */
bool msg_valid_id(const char *s);

/* Fills *err; fmt is printf-style for err->message. */
void msg_error_set(struct msg_error *err, int status, const char *code, const char *field, const char *fmt, ...)
    RTW_PRINTF(5, 6);

/* {"error":{"code":..,"field":..,"message":..}} as a malloc'd compact
 * string (caller frees); field is left out when NULL. */
char *msg_error_json(const struct msg_error *err) RTW_WUR;

/* History filters of a request message (or the GET query, converted to a
 * JSON object by the caller). message may be NULL (no filters). */
struct msg_filter {
	bool has_since;
	char since_id[24];
	bool has_before;
	char before_id[24];
	bool desc; /* order "desc": newest first */
	int limit;
	bool has_from;
	double from_ts;
	bool has_to;
	double to_ts;
};

int msg_filter_decode(const json_t *message, int default_limit, int max_limit, struct msg_filter *out,
		      struct msg_error *err) RTW_WUR;

/* A stored message as text columns straight from PostgreSQL. message_json
 * is the payload's JSON text (jsonb::text), timestamp the float8 text
 * ("2365.123"); to_user_id may be NULL. */
struct msg_stored {
	const char *id;
	const char *stream_id;
	const char *author_id;
	const char *to_user_id;
	const char *message_json;
	const char *timestamp;
	const char *type;
	const char *widget_key;
	const char *created_at; /* RFC 3339 UTC with microseconds */
};

/* Serializes in the standard format as one compact JSON object, without a
 * trailing newline. Returns a malloc'd string (caller frees) and its
 * length in *len, or NULL when a field is not valid JSON text. */
char *msg_serialize(const struct msg_stored *m, size_t *len) RTW_WUR;

#endif
