/*
 * token.c: owns HS256 JWT encoding and verification. The signature is
 * compared with CRYPTO_memcmp so timing tells an attacker nothing. Claims
 * are decoded with jansson (duplicate keys rejected); sub follows the user
 * id rule of lib/msg.c. Also the per-thread cache of verified tokens
 * (tok_cache_*), which answers exactly as verification does.
 */
#include "config.h"
#include "token.h"
#include "msg.h" /* msg_valid_user_id: the one rule for user ids */

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes n bytes as unpadded base64url into out (needs 4*ceil(n/3)+1). */
static size_t tok__b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

static int tok__b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes unpadded base64url; returns the byte count or -1. out needs
 * 3*n/4+1 bytes. */
static long tok__b64_decode(const char *in, size_t n, unsigned char *out)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = tok__b64_val(in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* Canonical encoding only: the unused low bits of the last character
	 * must be zero, so each token has exactly one spelling. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

void tok_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32])
{
	unsigned int outlen = 32;
	HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen);
}

void tok_claims_free(struct tok_claims *c)
{
	for (size_t i = 0; i < c->n_streams; i++)
		free(c->streams[i]);
	free(c->streams);
	c->streams = NULL;
	c->n_streams = 0;
}

bool tok_allows_stream(const struct tok_claims *c, const char *stream_id)
{
	if (c->streams_any)
		return true;
	for (size_t i = 0; i < c->n_streams; i++)
		if (strcmp(c->streams[i], stream_id) == 0)
			return true;
	return false;
}

#define TOK_MAX_LEN 8192

static int tok__claims_from_json(json_t *payload, int64_t now, struct tok_claims *out, const char **why)
{
	json_t *sub = json_object_get(payload, "sub");
	json_t *exp = json_object_get(payload, "exp");
	json_t *admin = json_object_get(payload, "admin");
	json_t *streams = json_object_get(payload, "streams");
	json_t *service = json_object_get(payload, "service");

	if (!json_is_string(sub) || json_string_length(sub) == 0 || json_string_length(sub) > TOK_SUB_MAX) {
		*why = "token has no valid sub claim";
		return RTW_ERROR;
	}
	memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
	/* sub becomes author_id, to_user_id's match and a ban's key: the
	 * rule every user id follows (rtwctl mints no other), so a token
	 * cannot carry an author id a message could not (a NUL, a newline,
	 * a quote) */
	if (strlen(out->sub) != json_string_length(sub) || !msg_valid_user_id(out->sub)) {
		*why = "token has no valid sub claim";
		return RTW_ERROR;
	}
	if (!exp) {
		/* contract 1.1: a token that never expires cannot be taken back */
		*why = "token has no exp claim";
		return RTW_ERROR;
	}
	{
		if (!json_is_number(exp)) {
			*why = "token exp claim is not a number";
			return RTW_ERROR;
		}
		/* Clamp before the cast: converting a real beyond int64 (a signed
		 * "exp": 1e300) was undefined behaviour. Found by fuzz_token. */
		double e = json_number_value(exp);
		out->exp = e >= 9.2e18 ? INT64_MAX : e <= -9.2e18 ? INT64_MIN : (int64_t)e;
		if (out->exp <= now) {
			*why = "token has expired";
			return RTW_ERROR;
		}
	}
	if (admin) {
		if (!json_is_boolean(admin)) {
			*why = "token admin claim is not a boolean";
			return RTW_ERROR;
		}
		out->admin = json_is_true(admin);
	}
	if (service) {
		if (!json_is_boolean(service)) {
			*why = "token service claim is not a boolean";
			return RTW_ERROR;
		}
		out->service = json_is_true(service);
	}
	if (!streams || (json_is_string(streams) && strcmp(json_string_value(streams), "*") == 0)) {
		out->streams_any = true;
	} else if (json_is_array(streams)) {
		size_t n = json_array_size(streams);
		out->streams = calloc(n ? n : 1, sizeof(char *));
		if (!out->streams) {
			*why = "out of memory";
			return RTW_ERROR;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *s = json_array_get(streams, i);
			if (!json_is_string(s)) {
				*why = "token streams claim holds a non-string";
				return RTW_ERROR;
			}
			out->streams[i] = strdup(json_string_value(s));
			if (!out->streams[i]) {
				*why = "out of memory";
				return RTW_ERROR;
			}
			out->n_streams = i + 1;
		}
	} else {
		*why = "token streams claim is neither a list nor \"*\"";
		return RTW_ERROR;
	}
	return RTW_OK;
}

int tok_verify(const char *secret, size_t secret_len, const char *token, int64_t now, struct tok_claims *out,
	       const char **why)
{
	unsigned char mac[32], sig[48], buf[TOK_MAX_LEN];
	const char *dot1, *dot2;
	json_t *hdr = NULL, *payload = NULL;
	json_error_t jerr;
	int rc = RTW_ERROR;
	size_t len = strlen(token);

	memset(out, 0, sizeof(*out));
	*why = "malformed token";
	if (len == 0 || len >= TOK_MAX_LEN)
		goto out;
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		goto out;

	/* Signature first: nothing of an unsigned token is parsed. */
	if (strlen(dot2 + 1) != 43 || tok__b64_decode(dot2 + 1, 43, sig) != 32)
		goto out;
	tok_hmac_sha256(secret, secret_len, token, (size_t)(dot2 - token), mac);
	if (CRYPTO_memcmp(mac, sig, 32) != 0) {
		*why = TOK_WHY_SIGNATURE;
		goto out;
	}

	long n = tok__b64_decode(token, (size_t)(dot1 - token), buf);
	if (n < 0 || !(hdr = json_loadb((char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr)))
		goto out;
	json_t *alg = json_object_get(hdr, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0) {
		*why = "token algorithm is not HS256";
		goto out;
	}
	n = tok__b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf);
	if (n < 0 || !(payload = json_loadb((char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr)) ||
	    !json_is_object(payload))
		goto out;
	rc = tok__claims_from_json(payload, now, out, why);
out:
	if (rc != RTW_OK)
		tok_claims_free(out);
	json_decref(hdr);
	json_decref(payload);
	return rc;
}

/* auth.max_token_ttl_s: whether a token valid now lies further ahead
 * than the cap (0: none). exp > now, so the difference cannot overflow. */
static bool tok__beyond_cap(const struct tok_claims *c, int64_t now, int64_t max_ttl_s)
{
	return max_ttl_s > 0 && c->exp - now > max_ttl_s;
}

int tok_verify_rotating(const char *secret, const char *previous, const char *token, int64_t now, int64_t max_ttl_s,
			struct tok_claims *out, const char **why)
{
	int rc = tok_verify(secret, strlen(secret), token, now, out, why);

	/* Only a signature that does not match the current key is tried
	 * against the previous one: any other refusal stands. */
	if (rc != RTW_OK && previous && previous[0] && strcmp(*why, TOK_WHY_SIGNATURE) == 0)
		rc = tok_verify(previous, strlen(previous), token, now, out, why);
	/* A token valid for years is a credential nobody can take back short
	 * of rotating the secret for everyone: the cap bounds what a leaked
	 * one is worth. */
	if (rc == RTW_OK && tok__beyond_cap(out, now, max_ttl_s)) {
		tok_claims_free(out);
		*why = TOK_WHY_TOO_LONG;
		rc = RTW_ERROR;
	}
	return rc;
}

/* ---- the cache of verified tokens ---- */

/* FNV-1a over the token, from the cache's seed, with a final mix so that
 * the low bits (the slot) depend on every byte. */
static size_t tok__slot(const struct tok_cache *c, const char *token, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)token[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)(h % TOK_CACHE_SLOTS);
}

static void tok__entry_free(struct tok_cache_entry *e)
{
	free(e->token);
	tok_claims_free(&e->claims);
	memset(e, 0, sizeof(*e));
}

/* A deep copy of in into out; RTW_ERROR when out of memory (out freed). */
static int tok__claims_copy(const struct tok_claims *in, struct tok_claims *out)
{
	*out = *in;
	out->streams = NULL;
	out->n_streams = 0;
	if (!in->streams)
		return RTW_OK;
	if (!(out->streams = calloc(in->n_streams ? in->n_streams : 1, sizeof(char *))))
		return RTW_ERROR;
	for (size_t i = 0; i < in->n_streams; i++) {
		if (!(out->streams[i] = strdup(in->streams[i]))) {
			tok_claims_free(out);
			return RTW_ERROR;
		}
		out->n_streams = i + 1;
	}
	return RTW_OK;
}

static bool tok__same(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

void tok_cache_init(struct tok_cache *c, uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	c->seed = seed;
}

void tok_cache_free(struct tok_cache *c)
{
	for (size_t i = 0; i < TOK_CACHE_SLOTS; i++)
		tok__entry_free(&c->slot[i]);
	free(c->secret);
	free(c->previous);
	c->secret = c->previous = NULL;
}

size_t tok_cache_size(const struct tok_cache *c)
{
	size_t n = 0;

	for (size_t i = 0; i < TOK_CACHE_SLOTS; i++)
		n += c->slot[i].token != NULL;
	return n;
}

int tok_cache_verify(struct tok_cache *c, const char *secret, const char *previous, const char *token, int64_t now,
		     int64_t max_ttl_s, struct tok_claims *out, const char **why)
{
	size_t len = strlen(token);
	struct tok_cache_entry *e;
	int rc;

	if (len == 0 || len > TOK_CACHE_TOKEN_MAX)
		return tok_verify_rotating(secret, previous, token, now, max_ttl_s, out, why);
	/* Entries hold only under the secrets they were verified with: a
	 * rotation that drops a key takes its tokens' entries with it. */
	if (!c->secret || !tok__same(c->secret, secret) || !tok__same(c->previous, previous)) {
		tok_cache_free(c);
		c->secret = strdup(secret);
		c->previous = strdup(previous ? previous : "");
		if (!c->secret || !c->previous)
			return tok_verify_rotating(secret, previous, token, now, max_ttl_s, out, why);
	}
	e = &c->slot[tok__slot(c, token, len)];
	if (e->token && e->len == len && CRYPTO_memcmp(e->token, token, len) == 0) {
		if (e->claims.exp <= now) {
			/* the words tok_verify uses for an expired token */
			memset(out, 0, sizeof(*out));
			*why = "token has expired";
			tok__entry_free(e);
			return RTW_ERROR;
		}
		/* kept under this cap (exp - now only shrinks), unless the
		 * caller's cap is another one */
		if (tok__beyond_cap(&e->claims, now, max_ttl_s)) {
			memset(out, 0, sizeof(*out));
			*why = TOK_WHY_TOO_LONG;
			return RTW_ERROR;
		}
		if (tok__claims_copy(&e->claims, out) != RTW_OK) {
			memset(out, 0, sizeof(*out));
			*why = "out of memory";
			return RTW_ERROR;
		}
		c->hits++;
		return RTW_OK;
	}
	c->misses++;
	rc = tok_verify_rotating(secret, previous, token, now, max_ttl_s, out, why);
	if (rc != RTW_OK)
		return rc;
	/* keep it; a slot taken by another token is taken over */
	tok__entry_free(e);
	if (!(e->token = malloc(len + 1)))
		return rc;
	memcpy(e->token, token, len + 1);
	e->len = len;
	if (tok__claims_copy(out, &e->claims) != RTW_OK)
		tok__entry_free(e);
	return rc;
}

char *tok_mint(const char *secret, size_t secret_len, const char *sub, int64_t exp, const char *stream, bool admin)
{
	return tok_mint_service(secret, secret_len, sub, exp, stream, admin, false);
}

char *tok_mint_service(const char *secret, size_t secret_len, const char *sub, int64_t exp, const char *stream,
		       bool admin, bool service)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	json_t *payload = json_pack("{s:s}", "sub", sub);
	char *claims = NULL, *out = NULL;
	unsigned char mac[32];

	if (!payload)
		return NULL;
	/* A claim that cannot be set must fail the mint: json_pack refuses a
	 * stream that is not UTF-8, and a token without "streams" (or "exp")
	 * would allow every stream (or never expire). Found by fuzz_token. */
	if ((exp && json_object_set_new(payload, "exp", json_integer(exp)) != 0) ||
	    (stream && json_object_set_new(payload, "streams", json_pack("[s]", stream)) != 0) ||
	    (admin && json_object_set_new(payload, "admin", json_true()) != 0) ||
	    (service && json_object_set_new(payload, "service", json_true()) != 0))
		goto done;
	claims = json_dumps(payload, JSON_COMPACT);
	if (!claims)
		goto done;
	size_t hl = strlen(header), cl = strlen(claims);
	size_t cap = (hl + 2) / 3 * 4 + (cl + 2) / 3 * 4 + 48;
	out = malloc(cap);
	if (!out)
		goto done;
	size_t n = tok__b64_encode((const unsigned char *)header, hl, out);
	out[n++] = '.';
	n += tok__b64_encode((const unsigned char *)claims, cl, out + n);
	tok_hmac_sha256(secret, secret_len, out, n, mac);
	out[n++] = '.';
	tok__b64_encode(mac, 32, out + n);
done:
	free(claims);
	json_decref(payload);
	return out;
}
