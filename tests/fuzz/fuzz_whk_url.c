/*
 * fuzz_whk_url.c: libFuzzer driver for rtw-webhookd's target checks: the
 * URL policy and the header building of webhookd/fetch.c (included here
 * so its static functions can be called, as SQLite's tests do), the
 * address classifier, host matching and host:port allow-list of
 * webhookd/addr.c, and the
 * pure delivery pieces of webhookd/job.c (header allow-list, backoff with
 * a Retry-After, response excerpt, result message, request body). No
 * connection is ever made. abort() on a violated invariant. Built with
 * -DRTW_LIBFUZZER it is a libFuzzer target; without it, main()
 * (replay.h) replays the files and directories named on the command line.
 *
 * Input: byte 0 picks the mode (below); the rest is split at '\x01' into
 * the mode's pieces.
 */
#include "../../webhookd/fetch.c"

#include <stdint.h>

#define FUZZ_NAME "fuzz_whk_url"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_whk_url: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

/* fetch.c reports finished calls to the worker; no call finishes here. */
void whk_worker_call_done(struct whk_job *job)
{
	(void)job;
	abort();
}

enum { MODE_POLICY, MODE_ADDR, MODE_HOSTS, MODE_JOB, MODE_COUNT };

#define MAX_PIECES 6

/* Splits s (NUL-terminated copy of the input) at '\x01'; returns the
 * count; missing pieces are NULL. */
static int pieces(char *s, char *out[MAX_PIECES])
{
	int n = 0;

	for (int i = 0; i < MAX_PIECES; i++)
		out[i] = NULL;
	while (n < MAX_PIECES) {
		char *sep = strchr(s, '\x01');
		out[n++] = s;
		if (sep == NULL)
			break;
		*sep = '\0';
		s = sep + 1;
	}
	return n;
}

/* url, widget hosts JSON, webhook.allow_hosts, headers JSON */
static void fuzz_policy(char *p[MAX_PIECES])
{
	struct rtw_cfg cfg = {.webhook_secret = "k",
			      .webhook_allow_hosts = p[2] ? p[2] : "",
			      .webhook_require_widget_hosts = p[4] && p[4][0] == 'r',
			      .webhook_refuse_anonymous = true};
	struct whk_worker w = {.cfg = &cfg};
	struct whk_fetch f = {.w = &w};
	struct whk_job job = {.w = &w,
			      .url = p[0],
			      .widget_hosts_json = p[1],
			      .headers_json = p[3],
			      .method = "POST",
			      .author_id = p[5] ? p[5] : "u"};
	int rc;

	snprintf(job.id, sizeof(job.id), "42");
	job.at.retry_after_s = -1;
	rc = fetch__policy(&f, &job);
	CHECK(rc == RTW_OK || rc == RTW_DECLINED || rc == RTW_ERROR);
	if (rc == RTW_DECLINED) {
		CHECK(job.at.refused);
		CHECK(strncmp(job.at.error, "target refused: ", 16) == 0);
	} else if (rc == RTW_OK) {
		char *host = NULL, *scheme = NULL;
		CHECK(curl_url_get(job.cu, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0');
		CHECK(curl_url_get(job.cu, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK);
		CHECK(strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
		/* never credentials, never an anonymous requester, never a
		 * widget without hosts when they are required */
		char *user = NULL;
		CHECK(curl_url_get(job.cu, CURLUPART_USER, &user, 0) != CURLUE_OK);
		curl_free(user);
		CHECK(!whk_author_anonymous(job.author_id));
		CHECK(job.url_host != NULL && strcmp(job.url_host, host) == 0);
		if (cfg.webhook_require_widget_hosts) {
			bool empty;
			CHECK(fetch__widget_allows(&job, host, &empty) && !empty);
		}
		curl_free(host);
		curl_free(scheme);

		/* the headers sent with it: never a line break (no injection),
		 * at most WHK_MAX_HEADERS from the widget */
		job.req_body = strdup("{}");
		CHECK(job.req_body != NULL);
		job.req_len = 2;
		if (fetch__headers(&f, &job) == RTW_OK) {
			int n = 0;
			for (struct curl_slist *l = job.hdrs; l; l = l->next, n++)
				CHECK(strpbrk(l->data, "\r\n") == NULL);
			CHECK(n <= WHK_MAX_HEADERS + 4);
		}
	}
	whk_fetch_cleanup(&job);
}

/* raw address bytes, then text */
static void fuzz_addr(const uint8_t *d, size_t n, char *p[MAX_PIECES])
{
	unsigned char v4[4] = {0}, v6[16] = {0}, mapped[16] = {[10] = 0xff, [11] = 0xff};
	char text[INET6_ADDRSTRLEN + 2];
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	enum whk_addr_class c4, c6;

	memcpy(v4, d, n < 4 ? n : 4);
	memcpy(v6, d, n < 16 ? n : 16);
	c4 = whk_addr_classify_v4(v4);
	c6 = whk_addr_classify_v6(v6);
	CHECK(c4 != WHK_ADDR_INVALID && c6 != WHK_ADDR_INVALID);
	CHECK(strcmp(whk_addr_class_name(c4), "invalid") != 0);
	/* the mapped form is judged as the IPv4 address */
	memcpy(mapped + 12, v4, 4);
	CHECK(whk_addr_classify_v6(mapped) == c4);
	/* the text and sockaddr forms agree with the bytes */
	CHECK(inet_ntop(AF_INET, v4, text, sizeof(text)) != NULL);
	CHECK(whk_addr_classify_text(text) == c4);
	CHECK(inet_ntop(AF_INET6, v6, text + 1, sizeof(text) - 2) != NULL);
	CHECK(whk_addr_classify_text(text + 1) == c6);
	text[0] = '[';
	strcat(text, "]");
	CHECK(whk_addr_classify_text(text) == c6);
	memcpy(&sin.sin_addr, v4, 4);
	memcpy(&sin6.sin6_addr, v6, 16);
	CHECK(whk_addr_classify((struct sockaddr *)&sin, sizeof(sin)) == c4);
	CHECK(whk_addr_classify((struct sockaddr *)&sin6, sizeof(sin6)) == c6);
	CHECK(whk_addr_classify((struct sockaddr *)&sin6, sizeof(sin)) == WHK_ADDR_INVALID);
	/* 6to4 of a non-public IPv4 address is never public */
	if (v6[0] == 0x20 && v6[1] == 0x02 && whk_addr_classify_v4(v6 + 2) != WHK_ADDR_PUBLIC)
		CHECK(c6 != WHK_ADDR_PUBLIC);
	for (int i = 0; i < MAX_PIECES && p[i]; i++)
		(void)whk_addr_class_name(whk_addr_classify_text(p[i]));
}

/* host, pattern, more list entries; the raw bytes give a peer address */
static void fuzz_hosts(const uint8_t *d, size_t n, char *p[MAX_PIECES])
{
	const char *host = p[0], *pat = p[1] ? p[1] : "";
	bool m = whk_host_match(host, pat);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	unsigned char ip[4];
	char list[8192], err[256], port[16];

	if (m) {
		/* case does not matter */
		char *up = strdup(host);
		CHECK(up != NULL);
		for (char *c = up; *c; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 32);
		CHECK(whk_host_match(up, pat));
		free(up);
	}
	CHECK(!whk_host_match(NULL, pat));

	/* the allow-list opens a peer only on a port that an entry names */
	memset(ip, 0, sizeof(ip));
	memcpy(ip, d, n < 4 ? n : 4);
	memcpy(&sin.sin_addr, ip, 4);
	sin.sin_port = htons(n > 5 ? (uint16_t)(d[4] | d[5] << 8) : 8080);
	snprintf(port, sizeof(port), ":%u", (unsigned)ntohs(sin.sin_port));
	for (int i = 1; i < MAX_PIECES && p[i]; i++) {
		err[0] = '\0';
		if (whk_allow_list_check(p[i], err, sizeof(err)) != RTW_OK)
			CHECK(strstr(err, "expected host:port") != NULL);
		if (whk_allow_match(p[i], host, (struct sockaddr *)&sin, sizeof(sin)))
			CHECK(strstr(p[i], port) != NULL);
	}
	/* a plain name entry "pat:port" opens exactly what the name match says */
	if (pat[0] && strlen(pat) < 200 && strpbrk(pat, ",:[] \t") == NULL && inet_pton(AF_INET, pat, ip) != 1) {
		snprintf(list, sizeof(list), "%s%s", pat, port);
		CHECK(whk_allow_list_check(list, err, sizeof(err)) == (ntohs(sin.sin_port) ? RTW_OK : RTW_ERROR));
		if (ntohs(sin.sin_port))
			CHECK(whk_allow_match(list, host, (struct sockaddr *)&sin, sizeof(sin)) == m);
	}
}

static bool valid_utf8(const unsigned char *s)
{
	json_t *j = json_string((const char *)s);
	bool ok = j != NULL;
	json_decref(j);
	return ok;
}

/* header name, header value, response body, request body JSON; the raw
 * bytes also give the numbers */
static void fuzz_job(const uint8_t *d, size_t n, char *p[MAX_PIECES])
{
	const char *name = p[0], *value = p[1] ? p[1] : "";
	uint8_t b[24] = {0};
	int64_t v;

	if (whk_header_allowed(name, value)) {
		CHECK(strpbrk(value, "\r\n") == NULL && strpbrk(name, "\r\n: ") == NULL);
		CHECK(strlen(name) <= WHK_HEADER_NAME_MAX && strlen(value) <= WHK_HEADER_VALUE_MAX);
		CHECK(strncasecmp(name, "x-rtw-", 6) != 0);
	}

	/* backoff: attempts, base, max within what the config allows, any
	 * Retry-After curl can report (a long) */
	memcpy(b, d, n < sizeof(b) ? n : sizeof(b));
	int attempts = b[0];
	int base_ms = 1 + (int)((uint32_t)(b[1] | b[2] << 8 | b[3] << 16) % 3600000);
	int max_ms = 1 + (int)((uint32_t)(b[4] | b[5] << 8 | b[6] << 16 | (b[7] & 0x7f) << 24) % INT32_MAX);
	long ra;
	uint32_t rnd;
	memcpy(&ra, b + 8, sizeof(ra));
	memcpy(&rnd, b + 16, sizeof(rnd));
	if (b[20] & 1)
		ra = -1;
	v = whk_backoff_ms(attempts, base_ms, max_ms, ra, rnd);
	CHECK(v >= 0 && v <= max_ms);

	/* verdicts */
	struct whk_attempt at = {.http_status = (long)(b[1] | b[2] << 8) - 100,
				 .refused = b[3] & 1,
				 .too_large = b[3] & 2,
				 .net_error = b[3] & 4,
				 .timed_out = b[3] & 8};
	enum whk_verdict vd = whk_attempt_verdict(&at, b[4] % 8, b[5] % 8);
	CHECK(vd == WHK_VERDICT_SUCCEED || at.error[0] != '\0');
	CHECK(vd != WHK_VERDICT_SUCCEED || (at.http_status >= 200 && at.http_status <= 299));

	/* the response excerpt and the result message */
	const char *resp = p[2] ? p[2] : (const char *)d;
	size_t resp_len = p[2] ? strlen(p[2]) : n, max = b[6];
	char *ex = whk_text_excerpt(resp, resp_len, max);
	CHECK(ex != NULL && strlen(ex) <= max && valid_utf8((unsigned char *)ex));
	free(ex);
	char *res = whk_result_message("42", p[3] ? p[3] : "http://x/", b[7] & 1, at.http_status, attempts, resp,
				       resp_len, max, at.error);
	if (res != NULL) {
		json_t *j = json_loads(res, 0, NULL);
		CHECK(j != NULL && json_is_object(j));
		json_decref(j);
		free(res);
	} else {
		/* only a url or error that is not UTF-8 can fail it */
		CHECK(p[3] != NULL && !valid_utf8((unsigned char *)p[3]));
	}

	/* the default body with any body column */
	char *rb = whk_request_body("1", "s", "a", "w", 1.5, p[3]);
	if (rb != NULL) {
		json_t *j = json_loads(rb, 0, NULL);
		CHECK(j != NULL);
		json_decref(j);
		free(rb);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *p[MAX_PIECES];

	if (size < 1 || size > 8192)
		return 0;
	s = malloc(size);
	CHECK(s != NULL);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	pieces(s, p);
	switch (data[0] % MODE_COUNT) {
	case MODE_POLICY: fuzz_policy(p); break;
	case MODE_ADDR: fuzz_addr(data + 1, size - 1, p); break;
	case MODE_HOSTS: fuzz_hosts(data + 1, size - 1, p); break;
	case MODE_JOB: fuzz_job(data + 1, size - 1, p); break;
	}
	free(s);
	return 0;
}

#include "replay.h"
