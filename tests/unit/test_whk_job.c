/*
 * test_whk_job.c: unit tests of webhookd/job.c: the job state machine,
 * attempt verdicts, backoff, the header allow-list, the default body, the
 * signature, text excerpts and the result message (cmocka). Pure.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../webhookd/job.h"
#include "token.h"

static void test_transitions(void **state)
{
	assert_true(whk_job_transition_ok(WHK_JOB_QUEUED, WHK_JOB_RUNNING));
	assert_true(whk_job_transition_ok(WHK_JOB_RETRY_WAIT, WHK_JOB_RUNNING));
	assert_true(whk_job_transition_ok(WHK_JOB_RUNNING, WHK_JOB_SUCCEEDED));
	assert_true(whk_job_transition_ok(WHK_JOB_RUNNING, WHK_JOB_FAILED));
	assert_true(whk_job_transition_ok(WHK_JOB_RUNNING, WHK_JOB_RETRY_WAIT));
	assert_true(whk_job_transition_ok(WHK_JOB_RUNNING, WHK_JOB_RELEASED));
	assert_false(whk_job_transition_ok(WHK_JOB_QUEUED, WHK_JOB_SUCCEEDED));
	assert_false(whk_job_transition_ok(WHK_JOB_SUCCEEDED, WHK_JOB_RUNNING));
	assert_false(whk_job_transition_ok(WHK_JOB_FAILED, WHK_JOB_RETRY_WAIT));
	assert_false(whk_job_transition_ok(WHK_JOB_RELEASED, WHK_JOB_RUNNING));
	assert_false(whk_job_transition_ok(WHK_JOB_RUNNING, WHK_JOB_RUNNING));
	assert_string_equal(whk_job_state_name(WHK_JOB_RETRY_WAIT), "retry-wait");
}

static enum whk_verdict verdict(long status, int attempts, int max, char *err_out)
{
	struct whk_attempt a;
	memset(&a, 0, sizeof(a));
	a.http_status = status;
	a.retry_after_s = -1;
	enum whk_verdict v = whk_attempt_verdict(&a, attempts, max);
	if (err_out)
		strcpy(err_out, a.error);
	return v;
}

static void test_verdicts(void **state)
{
	char err[WHK_ERROR_MAX];
	struct whk_attempt a;

	assert_int_equal(verdict(200, 1, 5, err), WHK_VERDICT_SUCCEED);
	assert_string_equal(err, "");
	assert_int_equal(verdict(204, 5, 5, NULL), WHK_VERDICT_SUCCEED);
	assert_int_equal(verdict(500, 1, 5, err), WHK_VERDICT_RETRY);
	assert_string_equal(err, "HTTP 500");
	assert_int_equal(verdict(503, 4, 5, NULL), WHK_VERDICT_RETRY);
	assert_int_equal(verdict(503, 5, 5, NULL), WHK_VERDICT_FAIL);
	assert_int_equal(verdict(429, 1, 5, NULL), WHK_VERDICT_RETRY);
	assert_int_equal(verdict(404, 1, 5, err), WHK_VERDICT_FAIL);
	assert_string_equal(err, "HTTP 404");
	assert_int_equal(verdict(400, 1, 5, NULL), WHK_VERDICT_FAIL);
	assert_int_equal(verdict(301, 1, 5, err), WHK_VERDICT_FAIL);
	assert_string_equal(err, "redirect refused (HTTP 301)");
	assert_int_equal(verdict(100, 1, 5, NULL), WHK_VERDICT_FAIL);

	memset(&a, 0, sizeof(a));
	a.net_error = true;
	assert_int_equal(whk_attempt_verdict(&a, 1, 3), WHK_VERDICT_RETRY);
	assert_string_equal(a.error, "network error");
	memset(&a, 0, sizeof(a));
	a.timed_out = true;
	assert_int_equal(whk_attempt_verdict(&a, 3, 3), WHK_VERDICT_FAIL);
	assert_string_equal(a.error, "timed out");
	memset(&a, 0, sizeof(a));
	a.refused = true;
	a.http_status = 200;
	assert_int_equal(whk_attempt_verdict(&a, 1, 5), WHK_VERDICT_FAIL);
	assert_string_equal(a.error, "target refused");
	memset(&a, 0, sizeof(a));
	a.too_large = true;
	a.http_status = 200;
	assert_int_equal(whk_attempt_verdict(&a, 1, 5), WHK_VERDICT_FAIL);
	assert_string_equal(a.error, "response too large");
	/* a given error text is kept */
	memset(&a, 0, sizeof(a));
	a.net_error = true;
	strcpy(a.error, "could not resolve host");
	assert_int_equal(whk_attempt_verdict(&a, 1, 5), WHK_VERDICT_RETRY);
	assert_string_equal(a.error, "could not resolve host");
}

static void test_backoff(void **state)
{
	/* equal jitter: in [step/2, step] */
	for (uint32_t r = 0; r < 2000; r += 7) {
		int64_t d1 = whk_backoff_ms(1, 1000, 300000, -1, r);
		int64_t d3 = whk_backoff_ms(3, 1000, 300000, -1, r);
		int64_t d30 = whk_backoff_ms(30, 1000, 300000, -1, r);
		assert_true(d1 >= 500 && d1 <= 1000);
		assert_true(d3 >= 2000 && d3 <= 4000);
		assert_true(d30 >= 150000 && d30 <= 300000);
	}
	assert_int_equal(whk_backoff_ms(1, 1000, 300000, -1, 0), 500);
	assert_int_equal(whk_backoff_ms(2, 1000, 300000, 7, 12345), 7000);
	assert_int_equal(whk_backoff_ms(2, 1000, 300000, 0, 12345), 0);
	assert_int_equal(whk_backoff_ms(2, 1000, 5000, 3600, 1), 5000); /* Retry-After capped */
	assert_true(whk_backoff_ms(1000, 1000, 300000, -1, 99) <= 300000);
	assert_true(whk_backoff_ms(1, 0, 10, -1, 5) >= 0);
}

static void test_headers(void **state)
{
	assert_true(whk_header_allowed("X-Custom", "yes"));
	assert_true(whk_header_allowed("x-api-version", "2"));
	assert_true(whk_header_allowed("Accept", "application/json"));
	assert_true(whk_header_allowed("Idempotency-Key", "abc"));
	assert_true(whk_header_allowed("X-Tab", "a\tb"));
	assert_false(whk_header_allowed("Host", "evil"));
	assert_false(whk_header_allowed("Content-Length", "5"));
	assert_false(whk_header_allowed("Transfer-Encoding", "chunked"));
	assert_false(whk_header_allowed("Connection", "close"));
	assert_false(whk_header_allowed("Cookie", "a=b"));
	assert_false(whk_header_allowed("Authorization", "Bearer x"));
	assert_false(whk_header_allowed("Content-Type", "text/plain"));
	assert_false(whk_header_allowed("X-RTW-Signature", "t=1,v1=00"));
	assert_false(whk_header_allowed("x-rtw-delivery", "1"));
	assert_false(whk_header_allowed("X-Forwarded-For", "10.0.0.1"));
	assert_false(whk_header_allowed("X-Real-IP", "10.0.0.1"));
	assert_false(whk_header_allowed("X-HTTP-Method-Override", "DELETE"));
	assert_false(whk_header_allowed("X-", "v"));
	assert_false(whk_header_allowed("X-Evil", "a\r\nHost: b"));
	assert_false(whk_header_allowed("X-Evil", "a\nb"));
	assert_false(whk_header_allowed("X Bad", "v"));
	assert_false(whk_header_allowed("X-Bad:", "v"));
	assert_false(whk_header_allowed("", "v"));
	assert_false(whk_header_allowed(NULL, "v"));
	assert_false(whk_header_allowed("X-A", NULL));
	char big[WHK_HEADER_VALUE_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(whk_header_allowed("X-Big", big));
	big[WHK_HEADER_VALUE_MAX] = '\0';
	assert_true(whk_header_allowed("X-Big", big));
}

static void test_request_body(void **state)
{
	char *b = whk_request_body("17", "s1", "u1", "6b9f652a-63fd-47d7-a3bc-418c1096eb8c", 12.5, "{\"a\": [1, 2]}");
	assert_non_null(b);
	assert_string_equal(b, "{\"job_id\":\"17\",\"stream_id\":\"s1\",\"author_id\":\"u1\","
			       "\"widget_key\":\"6b9f652a-63fd-47d7-a3bc-418c1096eb8c\",\"timestamp\":12.5,"
			       "\"body\":{\"a\":[1,2]}}");
	free(b);
	b = whk_request_body("1", "s", "u", "k", 0, NULL);
	assert_non_null(b);
	assert_non_null(strstr(b, "\"body\":null"));
	free(b);
	b = whk_request_body("1", "s", "u", "k", 0, "\"text\"");
	assert_non_null(strstr(b, "\"body\":\"text\""));
	free(b);
	assert_null(whk_request_body("1", "s", "u", "k", 0, "{not json"));
}

/* Issue 10, finding 5: GET/DELETE deliveries signed only "t.", so a
 * signature captured on one's own server replayed against any receiver.
 * v2 signs time, delivery id, method, URL and body (contract 1.1). */
static void test_signature(void **state)
{
	char sig[96], hex[65], want[96], other[96];
	unsigned char mac[32];
	const char *body = "{\"x\":1}";
	const char *signed_text = "1700000000.17.POST.https://h.test/a?b=1.{\"x\":1}";

	whk_signature("secret", 6, 1700000000, "17", "POST", "https://h.test/a?b=1", body, strlen(body), sig);
	tok_hmac_sha256("secret", 6, signed_text, strlen(signed_text), mac);
	rtw_hex(mac, 32, hex);
	snprintf(want, sizeof(want), "t=1700000000,v2=%s", hex);
	assert_string_equal(sig, want);
	/* empty body (GET): the string ends in "." */
	whk_signature("secret", 6, 5, "9", "GET", "http://h.test/", "", 0, sig);
	tok_hmac_sha256("secret", 6, "5.9.GET.http://h.test/.", strlen("5.9.GET.http://h.test/."), mac);
	rtw_hex(mac, 32, hex);
	snprintf(want, sizeof(want), "t=5,v2=%s", hex);
	assert_string_equal(sig, want);
	/* a GET signature is valid for no other key, delivery, method or URL */
	whk_signature("secreT", 6, 5, "9", "GET", "http://h.test/", "", 0, other);
	assert_string_not_equal(sig, other);
	whk_signature("secret", 6, 5, "10", "GET", "http://h.test/", "", 0, other);
	assert_string_not_equal(sig, other);
	whk_signature("secret", 6, 5, "9", "DELETE", "http://h.test/", "", 0, other);
	assert_string_not_equal(sig, other);
	whk_signature("secret", 6, 5, "9", "GET", "http://evil.test/", "", 0, other);
	assert_string_not_equal(sig, other);
	whk_signature("secret", 6, 6, "9", "GET", "http://h.test/", "", 0, other);
	assert_string_not_equal(sig, other);
}

static void test_author_anonymous(void **state)
{
	assert_true(whk_author_anonymous("anon-0123456789abcdef"));
	assert_false(whk_author_anonymous("user-7"));
	assert_false(whk_author_anonymous("xanon-1"));
	assert_false(whk_author_anonymous(NULL));
}

static void test_excerpt(void **state)
{
	char *e = whk_text_excerpt("hello", 5, 3);
	assert_string_equal(e, "hel");
	free(e);
	/* never cuts inside a character: "é" is 2 bytes */
	e = whk_text_excerpt("a\xc3\xa9", 3, 2);
	assert_string_equal(e, "a");
	free(e);
	/* invalid bytes and NUL become U+FFFD */
	e = whk_text_excerpt("a\xff"
			     "b\0c",
			     5, 100);
	assert_string_equal(e, "a\xef\xbf\xbd"
			       "b\xef\xbf\xbd"
			       "c");
	free(e);
	/* overlong and surrogate encodings are invalid */
	e = whk_text_excerpt("\xc0\xaf\xed\xa0\x80", 5, 100);
	assert_null(strstr(e, "\xc0"));
	assert_null(strstr(e, "\xed"));
	free(e);
	e = whk_text_excerpt("", 0, 10);
	assert_string_equal(e, "");
	free(e);
}

static void test_result_message(void **state)
{
	char *m = whk_result_message("9", "https://h/x", true, 200, 2, "{\"ok\":true}", 11, 100, NULL);
	assert_string_equal(m, "{\"job_id\":\"9\",\"url\":\"https://h/x\",\"status\":\"succeeded\",\"http_status\":200,"
			       "\"attempts\":2,\"body\":{\"ok\":true},\"error\":null}");
	free(m);
	/* JSON over the cap: cut text instead */
	m = whk_result_message("9", "u", true, 200, 1, "{\"ok\":true}", 11, 5, NULL);
	assert_non_null(strstr(m, "\"body\":\"{\\\"ok\\\"\","));
	free(m);
	/* not JSON: text */
	m = whk_result_message("9", "u", false, 500, 5, "oops", 4, 100, "HTTP 500");
	assert_non_null(strstr(m, "\"status\":\"failed\""));
	assert_non_null(strstr(m, "\"body\":\"oops\""));
	assert_non_null(strstr(m, "\"error\":\"HTTP 500\""));
	free(m);
	/* no response: nulls */
	m = whk_result_message("9", "u", false, 0, 1, NULL, 0, 100, "target refused: loopback address");
	assert_non_null(strstr(m, "\"http_status\":null"));
	assert_non_null(strstr(m, "\"body\":null"));
	free(m);
	/* \u0000 cannot go into jsonb: kept as text */
	m = whk_result_message("9", "u", true, 200, 1, "\"a\\u0000b\"", 10, 100, NULL);
	assert_non_null(strstr(m, "\"body\":\"\\\"a\\\\u0000b\\\"\""));
	free(m);
	/* duplicate keys are not JSON we pass on as an object */
	m = whk_result_message("9", "u", true, 200, 1, "{\"a\":1,\"a\":2}", 13, 100, NULL);
	assert_non_null(strstr(m, "\"body\":\"{"));
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transitions),	     cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_backoff),	     cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_request_body),     cmocka_unit_test(test_signature),
	    cmocka_unit_test(test_author_anonymous), cmocka_unit_test(test_excerpt),
	    cmocka_unit_test(test_result_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
