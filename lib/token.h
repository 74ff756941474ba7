/*
 * token.h: HS256 JSON Web Tokens: verification (constant-time signature
 * comparison), minting, and the HMAC-SHA256 primitive the webhook
 * signature shares. Pure code over OpenSSL; no I/O, thread-safe.
 */
#ifndef RTW_TOKEN_H
#define RTW_TOKEN_H

#include "rtw.h"

#define TOK_SUB_MAX 128

struct tok_claims {
	char sub[TOK_SUB_MAX + 1];
	int64_t exp; /* required: a token without exp is refused */
	bool admin;
	bool service;	  /* "service": true: backend publishing (POST /v1/messages) */
	bool streams_any; /* no "streams" claim, or "streams": "*" */
	char **streams;	  /* owned; NULL unless a list was given */
	size_t n_streams;
};

/* Verifies token (compact JWS, alg HS256) against the raw key bytes and
 * the clock now (unix seconds). On success fills *out (release with
 * tok_claims_free) and returns RTW_OK; otherwise RTW_ERROR with a short
 * lowercase reason in *why (a static string, never containing the token). */
int tok_verify(const char *secret, size_t secret_len, const char *token, int64_t now, struct tok_claims *out,
	       const char **why) RTW_WUR;

/* The reason tok_verify gives when the signature does not match the key. */
#define TOK_WHY_SIGNATURE "bad token signature"

/* The reason tok_verify_rotating gives for an exp beyond the cap. */
#define TOK_WHY_TOO_LONG "token exp is further out than auth.max_token_ttl_s allows"

/* tok_verify against the current key (secret, NUL-terminated), and when
 * only the signature failed and previous is non-empty, against the key
 * before a rotation (auth.secret_previous). Never used to mint. Then
 * refuses a token whose exp lies more than max_ttl_s after now
 * (auth.max_token_ttl_s; 0: no cap). */
int tok_verify_rotating(const char *secret, const char *previous, const char *token, int64_t now, int64_t max_ttl_s,
			struct tok_claims *out, const char **why) RTW_WUR;

void tok_claims_free(struct tok_claims *c);

/* True when the claims allow the stream. */
bool tok_allows_stream(const struct tok_claims *c, const char *stream_id);

/* Mints a token for sub; exp 0 leaves it out (tok_verify refuses such a
 * token: only tests want one); stream NULL leaves "streams" out. Returns a malloc'd string (caller frees) or NULL. */
char *tok_mint(const char *secret, size_t secret_len, const char *sub, int64_t exp, const char *stream,
	       bool admin) RTW_WUR;

/* As tok_mint, plus "service": true when service is set (backend
 * publishing: any author_id, no per-author rate limit). */
char *tok_mint_service(const char *secret, size_t secret_len, const char *sub, int64_t exp, const char *stream,
		       bool admin, bool service) RTW_WUR;

/*
 * A bounded cache of verified tokens, for one thread (no lock): the exact
 * bytes of a token that tok_verify_rotating accepted, with its claims, so
 * that the next request with the same token skips the HMAC and the two
 * JSON parses. TOK_CACHE_SLOTS entries, direct-mapped by a hash of the
 * token keyed with a per-cache random seed; a token longer than
 * TOK_CACHE_TOKEN_MAX is verified every time. A hit compares the whole
 * token in constant time (CRYPTO_memcmp), checks exp against now again,
 * and is only possible under the same secrets it was verified with
 * (different ones empty the cache first). Refused tokens are never kept.
 */
#define TOK_CACHE_SLOTS 64
#define TOK_CACHE_TOKEN_MAX 1024

struct tok_cache_entry {
	char *token; /* owned; NULL: empty slot */
	size_t len;
	struct tok_claims claims; /* owned */
};

struct tok_cache {
	uint64_t seed;
	char *secret, *previous; /* owned copies of the secrets the entries were verified under */
	struct tok_cache_entry slot[TOK_CACHE_SLOTS];
	uint64_t hits, misses;
};

/* Empties c and sets its hash seed (a random value: where a token lands
 * must not be chosen by its holder). */
void tok_cache_init(struct tok_cache *c, uint64_t seed);
/* Frees every entry. c may be reused after tok_cache_init. */
void tok_cache_free(struct tok_cache *c);
/* tok_verify_rotating through c: the same answers, *out (release with
 * tok_claims_free) a copy of the cached claims on a hit. */
int tok_cache_verify(struct tok_cache *c, const char *secret, const char *previous, const char *token, int64_t now,
		     int64_t max_ttl_s, struct tok_claims *out, const char **why) RTW_WUR;
/* How many slots hold a token (tests, metrics). */
size_t tok_cache_size(const struct tok_cache *c);

/* HMAC-SHA256 of data under key; out receives 32 bytes. */
void tok_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32]);

#endif
