/*
 * job.c: owns the webhook job state machine, the verdict and backoff of
 * an attempt, and the pure pieces of a delivery (headers allow-list,
 * default body, signature, result message). No I/O, no globals; called
 * from rtw-webhookd's loop and from unit tests.
 */
#include "config.h"
#include "job.h"
#include "token.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *whk_job_state_name(enum whk_job_state s)
{
	switch (s) {
	case WHK_JOB_QUEUED: return "queued";
	case WHK_JOB_RUNNING: return "running";
	case WHK_JOB_RETRY_WAIT: return "retry-wait";
	case WHK_JOB_SUCCEEDED: return "succeeded";
	case WHK_JOB_FAILED: return "failed";
	case WHK_JOB_RELEASED: return "released";
	}
	return "?";
}

bool whk_job_transition_ok(enum whk_job_state from, enum whk_job_state to)
{
	switch (from) {
	case WHK_JOB_QUEUED:
	case WHK_JOB_RETRY_WAIT: return to == WHK_JOB_RUNNING;
	case WHK_JOB_RUNNING:
		return to == WHK_JOB_RETRY_WAIT || to == WHK_JOB_SUCCEEDED || to == WHK_JOB_FAILED ||
		       to == WHK_JOB_RELEASED;
	case WHK_JOB_SUCCEEDED:
	case WHK_JOB_FAILED:
	case WHK_JOB_RELEASED: return false;
	}
	return false;
}

enum whk_verdict whk_attempt_verdict(struct whk_attempt *a, int attempts, int max_attempts)
{
	bool retryable;

	if (a->refused) {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), "target refused");
		return WHK_VERDICT_FAIL;
	}
	if (a->too_large) {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), "response too large");
		retryable = false; /* the same target answers the same way */
	} else if (a->http_status >= 200 && a->http_status <= 299 && !a->net_error && !a->timed_out) {
		return WHK_VERDICT_SUCCEED;
	} else if (a->http_status == 0 || a->net_error || a->timed_out) {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), a->timed_out ? "timed out" : "network error");
		retryable = true;
	} else if (a->http_status >= 300 && a->http_status <= 399) {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), "redirect refused (HTTP %ld)", a->http_status);
		retryable = false;
	} else if (a->http_status == 429 || (a->http_status >= 500 && a->http_status <= 599)) {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), "HTTP %ld", a->http_status);
		retryable = true;
	} else {
		if (!a->error[0])
			snprintf(a->error, sizeof(a->error), "HTTP %ld", a->http_status);
		retryable = false;
	}
	return retryable && attempts < max_attempts ? WHK_VERDICT_RETRY : WHK_VERDICT_FAIL;
}

int64_t whk_backoff_ms(int attempts, int base_ms, int max_ms, long retry_after_s, uint32_t rnd)
{
	int64_t d;

	if (retry_after_s >= 0) {
		/* Compare in seconds first: the target's Retry-After reaches us
		 * as any long from curl, and "* 1000" overflowed (a negative
		 * delay) for values over 2^63 / 1000. Found by fuzz_whk_url. */
		if (retry_after_s > max_ms / 1000)
			return max_ms;
		return (int64_t)retry_after_s * 1000;
	}
	d = base_ms > 0 ? base_ms : 1;
	for (int i = 1; i < attempts && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	/* equal jitter: never less than half the step, spreads the herd */
	return d / 2 + (d - d / 2 > 0 ? (int64_t)(rnd % (uint64_t)(d - d / 2 + 1)) : 0);
}

static bool whk__tchar(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool whk_header_allowed(const char *name, const char *value)
{
	static const char *const exact[] = {"accept",	"accept-language", "cache-control", "idempotency-key",
					    "if-match", "if-none-match",   "pragma"};
	size_t n;
	bool ok = false;

	if (!name || !value)
		return false;
	n = strlen(name);
	if (n == 0 || n > WHK_HEADER_NAME_MAX || strlen(value) > WHK_HEADER_VALUE_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!whk__tchar((unsigned char)*p))
			return false;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	if (n > 2 && strncasecmp(name, "x-", 2) == 0)
		ok = strncasecmp(name, "x-rtw-", 6) != 0 && strncasecmp(name, "x-forwarded-", 12) != 0 &&
		     strcasecmp(name, "x-real-ip") != 0 && strcasecmp(name, "x-http-method-override") != 0;
	for (size_t i = 0; !ok && i < RTW_ARRAY_LEN(exact); i++)
		ok = strcasecmp(name, exact[i]) == 0;
	return ok;
}

char *whk_request_body(const char *job_id, const char *stream_id, const char *author_id, const char *widget_key,
		       double timestamp, const char *body_json)
{
	json_t *o = json_object(), *body = NULL;
	char *out = NULL;

	if (!o)
		return NULL;
	if (body_json) {
		json_error_t jerr;
		body = json_loads(body_json, JSON_DECODE_ANY, &jerr);
		if (!body)
			goto out;
	} else {
		body = json_null();
	}
	if (json_object_set_new(o, "job_id", json_string(job_id)) ||
	    json_object_set_new(o, "stream_id", json_string(stream_id)) ||
	    json_object_set_new(o, "author_id", json_string(author_id)) ||
	    json_object_set_new(o, "widget_key", json_string(widget_key)) ||
	    json_object_set_new(o, "timestamp", json_real(timestamp)))
		goto out;
	if (json_object_set_new(o, "body", body)) {
		body = NULL;
		goto out;
	}
	body = NULL;
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(body);
	json_decref(o);
	return out;
}

void whk_signature(const char *secret, size_t secret_len, int64_t unix_s, const char *delivery, const char *method,
		   const char *url, const char *body, size_t body_len, char out[96])
{
	unsigned char mac[32];
	char hex[65], ts[24];
	size_t tn = (size_t)snprintf(ts, sizeof(ts), "%" PRId64, unix_s);
	size_t dn = strlen(delivery), mn = strlen(method), un = strlen(url);
	/* signed string: t "." delivery "." METHOD "." url "." body, so that
	 * a captured signature is valid for no other delivery, method or URL */
	size_t n = tn + 1 + dn + 1 + mn + 1 + un + 1 + body_len;
	char *msg = malloc(n), *p = msg;

	if (!msg) {
		out[0] = '\0';
		return;
	}
	memcpy(p, ts, tn);
	p += tn;
	*p++ = '.';
	memcpy(p, delivery, dn);
	p += dn;
	*p++ = '.';
	memcpy(p, method, mn);
	p += mn;
	*p++ = '.';
	memcpy(p, url, un);
	p += un;
	*p++ = '.';
	if (body_len)
		memcpy(p, body, body_len);
	tok_hmac_sha256(secret, secret_len, msg, n, mac);
	free(msg);
	rtw_hex(mac, sizeof(mac), hex);
	snprintf(out, 96, "t=%s,v2=%s", ts, hex);
}

bool whk_author_anonymous(const char *author_id)
{
	return author_id && strncmp(author_id, "anon-", 5) == 0;
}

/* Length of the valid UTF-8 sequence at p (at most left bytes), 0 when
 * invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t whk__utf8_len(const unsigned char *p, size_t left)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

char *whk_text_excerpt(const char *data, size_t len, size_t max)
{
	static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD */
	char *out = malloc(max + 1);
	size_t o = 0, i = 0;

	if (!out)
		return NULL;
	while (i < len) {
		const unsigned char *p = (const unsigned char *)data + i;
		size_t n = p[0] ? whk__utf8_len(p, len - i) : 0;
		if (n) {
			if (o + n > max)
				break;
			memcpy(out + o, p, n);
			o += n;
			i += n;
		} else {
			if (o + 3 > max)
				break;
			memcpy(out + o, repl, 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	return out;
}

char *whk_result_message(const char *job_id, const char *url, bool succeeded, long http_status, int attempts,
			 const char *resp, size_t resp_len, size_t body_max, const char *error)
{
	json_t *o = json_object(), *body = NULL;
	char *out = NULL;

	if (!o)
		return NULL;
	if (resp && resp_len > 0) {
		json_error_t jerr;
		/* no JSON_ALLOW_NUL: jsonb cannot store \u0000 */
		if (resp_len <= body_max)
			body = json_loadb(resp, resp_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (!body) {
			char *text = whk_text_excerpt(resp, resp_len, body_max);
			if (!text)
				goto out;
			body = json_string(text);
			free(text);
		}
	} else {
		body = json_null();
	}
	if (!body)
		goto out;
	if (json_object_set_new(o, "job_id", json_string(job_id)) || json_object_set_new(o, "url", json_string(url)) ||
	    json_object_set_new(o, "status", json_string(succeeded ? "succeeded" : "failed")) ||
	    json_object_set_new(o, "http_status", http_status > 0 ? json_integer(http_status) : json_null()) ||
	    json_object_set_new(o, "attempts", json_integer(attempts)))
		goto out;
	if (json_object_set_new(o, "body", body)) {
		body = NULL;
		goto out;
	}
	body = NULL;
	if (json_object_set_new(o, "error", error && error[0] ? json_string(error) : json_null()))
		goto out;
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(body);
	json_decref(o);
	return out;
}
