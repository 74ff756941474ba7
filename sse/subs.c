/*
 * subs.c: the subscriber index of rtw-sse: stream id -> every subscriber
 * of the stream (broadcast fan-out) and (stream id, user id) -> that
 * user's subscribers (privates and webhook results), so a private costs
 * O(its recipients), not O(the stream's subscribers). Also the small
 * intrusive string hash table both levels use, and what presence.c needs
 * to write only what changed: the streams whose subscribers came or went
 * since the last put, the streams gone since, and the top streams by
 * viewers. Counting costs O(1) per subscriber added or removed: a
 * stream's connections are n_subs and its distinct viewers the size of
 * its users table. Pure code, loop thread.
 */
#include "config.h"
#include "sse.h"

#include <stdlib.h>
#include <string.h>

uint32_t sse_hash(const char *s)
{
	/* FNV-1a: keys are short ids chosen by clients, and buckets are
	 * chains, so a skewed key set costs time, never correctness */
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

int sse_htab_init(struct sse_htab *t, size_t nbuckets)
{
	t->buckets = calloc(nbuckets, sizeof(*t->buckets));
	t->nbuckets = nbuckets;
	t->count = 0;
	return t->buckets ? RTW_OK : RTW_ERROR;
}

void sse_htab_free(struct sse_htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = t->count = 0;
}

struct sse_hentry *sse_htab_get(const struct sse_htab *t, const char *key)
{
	uint32_t h = sse_hash(key);

	for (struct sse_hentry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next) {
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

static void htab__grow(struct sse_htab *t)
{
	size_t n = t->nbuckets * 2;
	struct sse_hentry **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return; /* keep the longer chains; still correct */
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct sse_hentry *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

void sse_htab_put(struct sse_htab *t, struct sse_hentry *e, uint32_t hash)
{
	struct sse_hentry **slot;

	if (t->count >= t->nbuckets)
		htab__grow(t);
	e->hash = hash;
	slot = &t->buckets[hash & (t->nbuckets - 1)];
	e->next = *slot;
	*slot = e;
	t->count++;
}

void sse_htab_del(struct sse_htab *t, struct sse_hentry *e)
{
	struct sse_hentry **p = &t->buckets[e->hash & (t->nbuckets - 1)];

	for (; *p; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			t->count--;
			return;
		}
	}
}

int sse_index_init(struct sse_index *ix)
{
	ix->n_subs = 0;
	sse_list_init(&ix->changed);
	sse_list_init(&ix->gone);
	ix->gone_lost = false;
	return sse_htab_init(&ix->streams, 64);
}

void sse_index_free(struct sse_index *ix)
{
	if (ix->gone.next == NULL)
		return; /* never initialised */
	while (!sse_list_empty(&ix->gone)) {
		struct sse_link *l = ix->gone.next;
		sse_list_del(l);
		free(SSE_CONTAINER(l, struct sse_gone, link));
	}
	sse_htab_free(&ix->streams);
}

static void index__changed(struct sse_index *ix, struct sse_stream *st)
{
	if (sse_list_empty(&st->changed))
		sse_list_add_tail(&ix->changed, &st->changed);
}

struct sse_stream *sse_index_stream(const struct sse_index *ix, const char *stream_id)
{
	struct sse_hentry *e = sse_htab_get(&ix->streams, stream_id);
	return e ? SSE_CONTAINER(e, struct sse_stream, he) : NULL;
}

struct sse_user *sse_index_user(const struct sse_stream *st, const char *user_id)
{
	struct sse_hentry *e = sse_htab_get(&st->users, user_id);
	return e ? SSE_CONTAINER(e, struct sse_user, he) : NULL;
}

static void index__drop_stream(struct sse_index *ix, struct sse_stream *st)
{
	sse_list_del(&st->changed);
	if (st->put) {
		/* its row must go with the next put */
		size_t n = strlen(st->id) + 1;
		struct sse_gone *g = malloc(sizeof(*g) + n);
		if (g) {
			memcpy(g->id, st->id, n);
			sse_list_add_tail(&ix->gone, &g->link);
		} else {
			ix->gone_lost = true;
		}
	}
	sse_htab_del(&ix->streams, &st->he);
	sse_htab_free(&st->users);
	free(st);
}

int sse_index_add(struct sse_index *ix, struct sse_sub *sub, const char *stream_id, const char *user_id)
{
	struct sse_stream *st = sse_index_stream(ix, stream_id);
	struct sse_user *u;
	bool new_stream = false;

	if (st == NULL) {
		size_t n = strlen(stream_id) + 1;
		st = malloc(sizeof(*st) + n);
		if (st == NULL)
			return RTW_ERROR;
		memcpy(st->id, stream_id, n);
		st->he.key = st->id;
		sse_list_init(&st->subs);
		sse_list_init(&st->changed);
		st->n_subs = 0;
		st->put = st->presence_new = st->framed = false;
		st->n_presence = 0;
		st->frame_conns = st->frame_viewers = st->frame_ms = 0;
		if (sse_htab_init(&st->users, 4) != RTW_OK) {
			free(st);
			return RTW_ERROR;
		}
		sse_htab_put(&ix->streams, &st->he, sse_hash(st->id));
		new_stream = true;
	}
	u = sse_index_user(st, user_id);
	if (u == NULL) {
		size_t n = strlen(user_id) + 1;
		u = malloc(sizeof(*u) + n);
		if (u == NULL) {
			if (new_stream)
				index__drop_stream(ix, st);
			return RTW_ERROR;
		}
		memcpy(u->id, user_id, n);
		u->he.key = u->id;
		sse_list_init(&u->subs);
		sse_htab_put(&st->users, &u->he, sse_hash(u->id));
	}
	sse_list_add_tail(&st->subs, &sub->stream_link);
	sse_list_add_tail(&u->subs, &sub->user_link);
	sub->stream = st;
	sub->user = u;
	sub->presence = SSE_PRESENCE_OFF;
	st->n_subs++;
	ix->n_subs++;
	index__changed(ix, st);
	return RTW_OK;
}

void sse_index_want_presence(struct sse_index *ix, struct sse_sub *sub)
{
	(void)ix;
	if (sub->stream == NULL || sub->presence != SSE_PRESENCE_OFF)
		return;
	sub->presence = SSE_PRESENCE_WAITING;
	sub->stream->n_presence++;
	sub->stream->presence_new = true;
}

/* More viewers first, then more connections. */
static bool index__above(const struct sse_stream *a, const struct sse_stream *b)
{
	if (a->users.count != b->users.count)
		return a->users.count > b->users.count;
	return a->n_subs > b->n_subs;
}

size_t sse_index_top(const struct sse_index *ix, const struct sse_stream **top, size_t n)
{
	size_t have = 0;

	for (size_t b = 0; b < ix->streams.nbuckets && n > 0; b++) {
		for (const struct sse_hentry *e = ix->streams.buckets[b]; e; e = e->next) {
			const struct sse_stream *st = SSE_CONTAINER(e, struct sse_stream, he);
			size_t i;
			if (have == n && !index__above(st, top[n - 1]))
				continue;
			/* insertion into the sorted prefix; n is small (metrics: 10) */
			i = have < n ? have++ : n - 1;
			for (; i > 0 && index__above(st, top[i - 1]); i--)
				top[i] = top[i - 1];
			top[i] = st;
		}
	}
	return have;
}

void sse_index_remove(struct sse_index *ix, struct sse_sub *sub)
{
	struct sse_stream *st = sub->stream;
	struct sse_user *u = sub->user;

	if (st == NULL)
		return;
	sse_list_del(&sub->stream_link);
	sse_list_del(&sub->user_link);
	sub->stream = NULL;
	sub->user = NULL;
	if (sub->presence != SSE_PRESENCE_OFF)
		st->n_presence--;
	sub->presence = SSE_PRESENCE_OFF;
	st->n_subs--;
	ix->n_subs--;
	if (sse_list_empty(&u->subs)) {
		sse_htab_del(&st->users, &u->he);
		free(u);
	}
	if (st->n_subs == 0)
		index__drop_stream(ix, st);
	else
		index__changed(ix, st);
}
