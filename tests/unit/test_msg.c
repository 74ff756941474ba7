/*
 * test_msg.c: unit tests of lib/msg.c and lib/msg_json.c (the message
 * model): one table of client bodies run through msg_decode (and its
 * msg_decode_value for a parsed batch element), one of
 * history filters, the field validators, the JSON error shape and the
 * standard-format serializer.
 * Pure code; no database, no network.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"

#define WK "6b9f652a-63fd-47d7-a3bc-418c1096eb8c"
#define WK_UPPER "6B9F652A-63FD-47D7-A3BC-418C1096EB8C"
/* A valid broadcast minus the message (bodies write ' for "). */
#define BC "'type':'broadcast','widget_key':'" WK "','timestamp':1.5"
#define PV "'type':'private','widget_key':'" WK "','timestamp':2,'to_user_id':'u3'"
#define WH "'type':'webhook','widget_key':'" WK "'"
#define RQ "'type':'request','widget_key':'" WK "'"
#define X16 "xxxxxxxxxxxxxxxx"
#define X128 X16 X16 X16 X16 X16 X16 X16 X16
#define S128 "s123456789abcdef" X16 X16 X16 X16 X16 X16 X16

/* One msg_decode case. code NULL: must succeed, then type, author (NULL:
 * none), to_user (NULL: none), wk (NULL: WK), ts and message (its compact
 * dump, ' for "; NULL: no message) are checked. Otherwise code and field
 * (NULL: no field) must match exactly, and errmsg when given. */
struct dcase {
	const char *name;
	const char *path; /* NULL: "1" */
	const char *body; /* ' stands for " unless raw */
	bool raw;
	size_t len; /* 0: strlen(body) */
	const char *code;
	const char *field;
	const char *errmsg;
	enum msg_type type;
	const char *author;
	const char *to_user;
	const char *wk;
	double ts;
	const char *message;
};

#define OK(n, b, t, m, tsv)                                                                                            \
	{                                                                                                              \
		.name = n, .body = b, .type = t, .message = m, .ts = tsv                                               \
	}
#define BAD(n, b, c, f)                                                                                                \
	{                                                                                                              \
		.name = n, .body = b, .code = c, .field = f                                                            \
	}

static const struct dcase dcases[] = {
    /* invalid_json */
    {.name = "empty body", .body = "", .code = "invalid_json", .errmsg = "request body is empty"},
    BAD("whitespace only", "  \n", "invalid_json", NULL),
    {.name = "array body", .body = "[1]", .code = "invalid_json", .errmsg = "request body must be a json object"},
    BAD("string body", "'x'", "invalid_json", NULL),
    BAD("number body", "1", "invalid_json", NULL),
    BAD("null body", "null", "invalid_json", NULL),
    BAD("trailing garbage", "{" BC ",'message':1}x", "invalid_json", NULL),
    BAD("two objects", "{" BC ",'message':1}{}", "invalid_json", NULL),
    BAD("two objects on two lines", "{" BC ",'message':1}\n{}", "invalid_json", NULL),
    BAD("duplicate key", "{" BC ",'type':'broadcast','message':1}", "invalid_json", NULL),
    BAD("duplicate key nested", "{" BC ",'message':{'a':1,'a':2}}", "invalid_json", NULL),
    {.name = "invalid utf-8",
     .body = "{\"type\":\"broadcast\",\"message\":\"\xff\"}",
     .raw = true,
     .code = "invalid_json",
     .errmsg = "request body is not valid UTF-8"},
    {.name = "overlong utf-8", .body = "{\"message\":\"\xc0\xaf\"}", .raw = true, .code = "invalid_json"},
    BAD("lone surrogate", "{" BC ",'message':'\\ud800'}", "invalid_json", NULL),
    BAD("truncated", "{'type':", "invalid_json", NULL),
    {.name = "single quotes", .body = "{'type':'broadcast'}", .raw = true, .code = "invalid_json"},
    BAD("trailing comma", "{" BC ",'message':1,}", "invalid_json", NULL),
    {.name = "raw NUL byte", .body = "{\"type\":\"broadcast\"}\0", .raw = true, .len = 21, .code = "invalid_json"},
    {.name = "byte order mark", .body = "\xef\xbb\xbf{}", .raw = true, .code = "invalid_json"},
    BAD("NUL in a key", "{'a\\u0000':1}", "invalid_json", NULL),
    /* unexpected_field */
    {.name = "client id",
     .body = "{" BC ",'message':1,'id':'4'}",
     .code = "unexpected_field",
     .field = "id",
     .errmsg = "id is set by the server"},
    BAD("client created_at", "{" BC ",'message':1,'created_at':'2026-01-01T00:00:00Z'}", "unexpected_field",
	"created_at"),
    {.name = "unknown key",
     .body = "{" BC ",'message':1,'foo':1}",
     .code = "unexpected_field",
     .field = "foo",
     .errmsg = "unrecognized field \"foo\""},
    BAD("first offending key in body order", "{'foo':1,'id':'1'," BC ",'message':1}", "unexpected_field", "foo"),
    BAD("key names are case-sensitive", "{'Type':'broadcast'}", "unexpected_field", "Type"),
    BAD("unexpected before missing type", "{'id':'1'}", "unexpected_field", "id"),
    BAD("unexpected before invalid path", "{'zzz':1}", "unexpected_field", "zzz"),
    {.name = "to_user_id on broadcast",
     .body = "{" BC ",'message':1,'to_user_id':'u3'}",
     .code = "unexpected_field",
     .field = "to_user_id",
     .errmsg = "to_user_id is not allowed for type broadcast"},
    BAD("to_user_id null on broadcast", "{" BC ",'message':1,'to_user_id':null}", "unexpected_field", "to_user_id"),
    BAD("to_user_id on webhook", "{" WH ",'message':'https://a.example','to_user_id':'u3'}", "unexpected_field",
	"to_user_id"),
    BAD("to_user_id on request", "{" RQ ",'to_user_id':'u3'}", "unexpected_field", "to_user_id"),
    BAD("unknown key in webhook object", "{" WH ",'message':{'url':'https://a.example','foo':1}}", "unexpected_field",
	"message.foo"),
    BAD("unknown key in request filters", "{" RQ ",'message':{'limit':1,'foo':1}}", "unexpected_field", "message.foo"),
    /* type */
    {.name = "type missing",
     .body = "{'widget_key':'" WK "'}",
     .code = "missing_field",
     .field = "type",
     .errmsg = "type is required"},
    BAD("type null", "{'type':null,'widget_key':'" WK "'}", "missing_field", "type"),
    BAD("type number", "{'type':1}", "invalid_field", "type"),
    BAD("type array", "{'type':['broadcast']}", "invalid_field", "type"),
    BAD("type init", "{'type':'init','widget_key':'" WK "'}", "unknown_type", "type"),
    BAD("type foo", "{'type':'foo'}", "unknown_type", "type"),
    BAD("type is case-sensitive", "{'type':'Broadcast'}", "unknown_type", "type"),
    BAD("type with NUL", "{'type':'broadcast\\u0000'}", "unknown_type", "type"),
    {.name = "type before path stream",
     .path = "bad stream",
     .body = "{'message':1}",
     .code = "missing_field",
     .field = "type"},
    /* stream */
    {.name = "stream_mismatch",
     .path = "7",
     .body = "{" BC ",'message':1,'stream_id':'8'}",
     .code = "stream_mismatch",
     .field = "stream_id"},
    {.name = "stream_id equal to path",
     .path = "live:7",
     .body = "{" BC ",'message':1,'stream_id':'live:7'}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5},
    BAD("stream_id number", "{" BC ",'message':1,'stream_id':1}", "invalid_field", "stream_id"),
    OK("stream_id null", "{" BC ",'message':1,'stream_id':null}", MSG_BROADCAST, "1", 1.5),
    {.name = "path stream empty",
     .path = "",
     .body = "{" BC ",'message':1}",
     .code = "invalid_field",
     .field = "stream_id"},
    {.name = "path stream with slash",
     .path = "a/b",
     .body = "{" BC ",'message':1}",
     .code = "invalid_field",
     .field = "stream_id"},
    {.name = "path stream 128 chars",
     .path = S128,
     .body = "{" BC ",'message':1}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5},
    {.name = "path stream 129 chars",
     .path = S128 "x",
     .body = "{" BC ",'message':1}",
     .code = "invalid_field",
     .field = "stream_id"},
    {.name = "path stream all classes",
     .path = "Az09._:-",
     .body = "{" BC ",'message':1}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5},
    {.name = "invalid path before mismatch",
     .path = "a b",
     .body = "{" BC ",'message':1,'stream_id':'x'}",
     .code = "invalid_field",
     .field = "stream_id"},
    BAD("mismatch before widget_key", "{'type':'broadcast','stream_id':'2'}", "stream_mismatch", "stream_id"),
    /* widget_key */
    {.name = "widget_key missing",
     .body = "{'type':'broadcast','timestamp':1,'message':1}",
     .code = "missing_field",
     .field = "widget_key",
     .errmsg = "widget_key is required"},
    BAD("widget_key null", "{'type':'broadcast','widget_key':null,'timestamp':1,'message':1}", "missing_field",
	"widget_key"),
    BAD("widget_key number", "{'type':'broadcast','widget_key':1,'timestamp':1,'message':1}", "invalid_field",
	"widget_key"),
    BAD("widget_key not a uuid", "{'type':'broadcast','widget_key':'abc','timestamp':1,'message':1}", "invalid_field",
	"widget_key"),
    BAD("widget_key without dashes",
	"{'type':'broadcast','widget_key':'6b9f652a63fd47d7a3bc418c1096eb8c','timestamp':1,'message':1}",
	"invalid_field", "widget_key"),
    BAD("widget_key in braces", "{'type':'broadcast','widget_key':'{" WK "}','timestamp':1,'message':1}",
	"invalid_field", "widget_key"),
    BAD("widget_key non-hex",
	"{'type':'broadcast','widget_key':'gb9f652a-63fd-47d7-a3bc-418c1096eb8c','timestamp':1,'message':1}",
	"invalid_field", "widget_key"),
    {.name = "widget_key uppercase canonicalised",
     .body = "{'type':'broadcast','widget_key':'" WK_UPPER "','timestamp':1,'message':1}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1,
     .wk = WK},
    BAD("widget_key before author_id", "{'type':'broadcast','widget_key':'x','author_id':''}", "invalid_field",
	"widget_key"),
    /* author_id */
    {.name = "author_id",
     .body = "{" BC ",'message':1,'author_id':'user-1'}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5,
     .author = "user-1"},
    {.name = "author_id punctuation",
     .body = "{" BC ",'message':1,'author_id':'a!#$%&()*+,-./:;<=>?@[]^_`{|}~'}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5,
     .author = "a!#$%&()*+,-./:;<=>?@[]^_`{|}~"},
    OK("author_id null is absent", "{" BC ",'message':1,'author_id':null}", MSG_BROADCAST, "1", 1.5),
    {.name = "author_id 128 chars",
     .body = "{" BC ",'message':1,'author_id':'" X128 "'}",
     .type = MSG_BROADCAST,
     .message = "1",
     .ts = 1.5,
     .author = X128},
    BAD("author_id 129 chars", "{" BC ",'message':1,'author_id':'" X128 "x'}", "invalid_field", "author_id"),
    BAD("author_id empty", "{" BC ",'message':1,'author_id':''}", "invalid_field", "author_id"),
    BAD("author_id number", "{" BC ",'message':1,'author_id':1}", "invalid_field", "author_id"),
    BAD("author_id space", "{" BC ",'message':1,'author_id':'a b'}", "invalid_field", "author_id"),
    BAD("author_id quote", "{" BC ",'message':1,'author_id':'a\\\"b'}", "invalid_field", "author_id"),
    BAD("author_id backslash", "{" BC ",'message':1,'author_id':'a\\\\b'}", "invalid_field", "author_id"),
    BAD("author_id NUL", "{" BC ",'message':1,'author_id':'a\\u0000b'}", "invalid_field", "author_id"),
    BAD("author_id non-ascii", "{" BC ",'message':1,'author_id':'\xc3\xa9'}", "invalid_field", "author_id"),
    BAD("author_id control char", "{" BC ",'message':1,'author_id':'a\\tb'}", "invalid_field", "author_id"),
    BAD("author_id before to_user_id", "{'type':'private','widget_key':'" WK "','author_id':' '}", "invalid_field",
	"author_id"),
    /* to_user_id */
    {.name = "private",
     .body = "{" PV ",'message':{'q':'hi'},'author_id':'u1'}",
     .type = MSG_PRIVATE,
     .message = "{'q':'hi'}",
     .ts = 2,
     .author = "u1",
     .to_user = "u3"},
    {.name = "to_user_id missing",
     .body = "{'type':'private','widget_key':'" WK "','timestamp':1,'message':1}",
     .code = "missing_field",
     .field = "to_user_id",
     .errmsg = "to_user_id is required for type private"},
    BAD("to_user_id null", "{'type':'private','widget_key':'" WK "','to_user_id':null,'timestamp':1,'message':1}",
	"missing_field", "to_user_id"),
    BAD("to_user_id number", "{'type':'private','widget_key':'" WK "','to_user_id':3,'timestamp':1,'message':1}",
	"invalid_field", "to_user_id"),
    BAD("to_user_id empty", "{'type':'private','widget_key':'" WK "','to_user_id':'','timestamp':1,'message':1}",
	"invalid_field", "to_user_id"),
    BAD("to_user_id 129 chars",
	"{'type':'private','widget_key':'" WK "','to_user_id':'" X128 "y','timestamp':1,'message':1}", "invalid_field",
	"to_user_id"),
    BAD("to_user_id before message", "{'type':'private','widget_key':'" WK "'}", "missing_field", "to_user_id"),
    /* message: broadcast, private */
    {.name = "broadcast message missing",
     .body = "{" BC "}",
     .code = "missing_field",
     .field = "message",
     .errmsg = "message is required for type broadcast"},
    BAD("broadcast message null", "{" BC ",'message':null}", "missing_field", "message"),
    BAD("private message missing", "{" PV "}", "missing_field", "message"),
    BAD("private message null", "{" PV ",'message':null}", "missing_field", "message"),
    OK("broadcast message object", "{" BC ",'message':{'param1':0,'param3':{'paramB':false}}}", MSG_BROADCAST,
       "{'param1':0,'param3':{'paramB':false}}", 1.5),
    OK("broadcast message string", "{" BC ",'message':'hello'}", MSG_BROADCAST, "'hello'", 1.5),
    OK("broadcast message false", "{" BC ",'message':false}", MSG_BROADCAST, "false", 1.5),
    OK("broadcast message zero", "{" BC ",'message':0}", MSG_BROADCAST, "0", 1.5),
    OK("broadcast message array", "{" BC ",'message':[1,null,'x']}", MSG_BROADCAST, "[1,null,'x']", 1.5),
    OK("broadcast message empty object", "{" BC ",'message':{}}", MSG_BROADCAST, "{}", 1.5),
    OK("broadcast message unicode", "{" BC ",'message':'\\u00e9\xe2\x82\xac'}", MSG_BROADCAST, "'\xc3\xa9\xe2\x82\xac'",
       1.5),
    BAD("broadcast message with NUL", "{" BC ",'message':{'a':['x\\u0000']}}", "invalid_field", "message"),
    BAD("message before timestamp", "{'type':'broadcast','widget_key':'" WK "'}", "missing_field", "message"),
    /* message: webhook */
    OK("webhook url string", "{" WH ",'message':'https://hooks.example/x?a=1'}", MSG_WEBHOOK,
       "'https://hooks.example/x?a=1'", 0),
    OK("webhook other scheme is syntax-valid", "{" WH ",'message':'ftp://x'}", MSG_WEBHOOK, "'ftp://x'", 0),
    OK("webhook scheme chars", "{" WH ",'message':'svn+ssh.x-y://h'}", MSG_WEBHOOK, "'svn+ssh.x-y://h'", 0),
    OK("webhook object",
       "{" WH ",'timestamp':3,'message':{'url':'http://a.example','method':'PUT','headers':{'X-A':'1 2'},"
       "'body':{'k':[1]}}}",
       MSG_WEBHOOK, "{'url':'http://a.example','method':'PUT','headers':{'X-A':'1 2'},'body':{'k':[1]}}", 3),
    OK("webhook object nulls", "{" WH ",'message':{'url':'http://a','method':null,'headers':null,'body':null}}",
       MSG_WEBHOOK, "{'url':'http://a','method':null,'headers':null,'body':null}", 0),
    BAD("webhook message missing", "{" WH "}", "missing_field", "message"),
    BAD("webhook message null", "{" WH ",'message':null}", "missing_field", "message"),
    BAD("webhook url without scheme", "{" WH ",'message':'hooks.example/x'}", "invalid_field", "message"),
    BAD("webhook url nothing after scheme", "{" WH ",'message':'http://'}", "invalid_field", "message"),
    BAD("webhook url with space", "{" WH ",'message':'http://a b'}", "invalid_field", "message"),
    BAD("webhook url scheme starts with digit", "{" WH ",'message':'1http://a'}", "invalid_field", "message"),
    BAD("webhook url scheme with underscore", "{" WH ",'message':'h_t://a'}", "invalid_field", "message"),
    BAD("webhook url empty", "{" WH ",'message':''}", "invalid_field", "message"),
    BAD("webhook url NUL", "{" WH ",'message':'http://a\\u0000b'}", "invalid_field", "message"),
    BAD("webhook message number", "{" WH ",'message':5}", "invalid_field", "message"),
    BAD("webhook message array", "{" WH ",'message':['http://a']}", "invalid_field", "message"),
    BAD("webhook object without url", "{" WH ",'message':{'method':'GET'}}", "invalid_field", "message"),
    BAD("webhook object url number", "{" WH ",'message':{'url':1}}", "invalid_field", "message.url"),
    BAD("webhook object url bad", "{" WH ",'message':{'url':'nope'}}", "invalid_field", "message.url"),
    BAD("webhook method lowercase", "{" WH ",'message':{'url':'http://a','method':'get'}}", "invalid_field",
	"message.method"),
    BAD("webhook method unknown", "{" WH ",'message':{'url':'http://a','method':'TRACE'}}", "invalid_field",
	"message.method"),
    BAD("webhook method number", "{" WH ",'message':{'url':'http://a','method':1}}", "invalid_field", "message.method"),
    BAD("webhook headers array", "{" WH ",'message':{'url':'http://a','headers':['a']}}", "invalid_field",
	"message.headers"),
    BAD("webhook header value number", "{" WH ",'message':{'url':'http://a','headers':{'a':1}}}", "invalid_field",
	"message.headers"),
    BAD("webhook header value crlf", "{" WH ",'message':{'url':'http://a','headers':{'a':'x\\r\\nB: y'}}}",
	"invalid_field", "message.headers"),
    BAD("webhook header name space", "{" WH ",'message':{'url':'http://a','headers':{'a b':'x'}}}", "invalid_field",
	"message.headers"),
    BAD("webhook header name empty", "{" WH ",'message':{'url':'http://a','headers':{'':'x'}}}", "invalid_field",
	"message.headers"),
    BAD("webhook body with NUL", "{" WH ",'message':{'url':'http://a','body':'\\u0000'}}", "invalid_field", "message"),
    /* message: request */
    {.name = "request without filters", .body = "{" RQ "}", .type = MSG_REQUEST, .message = NULL},
    {.name = "request null filters", .body = "{" RQ ",'message':null}", .type = MSG_REQUEST, .message = NULL},
    OK("request empty filters", "{" RQ ",'message':{}}", MSG_REQUEST, "{}", 0),
    OK("request filters", "{" RQ ",'message':{'since_id':'5','limit':10,'from_timestamp':1,'to_timestamp':2}}",
       MSG_REQUEST, "{'since_id':'5','limit':10,'from_timestamp':1,'to_timestamp':2}", 0),
    OK("request latest", "{" RQ ",'message':{'order':'desc','before_id':'9','limit':50}}", MSG_REQUEST,
       "{'order':'desc','before_id':'9','limit':50}", 0),
    BAD("request message array", "{" RQ ",'message':[]}", "invalid_field", "message"),
    BAD("request message string", "{" RQ ",'message':'x'}", "invalid_field", "message"),
    {.name = "request with author",
     .body = "{" RQ ",'author_id':'me','timestamp':3}",
     .type = MSG_REQUEST,
     .author = "me",
     .ts = 3},
    /* timestamp */
    {.name = "timestamp missing on broadcast",
     .body = "{'type':'broadcast','widget_key':'" WK "','message':1}",
     .code = "missing_field",
     .field = "timestamp",
     .errmsg = "timestamp is required for type broadcast"},
    BAD("timestamp given twice", "{" PV ",'message':1,'timestamp':null}", "invalid_json", NULL),
    BAD("timestamp null on private",
	"{'type':'private','widget_key':'" WK "','to_user_id':'u','message':1,'timestamp':null}", "missing_field",
	"timestamp"),
    {.name = "timestamp missing on private",
     .body = "{'type':'private','widget_key':'" WK "','to_user_id':'u','message':1}",
     .code = "missing_field",
     .field = "timestamp",
     .errmsg = "timestamp is required for type private"},
    BAD("timestamp null on broadcast", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':null}",
	"missing_field", "timestamp"),
    BAD("timestamp string", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':'1'}", "invalid_field",
	"timestamp"),
    BAD("timestamp boolean", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':true}", "invalid_field",
	"timestamp"),
    BAD("timestamp negative", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':-0.001}",
	"invalid_field", "timestamp"),
    BAD("timestamp negative integer", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':-1}",
	"invalid_field", "timestamp"),
    OK("timestamp minus zero", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':-0.0}", MSG_BROADCAST,
       "1", 0),
    OK("timestamp integer zero", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':0}", MSG_BROADCAST,
       "1", 0),
    OK("timestamp exponent", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':2.5e2}", MSG_BROADCAST,
       "1", 250),
    OK("timestamp huge finite", "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':1e308}",
       MSG_BROADCAST, "1", 1e308),
    {.name = "timestamp 1e400",
     .body = "{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':1e400}",
     .code = "invalid_field",
     .field = "timestamp",
     .errmsg = "timestamp holds a number out of range"},
    BAD("timestamp huge integer",
	"{'type':'broadcast','widget_key':'" WK "','message':1,'timestamp':99999999999999999999}", "invalid_field",
	"timestamp"),
    BAD("timestamp -1e400", "{'timestamp':-1e400}", "invalid_field", "timestamp"),
    BAD("overflow inside message", "{" BC ",'message':{'a':[1,{'b':1e999}]}}", "invalid_field", "message"),
    BAD("overflow in escaped key", "{" BC ",'m\\u0065ssage':1e999}", "invalid_field", "message"),
    BAD("overflow in unknown key", "{" BC ",'foo':1e400}", "unexpected_field", "foo"),
    BAD("overflow in id", "{'id':1e400}", "unexpected_field", "id"),
    BAD("overflow in array body", "[1e400]", "invalid_json", NULL),
    BAD("webhook timestamp negative", "{" WH ",'message':'http://a','timestamp':-5}", "invalid_field", "timestamp"),
    BAD("request timestamp string", "{" RQ ",'timestamp':'0'}", "invalid_field", "timestamp"),
    OK("webhook timestamp null", "{" WH ",'message':'http://a','timestamp':null}", MSG_WEBHOOK, "'http://a'", 0),
    /* whitespace and order do not matter */
    OK("pretty-printed body",
       "\n{\n\t'message' : [ 1 ] ,\n\t'timestamp' : 7 ,\n\t'widget_key' : '" WK "' ,\n\t'type' : 'broadcast'\n}\n",
       MSG_BROADCAST, "[1]", 7),
};

/* body with ' turned into " (unless raw); *len set. */
static char *body_of(const struct dcase *c, size_t *len)
{
	size_t n = c->len != 0 ? c->len : strlen(c->body);
	char *b = malloc(n + 1);

	assert_non_null(b);
	memcpy(b, c->body, n);
	b[n] = '\0';
	for (size_t i = 0; i < n && !c->raw; i++) {
		if (b[i] == '\'')
			b[i] = '"';
	}
	*len = n;
	return b;
}

static char *dq(const char *s)
{
	char *r = strdup(s);

	assert_non_null(r);
	for (char *p = r; *p != '\0'; p++) {
		if (*p == '\'')
			*p = '"';
	}
	return r;
}

static void test_decode_case(void **state)
{
	const struct dcase *c = *state;
	struct msg_in m;
	struct msg_error e;
	size_t len;
	char *body = body_of(c, &len);
	int rc;

	memset(&e, 0, sizeof(e));
	rc = msg_decode(body, len, c->path != NULL ? c->path : "1", &m, &e);
	if (c->code != NULL) {
		if (rc == RTW_OK)
			fail_msg("%s: decoded, expected %s", c->name, c->code);
		assert_int_equal(rc, RTW_ERROR);
		assert_int_equal(e.status, 400);
		assert_string_equal(e.code, c->code);
		if (c->field == NULL) {
			if (e.field != NULL)
				fail_msg("%s: field %s, expected none", c->name, e.field);
		} else {
			assert_non_null(e.field);
			assert_string_equal(e.field, c->field);
		}
		if (c->errmsg != NULL)
			assert_string_equal(e.message, c->errmsg);
		assert_true(e.message[0] != '\0');
		assert_null(m.message);
	} else {
		if (rc != RTW_OK)
			fail_msg("%s: %s (%s): %s", c->name, e.code, e.field ? e.field : "-", e.message);
		assert_int_equal(m.type, c->type);
		assert_string_equal(m.stream_id, c->path != NULL ? c->path : "1");
		assert_string_equal(m.widget_key, c->wk != NULL ? c->wk : WK);
		assert_int_equal(m.has_author, c->author != NULL);
		if (c->author != NULL)
			assert_string_equal(m.author_id, c->author);
		assert_int_equal(m.has_to_user, c->to_user != NULL);
		if (c->to_user != NULL)
			assert_string_equal(m.to_user_id, c->to_user);
		assert_true(m.timestamp == c->ts);
		assert_false(signbit(m.timestamp));
		if (c->message == NULL) {
			assert_null(m.message);
		} else {
			char *want = dq(c->message);
			char *got = json_dumps(m.message, JSON_COMPACT | JSON_ENCODE_ANY);
			assert_non_null(got);
			assert_string_equal(got, want);
			free(got);
			free(want);
		}
		msg_in_clear(&m);
		assert_null(m.message);
		msg_in_clear(&m); /* twice is harmless */
	}
	free(body);
}

/* ---- decode cases that need a computed body ---- */

static int decode_str(const char *body, struct msg_in *m, struct msg_error *e)
{
	return msg_decode(body, strlen(body), "1", m, e);
}

static void test_decode_long_unknown_key(void **state)
{
	char key[301], body[512];
	struct msg_in m;
	struct msg_error e;

	(void)state;
	memset(key, 'k', 300);
	key[300] = '\0';
	snprintf(body, sizeof(body), "{\"%s\":1}", key);
	assert_int_equal(decode_str(body, &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "unexpected_field");
	assert_ptr_equal(e.field, e.field_buf);
	assert_int_equal(strlen(e.field), sizeof(e.field_buf) - 1);

	/* truncation keeps whole UTF-8 characters: 200 x "é" (2 bytes each) */
	char *p = body;
	p += sprintf(p, "{\"message.");
	for (int i = 0; i < 100; i++)
		p += sprintf(p, "\xc3\xa9");
	sprintf(p, "\":1}");
	assert_int_equal(decode_str(body, &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "unexpected_field");
	assert_int_equal(strlen(e.field), 142); /* "message." + 67 whole characters of 2 bytes */
	json_t *j = json_string(e.field);
	assert_non_null(j); /* valid UTF-8 */
	json_decref(j);
	char *ej = msg_error_json(&e);
	assert_non_null(ej);
	free(ej);
}

static void test_decode_url_length(void **state)
{
	char body[4096], url[2100];
	struct msg_in m;
	struct msg_error e;

	(void)state;
	strcpy(url, "https://a.example/");
	memset(url + 18, 'p', 2048 - 18);
	url[2048] = '\0';
	snprintf(body, sizeof(body), "{\"type\":\"webhook\",\"widget_key\":\"" WK "\",\"message\":\"%s\"}", url);
	assert_int_equal(decode_str(body, &m, &e), RTW_OK);
	msg_in_clear(&m);

	url[2048] = 'p';
	url[2049] = '\0';
	snprintf(body, sizeof(body), "{\"type\":\"webhook\",\"widget_key\":\"" WK "\",\"message\":\"%s\"}", url);
	assert_int_equal(decode_str(body, &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "invalid_field");
	assert_string_equal(e.field, "message");
}

static void test_decode_not_nul_terminated(void **state)
{
	/* len is honoured: the bytes after it are never read */
	static const char body[] = "{\"type\":\"request\",\"widget_key\":\"" WK "\"}GARBAGE";
	struct msg_in m;
	struct msg_error e;

	(void)state;
	assert_int_equal(msg_decode(body, sizeof(body) - 1 - 7, "s", &m, &e), RTW_OK);
	assert_int_equal(m.type, MSG_REQUEST);
	msg_in_clear(&m);
	assert_int_equal(msg_decode(NULL, 0, "s", &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "invalid_json");
}

static void test_decode_message_outlives_body(void **state)
{
	struct msg_in m;
	struct msg_error e;
	char *body =
	    strdup("{\"type\":\"broadcast\",\"widget_key\":\"" WK "\",\"timestamp\":1,\"message\":{\"a\":[1,2]}}");

	(void)state;
	assert_int_equal(decode_str(body, &m, &e), RTW_OK);
	memset(body, 'x', strlen(body));
	free(body);
	assert_int_equal(m.message->refcount, 1);
	assert_int_equal(json_array_size(json_object_get(m.message, "a")), 2);
	msg_in_clear(&m);
}

/* msg_decode_value (one element of a batch): the same rules on a parsed
 * value, which stays the caller's. */
static void test_decode_value(void **state)
{
	struct msg_in m;
	struct msg_error e;
	json_t *v = json_pack("{s:s,s:s,s:s,s:f,s:{s:i}}", "stream_id", "s1", "type", "broadcast", "widget_key",
			      WK_UPPER, "timestamp", -0.0, "message", "a", 1);
	json_t *arr = json_pack("[i]", 1);

	(void)state;
	assert_int_equal(msg_decode_value(v, "s1", &m, &e), RTW_OK);
	assert_string_equal(m.stream_id, "s1");
	assert_string_equal(m.widget_key, WK);
	assert_false(signbit(m.timestamp));
	msg_in_clear(&m);
	assert_int_equal(v->refcount, 1);

	assert_int_equal(msg_decode_value(arr, "s1", &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "invalid_json");

	json_object_set_new(v, "type", json_string("webhook"));
	json_object_set_new(v, "message", json_string("not a url"));
	assert_int_equal(msg_decode_value(v, "s1", &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "invalid_field");
	assert_string_equal(e.field, "message");
	json_object_set_new(v, "id", json_string("1"));
	assert_int_equal(msg_decode_value(v, "s1", &m, &e), RTW_ERROR);
	assert_string_equal(e.code, "unexpected_field");
	json_decref(v);
	json_decref(arr);
}

/* ---- small API ---- */

static void test_type_name(void **state)
{
	(void)state;
	assert_string_equal(msg_type_name(MSG_BROADCAST), "broadcast");
	assert_string_equal(msg_type_name(MSG_PRIVATE), "private");
	assert_string_equal(msg_type_name(MSG_WEBHOOK), "webhook");
	assert_string_equal(msg_type_name(MSG_REQUEST), "request");
	assert_string_equal(msg_type_name(MSG_INIT), "init");
	assert_string_equal(msg_type_name((enum msg_type)99), "unknown");
	msg_in_clear(NULL);
}

static void test_valid_stream_id(void **state)
{
	(void)state;
	assert_true(msg_valid_stream_id("1"));
	assert_true(msg_valid_stream_id("Az09._:-"));
	assert_true(msg_valid_stream_id(S128));
	assert_false(msg_valid_stream_id(S128 "x"));
	assert_false(msg_valid_stream_id(""));
	assert_false(msg_valid_stream_id(NULL));
	assert_false(msg_valid_stream_id("a b"));
	assert_false(msg_valid_stream_id("a/b"));
	assert_false(msg_valid_stream_id("a%20"));
	assert_false(msg_valid_stream_id("\xc3\xa9"));
}

static void test_valid_user_id(void **state)
{
	(void)state;
	assert_true(msg_valid_user_id("1"));
	assert_true(msg_valid_user_id("!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"));
	assert_true(msg_valid_user_id(X128));
	assert_false(msg_valid_user_id(X128 "x"));
	assert_false(msg_valid_user_id(""));
	assert_false(msg_valid_user_id(NULL));
	assert_false(msg_valid_user_id("a b"));
	assert_false(msg_valid_user_id("a\"b"));
	assert_false(msg_valid_user_id("a\\b"));
	assert_false(msg_valid_user_id("a\x7f"));
	assert_false(msg_valid_user_id("a\n"));
	assert_false(msg_valid_user_id("\xc3\xa9"));
}

static void test_valid_uuid(void **state)
{
	char out[MSG_UUID_LEN + 1];

	(void)state;
	assert_true(msg_valid_uuid(WK, out));
	assert_string_equal(out, WK);
	assert_true(msg_valid_uuid(WK_UPPER, out));
	assert_string_equal(out, WK);
	assert_true(msg_valid_uuid("00000000-0000-0000-0000-000000000000", NULL));
	memcpy(out, "unchanged", 10);
	assert_false(msg_valid_uuid(WK "0", out));
	assert_string_equal(out, "unchanged");
	assert_false(msg_valid_uuid("6b9f652a-63fd-47d7-a3bc-418c1096eb8", out));
	assert_false(msg_valid_uuid("6b9f652a-63fd-47d7-a3bc418c-1096eb8c", out));
	assert_false(msg_valid_uuid("6b9f652a_63fd-47d7-a3bc-418c1096eb8c", out));
	assert_false(msg_valid_uuid("6b9f652a-63fd-47d7-a3bc-418c1096eb8g", out));
	assert_false(msg_valid_uuid(" 6b9f652a-63fd-47d7-a3bc-418c1096eb8", out));
	assert_false(msg_valid_uuid("", out));
	assert_false(msg_valid_uuid(NULL, out));
}

static void test_valid_id(void **state)
{
	(void)state;
	assert_true(msg_valid_id("1"));
	assert_true(msg_valid_id("42"));
	assert_true(msg_valid_id("1000000000000000000"));
	assert_true(msg_valid_id("9223372036854775807"));
	assert_false(msg_valid_id("9223372036854775808"));
	assert_false(msg_valid_id("9999999999999999999"));
	assert_false(msg_valid_id("10000000000000000000"));
	assert_false(msg_valid_id("0"));
	assert_false(msg_valid_id("007"));
	assert_false(msg_valid_id("-1"));
	assert_false(msg_valid_id("+1"));
	assert_false(msg_valid_id("1 "));
	assert_false(msg_valid_id("1.0"));
	assert_false(msg_valid_id("1e3"));
	assert_false(msg_valid_id(""));
	assert_false(msg_valid_id(NULL));
}

/* ---- errors ---- */

static void check_error_json(const struct msg_error *e, const char *want)
{
	char *got = msg_error_json(e);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_error_json(void **state)
{
	struct msg_error e;

	(void)state;
	msg_error_set(&e, 400, "missing_field", "timestamp", "timestamp is required for type %s", "broadcast");
	assert_int_equal(e.status, 400);
	check_error_json(&e, "{\"error\":{\"code\":\"missing_field\",\"field\":\"timestamp\","
			     "\"message\":\"timestamp is required for type broadcast\"}}");

	msg_error_set(&e, 401, "unauthorized", NULL, "token expired");
	check_error_json(&e, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"token expired\"}}");

	msg_error_set(&e, 400, "invalid_field", "message", "quote \" backslash \\ tab \t nl \n ctl \x01 \xc3\xa9");
	check_error_json(&e, "{\"error\":{\"code\":\"invalid_field\",\"field\":\"message\",\"message\":"
			     "\"quote \\\" backslash \\\\ tab \\t nl \\n ctl \\u0001 \xc3\xa9\"}}");

	/* invalid UTF-8 cannot make it fail */
	msg_error_set(&e, 500, "internal", NULL, "bad \xff byte");
	check_error_json(&e, "{\"error\":{\"code\":\"internal\",\"message\":\"bad ? byte\"}}");

	/* from msg_decode */
	struct msg_in m;
	assert_int_equal(decode_str("{\"type\":\"broadcast\",\"widget_key\":\"" WK "\",\"message\":1}", &m, &e),
			 RTW_ERROR);
	check_error_json(&e, "{\"error\":{\"code\":\"missing_field\",\"field\":\"timestamp\","
			     "\"message\":\"timestamp is required for type broadcast\"}}");
	assert_int_equal(decode_str("[]", &m, &e), RTW_ERROR);
	check_error_json(&e,
			 "{\"error\":{\"code\":\"invalid_json\",\"message\":\"request body must be a json object\"}}");
	assert_int_equal(decode_str("{\"x\\\"y\":1}", &m, &e), RTW_ERROR);
	check_error_json(&e, "{\"error\":{\"code\":\"unexpected_field\",\"field\":\"x\\\"y\","
			     "\"message\":\"unrecognized field \\\"x\\\"y\\\"\"}}");
}

static void test_error_truncation(void **state)
{
	struct msg_error e;
	char big[600];

	(void)state;
	/* 1 ASCII byte then 2-byte characters: the cut at 255 falls inside one */
	big[0] = 'a';
	for (int i = 1; i + 1 < 599; i += 2) {
		big[i] = '\xc3';
		big[i + 1] = '\xa9';
	}
	big[599] = '\0';
	msg_error_set(&e, 400, "invalid_field", NULL, "%s", big);
	assert_int_equal(strlen(e.message), 255);
	memmove(big, big + 1, sizeof(big) - 1); /* now even: the cut at 255 splits a character */
	msg_error_set(&e, 400, "invalid_field", NULL, "%s", big);
	assert_int_equal(strlen(e.message), 254);
	json_t *j = json_string(e.message);
	assert_non_null(j);
	json_decref(j);
}

/* ---- filters ---- */

struct fcase {
	const char *name;
	const char *json; /* ' for "; NULL: message NULL */
	const char *code; /* NULL: must succeed */
	const char *field;
	bool has_since;
	const char *since;
	bool has_before;
	const char *before;
	bool desc;
	int limit;
	bool has_from;
	double from;
	bool has_to;
	double to;
};

static const struct fcase fcases[] = {
    {.name = "NULL", .json = NULL, .limit = 100},
    {.name = "json null", .json = "null", .limit = 100},
    {.name = "empty", .json = "{}", .limit = 100},
    {.name = "all nulls",
     .json = "{'since_id':null,'before_id':null,'order':null,'limit':null,'from_timestamp':null,'to_timestamp':null}",
     .limit = 100},
    {.name = "since_id string", .json = "{'since_id':'42'}", .has_since = true, .since = "42", .limit = 100},
    {.name = "since_id integer", .json = "{'since_id':42}", .has_since = true, .since = "42", .limit = 100},
    {.name = "since_id max",
     .json = "{'since_id':'9223372036854775807'}",
     .has_since = true,
     .since = "9223372036854775807",
     .limit = 100},
    {.name = "since_id integer max",
     .json = "{'since_id':9223372036854775807}",
     .has_since = true,
     .since = "9223372036854775807",
     .limit = 100},
    {.name = "since_id 0", .json = "{'since_id':'0'}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id integer 0", .json = "{'since_id':0}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id leading zero", .json = "{'since_id':'042'}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id negative", .json = "{'since_id':-3}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id real", .json = "{'since_id':4.0}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id text", .json = "{'since_id':'abc'}", .code = "invalid_field", .field = "since_id"},
    {.name = "since_id too big",
     .json = "{'since_id':'9223372036854775808'}",
     .code = "invalid_field",
     .field = "since_id"},
    {.name = "since_id NUL", .json = "{'since_id':'4\\u0000'}", .code = "invalid_field", .field = "since_id"},
    {.name = "before_id string", .json = "{'before_id':'42'}", .has_before = true, .before = "42", .limit = 100},
    {.name = "before_id integer", .json = "{'before_id':7}", .has_before = true, .before = "7", .limit = 100},
    {.name = "since_id and before_id",
     .json = "{'since_id':'3','before_id':'9'}",
     .has_since = true,
     .since = "3",
     .has_before = true,
     .before = "9",
     .limit = 100},
    {.name = "before_id 0", .json = "{'before_id':0}", .code = "invalid_field", .field = "before_id"},
    {.name = "before_id text", .json = "{'before_id':'x1'}", .code = "invalid_field", .field = "before_id"},
    {.name = "before_id boolean", .json = "{'before_id':true}", .code = "invalid_field", .field = "before_id"},
    {.name = "before_id too big",
     .json = "{'before_id':'99999999999999999999'}",
     .code = "invalid_field",
     .field = "before_id"},
    {.name = "order asc", .json = "{'order':'asc'}", .limit = 100},
    {.name = "order desc", .json = "{'order':'desc'}", .desc = true, .limit = 100},
    {.name = "latest 50", .json = "{'order':'desc','limit':50}", .desc = true, .limit = 50},
    {.name = "order desc before_id",
     .json = "{'order':'desc','before_id':'12'}",
     .has_before = true,
     .before = "12",
     .desc = true,
     .limit = 100},
    {.name = "order upper case", .json = "{'order':'DESC'}", .code = "invalid_field", .field = "order"},
    {.name = "order number", .json = "{'order':1}", .code = "invalid_field", .field = "order"},
    {.name = "order empty", .json = "{'order':''}", .code = "invalid_field", .field = "order"},
    {.name = "order NUL", .json = "{'order':'desc\\u0000'}", .code = "invalid_field", .field = "order"},
    {.name = "limit", .json = "{'limit':10}", .limit = 10},
    {.name = "limit 1", .json = "{'limit':1}", .limit = 1},
    {.name = "limit max", .json = "{'limit':1000}", .limit = 1000},
    {.name = "limit over max", .json = "{'limit':1001}", .code = "invalid_field", .field = "limit"},
    {.name = "limit 0", .json = "{'limit':0}", .code = "invalid_field", .field = "limit"},
    {.name = "limit negative", .json = "{'limit':-5}", .code = "invalid_field", .field = "limit"},
    {.name = "limit real", .json = "{'limit':10.0}", .code = "invalid_field", .field = "limit"},
    {.name = "limit string", .json = "{'limit':'10'}", .code = "invalid_field", .field = "limit"},
    {.name = "limit huge", .json = "{'limit':9223372036854775807}", .code = "invalid_field", .field = "limit"},
    {.name = "from and to",
     .json = "{'from_timestamp':1.5,'to_timestamp':3}",
     .limit = 100,
     .has_from = true,
     .from = 1.5,
     .has_to = true,
     .to = 3},
    {.name = "from equals to",
     .json = "{'from_timestamp':2,'to_timestamp':2}",
     .limit = 100,
     .has_from = true,
     .from = 2,
     .has_to = true,
     .to = 2},
    {.name = "from only", .json = "{'from_timestamp':0}", .limit = 100, .has_from = true, .from = 0},
    {.name = "to only", .json = "{'to_timestamp':9}", .limit = 100, .has_to = true, .to = 9},
    {.name = "from after to",
     .json = "{'from_timestamp':5,'to_timestamp':4}",
     .code = "invalid_field",
     .field = "to_timestamp"},
    {.name = "from negative", .json = "{'from_timestamp':-1}", .code = "invalid_field", .field = "from_timestamp"},
    {.name = "to negative", .json = "{'to_timestamp':-0.5}", .code = "invalid_field", .field = "to_timestamp"},
    {.name = "from string", .json = "{'from_timestamp':'1'}", .code = "invalid_field", .field = "from_timestamp"},
    {.name = "to boolean", .json = "{'to_timestamp':true}", .code = "invalid_field", .field = "to_timestamp"},
    {.name = "unknown key", .json = "{'limit':5,'offset':5}", .code = "unexpected_field", .field = "offset"},
    {.name = "not an object", .json = "[1]", .code = "invalid_field", .field = "message"},
    {.name = "a string", .json = "'x'", .code = "invalid_field", .field = "message"},
};

static void test_filter_case(void **state)
{
	const struct fcase *c = *state;
	struct msg_filter f;
	struct msg_error e;
	json_t *j = NULL;
	int rc;

	if (c->json != NULL) {
		char *s = dq(c->json);
		j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		assert_non_null(j);
		free(s);
	}
	rc = msg_filter_decode(j, 100, 1000, &f, &e);
	json_decref(j);
	if (c->code != NULL) {
		if (rc == RTW_OK)
			fail_msg("%s: decoded, expected %s", c->name, c->code);
		assert_int_equal(e.status, 400);
		assert_string_equal(e.code, c->code);
		assert_string_equal(e.field, c->field);
		return;
	}
	if (rc != RTW_OK)
		fail_msg("%s: %s (%s): %s", c->name, e.code, e.field ? e.field : "-", e.message);
	assert_int_equal(f.has_since, c->has_since);
	if (c->has_since)
		assert_string_equal(f.since_id, c->since);
	assert_int_equal(f.has_before, c->has_before);
	if (c->has_before)
		assert_string_equal(f.before_id, c->before);
	assert_int_equal(f.desc, c->desc);
	assert_int_equal(f.limit, c->limit);
	assert_int_equal(f.has_from, c->has_from);
	assert_int_equal(f.has_to, c->has_to);
	if (c->has_from)
		assert_true(f.from_ts == c->from);
	if (c->has_to)
		assert_true(f.to_ts == c->to);
}

static void test_filter_from_decode(void **state)
{
	struct msg_in m;
	struct msg_error e;
	struct msg_filter f;

	(void)state;
	assert_int_equal(
	    decode_str("{\"type\":\"request\",\"widget_key\":\"" WK "\",\"message\":{\"limit\":5000}}", &m, &e),
	    RTW_OK);
	assert_int_equal(msg_filter_decode(m.message, 100, 1000, &f, &e), RTW_ERROR);
	assert_string_equal(e.field, "limit");
	assert_string_equal(e.message, "limit must be an integer from 1 to 1000");
	assert_int_equal(msg_filter_decode(m.message, 100, 5000, &f, &e), RTW_OK);
	assert_int_equal(f.limit, 5000);
	msg_in_clear(&m);
}

/* ---- serialize ---- */

static const struct msg_stored stored_example = {
    .id = "42",
    .stream_id = "1",
    .author_id = "1",
    .to_user_id = "3",
    .message_json =
	"{\"param1\": 0, \"param2\": \"2022-04-13T18:39:49.139Z\", \"param3\": {\"paramA\": \"string value\", "
	"\"paramB\": false}}",
    .timestamp = "2365.123",
    .type = "private",
    .widget_key = WK,
    .created_at = "2026-11-27T22:00:00.123456Z",
};

static void check_serialize(const struct msg_stored *m, const char *want)
{
	size_t len = 0;
	char *got = msg_serialize(m, &len);

	if (want == NULL) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(got);
}

static void test_serialize(void **state)
{
	struct msg_stored m = stored_example;

	(void)state;
	check_serialize(&m, "{\"id\":\"42\",\"stream_id\":\"1\",\"author_id\":\"1\",\"to_user_id\":\"3\","
			    "\"message\":{\"param1\":0,\"param2\":\"2022-04-13T18:39:49.139Z\",\"param3\":{\"paramA\":"
			    "\"string value\",\"paramB\":false}},\"timestamp\":2365.123,\"type\":\"private\","
			    "\"widget_key\":\"" WK "\",\"created_at\":\"2026-11-27T22:00:00.123456Z\"}");

	m.to_user_id = NULL;
	m.type = "broadcast";
	m.message_json = "[1, \"a b\", {\"k\": [ ]}]";
	m.timestamp = "0";
	check_serialize(&m, "{\"id\":\"42\",\"stream_id\":\"1\",\"author_id\":\"1\",\"message\":[1,\"a b\",{\"k\":[]}],"
			    "\"timestamp\":0,\"type\":\"broadcast\",\"widget_key\":\"" WK
			    "\",\"created_at\":\"2026-11-27T22:00:00.123456Z\"}");
	char *out = msg_serialize(&m, NULL); /* len is optional */
	assert_non_null(out);
	free(out);
}

static void test_serialize_escaping(void **state)
{
	struct msg_stored m = stored_example;

	(void)state;
	m.to_user_id = NULL;
	m.id = "1";
	m.author_id = "q\"b\\s/\n\t\x01\x1f\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	m.message_json = "\"x\\\"y \\u0000 z\"";
	m.timestamp = "-1.5e+20";
	m.created_at = "c";
	check_serialize(&m, "{\"id\":\"1\",\"stream_id\":\"1\",\"author_id\":"
			    "\"q\\\"b\\\\s/\\n\\t\\u0001\\u001f\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
			    "\"message\":\"x\\\"y \\u0000 z\",\"timestamp\":-1.5e+20,\"type\":\"private\","
			    "\"widget_key\":\"" WK "\",\"created_at\":\"c\"}");

	/* the output is valid JSON that gives the fields back */
	size_t len;
	char *out = msg_serialize(&m, &len);
	json_t *j = json_loadb(out, len, JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "author_id")), m.author_id);
	assert_null(json_object_get(j, "to_user_id"));
	json_decref(j);
	free(out);
}

static void test_serialize_refusals(void **state)
{
	static const char *const bad_ts[] = {"",   "NaN", "Infinity", "-Infinity", "1.",   ".5", "01",
					     "1e", "1e+", "+1",	      "1 ",	   "0x10", "-",	 "1.2.3"};
	static const char *const good_ts[] = {"0", "-0", "1", "2365.123", "1e+20", "1E-5", "0.5", "10"};
	static const char *const bad_msg[] = {"", "   ", "{", "}", "[1,2", "{\"a\":\"b}", "\"a\nb\"", "1\x01"};
	struct msg_stored m = stored_example;
	char *out;

	(void)state;
	for (size_t i = 0; i < RTW_ARRAY_LEN(bad_ts); i++) {
		m.timestamp = bad_ts[i];
		out = msg_serialize(&m, NULL);
		if (out != NULL)
			fail_msg("timestamp \"%s\" accepted", bad_ts[i]);
	}
	for (size_t i = 0; i < RTW_ARRAY_LEN(good_ts); i++) {
		m.timestamp = good_ts[i];
		out = msg_serialize(&m, NULL);
		if (out == NULL)
			fail_msg("timestamp \"%s\" refused", good_ts[i]);
		free(out);
	}
	m.timestamp = "1";
	for (size_t i = 0; i < RTW_ARRAY_LEN(bad_msg); i++) {
		m.message_json = bad_msg[i];
		out = msg_serialize(&m, NULL);
		if (out != NULL)
			fail_msg("message_json \"%s\" accepted", bad_msg[i]);
	}
	/* multi-line JSON from a json (not jsonb) column becomes one line */
	m.message_json = "{\r\n  \"a\" :\t1\n}";
	out = msg_serialize(&m, NULL);
	assert_non_null(out);
	assert_non_null(strstr(out, "\"message\":{\"a\":1},"));
	assert_null(strchr(out, '\n'));
	free(out);

	m = stored_example;
	m.author_id = "bad \xff utf-8";
	assert_null(msg_serialize(&m, NULL));
	m.author_id = "overlong \xc0\xaf";
	assert_null(msg_serialize(&m, NULL));
	m.author_id = "surrogate \xed\xa0\x80";
	assert_null(msg_serialize(&m, NULL));
	m.author_id = "cut \xe2\x82";
	assert_null(msg_serialize(&m, NULL));
	m.author_id = "too big \xf4\x90\x80\x80";
	assert_null(msg_serialize(&m, NULL));
	m = stored_example;
	m.created_at = NULL;
	assert_null(msg_serialize(&m, NULL));
	m = stored_example;
	m.author_id = NULL;
	assert_null(msg_serialize(&m, NULL));
}

static void test_roundtrip(void **state)
{
	struct msg_in in;
	struct msg_error e;
	struct msg_stored st;
	char ts[32], *payload, *out;
	size_t len;
	json_t *j;

	(void)state;
	assert_int_equal(decode_str("{\"type\":\"private\",\"widget_key\":\"" WK_UPPER "\",\"to_user_id\":\"u~9\","
				    "\"author_id\":\"a!b\",\"timestamp\":12.25,\"message\":{\"t\":\"\\u00e9\\n\"}}",
				    &in, &e),
			 RTW_OK);
	payload = json_dumps(in.message, JSON_COMPACT | JSON_ENCODE_ANY);
	snprintf(ts, sizeof(ts), "%.17g", in.timestamp);
	st = (struct msg_stored){.id = "7",
				 .stream_id = in.stream_id,
				 .author_id = in.author_id,
				 .to_user_id = in.to_user_id,
				 .message_json = payload,
				 .timestamp = ts,
				 .type = msg_type_name(in.type),
				 .widget_key = in.widget_key,
				 .created_at = "2026-11-27T22:00:00.000001Z"};
	out = msg_serialize(&st, &len);
	assert_non_null(out);
	assert_string_equal(out, "{\"id\":\"7\",\"stream_id\":\"1\",\"author_id\":\"a!b\",\"to_user_id\":\"u~9\","
				 "\"message\":{\"t\":\"\xc3\xa9\\n\"},\"timestamp\":12.25,\"type\":\"private\","
				 "\"widget_key\":\"" WK "\",\"created_at\":\"2026-11-27T22:00:00.000001Z\"}");
	j = json_loadb(out, len, 0, NULL);
	assert_non_null(j);
	assert_true(json_equal(json_object_get(j, "message"), in.message));
	json_decref(j);
	free(out);
	free(payload);
	msg_in_clear(&in);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
	    cmocka_unit_test(test_decode_long_unknown_key),
	    cmocka_unit_test(test_decode_url_length),
	    cmocka_unit_test(test_decode_not_nul_terminated),
	    cmocka_unit_test(test_decode_message_outlives_body),
	    cmocka_unit_test(test_decode_value),
	    cmocka_unit_test(test_type_name),
	    cmocka_unit_test(test_valid_stream_id),
	    cmocka_unit_test(test_valid_user_id),
	    cmocka_unit_test(test_valid_uuid),
	    cmocka_unit_test(test_valid_id),
	    cmocka_unit_test(test_error_json),
	    cmocka_unit_test(test_error_truncation),
	    cmocka_unit_test(test_filter_from_decode),
	    cmocka_unit_test(test_serialize),
	    cmocka_unit_test(test_serialize_escaping),
	    cmocka_unit_test(test_serialize_refusals),
	    cmocka_unit_test(test_roundtrip),
	};
	struct CMUnitTest *dt = calloc(RTW_ARRAY_LEN(dcases), sizeof(*dt));
	struct CMUnitTest *ft = calloc(RTW_ARRAY_LEN(fcases), sizeof(*ft));
	int failed = 0;

	if (dt == NULL || ft == NULL)
		return 1;
	for (size_t i = 0; i < RTW_ARRAY_LEN(dcases); i++)
		dt[i] = (struct CMUnitTest){dcases[i].name, test_decode_case, NULL, NULL, (void *)&dcases[i]};
	for (size_t i = 0; i < RTW_ARRAY_LEN(fcases); i++)
		ft[i] = (struct CMUnitTest){fcases[i].name, test_filter_case, NULL, NULL, (void *)&fcases[i]};
	failed += _cmocka_run_group_tests("msg_decode", dt, RTW_ARRAY_LEN(dcases), NULL, NULL);
	failed += _cmocka_run_group_tests("msg_filter_decode", ft, RTW_ARRAY_LEN(fcases), NULL, NULL);
	failed += cmocka_run_group_tests_name("msg", fixed, NULL, NULL);
	free(dt);
	free(ft);
	return failed != 0;
}
