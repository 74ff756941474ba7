/*
 * bans.c: this process's copy of the bans in force (rtw_bans,
 * sql/012_moderation.sql), which refuses a banned user's new streams and
 * ends its open ones.
 *
 * pg.c LISTENs on rtw_bans, whose trigger NOTIFYs on every change, and
 * reloads the whole set when told, after every (re)connect (a NOTIFY sent
 * while the connection was down is lost) and every SSE_BANS_RELOAD_MS as
 * a safety net. A load replaces the set and ends the open streams of
 * every user it bans, so a ban reaches every rtw-sse process within one
 * round trip of its commit. At most SSE_BANS_MAX bans are held (memory
 * stays bounded); a longer list is cut, and logged. A ban's end (until)
 * is checked against this host's clock at each lookup, so an expired ban
 * stops holding without a reload.
 *
 * Tier: above conn.c (it ends streams and answers refusals through it),
 * below routes.c (which asks before a stream starts) and pg.c (which
 * hands it the loaded rows). Runs on the loop thread.
 */
#include "config.h"
#include "sse.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One ban: key is user_id, SSE_BANS_SEP, stream_id ("*": every stream). */
struct sse_ban {
	struct sse_hentry he;
	double until_s; /* unix seconds; 0: no end */
	char key[];
};

#define SSE_BANS_SEP '\x01' /* in neither a user id nor a stream id */

int sse_bans_init(struct sse_bans *b)
{
	memset(b, 0, sizeof(*b));
	b->wanted = true;
	return sse_htab_init(&b->tab, 64);
}

static void bans__clear(struct sse_htab *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct sse_hentry *e = t->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(SSE_CONTAINER(e, struct sse_ban, he));
		}
		t->buckets[i] = NULL;
	}
	t->count = 0;
}

void sse_bans_free(struct sse_bans *b)
{
	if (b->tab.buckets)
		bans__clear(&b->tab);
	sse_htab_free(&b->tab);
}

static bool bans__holds(const struct sse_htab *t, const char *user, const char *stream, double now_s)
{
	char key[2 * MSG_ID_MAX + 3];
	struct sse_hentry *e;

	if (snprintf(key, sizeof(key), "%s%c%s", user, SSE_BANS_SEP, stream) >= (int)sizeof(key))
		return false;
	e = sse_htab_get(t, key);
	if (e == NULL)
		return false;
	const struct sse_ban *ban = SSE_CONTAINER(e, struct sse_ban, he);
	return ban->until_s == 0 || ban->until_s > now_s;
}

bool sse_bans_banned(const struct sse_ctx *ctx, const char *user, const char *stream)
{
	double now_s = (double)rtw_wall_us() / 1e6;

	if (ctx->bans.tab.count == 0)
		return false;
	return bans__holds(&ctx->bans.tab, user, stream, now_s) || bans__holds(&ctx->bans.tab, user, "*", now_s);
}

bool sse_bans_due(struct sse_ctx *ctx)
{
	if (sse_now(ctx) >= ctx->bans.next_ms)
		ctx->bans.wanted = true;
	return ctx->bans.wanted;
}

/* Ends the streams of banned users: a stream that has started ends
 * cleanly (the client reconnects and is refused); one still in its
 * handshake is refused now. */
static void bans__enforce(struct sse_ctx *ctx)
{
	struct sse_link *l, *next;

	for (l = ctx->conns.next; l != &ctx->conns; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (!c->in_index || !sse_bans_banned(ctx, c->sub.user->id, c->sub.stream->id))
			continue;
		ctx->bans.ended++;
		sse_conn_why(c, "ban");
		if (c->state == SSE_CONN_HANDSHAKE)
			sse_conn_error(c, 403, "banned", NULL, NULL, "this user is banned from this stream");
		else
			sse_conn_end(c);
	}
}

void sse_bans_loaded(struct sse_ctx *ctx, PGresult *res)
{
	struct sse_bans *b = &ctx->bans;
	int n;

	b->wanted = false;
	b->next_ms = sse_now(ctx) + SSE_BANS_RELOAD_MS;
	if (res == NULL)
		return; /* keep the old set; the next reload retries */
	bans__clear(&b->tab);
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *key = PQgetvalue(res, i, 0);
		size_t len = strlen(key);
		struct sse_ban *ban = malloc(sizeof(*ban) + len + 1);
		if (ban == NULL) {
			log_error("out of memory loading bans: %d of %d held", i, n);
			break;
		}
		memcpy(ban->key, key, len + 1);
		ban->until_s = strtod(PQgetvalue(res, i, 1), NULL);
		ban->he.key = ban->key;
		sse_htab_put(&b->tab, &ban->he, sse_hash(ban->key));
	}
	if (n >= SSE_BANS_MAX)
		log_warn("more than %d bans in force: only %d are enforced by rtw-sse", SSE_BANS_MAX, SSE_BANS_MAX);
	b->loads++;
	bans__enforce(ctx);
}
