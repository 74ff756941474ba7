/*
 * test_token.c: unit tests of HS256 minting and verification, including
 * tampering, expiry (and its absence), algorithm confusion, the streams
 * claim and verification during a key rotation; and the cache of verified
 * tokens: the same answers as verification, expiry and a secret change
 * honoured on a hit, refusals never kept, its bound.
 */
#include "config.h"
#include "token.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SECRET "s3cret"
#define NOW 1800000000

static void test_roundtrip(void **state)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "user-7", NOW + 60, "live-1", true);
	assert_non_null(t);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_OK);
	assert_string_equal(c.sub, "user-7");
	assert_int_equal(c.exp, NOW + 60);
	assert_true(c.admin);
	assert_false(c.streams_any);
	assert_true(tok_allows_stream(&c, "live-1"));
	assert_false(tok_allows_stream(&c, "live-2"));
	tok_claims_free(&c);
	free(t);
}

static void test_no_streams_means_any(void **state)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "u", NOW + 1, NULL, false);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_OK);
	assert_true(c.streams_any);
	assert_int_equal(c.exp, NOW + 1);
	assert_false(c.admin);
	assert_true(tok_allows_stream(&c, "whatever"));
	tok_claims_free(&c);
	free(t);
}

/* Contract 1.1: exp is required; a token without it is refused. */
static void test_exp_required(void **state)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "u", 0, NULL, false);
	assert_non_null(t);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has no exp claim");
	free(t);
}

/* auth.secret_previous: accepted while verifying, and only when the
 * current key's signature is what failed. */
static void test_rotation(void **state)
{
	struct tok_claims c;
	const char *why;
	char *old = tok_mint("old-key", 7, "u", NOW + 60, NULL, false);
	char *cur = tok_mint("new-key", 7, "u", NOW + 60, NULL, false);
	char *old_expired = tok_mint("old-key", 7, "u", NOW - 1, NULL, false);

	assert_int_equal(tok_verify_rotating("new-key", "old-key", old, NOW, 0, &c, &why), RTW_OK);
	assert_string_equal(c.sub, "u");
	tok_claims_free(&c);
	assert_int_equal(tok_verify_rotating("new-key", "old-key", cur, NOW, 0, &c, &why), RTW_OK);
	tok_claims_free(&c);
	assert_int_equal(tok_verify_rotating("new-key", "", old, NOW, 0, &c, &why), RTW_ERROR);
	assert_string_equal(why, "bad token signature");
	assert_int_equal(tok_verify_rotating("new-key", NULL, old, NOW, 0, &c, &why), RTW_ERROR);
	assert_int_equal(tok_verify_rotating("new-key", "other", old, NOW, 0, &c, &why), RTW_ERROR);
	assert_int_equal(tok_verify_rotating("new-key", "old-key", old_expired, NOW, 0, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has expired");
	free(old);
	free(cur);
	free(old_expired);
}

/* auth.max_token_ttl_s: a token valid further out than the cap is
 * refused, whichever key signed it; one at the cap passes; 0: no cap. */
static void test_lifetime_cap(void **state)
{
	struct tok_claims c;
	const char *why;
	char *at_cap = tok_mint("new-key", 7, "u", NOW + 3600, NULL, false);
	char *beyond = tok_mint("new-key", 7, "u", NOW + 3601, NULL, false);
	char *old_beyond = tok_mint("old-key", 7, "u", NOW + 10L * 366 * 86400, NULL, false);

	assert_int_equal(tok_verify_rotating("new-key", NULL, at_cap, NOW, 3600, &c, &why), RTW_OK);
	tok_claims_free(&c);
	assert_int_equal(tok_verify_rotating("new-key", NULL, beyond, NOW, 3600, &c, &why), RTW_ERROR);
	assert_string_equal(why, TOK_WHY_TOO_LONG);
	assert_int_equal(tok_verify_rotating("new-key", "old-key", old_beyond, NOW, 3600, &c, &why), RTW_ERROR);
	assert_string_equal(why, TOK_WHY_TOO_LONG);
	assert_int_equal(tok_verify_rotating("new-key", "old-key", old_beyond, NOW, 0, &c, &why), RTW_OK);
	tok_claims_free(&c);
	free(at_cap);
	free(beyond);
	free(old_beyond);
}

/* The cap holds through the cache: a token kept without one is refused
 * on a hit under a cap it exceeds, and a refusal by the cap is not kept. */
static void test_cache_lifetime_cap(void **state)
{
	struct tok_cache cache;
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "u", NOW + 7200, NULL, false);

	tok_cache_init(&cache, 7);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 3600, &c, &why), RTW_ERROR);
	assert_string_equal(why, TOK_WHY_TOO_LONG);
	assert_int_equal(tok_cache_size(&cache), 0);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 0, &c, &why), RTW_OK);
	tok_claims_free(&c);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 3600, &c, &why), RTW_ERROR);
	assert_string_equal(why, TOK_WHY_TOO_LONG);
	tok_cache_free(&cache);
	free(t);
}

static void test_expired(void **state)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "u", NOW - 1, NULL, false);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has expired");
	free(t);
}

static void test_wrong_secret_and_tamper(void **state)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "u", NOW + 60, NULL, false);
	assert_int_equal(tok_verify("other", 5, t, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "bad token signature");
	/* flip one character of the payload */
	char *dot = strchr(t, '.');
	dot[2] = dot[2] == 'A' ? 'B' : 'A';
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_ERROR);
	free(t);

	/* A 32-byte signature is 43 characters whose last carries 2 unused
	 * bits: another spelling of the same bytes must not verify. */
	t = tok_mint(SECRET, strlen(SECRET), "u", NOW + 60, NULL, false);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_OK);
	tok_claims_free(&c);
	char *last = t + strlen(t) - 1;
	static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int v = (int)(strchr(b64chars, *last) - b64chars);
	*last = b64chars[v ^ 1]; /* flip an unused low bit */
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_ERROR);
	free(t);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "..", "a.b.!!!", "eyJhbGciOiJIUzI1NiJ9..x"};
	struct tok_claims c;
	const char *why;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tok_verify(SECRET, strlen(SECRET), bad[i], NOW, &c, &why), RTW_ERROR);
}

/* A token with alg "none" or another alg is refused even when the HMAC
 * over it happens to verify (it is signed here with the right key). */
static void sign(const char *head_b64, const char *payload_b64, char *out, size_t outlen);

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url(const char *in, char *out)
{
	size_t n = strlen(in), o = 0, i;
	const unsigned char *s = (const unsigned char *)in;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = s[i] << 16 | s[i + 1] << 8 | s[i + 2];
		out[o++] = b64[v >> 18 & 63], out[o++] = b64[v >> 12 & 63], out[o++] = b64[v >> 6 & 63],
		out[o++] = b64[v & 63];
	}
	if (n - i == 1) {
		unsigned v = s[i] << 16;
		out[o++] = b64[v >> 18 & 63], out[o++] = b64[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = s[i] << 16 | s[i + 1] << 8;
		out[o++] = b64[v >> 18 & 63], out[o++] = b64[v >> 12 & 63], out[o++] = b64[v >> 6 & 63];
	}
	out[o] = '\0';
}

static void sign(const char *head_b64, const char *payload_b64, char *out, size_t outlen)
{
	unsigned char mac[32];
	char raw[33], sig[64];
	snprintf(out, outlen, "%s.%s", head_b64, payload_b64);
	tok_hmac_sha256(SECRET, strlen(SECRET), out, strlen(out), mac);
	memcpy(raw, mac, 32);
	/* encode 32 raw bytes: b64url() takes a C string, so do it by hand */
	size_t o = 0, i;
	for (i = 0; i + 2 < 32; i += 3) {
		unsigned v = mac[i] << 16 | mac[i + 1] << 8 | mac[i + 2];
		sig[o++] = b64[v >> 18 & 63], sig[o++] = b64[v >> 12 & 63], sig[o++] = b64[v >> 6 & 63],
		sig[o++] = b64[v & 63];
	}
	unsigned v = mac[30] << 16 | mac[31] << 8;
	sig[o++] = b64[v >> 18 & 63], sig[o++] = b64[v >> 12 & 63], sig[o++] = b64[v >> 6 & 63];
	sig[o] = '\0';
	(void)raw;
	size_t len = strlen(out);
	snprintf(out + len, outlen - len, ".%s", sig);
}

static void test_alg_and_claims(void **state)
{
	char head[128], payload[256], tok[1024];
	struct tok_claims c;
	const char *why;

	b64url("{\"alg\":\"none\"}", head);
	b64url("{\"sub\":\"u\"}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token algorithm is not HS256");

	b64url("{\"alg\":\"HS256\"}", head);
	b64url("{\"exp\":1900000000}", payload); /* no sub */
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);

	b64url("{\"sub\":\"u\",\"exp\":1900000000,\"sub\":\"v\"}", payload); /* duplicate key */
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);

	b64url("{\"sub\":\"u\"}", payload); /* no exp */
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has no exp claim");

	b64url("{\"sub\":\"u\",\"exp\":1900000000,\"streams\":\"*\"}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_OK);
	assert_true(c.streams_any);
	tok_claims_free(&c);

	b64url("{\"sub\":\"u\",\"exp\":1900000000,\"streams\":[\"a\",\"b\"]}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_OK);
	assert_true(tok_allows_stream(&c, "b"));
	assert_false(tok_allows_stream(&c, "c"));
	tok_claims_free(&c);

	b64url("{\"sub\":\"u\",\"exp\":1900000000,\"streams\":[1]}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);

	b64url("{\"sub\":\"u\",\"exp\":1900000000,\"admin\":\"yes\"}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);

	/* sub follows the user id rule (lib/msg.c): no control byte, space,
	 * quote or backslash, as in an author_id a client sends */
	static const char *const bad_subs[] = {"a\\nb", "a b", "a\\\"b", "a\\\\b", "\\u00e9"};
	for (size_t i = 0; i < sizeof(bad_subs) / sizeof(bad_subs[0]); i++) {
		char json[128];
		snprintf(json, sizeof(json), "{\"sub\":\"%s\",\"exp\":1900000000}", bad_subs[i]);
		b64url(json, payload);
		sign(head, payload, tok, sizeof(tok));
		assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);
		assert_string_equal(why, "token has no valid sub claim");
	}
}

/* "service": true survives a mint and verify; absent means false; a
 * non-boolean is refused like "admin". */
static void test_service_claim(void **state)
{
	struct tok_claims c;
	const char *why;
	char head[128], payload[256], tok[512];
	char *t = tok_mint_service(SECRET, strlen(SECRET), "backend", NOW + 60, NULL, false, true);

	assert_non_null(t);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_OK);
	assert_true(c.service);
	assert_false(c.admin);
	tok_claims_free(&c);
	free(t);

	t = tok_mint(SECRET, strlen(SECRET), "viewer", NOW + 60, NULL, false);
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), t, NOW, &c, &why), RTW_OK);
	assert_false(c.service);
	tok_claims_free(&c);
	free(t);

	b64url("{\"alg\":\"HS256\"}", head);
	b64url("{\"sub\":\"u\",\"exp\":4102444800,\"service\":1}", payload);
	sign(head, payload, tok, sizeof(tok));
	assert_int_equal(tok_verify(SECRET, strlen(SECRET), tok, NOW, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token service claim is not a boolean");
}

/* RFC 4231 test case 2 for HMAC-SHA256. */
static void test_hmac_vector(void **state)
{
	unsigned char mac[32];
	char hex[65];
	tok_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	rtw_hex(mac, 32, hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* ---- the cache of verified tokens ---- */

/* Mints a token of user-7 (expiring at exp) and puts it in a fresh cache
 * through a first verification at NOW; the caller frees the token. */
static char *cached(struct tok_cache *cache, uint64_t seed, int64_t exp)
{
	struct tok_claims c;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "user-7", exp, NULL, false);

	assert_non_null(t);
	tok_cache_init(cache, seed);
	assert_int_equal(tok_cache_verify(cache, SECRET, "", t, NOW, 0, &c, &why), RTW_OK);
	tok_claims_free(&c);
	assert_int_equal(tok_cache_size(cache), 1);
	return t;
}

static void test_cache_hit_same_claims(void **state)
{
	struct tok_cache cache;
	struct tok_claims a, b;
	const char *why;
	char *t = tok_mint(SECRET, strlen(SECRET), "user-7", NOW + 60, "live-1", true);

	tok_cache_init(&cache, 42);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 0, &a, &why), RTW_OK);
	assert_int_equal(cache.misses, 1);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 0, &b, &why), RTW_OK);
	assert_int_equal(cache.hits, 1);
	assert_string_equal(b.sub, "user-7");
	assert_int_equal(b.exp, NOW + 60);
	assert_true(b.admin);
	assert_false(b.streams_any);
	assert_true(tok_allows_stream(&b, "live-1"));
	assert_false(tok_allows_stream(&b, "live-2"));
	/* each answer owns its claims */
	assert_ptr_not_equal(a.streams, b.streams);
	tok_claims_free(&a);
	tok_claims_free(&b);
	tok_cache_free(&cache);
	free(t);
}

static void test_cache_refuses_expired(void **state)
{
	struct tok_cache cache;
	struct tok_claims c;
	const char *why;
	char *t = cached(&cache, 1, NOW + 10);

	/* cached, and still refused once its exp has come: the same words */
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW + 10, 0, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has expired");
	assert_int_equal(tok_cache_size(&cache), 0);
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW + 11, 0, &c, &why), RTW_ERROR);
	assert_string_equal(why, "token has expired");
	tok_cache_free(&cache);
	free(t);
}

static void test_cache_secret_change(void **state)
{
	struct tok_cache cache;
	struct tok_claims c;
	const char *why;
	char *t = cached(&cache, 7, NOW + 60);

	/* rotated: the old key is the previous one, the token still holds */
	assert_int_equal(tok_cache_verify(&cache, "new-key", SECRET, t, NOW, 0, &c, &why), RTW_OK);
	tok_claims_free(&c);
	/* the old key dropped: the cached entry must not answer for it */
	assert_int_equal(tok_cache_verify(&cache, "new-key", "", t, NOW, 0, &c, &why), RTW_ERROR);
	assert_string_equal(why, TOK_WHY_SIGNATURE);
	assert_int_equal(tok_cache_size(&cache), 0);
	tok_cache_free(&cache);
	free(t);
}

static void test_cache_keeps_no_refusal(void **state)
{
	struct tok_cache cache;
	struct tok_claims c;
	const char *why;
	char *t = cached(&cache, 3, NOW + 60);
	size_t n = strlen(t);

	/* the same token with its signature altered: refused, not kept */
	t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
	for (int i = 0; i < 2; i++) {
		assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 0, &c, &why), RTW_ERROR);
		assert_string_equal(why, TOK_WHY_SIGNATURE);
	}
	assert_int_equal(tok_cache_size(&cache), 1);
	assert_int_equal(cache.hits, 0);
	tok_cache_free(&cache);
	free(t);
}

static void test_cache_bound(void **state)
{
	struct tok_cache cache;
	struct tok_claims c;
	const char *why;
	char sub[32], *first = NULL, long_tok[TOK_CACHE_TOKEN_MAX + 64];

	tok_cache_init(&cache, 99);
	/* four times as many tokens as slots: never more entries than slots */
	for (int i = 0; i < 4 * TOK_CACHE_SLOTS; i++) {
		snprintf(sub, sizeof(sub), "user-%d", i);
		char *t = tok_mint(SECRET, strlen(SECRET), sub, NOW + 60, NULL, false);
		assert_int_equal(tok_cache_verify(&cache, SECRET, "", t, NOW, 0, &c, &why), RTW_OK);
		assert_string_equal(c.sub, sub);
		tok_claims_free(&c);
		assert_true(tok_cache_size(&cache) <= TOK_CACHE_SLOTS);
		if (i == 0)
			first = t;
		else
			free(t);
	}
	assert_true(tok_cache_size(&cache) > TOK_CACHE_SLOTS / 2);
	/* whether still cached or pushed out, the first token gets its answer */
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", first, NOW, 0, &c, &why), RTW_OK);
	assert_string_equal(c.sub, "user-0");
	tok_claims_free(&c);
	/* a token over the length bound is verified, never kept */
	size_t before = tok_cache_size(&cache);
	uint64_t misses = cache.misses, hits = cache.hits;
	memset(long_tok, 'a', sizeof(long_tok) - 1);
	long_tok[sizeof(long_tok) - 1] = '\0';
	assert_int_equal(tok_cache_verify(&cache, SECRET, "", long_tok, NOW, 0, &c, &why), RTW_ERROR);
	assert_int_equal(tok_cache_size(&cache), before);
	assert_int_equal(cache.misses, misses);
	assert_int_equal(cache.hits, hits);
	tok_cache_free(&cache);
	free(first);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_no_streams_means_any),
	    cmocka_unit_test(test_exp_required),
	    cmocka_unit_test(test_rotation),
	    cmocka_unit_test(test_lifetime_cap),
	    cmocka_unit_test(test_cache_lifetime_cap),
	    cmocka_unit_test(test_expired),
	    cmocka_unit_test(test_wrong_secret_and_tamper),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_alg_and_claims),
	    cmocka_unit_test(test_hmac_vector),
	    cmocka_unit_test(test_service_claim),
	    cmocka_unit_test(test_cache_hit_same_claims),
	    cmocka_unit_test(test_cache_refuses_expired),
	    cmocka_unit_test(test_cache_secret_change),
	    cmocka_unit_test(test_cache_keeps_no_refusal),
	    cmocka_unit_test(test_cache_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
