/*
 * ratelimit.c: owns per-key token buckets in fixed memory: rtw-fcgi's
 * per-author, per-stream and per-client-address rate limits and rtw-sse's
 * anonymous identities per address (429 rate_limited). Pure: no I/O; the
 * time comes from the caller. Called from every rtw-fcgi worker thread and
 * from rtw-sse's loop thread.
 *
 * Memory is fixed at start: a set-associative table (sets of 8 buckets,
 * one mutex per 16 sets). A key (64-bit keyed hash of author and stream)
 * lives in the set its hash picks; a new key takes the set's least
 * recently used bucket. Recycling a bucket only ever forgets a debt (the
 * key restarts with a full burst), so a flood of fresh author ids cannot
 * grow memory and cannot make anyone else refused; at worst it lets a
 * recycled key start over. Two keys whose 64-bit hashes collide share a
 * bucket (about 1 in 2^64 per pair).
 */
#include "config.h"
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FCG_RL_WAYS 8
#define FCG_RL_SETS_PER_LOCK 16

struct rtw_rl__bucket {
	uint64_t key;	  /* 0: empty */
	uint64_t last_ms; /* last refill, also the LRU clock */
	double tokens;
};

struct rtw_rl {
	double rate, burst;
	uint64_t seed;
	size_t nsets, nlocks;
	pthread_mutex_t *locks;
	struct rtw_rl__bucket *b; /* nsets * FCG_RL_WAYS */
};

struct rtw_rl *rtw_rl_new(double rate_per_s, double burst, size_t buckets, uint64_t seed)
{
	struct rtw_rl *rl = calloc(1, sizeof(*rl));

	if (!rl)
		return NULL;
	rl->rate = rate_per_s;
	rl->burst = burst < 1 ? 1 : burst;
	rl->seed = seed;
	rl->nsets = (buckets + FCG_RL_WAYS - 1) / FCG_RL_WAYS;
	if (rl->nsets < 1)
		rl->nsets = 1;
	rl->nlocks = (rl->nsets + FCG_RL_SETS_PER_LOCK - 1) / FCG_RL_SETS_PER_LOCK;
	rl->locks = calloc(rl->nlocks, sizeof(*rl->locks));
	rl->b = calloc(rl->nsets * FCG_RL_WAYS, sizeof(*rl->b));
	if (!rl->locks || !rl->b) {
		free(rl->locks);
		free(rl->b);
		free(rl);
		return NULL;
	}
	for (size_t i = 0; i < rl->nlocks; i++)
		pthread_mutex_init(&rl->locks[i], NULL);
	return rl;
}

void rtw_rl_free(struct rtw_rl *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < rl->nlocks; i++)
		pthread_mutex_destroy(&rl->locks[i]);
	free(rl->locks);
	free(rl->b);
	free(rl);
}

static uint64_t rtw_rl__mix(uint64_t x)
{
	/* splitmix64's finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* FNV-1a over seed, a, NUL, b, then a strong finalizer; never 0. */
static uint64_t rtw_rl__hash(uint64_t seed, const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ rtw_rl__mix(seed);
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL; /* separator no id can contain */
	for (const unsigned char *p = (const unsigned char *)b; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h = rtw_rl__mix(h ^ seed);
	return h ? h : 1;
}

uint64_t rtw_rl_take(struct rtw_rl *rl, const char *a, const char *b, uint64_t now_ms)
{
	uint64_t key, wait = 0;
	size_t set;
	struct rtw_rl__bucket *ways, *e = NULL;

	if (rl->rate <= 0)
		return 0;
	key = rtw_rl__hash(rl->seed, a, b ? b : "");
	set = (size_t)((key >> 8) % rl->nsets);
	ways = &rl->b[set * FCG_RL_WAYS];
	pthread_mutex_lock(&rl->locks[set / FCG_RL_SETS_PER_LOCK]);
	for (int i = 0; i < FCG_RL_WAYS; i++) {
		if (ways[i].key == key) {
			e = &ways[i];
			break;
		}
	}
	if (e) {
		if (now_ms > e->last_ms) {
			e->tokens += (double)(now_ms - e->last_ms) * rl->rate / 1000.0;
			if (e->tokens > rl->burst)
				e->tokens = rl->burst;
			e->last_ms = now_ms;
		}
	} else {
		/* an empty bucket, else the least recently used */
		e = &ways[0];
		for (int i = 0; i < FCG_RL_WAYS && e->key; i++)
			if (!ways[i].key || ways[i].last_ms < e->last_ms)
				e = &ways[i];
		e->key = key;
		e->tokens = rl->burst;
		e->last_ms = now_ms;
	}
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
	} else {
		wait = (uint64_t)ceil((1.0 - e->tokens) * 1000.0 / rl->rate);
		if (wait == 0)
			wait = 1;
	}
	pthread_mutex_unlock(&rl->locks[set / FCG_RL_SETS_PER_LOCK]);
	return wait;
}
