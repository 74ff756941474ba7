/*
 * job.h: one webhook job as rtw-webhookd holds it between claim and its
 * final write: the state machine (one transition function), the verdict
 * on an attempt (succeed, retry, fail), the retry backoff, and the pure
 * pieces of a delivery: the allowed widget headers, the default JSON body,
 * the signature and the result message. No I/O; the loop owns the jobs.
 */
#ifndef WHK_JOB_H
#define WHK_JOB_H

#include "rtw.h"

#include <jansson.h>

#define WHK_ERROR_MAX 256
#define WHK_MAX_HEADERS 20
#define WHK_HEADER_NAME_MAX 64
#define WHK_HEADER_VALUE_MAX 1024

/* What the row says and what the worker does with it. A job is created
 * RUNNING by a claim; RUNNING → RETRY_WAIT (row back to queued with a
 * later run_at), SUCCEEDED, FAILED, or RELEASED (shutdown: row back to
 * queued, the attempt not counted). The last four are final in this
 * process (a retry is claimed again as a new job object). */
enum whk_job_state {
	WHK_JOB_QUEUED,
	WHK_JOB_RUNNING,
	WHK_JOB_RETRY_WAIT,
	WHK_JOB_SUCCEEDED,
	WHK_JOB_FAILED,
	WHK_JOB_RELEASED,
};

const char *whk_job_state_name(enum whk_job_state s);

/* True when from → to is a legal transition. */
bool whk_job_transition_ok(enum whk_job_state from, enum whk_job_state to);

/* The outcome of one HTTP attempt, filled by the fetcher. */
struct whk_attempt {
	long http_status; /* 0 when no response */
	bool refused;	  /* target refused by policy: final, no retry */
	bool too_large;	  /* response over webhook.max_response */
	bool net_error;	  /* connect/DNS/TLS/transfer failure */
	bool timed_out;
	long retry_after_s;	   /* Retry-After of a 429/503, -1 when none */
	char error[WHK_ERROR_MAX]; /* "" when none */
};

enum whk_verdict { WHK_VERDICT_SUCCEED, WHK_VERDICT_RETRY, WHK_VERDICT_FAIL };

/* Decides what the attempt means: 2xx succeeds; refusals, 3xx and 4xx
 * other than 429 fail at once; network errors, timeouts, 429 and 5xx are
 * retried while attempts < max_attempts. A response too large fails at
 * once (the same target would answer the same way). Fills a->error when it is empty
 * and the verdict is not success. */
enum whk_verdict whk_attempt_verdict(struct whk_attempt *a, int attempts, int max_attempts);

/* Delay before the next attempt after `attempts` attempts: base doubling
 * per attempt, capped at max_ms, with "equal jitter" (half fixed, half
 * random from rnd). A Retry-After (seconds, >= 0) replaces the computed
 * delay, also capped at max_ms. */
int64_t whk_backoff_ms(int attempts, int base_ms, int max_ms, long retry_after_s, uint32_t rnd);

/* True when a widget-supplied header may be sent: X-* (but not X-RTW-*,
 * X-Forwarded-*, X-Real-IP), Accept, Accept-Language, Cache-Control,
 * Idempotency-Key, If-Match, If-None-Match, Pragma; a token name of at
 * most WHK_HEADER_NAME_MAX bytes and a value without control characters
 * of at most WHK_HEADER_VALUE_MAX bytes. */
bool whk_header_allowed(const char *name, const char *value);

/* The default request body of a POST (and PUT/PATCH):
 * {"job_id","stream_id","author_id","widget_key","timestamp","body"}.
 * body_json is the job's body column as JSON text, or NULL. Returns a
 * malloc'd compact string (caller frees) or NULL. */
char *whk_request_body(const char *job_id, const char *stream_id, const char *author_id, const char *widget_key,
		       double timestamp, const char *body_json) RTW_WUR;

/* Writes "t=<unix>,v2=<hex hmac>" into out (needs 96 bytes): the
 * HMAC-SHA256 under secret of t "." delivery "." method "." url "." body
 * (contract 1.1; body is empty when none is sent). out is "" when memory
 * runs out. */
void whk_signature(const char *secret, size_t secret_len, int64_t unix_s, const char *delivery, const char *method,
		   const char *url, const char *body, size_t body_len, char out[96]);

/* True when author_id is an identity rtw minted for an anonymous viewer
 * ("anon-" + hex: rtw-sse's minted tokens and rtw-fcgi's open-mode ids).
 * Only rtw and the holder of auth.secret can sign a token for a subject,
 * so a viewer can neither shed nor forge the prefix. */
bool whk_author_anonymous(const char *author_id);

/* Copies at most max bytes of data into a NUL-terminated malloc'd string
 * that is valid UTF-8 without NUL characters (bad bytes become U+FFFD;
 * the cut never splits a character). Caller frees; NULL on no memory. */
char *whk_text_excerpt(const char *data, size_t len, size_t max) RTW_WUR;

/* The result message of a finished job:
 * {"job_id","url","status","http_status","attempts","body","error"}.
 * body is the response parsed as JSON when it is valid JSON of at most
 * body_max bytes, else its text cut at body_max, or null when empty.
 * Returns a malloc'd compact string (caller frees) or NULL. */
char *whk_result_message(const char *job_id, const char *url, bool succeeded, long http_status, int attempts,
			 const char *resp, size_t resp_len, size_t body_max, const char *error) RTW_WUR;

#endif
