/*
 * fuzz_token.c: libFuzzer driver for lib/token.c. Feeds tok_verify
 * arbitrary token text, text the driver signs itself (so the base64url
 * decoding and the JSON of header and claims are reached past the
 * signature check), and tok_mint output that is then mutated; checks the
 * claims' invariants (abort() on a violation). Built with -DRTW_LIBFUZZER
 * it is a libFuzzer target; without it, main() (replay.h) replays the
 * files and directories named on the command line.
 *
 * Input: byte 0 picks the mode (below), the rest is its data.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "msg.h"

#define FUZZ_NAME "fuzz_token"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_token: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static const char secret[] = "fuzz-secret-0123456789";
#define NOW INT64_C(1700000000)

enum { MODE_RAW, MODE_SIGN_TEXT, MODE_SIGN_JSON, MODE_MINT, MODE_COUNT };

/* Unpadded base64url, written independently of token.c's encoder. */
static size_t b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = a[acc >> bits & 63];
		}
	}
	if (bits > 0)
		out[o++] = a[acc << (6 - bits) & 63];
	out[o] = '\0';
	return o;
}

/* Checks what a successful verification must give. */
static void check_claims(const struct tok_claims *c)
{
	size_t n = strlen(c->sub);
	CHECK(n >= 1 && n <= TOK_SUB_MAX);
	CHECK(msg_valid_user_id(c->sub));
	CHECK(c->exp > NOW); /* exp is required */
	CHECK(c->streams_any == (c->streams == NULL));
	CHECK(c->streams != NULL || c->n_streams == 0);
	for (size_t i = 0; i < c->n_streams; i++) {
		CHECK(c->streams[i] != NULL);
		CHECK(tok_allows_stream(c, c->streams[i]));
	}
	if (c->streams_any)
		CHECK(tok_allows_stream(c, "any-stream"));
}

static void verify(const char *token, const char *key, size_t keylen)
{
	struct tok_claims c;
	const char *why = NULL;

	if (tok_verify(key, keylen, token, NOW, &c, &why) == RTW_OK) {
		check_claims(&c);
		tok_claims_free(&c);
	} else {
		CHECK(why != NULL && why[0] != '\0');
		CHECK(c.streams == NULL && c.n_streams == 0);
		/* the reason never repeats the token */
		CHECK(strlen(token) < 8 || strstr(why, token) == NULL);
	}
}

/* Appends ".<signature>" of text (which ends at text[n]) under secret. */
static char *sign(const char *text, size_t n)
{
	unsigned char mac[32];
	char *out = malloc(n + 48);

	CHECK(out != NULL);
	memcpy(out, text, n);
	tok_hmac_sha256(secret, sizeof(secret) - 1, out, n, mac);
	out[n] = '.';
	b64url(mac, 32, out + n + 1);
	return out;
}

/* The rest split at the first '\x01': header JSON, then payload JSON
 * (no '\x01': a fixed HS256 header and the whole rest as payload). */
static void sign_json(const char *s, size_t n)
{
	static const char hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	const char *sep = memchr(s, '\x01', n), *hdr = hs256, *pl = s;
	size_t hl = sizeof(hs256) - 1, pn = n;
	char *text, *token;

	if (sep != NULL) {
		hdr = s;
		hl = (size_t)(sep - s);
		pl = sep + 1;
		pn = n - hl - 1;
	}
	text = malloc((hl + pn) / 3 * 4 + 16);
	CHECK(text != NULL);
	size_t t = b64url((const unsigned char *)hdr, hl, text);
	text[t++] = '.';
	t += b64url((const unsigned char *)pl, pn, text + t);
	token = sign(text, t);
	verify(token, secret, sizeof(secret) - 1);
	free(token);
	free(text);
}

/* Mints a token from pieces of the input, checks that it verifies to the
 * same claims, then flips bytes of it as the rest of the input says. */
static void mint_mutate(const char *s, size_t n)
{
	/* sub '\x01' stream '\x01' [exp byte, admin byte] then (pos, xor) pairs */
	char sub[300], stream[300];
	const char *p = s, *end = s + n, *sep;
	size_t l;
	int64_t exp = 0;
	bool admin = false;
	struct tok_claims c, c2;
	const char *why;

	sep = memchr(p, '\x01', (size_t)(end - p));
	l = (size_t)((sep ? sep : end) - p);
	l = l < sizeof(sub) - 1 ? l : sizeof(sub) - 1;
	memcpy(sub, p, l);
	sub[l] = '\0';
	p = sep ? sep + 1 : end;
	sep = memchr(p, '\x01', (size_t)(end - p));
	l = (size_t)((sep ? sep : end) - p);
	l = l < sizeof(stream) - 1 ? l : sizeof(stream) - 1;
	memcpy(stream, p, l);
	stream[l] = '\0';
	p = sep ? sep + 1 : end;
	if (end - p >= 2) {
		exp = p[0] & 1 ? NOW + (unsigned char)p[0] - 128 : 0;
		admin = p[1] & 1;
		p += 2;
	}

	char *tok = tok_mint(secret, sizeof(secret) - 1, sub, exp, stream[0] ? stream : NULL, admin);
	if (tok == NULL)
		return; /* sub not valid UTF-8: jansson refuses it */
	int rc = tok_verify(secret, sizeof(secret) - 1, tok, NOW, &c, &why);
	if (msg_valid_user_id(sub) && exp > NOW) { /* exp is required; sub a user id */
		CHECK(rc == RTW_OK);
		CHECK(strcmp(c.sub, sub) == 0);
		CHECK(c.exp == exp && c.admin == admin);
		CHECK(stream[0] == '\0' ? c.streams_any : (c.n_streams == 1 && tok_allows_stream(&c, stream)));
	} else {
		CHECK(rc != RTW_OK);
	}
	/* a wrong key never verifies */
	CHECK(tok_verify("other", 5, tok, NOW, &c2, &why) != RTW_OK);

	/* mutations: a mutated token that still verifies differs only in
	 * the ignored low bits of the signature's last character */
	size_t tl = strlen(tok);
	char *m = strdup(tok);
	CHECK(m != NULL);
	for (; end - p >= 2; p += 2) {
		size_t pos = (unsigned char)p[0] % (tl + 1);
		if (pos == tl) {
			m[tl - 1 - (unsigned char)p[1] % tl] = '\0'; /* truncate */
			tl = strlen(m);
			if (tl == 0)
				break;
		} else if (p[1] != 0) {
			m[pos] ^= p[1];
		}
	}
	if (tl > 0) {
		struct tok_claims c3;
		if (tok_verify(secret, sizeof(secret) - 1, m, NOW, &c3, &why) == RTW_OK) {
			check_claims(&c3);
			CHECK(rc == RTW_OK && strcmp(c3.sub, c.sub) == 0);
			CHECK(strlen(m) == strlen(tok) && memcmp(m, tok, strlen(tok) - 1) == 0);
			tok_claims_free(&c3);
		}
	}
	if (rc == RTW_OK)
		tok_claims_free(&c);
	free(m);
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;
	size_t n;

	if (size < 1 || size > 16384)
		return 0;
	n = size - 1;
	s = malloc(n + 1);
	CHECK(s != NULL);
	memcpy(s, data + 1, n);
	s[n] = '\0';

	switch (data[0] % MODE_COUNT) {
	case MODE_RAW:
		/* token text up to its first NUL, under the secret and under
		 * an empty key */
		verify(s, secret, sizeof(secret) - 1);
		verify(s, "", 0);
		break;
	case MODE_SIGN_TEXT: {
		/* the text is "header.payload" (any bytes up to a NUL) */
		char *token = sign(s, strlen(s));
		verify(token, secret, sizeof(secret) - 1);
		free(token);
		break;
	}
	case MODE_SIGN_JSON: sign_json(s, n); break;
	case MODE_MINT: mint_mutate(s, n); break;
	}
	free(s);
	return 0;
}

#include "replay.h"
