/*
 * msg.c: owns the message model of the contract (api-contract.md "The
 * message", "Errors"): checks a decoded message against the contract; no I/O.
 * Also the JSON error shape and the history filters of a request; the
 * standard-format serializer of stored messages is msg_json.c's. Never
 * touches the database or the token (widget registration, author_mismatch
 * and the webhook scheme/host policy are checked by the callers). No
 * globals: safe from any thread.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "msg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_URL_MAX 2048

/*
 * Order of the checks in msg_decode. When a body is wrong in several ways,
 * the first rule that fails is the one reported:
 *   1. invalid_json: empty body, syntax error, invalid UTF-8, duplicate key,
 *      trailing data after the object, a top-level value that is not an
 *      object;
 *   2. unexpected_field: the first key, in body order, that is id,
 *      created_at or not a field of the contract;
 *   3. type: missing or null (missing_field), not a string (invalid_field),
 *      init or an unknown value (unknown_type);
 *   4. stream: malformed path stream (invalid_field "stream_id"), stream_id
 *      not a string (invalid_field), stream_id != path (stream_mismatch);
 *   5. per field, in this order: widget_key, author_id, to_user_id,
 *      message, timestamp (missing_field, invalid_field, and
 *      unexpected_field for to_user_id on another type than private).
 *
 * Choices where the contract is silent:
 *   - null is the same as absent for every field: a required field that is
 *     null is missing_field, an optional one takes its default. The one
 *     exception is to_user_id on a type other than private: the key itself
 *     is refused, even with null, so a misrouted private message is never
 *     broadcast.
 *   - a number jansson cannot hold (1e400, an integer beyond int64) fails
 *     the parse. It is valid JSON, so it is reported as invalid_field of
 *     the top-level key that holds it ("timestamp", "message"...), found by
 *     rescanning the prefix jansson accepted; the rules of step 2 still
 *     apply to that key, later keys are not looked at.
 *   - "\u0000" is accepted by the parser (JSON_ALLOW_NUL) and then refused
 *     as invalid_field of the field that holds it: ids cannot hold NUL, and
 *     PostgreSQL jsonb cannot store it in the payload.
 *   - a webhook URL is checked for syntax only: a scheme, "://", a
 *     non-empty host without "user:password@" (curl would send it as
 *     Basic auth), then printable ASCII without spaces, 2048 bytes at most.
 *     Which schemes and hosts are allowed is the webhook layer's call (403
 *     webhook_target_refused). Header names must be RFC 9110 tokens and
 *     values may not hold CR, LF or other control characters but tab.
 */

/* The fields a client may send, in the contract's table order. */
static const char *const msg__fields[] = {
    "stream_id", "author_id", "to_user_id", "message", "timestamp", "type", "widget_key",
};

static const char *const msg__type_names[] = {
    [MSG_BROADCAST] = "broadcast", [MSG_PRIVATE] = "private", [MSG_WEBHOOK] = "webhook",
    [MSG_REQUEST] = "request",	   [MSG_INIT] = "init",
};

const char *msg_type_name(enum msg_type t)
{
	if ((unsigned)t >= RTW_ARRAY_LEN(msg__type_names))
		return "unknown";
	return msg__type_names[t];
}

void msg_in_clear(struct msg_in *m)
{
	if (m == NULL)
		return;
	json_decref(m->message);
	memset(m, 0, sizeof(*m));
}

/* ---- validators ---- */

static bool msg__is_stream_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == ':' || c == '-';
}

bool msg_valid_stream_id(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (n >= MSG_ID_MAX || !msg__is_stream_char((unsigned char)s[n]))
			return false;
	}
	return n > 0;
}

bool msg_valid_user_id(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= MSG_ID_MAX || c < 0x21 || c > 0x7e || c == '"' || c == '\\')
			return false;
	}
	return n > 0;
}

static int msg__hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool msg_valid_uuid(const char *s, char out[MSG_UUID_LEN + 1])
{
	char tmp[MSG_UUID_LEN + 1];

	if (s == NULL)
		return false;
	for (size_t i = 0; i < MSG_UUID_LEN; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
			tmp[i] = '-';
		} else {
			int v = msg__hexval(c); /* also stops at the NUL of a short string */
			if (v < 0)
				return false;
			tmp[i] = "0123456789abcdef"[v];
		}
	}
	if (s[MSG_UUID_LEN] != '\0')
		return false;
	tmp[MSG_UUID_LEN] = '\0';
	if (out != NULL)
		memcpy(out, tmp, sizeof(tmp));
	return true;
}

bool msg_valid_id(const char *s)
{
	size_t n = 0;

	if (s == NULL || s[0] < '1' || s[0] > '9')
		return false;
	for (; s[n] != '\0'; n++) {
		if (n >= 19 || s[n] < '0' || s[n] > '9')
			return false;
	}
	/* 19 digits: compare with INT64_MAX as text (same length, so lexical order is numeric order). */
	return n < 19 || strcmp(s, "9223372036854775807") <= 0;
}

/* ---- errors ---- */

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence (the bytes themselves are not validated). */
static size_t msg__utf8_cut(const char *s, size_t n)
{
	size_t i = n, back = 0;

	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return n;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return (need == 1 || back + 1 >= need) ? n : i - 1;
}

static void msg__verror(struct msg_error *err, int status, const char *code, const char *field, const char *fmt,
			va_list ap) RTW_PRINTF(5, 0);

static void msg__verror(struct msg_error *err, int status, const char *code, const char *field, const char *fmt,
			va_list ap)
{
	int n;

	err->status = status;
	err->code = code;
	err->field = field;
	n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
	if (n < 0) {
		err->message[0] = '\0';
	} else if ((size_t)n >= sizeof(err->message)) {
		size_t len = msg__utf8_cut(err->message, sizeof(err->message) - 1);
		err->message[len] = '\0';
	}
}

void msg_error_set(struct msg_error *err, int status, const char *code, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	msg__verror(err, status, code, field, fmt, ap);
	va_end(ap);
}

/* A 400 error; field must be static. */
static int msg__bad(struct msg_error *err, const char *code, const char *field, const char *fmt, ...) RTW_PRINTF(4, 5);

static int msg__bad(struct msg_error *err, const char *code, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	msg__verror(err, 400, code, field, fmt, ap);
	va_end(ap);
	return RTW_ERROR;
}

/* 400 unexpected_field naming a key the client chose: prefix + key is
 * copied (truncated) into err->field_buf. */
static int msg__unexpected_key(struct msg_error *err, const char *prefix, const char *key, size_t key_len)
{
	size_t plen = strlen(prefix), room = sizeof(err->field_buf) - 1 - plen;
	size_t n = key_len < room ? key_len : msg__utf8_cut(key, room);

	memcpy(err->field_buf, prefix, plen);
	memcpy(err->field_buf + plen, key, n);
	err->field_buf[plen + n] = '\0';
	msg__bad(err, "unexpected_field", NULL, "unrecognized field \"%s\"", err->field_buf);
	err->field = err->field_buf;
	return RTW_ERROR;
}

/* A json string for s; s with every byte >= 0x80 replaced by '?' when s is
 * not valid UTF-8 (jansson refuses it). */
static json_t *msg__json_text(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j != NULL)
		return j;
	copy = strdup(s);
	if (copy == NULL)
		return NULL;
	for (char *p = copy; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	}
	j = json_string(copy);
	free(copy);
	return j;
}

char *msg_error_json(const struct msg_error *err)
{
	json_t *root = NULL, *inner = NULL;
	char *out = NULL;

	if (err == NULL)
		return NULL;
	inner = json_object();
	root = json_object();
	if (inner == NULL || root == NULL)
		goto done;
	if (json_object_set_new(inner, "code", msg__json_text(err->code != NULL ? err->code : "internal")) != 0)
		goto done;
	if (err->field != NULL && json_object_set_new(inner, "field", msg__json_text(err->field)) != 0)
		goto done;
	if (json_object_set_new(inner, "message", msg__json_text(err->message)) != 0)
		goto done;
	if (json_object_set(root, "error", inner) != 0)
		goto done;
	out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
done:
	json_decref(inner);
	json_decref(root);
	return out;
}

/* ---- msg_decode ---- */

/* The string of v when it is a string without NUL (jansson strings may hold
 * "\u0000" under JSON_ALLOW_NUL); NULL otherwise. */
static const char *msg__cstr(const json_t *v)
{
	const char *s;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	return strlen(s) == json_string_length(v) ? s : NULL;
}

static bool msg__present(const json_t *v)
{
	return v != NULL && !json_is_null(v);
}

/* The first key of obj, in body order, that is not in allowed[0..n); NULL
 * when there is none. Borrowed from obj. */
static const char *msg__first_other_key(const json_t *obj, const char *const *allowed, size_t n)
{
	for (void *it = json_object_iter((json_t *)obj); it != NULL; it = json_object_iter_next((json_t *)obj, it)) {
		const char *key = json_object_iter_key(it);
		size_t i = 0;
		while (i < n && strcmp(key, allowed[i]) != 0)
			i++;
		if (i == n)
			return key;
	}
	return NULL;
}

/* true when a string anywhere in v holds a NUL (jansson already refuses NUL
 * in keys). Depth is bounded by jansson's parser (2048). */
static bool msg__has_nul(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING: return msg__cstr(v) == NULL;
	case JSON_OBJECT:
		for (void *it = json_object_iter((json_t *)v); it != NULL;
		     it = json_object_iter_next((json_t *)v, it)) {
			if (msg__has_nul(json_object_iter_value(it)))
				return true;
		}
		return false;
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (msg__has_nul(json_array_get(v, i)))
				return true;
		}
		return false;
	default: return false;
	}
}

/* Finds the top-level key whose value was being read when jansson stopped
 * at byte pos (the prefix before pos is well-formed JSON as far as it
 * goes). Writes the span of the key's quoted text. */
static bool msg__key_before(const char *body, size_t len, size_t pos, size_t *start, size_t *end)
{
	int depth = 0;
	bool in_str = false, esc = false, want_key = false, is_key = false, found = false;
	size_t s0 = 0;

	if (pos > len)
		pos = len;
	for (size_t i = 0; i < pos; i++) {
		char c = body[i];
		if (in_str) {
			if (esc) {
				esc = false;
			} else if (c == '\\') {
				esc = true;
			} else if (c == '"') {
				in_str = false;
				if (is_key) {
					*start = s0;
					*end = i + 1;
					found = true;
				}
			}
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			is_key = depth == 1 && want_key;
			want_key = false;
			s0 = i;
			break;
		case '{':
		case '[':
			depth++;
			want_key = depth == 1 && c == '{';
			break;
		case '}':
		case ']': depth--; break;
		case ',': want_key = depth == 1; break;
		default: break;
		}
	}
	return found;
}

static int msg__parse_error(const char *body, size_t len, const json_error_t *jerr, struct msg_error *err)
{
	size_t ks, ke;
	json_t *key;

	switch (json_error_code(jerr)) {
	case json_error_invalid_utf8: return msg__bad(err, "invalid_json", NULL, "request body is not valid UTF-8");
	case json_error_duplicate_key:
		return msg__bad(err, "invalid_json", NULL, "duplicate key in json object at line %d, column %d",
				jerr->line, jerr->column);
	case json_error_end_of_input_expected:
		return msg__bad(err, "invalid_json", NULL,
				"unexpected data after the json object at line %d, column %d", jerr->line,
				jerr->column);
	case json_error_premature_end_of_input:
		return msg__bad(err, "invalid_json", NULL, "unexpected end of json input");
	case json_error_null_byte_in_key:
		return msg__bad(err, "invalid_json", NULL, "NUL character in a json object key");
	case json_error_numeric_overflow: break;
	default:
		/* jansson's own text quotes the input (maybe private): keep only the position. */
		return msg__bad(err, "invalid_json", NULL, "invalid json at line %d, column %d", jerr->line,
				jerr->column);
	}

	/* A number too large for jansson: name the top-level key that holds it. */
	if (jerr->position < 0 || !msg__key_before(body, len, (size_t)jerr->position, &ks, &ke))
		return msg__bad(err, "invalid_json", NULL, "number out of range at line %d, column %d", jerr->line,
				jerr->column);
	key = json_loadb(body + ks, ke - ks, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (key == NULL || !json_is_string(key)) {
		json_decref(key);
		return msg__bad(err, "invalid_json", NULL, "invalid json at line %d, column %d", jerr->line,
				jerr->column);
	}
	const char *k = json_string_value(key);
	size_t klen = json_string_length(key);
	const char *field = NULL;
	for (size_t i = 0; i < RTW_ARRAY_LEN(msg__fields) && field == NULL; i++) {
		if (strlen(msg__fields[i]) == klen && strcmp(k, msg__fields[i]) == 0)
			field = msg__fields[i];
	}
	if (klen == 2 && strcmp(k, "id") == 0)
		msg__bad(err, "unexpected_field", "id", "id is set by the server");
	else if (klen == 10 && strcmp(k, "created_at") == 0)
		msg__bad(err, "unexpected_field", "created_at", "created_at is set by the server");
	else if (field != NULL)
		msg__bad(err, "invalid_field", field, "%s holds a number out of range", field);
	else
		msg__unexpected_key(err, "", k, klen);
	json_decref(key);
	return RTW_ERROR;
}

static bool msg__is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Syntax only: scheme "://" authority rest; see the comment at the top. */
static bool msg__valid_url(const json_t *v)
{
	const char *s = msg__cstr(v);
	size_t n, i = 1, auth, host_end;

	if (s == NULL)
		return false;
	n = strlen(s);
	if (n > MSG_URL_MAX)
		return false;
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	while (i < n && (msg__is_stream_char((unsigned char)s[i]) || s[i] == '+') && s[i] != '_' && s[i] != ':')
		i++;
	if (n - i < 4 || memcmp(s + i, "://", 3) != 0)
		return false;
	auth = i + 3;
	for (i = auth; i < n; i++) {
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	}
	/* the authority ends at the path, query or fragment (curl also ends
	 * it at a backslash); it holds a host and no userinfo */
	host_end = auth + strcspn(s + auth, "/?#\\");
	if (memchr(s + auth, '@', host_end - auth) != NULL)
		return false;
	if (s[auth] == '[')
		return host_end - auth > 2 && memchr(s + auth, ']', host_end - auth) != NULL;
	return auth < host_end && s[auth] != ':';
}

static bool msg__valid_header_value(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static int msg__check_webhook(const json_t *v, struct msg_error *err)
{
	static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
	static const char *const keys[] = {"url", "method", "headers", "body"};
	const char *key;
	json_t *url, *method, *headers;

	if (json_is_string(v)) {
		if (!msg__valid_url(v))
			return msg__bad(err, "invalid_field", "message",
					"message of type webhook must be an absolute URL of at most %d characters",
					MSG_URL_MAX);
		return RTW_OK;
	}
	if (!json_is_object(v))
		return msg__bad(err, "invalid_field", "message",
				"message of type webhook must be a URL string or an object with a url");
	key = msg__first_other_key(v, keys, RTW_ARRAY_LEN(keys));
	if (key != NULL)
		return msg__unexpected_key(err, "message.", key, strlen(key));
	url = json_object_get(v, "url");
	if (!msg__present(url))
		return msg__bad(err, "invalid_field", "message",
				"message of type webhook must be a URL string or an object with a url");
	if (!msg__valid_url(url))
		return msg__bad(err, "invalid_field", "message.url",
				"message.url must be an absolute URL of at most %d characters", MSG_URL_MAX);

	method = json_object_get(v, "method");
	if (msg__present(method)) {
		const char *m = msg__cstr(method);
		bool ok = false;
		for (size_t i = 0; m != NULL && i < RTW_ARRAY_LEN(methods); i++)
			ok = ok || strcmp(m, methods[i]) == 0;
		if (!ok)
			return msg__bad(err, "invalid_field", "message.method",
					"message.method must be GET, POST, PUT, PATCH or DELETE");
	}

	headers = json_object_get(v, "headers");
	if (msg__present(headers)) {
		if (!json_is_object(headers))
			return msg__bad(err, "invalid_field", "message.headers",
					"message.headers must be an object of strings");
		for (void *it = json_object_iter(headers); it != NULL; it = json_object_iter_next(headers, it)) {
			const char *name = json_object_iter_key(it), *hv = msg__cstr(json_object_iter_value(it));
			bool name_ok = name[0] != '\0';
			for (const char *p = name; *p != '\0'; p++)
				name_ok = name_ok && msg__is_tchar((unsigned char)*p);
			if (!name_ok)
				return msg__bad(err, "invalid_field", "message.headers",
						"message.headers has an invalid header name");
			if (hv == NULL || !msg__valid_header_value(hv))
				return msg__bad(err, "invalid_field", "message.headers",
						"message.headers values must be strings without control characters");
		}
	}
	if (msg__has_nul(v))
		return msg__bad(err, "invalid_field", "message", "message must not contain NUL characters");
	return RTW_OK;
}

static const char *const msg__filter_keys[] = {"since_id", "before_id",	     "order",
					       "limit",	   "from_timestamp", "to_timestamp"};

static int msg__check_request(const json_t *v, struct msg_error *err)
{
	const char *key;

	if (!json_is_object(v))
		return msg__bad(err, "invalid_field", "message",
				"message of type request must be an object of filters");
	key = msg__first_other_key(v, msg__filter_keys, RTW_ARRAY_LEN(msg__filter_keys));
	if (key != NULL)
		return msg__unexpected_key(err, "message.", key, strlen(key));
	return RTW_OK;
}

/* Reads an optional id string (author_id, to_user_id) into dst. */
static int msg__user_id(const json_t *v, const char *field, char dst[MSG_ID_MAX + 1], struct msg_error *err)
{
	const char *s = msg__cstr(v);

	if (s == NULL || !msg_valid_user_id(s))
		return msg__bad(err, "invalid_field", field,
				"%s must be 1 to %d printable ASCII characters, without spaces, quotes or backslashes",
				field, MSG_ID_MAX);
	memcpy(dst, s, strlen(s) + 1);
	return RTW_OK;
}

static int msg__check_fields(json_t *root, const char *path_stream, struct msg_in *out, struct msg_error *err)
{
	const char *key, *s, *tname;
	json_t *v;

	/* 2. keys */
	key = msg__first_other_key(root, msg__fields, RTW_ARRAY_LEN(msg__fields));
	if (key != NULL && strcmp(key, "id") == 0)
		return msg__bad(err, "unexpected_field", "id", "id is set by the server");
	if (key != NULL && strcmp(key, "created_at") == 0)
		return msg__bad(err, "unexpected_field", "created_at", "created_at is set by the server");
	if (key != NULL)
		return msg__unexpected_key(err, "", key, strlen(key));

	/* 3. type */
	v = json_object_get(root, "type");
	if (!msg__present(v))
		return msg__bad(err, "missing_field", "type", "type is required");
	if (!json_is_string(v))
		return msg__bad(err, "invalid_field", "type", "type must be a string");
	s = msg__cstr(v);
	if (s != NULL && strcmp(s, "broadcast") == 0)
		out->type = MSG_BROADCAST;
	else if (s != NULL && strcmp(s, "private") == 0)
		out->type = MSG_PRIVATE;
	else if (s != NULL && strcmp(s, "webhook") == 0)
		out->type = MSG_WEBHOOK;
	else if (s != NULL && strcmp(s, "request") == 0)
		out->type = MSG_REQUEST;
	else if (s != NULL && strcmp(s, "init") == 0)
		return msg__bad(err, "unknown_type", "type", "type init is sent by the server only");
	else
		return msg__bad(err, "unknown_type", "type", "type must be broadcast, private, webhook or request");
	tname = msg_type_name(out->type);

	/* 4. stream */
	if (!msg_valid_stream_id(path_stream))
		return msg__bad(err, "invalid_field", "stream_id",
				"stream id must be 1 to %d characters of A-Z, a-z, 0-9, \".\", \"_\", \":\" and \"-\"",
				MSG_ID_MAX);
	v = json_object_get(root, "stream_id");
	if (msg__present(v)) {
		s = msg__cstr(v);
		if (s == NULL)
			return msg__bad(err, "invalid_field", "stream_id", "stream_id must be a string");
		if (strcmp(s, path_stream) != 0)
			return msg__bad(err, "stream_mismatch", "stream_id",
					"stream_id does not match the stream of the URL");
	}
	memcpy(out->stream_id, path_stream, strlen(path_stream) + 1);

	/* 5. widget_key */
	v = json_object_get(root, "widget_key");
	if (!msg__present(v))
		return msg__bad(err, "missing_field", "widget_key", "widget_key is required");
	s = msg__cstr(v);
	if (s == NULL || !msg_valid_uuid(s, out->widget_key))
		return msg__bad(err, "invalid_field", "widget_key", "widget_key must be a UUID");

	/* author_id */
	v = json_object_get(root, "author_id");
	if (msg__present(v)) {
		if (msg__user_id(v, "author_id", out->author_id, err) != RTW_OK)
			return RTW_ERROR;
		out->has_author = true;
	}

	/* to_user_id */
	v = json_object_get(root, "to_user_id");
	if (out->type == MSG_PRIVATE) {
		if (!msg__present(v))
			return msg__bad(err, "missing_field", "to_user_id", "to_user_id is required for type private");
		if (msg__user_id(v, "to_user_id", out->to_user_id, err) != RTW_OK)
			return RTW_ERROR;
		out->has_to_user = true;
	} else if (v != NULL) {
		return msg__bad(err, "unexpected_field", "to_user_id", "to_user_id is not allowed for type %s", tname);
	}

	/* message */
	v = json_object_get(root, "message");
	switch (out->type) {
	case MSG_BROADCAST:
	case MSG_PRIVATE:
		if (!msg__present(v))
			return msg__bad(err, "missing_field", "message", "message is required for type %s", tname);
		if (msg__has_nul(v))
			return msg__bad(err, "invalid_field", "message", "message must not contain NUL characters");
		break;
	case MSG_WEBHOOK:
		if (!msg__present(v))
			return msg__bad(err, "missing_field", "message", "message is required for type webhook");
		if (msg__check_webhook(v, err) != RTW_OK)
			return RTW_ERROR;
		break;
	default: /* MSG_REQUEST: optional filters, decoded by msg_filter_decode */
		if (!msg__present(v)) {
			v = NULL;
			break;
		}
		if (msg__check_request(v, err) != RTW_OK)
			return RTW_ERROR;
		break;
	}

	/* timestamp */
	json_t *ts = json_object_get(root, "timestamp");
	if (!msg__present(ts)) {
		if (out->type == MSG_BROADCAST || out->type == MSG_PRIVATE)
			return msg__bad(err, "missing_field", "timestamp", "timestamp is required for type %s", tname);
		out->timestamp = 0;
	} else {
		double d;
		if (!json_is_number(ts))
			return msg__bad(err, "invalid_field", "timestamp", "timestamp must be a number");
		d = json_number_value(ts);
		if (!isfinite(d) || d < 0)
			return msg__bad(err, "invalid_field", "timestamp", "timestamp must be a finite number >= 0");
		out->timestamp = d == 0 ? 0 : d; /* no -0 */
	}

	out->message = json_incref(v);
	return RTW_OK;
}

int msg_decode(const char *body, size_t len, const char *path_stream, struct msg_in *out, struct msg_error *err)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	memset(out, 0, sizeof(*out));
	if (body == NULL || len == 0)
		return msg__bad(err, "invalid_json", NULL, "request body is empty");
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (root == NULL)
		return msg__parse_error(body, len, &jerr, err);
	if (!json_is_object(root)) {
		json_decref(root);
		return msg__bad(err, "invalid_json", NULL, "request body must be a json object");
	}
	rc = msg_decode_value(root, path_stream, out, err);
	json_decref(root);
	return rc;
}

int msg_decode_value(json_t *root, const char *path_stream, struct msg_in *out, struct msg_error *err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(root))
		return msg__bad(err, "invalid_json", NULL, "a message must be a json object");
	rc = msg__check_fields(root, path_stream, out, err);
	if (rc != RTW_OK)
		msg_in_clear(out);
	return rc;
}

/* ---- msg_filter_decode ---- */

static int msg__filter_ts(const json_t *v, const char *field, bool *has, double *dst, struct msg_error *err)
{
	double d;

	if (!msg__present(v))
		return RTW_OK;
	if (!json_is_number(v))
		return msg__bad(err, "invalid_field", field, "%s must be a number", field);
	d = json_number_value(v);
	if (!isfinite(d) || d < 0)
		return msg__bad(err, "invalid_field", field, "%s must be a finite number >= 0", field);
	*has = true;
	*dst = d == 0 ? 0 : d;
	return RTW_OK;
}

/* A position filter (since_id, before_id): a message id as a decimal
 * string, or a positive JSON integer converted to its decimal text. */
static int msg__filter_id(const json_t *v, const char *field, bool *has, char dst[24], struct msg_error *err)
{
	const char *s = msg__cstr(v);

	if (!msg__present(v))
		return RTW_OK;
	if (json_is_integer(v) && json_integer_value(v) >= 1)
		snprintf(dst, 24, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (s != NULL && msg_valid_id(s))
		memcpy(dst, s, strlen(s) + 1);
	else
		return msg__bad(err, "invalid_field", field, "%s must be a message id", field);
	*has = true;
	return RTW_OK;
}

/*
 * since_id and before_id are decimal strings (as ids are in the contract);
 * a positive JSON integer is accepted too, since clients may well send the
 * number. order is "asc" or "desc". Null is the same as absent for every
 * filter. Whether the ids are messages of the stream is the caller's to
 * check (it needs the database).
 */
int msg_filter_decode(const json_t *message, int default_limit, int max_limit, struct msg_filter *out,
		      struct msg_error *err)
{
	const char *key;
	json_t *v;

	memset(out, 0, sizeof(*out));
	out->limit = default_limit;
	if (!msg__present(message))
		return RTW_OK;
	if (!json_is_object(message))
		return msg__bad(err, "invalid_field", "message",
				"message of type request must be an object of filters");
	key = msg__first_other_key(message, msg__filter_keys, RTW_ARRAY_LEN(msg__filter_keys));
	if (key != NULL)
		return msg__unexpected_key(err, "", key, strlen(key));

	if (msg__filter_id(json_object_get(message, "since_id"), "since_id", &out->has_since, out->since_id, err) !=
	    RTW_OK)
		return RTW_ERROR;
	if (msg__filter_id(json_object_get(message, "before_id"), "before_id", &out->has_before, out->before_id, err) !=
	    RTW_OK)
		return RTW_ERROR;

	v = json_object_get(message, "order");
	if (msg__present(v)) {
		const char *s = msg__cstr(v);
		if (s != NULL && strcmp(s, "desc") == 0)
			out->desc = true;
		else if (s == NULL || strcmp(s, "asc") != 0)
			return msg__bad(err, "invalid_field", "order", "order must be \"asc\" or \"desc\"");
	}

	v = json_object_get(message, "limit");
	if (msg__present(v)) {
		json_int_t l = json_is_integer(v) ? json_integer_value(v) : 0;
		if (l < 1 || l > max_limit)
			return msg__bad(err, "invalid_field", "limit", "limit must be an integer from 1 to %d",
					max_limit);
		out->limit = (int)l;
	}

	if (msg__filter_ts(json_object_get(message, "from_timestamp"), "from_timestamp", &out->has_from, &out->from_ts,
			   err) != RTW_OK)
		return RTW_ERROR;
	if (msg__filter_ts(json_object_get(message, "to_timestamp"), "to_timestamp", &out->has_to, &out->to_ts, err) !=
	    RTW_OK)
		return RTW_ERROR;
	if (out->has_from && out->has_to && out->from_ts > out->to_ts)
		return msg__bad(err, "invalid_field", "to_timestamp",
				"to_timestamp must not be less than from_timestamp");
	return RTW_OK;
}
