/*
 * conn.c: rtw-sse's client connections: accept and limits, the request
 * head (with its timeout), identity and the handshake, the state machine
 * (reading_head -> handshake -> catching_up <-> live -> closing -> closed,
 * changed only in sse_conn_set_state), and output: a bounded ring of
 * shared frame references written at once with writev, EPOLLOUT armed
 * only while output remains. A connection whose output exceeds
 * sse.outbuf_max drops its queued live frames and is caught up from
 * PostgreSQL once it drains. Dead connections are parked and freed after
 * the loop pass. Never blocks; never talks to PostgreSQL itself (pg.c
 * runs its queries). Responses are close-delimited (Connection: close).
 */
#include "config.h"
#include "sse.h"
#include "log.h"
#include "msg.h"
#include "token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONN_IOV_MAX 64
#define CONN_CLOSING_MS 5000

static const unsigned conn__legal[] = {
    [SSE_CONN_READING_HEAD] =
	1u << SSE_CONN_HANDSHAKE | 1u << SSE_CONN_LIVE | 1u << SSE_CONN_CLOSING | 1u << SSE_CONN_CLOSED,
    [SSE_CONN_HANDSHAKE] =
	1u << SSE_CONN_CATCHING_UP | 1u << SSE_CONN_LIVE | 1u << SSE_CONN_CLOSING | 1u << SSE_CONN_CLOSED,
    [SSE_CONN_CATCHING_UP] = 1u << SSE_CONN_LIVE | 1u << SSE_CONN_CLOSING | 1u << SSE_CONN_CLOSED,
    [SSE_CONN_LIVE] = 1u << SSE_CONN_CATCHING_UP | 1u << SSE_CONN_CLOSING | 1u << SSE_CONN_CLOSED,
    [SSE_CONN_CLOSING] = 1u << SSE_CONN_CLOSED,
    [SSE_CONN_CLOSED] = 0,
};

static void conn__write(struct sse_conn *c);

void sse_conn_set_state(struct sse_conn *c, enum sse_conn_state to)
{
	struct sse_ctx *ctx = c->ctx;
	enum sse_conn_state from = c->state;

	if (!(conn__legal[from] & (1u << to))) {
		log_error("illegal connection state change %d -> %d", (int)from, (int)to);
		abort();
	}
	c->state = to;
	if (from == SSE_CONN_READING_HEAD) {
		/* off the header-timeout list */
		sse_list_del(&c->link);
		sse_list_add_tail(to == SSE_CONN_CLOSED ? &ctx->closed : &ctx->conns, &c->link);
	} else if (to == SSE_CONN_CLOSED) {
		sse_list_del(&c->link);
		sse_list_add_tail(&ctx->closed, &c->link);
	}
	if (to == SSE_CONN_CLOSING)
		c->deadline_ms = ctx->now_ms + CONN_CLOSING_MS;
}

void sse_conn_close(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;

	if (c->state == SSE_CONN_CLOSED)
		return;
	sse_conn_set_state(c, SSE_CONN_CLOSED);
	epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	if (c->in_index) {
		sse_index_remove(&ctx->ix, &c->sub);
		c->in_index = false;
	}
	if (c->queued_job) {
		sse_list_del(&c->job_link);
		c->queued_job = false;
	}
	if (c->ipc) {
		if (--c->ipc->n == 0) {
			sse_htab_del(&ctx->ips, &c->ipc->he);
			free(c->ipc);
		}
		c->ipc = NULL;
	}
	ctx->n_conns--;
}

static void conn__hs_free(struct sse_conn *c)
{
	if (c->hs) {
		free(c->hs->minted);
		free(c->hs);
		c->hs = NULL;
	}
}

static void conn__free(struct sse_conn *c)
{
	for (uint32_t i = 0; i < c->out_n; i++)
		sse_frame_unref(c->outq[(c->out_head + i) & (c->out_cap - 1)]);
	if (c->outq != c->out_inline)
		free(c->outq);
	free(c->head);
	conn__hs_free(c);
	free(c);
}

void sse_conn_free_closed(struct sse_ctx *ctx)
{
	struct sse_link *l = ctx->closed.next, *next;

	for (; l != &ctx->closed; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (c->pg_job)
			continue; /* pg.c still points at it; freed after its answer */
		sse_list_del(l);
		conn__free(c);
	}
}

static void conn__mark_dirty(struct sse_conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = c->ctx->dirty;
		c->ctx->dirty = c;
	}
}

void sse_conn_flush_dirty(struct sse_ctx *ctx)
{
	while (ctx->dirty) {
		struct sse_conn *c = ctx->dirty;
		ctx->dirty = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
		if (c->state != SSE_CONN_CLOSED)
			conn__write(c);
	}
}

static void conn__set_out(struct sse_conn *c, bool on)
{
	if (c->want_out == on || c->state == SSE_CONN_CLOSED)
		return;
	c->want_out = on;
	sse_ctx_mod_fd(c->ctx, c->fd, c, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0));
}

void sse_conn_want_job(struct sse_conn *c)
{
	if (c->queued_job || c->pg_job || c->state == SSE_CONN_CLOSED)
		return;
	c->queued_job = true;
	sse_list_add_tail(&c->ctx->jobs, &c->job_link);
}

/* Drops queued frames not yet started; the connection continues from the
 * last position it keeps, caught up from PostgreSQL once drained. */
static void conn__overflow(struct sse_conn *c)
{
	uint32_t keep = (c->out_n > 0 && c->head_off > 0) ? 1 : 0;
	struct sse_pos pos = c->sent_pos;

	for (uint32_t i = keep; i < c->out_n; i++)
		sse_frame_unref(c->outq[(c->out_head + i) & (c->out_cap - 1)]);
	if (keep) {
		struct sse_frame *h = c->outq[c->out_head];
		if (h->has_pos)
			pos = h->pos;
		c->out_bytes = h->len;
	} else {
		c->out_bytes = 0;
	}
	c->out_n = keep;
	c->pos = pos;
	c->ctx->m.slow_cutoffs++;
	sse_conn_set_state(c, SSE_CONN_CATCHING_UP);
	if (c->out_n == 0)
		sse_conn_want_job(c);
	else
		c->lagging = true;
}

void sse_conn_push(struct sse_conn *c, struct sse_frame *f, bool live)
{
	if (live) {
		if (c->state != SSE_CONN_LIVE)
			return;
		if (f->has_pos) {
			if (sse_pos_cmp(f->pos, c->pos) <= 0)
				return; /* already had it (resumed ahead of our tail) */
		}
		if (c->out_bytes + f->len > (size_t)c->ctx->cfg->sse_outbuf_max) {
			conn__write(c);
			if (c->state != SSE_CONN_LIVE)
				return;
			if (c->out_bytes + f->len > (size_t)c->ctx->cfg->sse_outbuf_max) {
				conn__overflow(c);
				return;
			}
		}
	}
	if (c->out_n == c->out_cap) {
		uint32_t cap = c->out_cap * 2;
		struct sse_frame **q = malloc(cap * sizeof(*q));
		if (q == NULL) {
			log_error("out of memory queueing output; closing the connection");
			sse_conn_close(c);
			return;
		}
		for (uint32_t i = 0; i < c->out_n; i++)
			q[i] = c->outq[(c->out_head + i) & (c->out_cap - 1)];
		if (c->outq != c->out_inline)
			free(c->outq);
		c->outq = q;
		c->out_cap = cap;
		c->out_head = 0;
	}
	c->outq[(c->out_head + c->out_n) & (c->out_cap - 1)] = sse_frame_ref(f);
	c->out_n++;
	c->out_bytes += f->len;
	if (live && f->has_pos)
		c->pos = f->pos;
	conn__mark_dirty(c);
}

static void conn__drained(struct sse_conn *c)
{
	conn__set_out(c, false);
	if (c->state == SSE_CONN_CLOSING) {
		shutdown(c->fd, SHUT_WR);
		sse_conn_close(c);
		return;
	}
	if (c->lagging) {
		c->lagging = false;
		sse_conn_want_job(c);
	}
	/* give the ring back when it grew for a burst */
	if (c->outq != c->out_inline) {
		free(c->outq);
		c->outq = c->out_inline;
		c->out_cap = SSE_OUT_INLINE;
		c->out_head = 0;
	}
}

static void conn__write(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;

	while (c->out_n > 0) {
		struct iovec iov[CONN_IOV_MAX];
		int n = 0;
		ssize_t w;

		for (uint32_t i = 0; i < c->out_n && n < CONN_IOV_MAX; i++, n++) {
			struct sse_frame *f = c->outq[(c->out_head + i) & (c->out_cap - 1)];
			size_t off = i == 0 ? c->head_off : 0;
			iov[n].iov_base = f->data + off;
			iov[n].iov_len = f->len - off;
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn__set_out(c, true);
				return;
			}
			sse_conn_close(c);
			return;
		}
		ctx->m.bytes_sent += (uint64_t)w;
		c->out_bytes -= (size_t)w;
		while (w > 0) {
			struct sse_frame *f = c->outq[c->out_head];
			size_t left = f->len - c->head_off;
			if ((size_t)w < left) {
				c->head_off += (uint32_t)w;
				break;
			}
			w -= (ssize_t)left;
			c->head_off = 0;
			if (f->has_pos) {
				c->sent_pos = f->pos;
				ctx->m.delivered++;
			}
			sse_frame_unref(f);
			c->out_head = (c->out_head + 1) & (c->out_cap - 1);
			c->out_n--;
		}
	}
	conn__drained(c);
}

/* ---- responses ---------------------------------------------------------- */

/* The deployment's own origins (http.cors_origins), before any widget's. */
static bool conn__origin_in_cfg(const struct rtw_cfg *cfg, const char *origin)
{
	return rtw_list_has(cfg->http_cors_origins, origin);
}

static bool conn__cors_any(const struct rtw_cfg *cfg)
{
	return strcmp(cfg->http_cors_origins, "*") == 0;
}

/* Appends the CORS headers for the request's Origin (allowed: the
 * deployment's list, or a widget's when widget_ok). */
static int conn__cors(const struct sse_conn *c, bool widget_ok, char *out, size_t cap)
{
	const struct rtw_cfg *cfg = c->ctx->cfg;
	const char *origin = c->hs ? c->hs->origin : NULL;

	if (conn__cors_any(cfg))
		return snprintf(out, cap, "Access-Control-Allow-Origin: *\r\n");
	if (origin && strpbrk(origin, "\r\n") == NULL && (widget_ok || conn__origin_in_cfg(cfg, origin)))
		return snprintf(out, cap, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
	return 0;
}

/* Queues a whole response and closes after it is written. */
static void conn__respond(struct sse_conn *c, int status, const char *ctype, const char *extra, const char *body,
			  size_t blen)
{
	char head[1024], cors[400];
	int hl;
	struct sse_frame *f;

	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	cors[0] = '\0';
	conn__cors(c, false, cors, sizeof(cors));
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
		      "Connection: close\r\n%s%s\r\n",
		      status, rtw_http_reason(status), ctype, blen, cors, extra ? extra : "");
	if (hl < 0 || (size_t)hl >= sizeof(head)) {
		sse_conn_close(c);
		return;
	}
	f = malloc(sizeof(*f) + (size_t)hl + blen);
	if (f == NULL) {
		sse_conn_close(c);
		return;
	}
	f->refs = 1;
	f->has_pos = false;
	f->len = (uint32_t)((size_t)hl + blen);
	memcpy(f->data, head, (size_t)hl);
	if (blen)
		memcpy(f->data + hl, body, blen);
	if (c->in_index) {
		sse_index_remove(&c->ctx->ix, &c->sub);
		c->in_index = false;
	}
	sse_conn_set_state(c, SSE_CONN_CLOSING);
	sse_conn_push(c, f, false);
	sse_frame_unref(f);
}

static void conn__error(struct sse_conn *c, int status, const char *code, const char *field, const char *extra,
			const char *message)
{
	struct msg_error err;
	char *body;

	msg_error_set(&err, status, code, field, "%s", message);
	body = msg_error_json(&err);
	if (body == NULL) {
		sse_conn_close(c);
		return;
	}
	size_t n = strlen(body);
	char *b = malloc(n + 2);
	if (b) {
		memcpy(b, body, n);
		b[n] = '\n';
		conn__respond(c, status, "application/json", extra, b, n + 1);
		free(b);
	} else {
		sse_conn_close(c);
	}
	free(body);
}

/* ---- the event stream ----------------------------------------------------- */

static char *conn__init_json(struct sse_conn *c, bool resumed)
{
	struct sse_ctx *ctx = c->ctx;
	const struct sse_hs *hs = c->hs;
	unsigned char rnd[8];
	char cid[17];
	json_t *msg, *root;
	char *out;

	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		return NULL;
	rtw_hex(rnd, sizeof(rnd), cid);
	msg = json_object();
	json_object_set_new(msg, "connection_id", json_string(cid));
	json_object_set_new(msg, "last_event_id",
			    hs->last_id && msg_valid_id(hs->last_id) ? json_string(hs->last_id) : json_null());
	json_object_set_new(msg, "resumed", json_boolean(resumed));
	json_object_set_new(msg, "heartbeat_s", json_integer(ctx->cfg->sse_heartbeat_s));
	if (hs->minted)
		json_object_set_new(msg, "token", json_string(hs->minted));
	root = json_object();
	json_object_set_new(root, "type", json_string("init"));
	json_object_set_new(root, "stream_id", json_string(c->sub.stream->id));
	json_object_set_new(root, "author_id", json_string(c->sub.user->id));
	json_object_set_new(root, "timestamp", json_integer(0));
	json_object_set_new(root, "widget_key", c->has_widget ? json_string(c->widget) : json_null());
	json_object_set_new(root, "message", msg);
	out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	return out;
}

/* Sends the 200 head, retry: and init, and drops the request. */
static int conn__start_stream(struct sse_conn *c, bool resumed, bool origin_ok)
{
	char head[1024], cors[400];
	char *init = conn__init_json(c, resumed);
	int hl;
	struct sse_frame *f;

	if (init == NULL)
		return RTW_ERROR;
	cors[0] = '\0';
	conn__cors(c, origin_ok, cors, sizeof(cors));
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
		      "X-Accel-Buffering: no\r\nConnection: close\r\n%s\r\nretry: %d\n\ndata: ",
		      cors, c->ctx->cfg->sse_retry_ms);
	size_t il = strlen(init);
	f = (hl > 0 && (size_t)hl < sizeof(head)) ? malloc(sizeof(*f) + (size_t)hl + il + 2) : NULL;
	if (f == NULL) {
		free(init);
		return RTW_ERROR;
	}
	f->refs = 1;
	f->has_pos = false;
	f->len = (uint32_t)((size_t)hl + il + 2);
	memcpy(f->data, head, (size_t)hl);
	memcpy(f->data + hl, init, il);
	memcpy(f->data + hl + il, "\n\n", 2);
	free(init);
	sse_conn_push(c, f, false);
	sse_frame_unref(f);
	conn__hs_free(c);
	return RTW_OK;
}

static void conn__go_live(struct sse_conn *c)
{
	if (sse_pos_cmp(c->pos, c->ctx->cursor) < 0)
		c->pos = c->ctx->cursor;
	sse_conn_set_state(c, SSE_CONN_LIVE);
}

void sse_conn_handshake_done(struct sse_conn *c, PGresult *res)
{
	struct sse_ctx *ctx = c->ctx;
	bool resumed = false, origin_ok;

	if (c->state != SSE_CONN_HANDSHAKE)
		return;
	if (res == NULL || PQntuples(res) != 1) {
		conn__error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "database unavailable");
		return;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		conn__error(c, 403, "unknown_widget", "widget_key", NULL,
			    "widget_key is not a registered, enabled widget");
		return;
	}
	origin_ok = PQgetvalue(res, 0, 1)[0] == 't';
	if (!PQgetisnull(res, 0, 2) && c->hs->last_id) {
		char *end;
		errno = 0;
		c->pos.xid = strtoull(PQgetvalue(res, 0, 2), &end, 10);
		c->pos.id = strtoll(c->hs->last_id, NULL, 10);
		resumed = *end == '\0' && errno == 0;
	}
	if (!resumed)
		c->pos = ctx->cursor;
	c->sent_pos = c->pos;
	if (conn__start_stream(c, resumed, origin_ok) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	if (resumed) {
		ctx->m.resume_catchups++;
		sse_conn_set_state(c, SSE_CONN_CATCHING_UP);
		sse_conn_want_job(c);
	} else {
		conn__go_live(c);
	}
}

void sse_conn_catchup_done(struct sse_conn *c, bool ok, bool full)
{
	struct sse_ctx *ctx = c->ctx;

	if (c->state != SSE_CONN_CATCHING_UP)
		return;
	if (!ok) {
		sse_conn_want_job(c); /* runs again after the reconnect */
		return;
	}
	if (!full && sse_pos_cmp(c->pos, ctx->cursor) >= 0) {
		conn__go_live(c);
		return;
	}
	/* more to fetch: after this batch is written (bounded memory) */
	if (c->out_n == 0)
		sse_conn_want_job(c);
	else
		c->lagging = true;
}

void sse_conn_dispatch(struct sse_ctx *ctx, struct sse_frame *f, const char *stream_id, const char *to_user,
		       const char *widget_key)
{
	struct sse_stream *st = sse_index_stream(&ctx->ix, stream_id);
	struct sse_link *head, *l;
	size_t off;

	if (st == NULL)
		return;
	if (to_user) {
		struct sse_user *u = sse_index_user(st, to_user);
		if (u == NULL)
			return;
		head = &u->subs;
		off = offsetof(struct sse_conn, sub.user_link);
	} else {
		head = &st->subs;
		off = offsetof(struct sse_conn, sub.stream_link);
	}
	for (l = head->next; l != head;) {
		struct sse_conn *c = (struct sse_conn *)((char *)l - off);
		l = l->next; /* push may close c, unlinking it */
		if (c->has_widget && strcmp(c->widget, widget_key) != 0)
			continue;
		sse_conn_push(c, f, true);
	}
}

/* ---- requests ------------------------------------------------------------- */

static void conn__identity(struct sse_conn *c, char *user, size_t cap)
{
	unsigned char rnd[8];
	char hex[17];

	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		memset(rnd, 0, sizeof(rnd));
	rtw_hex(rnd, sizeof(rnd), hex);
	snprintf(user, cap, "anon-%s", hex);
}

static void conn__metrics(struct sse_conn *c);

static void conn__route_events(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	const struct rtw_cfg *cfg = ctx->cfg;
	struct sse_req *r = c->req;
	char user[MSG_ID_MAX + 1];
	bool need_query;

	if (r->bad_path) {
		conn__error(c, 400, "invalid_field", "stream_id", NULL,
			    "stream id must be 1-128 characters of A-Za-z0-9._:-");
		return;
	}
	if (r->bad_field) {
		char m[160];
		snprintf(m, sizeof(m), "%s is too long or malformed", r->bad_field);
		conn__error(c, 400, "invalid_field", r->bad_field, NULL, m);
		return;
	}
	if (r->has_widget) {
		if (!msg_valid_uuid(r->widget_key, c->widget)) {
			conn__error(c, 400, "invalid_field", "widget_key", NULL, "widget_key must be a UUID");
			return;
		}
		c->has_widget = true;
	}
	if (ctx->token_mode) {
		if (r->has_token) {
			struct tok_claims cl;
			const char *why = NULL;
			if (tok_verify(cfg->auth_secret, strlen(cfg->auth_secret), r->token, (int64_t)time(NULL), &cl,
				       &why) != RTW_OK) {
				char m[160];
				snprintf(m, sizeof(m), "invalid token: %s", why ? why : "rejected");
				conn__error(c, 401, "unauthorized", NULL, NULL, m);
				return;
			}
			if (!tok_allows_stream(&cl, r->stream_id)) {
				tok_claims_free(&cl);
				conn__error(c, 403, "forbidden", NULL, NULL, "the token does not allow this stream");
				return;
			}
			snprintf(user, sizeof(user), "%s", cl.sub);
			tok_claims_free(&cl);
		} else {
			conn__identity(c, user, sizeof(user));
			c->hs->minted = tok_mint(cfg->auth_secret, strlen(cfg->auth_secret), user,
						 (int64_t)time(NULL) + cfg->auth_anon_ttl_s, r->stream_id, false);
			if (c->hs->minted == NULL) {
				conn__error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n",
					    "could not mint a token");
				return;
			}
		}
	} else if (r->has_user) {
		if (!msg_valid_user_id(r->user_id)) {
			conn__error(c, 400, "invalid_field", "user_id", NULL, "user_id must be 1-128 characters");
			return;
		}
		memcpy(user, r->user_id, strlen(r->user_id) + 1); /* validated: <= 128 */
	} else {
		conn__identity(c, user, sizeof(user));
	}
	need_query = c->has_widget || (r->has_last_id && msg_valid_id(r->last_id)) ||
		     (r->has_origin && !conn__cors_any(cfg) && !conn__origin_in_cfg(cfg, r->origin));
	if (need_query && !sse_pg_up(ctx)) {
		conn__error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "database unavailable");
		return;
	}
	/* Until the first tail position is known (just after start, or while
	 * PostgreSQL is down at start) a live-only subscriber has no place to
	 * start from: rows committed meanwhile would be lost to it. Once known,
	 * the cursor survives reconnects, so this only refuses at start-up. */
	if (!ctx->cursor_valid) {
		conn__error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "starting up; no stream position yet");
		return;
	}
	if (sse_index_add(&ctx->ix, &c->sub, r->stream_id, user) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	c->in_index = true;
	if (need_query) {
		sse_conn_set_state(c, SSE_CONN_HANDSHAKE);
		sse_conn_want_job(c);
		sse_pg_kick(ctx);
		return;
	}
	c->pos = c->sent_pos = ctx->cursor;
	if (conn__start_stream(c, false, false) != RTW_OK) {
		sse_conn_close(c);
		return;
	}
	conn__go_live(c);
}

static void conn__route(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	struct sse_req *r = c->req;

	if (r->method == HTTP_OPTIONS) {
		conn__respond(c, 204, "text/plain",
			      "Access-Control-Allow-Methods: GET, OPTIONS\r\n"
			      "Access-Control-Allow-Headers: Authorization, Last-Event-ID, Cache-Control\r\n"
			      "Access-Control-Max-Age: 600\r\n",
			      "", 0);
		return;
	}
	if (r->route == SSE_ROUTE_NONE) {
		conn__error(c, 404, "not_found", NULL, NULL, "no such resource");
		return;
	}
	if (r->method != HTTP_GET) {
		conn__error(c, 405, "method_not_allowed", NULL, "Allow: GET, OPTIONS\r\n", "only GET is allowed here");
		return;
	}
	switch (r->route) {
	case SSE_ROUTE_HEALTHZ:
		if (sse_pg_up(ctx)) {
			static const char ok[] = "{\"status\":\"ok\"}\n";
			conn__respond(c, 200, "application/json", NULL, ok, sizeof(ok) - 1);
		} else {
			conn__error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "database unavailable");
		}
		return;
	case SSE_ROUTE_METRICS: conn__metrics(c); return;
	default: conn__route_events(c); return;
	}
}

static void conn__metrics(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	const struct sse_metrics *m = &ctx->m;
	static const double bounds[SSE_LAG_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
	char *buf;
	size_t cap = 4096;
	int n = 0;
	uint64_t cum = 0;

	buf = malloc(cap);
	if (buf == NULL) {
		sse_conn_close(c);
		return;
	}
#define MPUT(...) n += snprintf(buf + n, cap - (size_t)n, __VA_ARGS__)
	MPUT("# HELP rtw_sse_connections Open client connections.\n# TYPE rtw_sse_connections gauge\n"
	     "rtw_sse_connections %zu\n",
	     ctx->n_conns);
	MPUT("# HELP rtw_sse_subscribers Connections subscribed to a stream.\n# TYPE rtw_sse_subscribers gauge\n"
	     "rtw_sse_subscribers %zu\n",
	     ctx->ix.n_subs);
	MPUT("# TYPE rtw_sse_events_delivered_total counter\nrtw_sse_events_delivered_total %llu\n",
	     (unsigned long long)m->delivered);
	MPUT("# TYPE rtw_sse_bytes_sent_total counter\nrtw_sse_bytes_sent_total %llu\n",
	     (unsigned long long)m->bytes_sent);
	MPUT("# TYPE rtw_sse_resume_catchups_total counter\nrtw_sse_resume_catchups_total %llu\n",
	     (unsigned long long)m->resume_catchups);
	MPUT("# TYPE rtw_sse_slow_consumer_cutoffs_total counter\nrtw_sse_slow_consumer_cutoffs_total %llu\n",
	     (unsigned long long)m->slow_cutoffs);
	MPUT("# TYPE rtw_sse_pg_reconnects_total counter\nrtw_sse_pg_reconnects_total %llu\n",
	     (unsigned long long)m->pg_reconnects);
	MPUT("# TYPE rtw_sse_tail_rows_total counter\nrtw_sse_tail_rows_total %llu\n",
	     (unsigned long long)m->tail_rows);
	MPUT("# TYPE rtw_sse_connections_rejected_total counter\nrtw_sse_connections_rejected_total %llu\n",
	     (unsigned long long)m->rejected);
	MPUT("# TYPE rtw_sse_pg_up gauge\nrtw_sse_pg_up %d\n", sse_pg_up(ctx) ? 1 : 0);
	MPUT("# HELP rtw_sse_delivery_lag_seconds Message created_at to dispatch by this process.\n"
	     "# TYPE rtw_sse_delivery_lag_seconds histogram\n");
	for (int i = 0; i < SSE_LAG_BUCKETS; i++) {
		cum += m->lag_bucket[i];
		MPUT("rtw_sse_delivery_lag_seconds_bucket{le=\"%g\"} %llu\n", bounds[i], (unsigned long long)cum);
	}
	cum += m->lag_bucket[SSE_LAG_BUCKETS];
	MPUT("rtw_sse_delivery_lag_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	MPUT("rtw_sse_delivery_lag_seconds_sum %.6f\nrtw_sse_delivery_lag_seconds_count %llu\n", m->lag_sum,
	     (unsigned long long)m->lag_count);
	MPUT("# TYPE rtw_sse_delivery_lag_max_seconds gauge\nrtw_sse_delivery_lag_max_seconds %.6f\n", m->lag_max);
#undef MPUT
	if (n >= (int)cap)
		n = (int)cap - 1;
	conn__respond(c, 200, "text/plain; version=0.0.4", NULL, buf, (size_t)n);
	free(buf);
}

/* ---- socket events ---------------------------------------------------------- */

/* The request's Last-Event-ID and Origin, kept past routing. */
static struct sse_hs *conn__hs_new(const struct sse_req *r)
{
	size_t ll = r->has_last_id ? strlen(r->last_id) + 1 : 0;
	size_t ol = r->has_origin ? strlen(r->origin) + 1 : 0;
	struct sse_hs *hs = malloc(sizeof(*hs) + ll + ol);

	if (hs == NULL)
		return NULL;
	hs->last_id = ll ? memcpy(hs->buf, r->last_id, ll) : NULL;
	hs->origin = ol ? memcpy(hs->buf + ll, r->origin, ol) : NULL;
	hs->minted = NULL;
	return hs;
}

/* Reads what the socket has and parses the head so far from its start,
 * with the loop's one parser and scratch request: a connection owns no
 * parser state, only the bytes of an incomplete head (heads almost always
 * arrive in one read, and are at most sse.max_header_bytes), so a burst of
 * thousands of pending handshakes costs no large transient allocations. */
static void conn__read_head(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	size_t cap = (size_t)ctx->cfg->sse_max_header_bytes + SSE_RBUF_SLACK;
	size_t len = c->head_len;
	bool eof = false;
	int r;

	if (len)
		memcpy(ctx->rbuf, c->head, len);
	while (len < cap) {
		ssize_t n = recv(c->fd, ctx->rbuf + len, cap - len, 0);
		if (n == 0) {
			eof = true;
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				sse_conn_close(c);
				return;
			}
			break;
		}
		len += (size_t)n;
	}
	if (len == c->head_len) {
		if (eof)
			sse_conn_close(c);
		return;
	}
	sse_reqparser_reset(ctx->parser);
	memset(&ctx->req, 0, sizeof(ctx->req));
	r = sse_reqparser_feed(ctx->parser, ctx->rbuf, len, &ctx->req);
	if (r == RTW_AGAIN) {
		char *h;
		if (eof) {
			sse_conn_close(c);
			return;
		}
		h = realloc(c->head, len);
		if (h == NULL) {
			sse_conn_close(c);
			return;
		}
		memcpy(h + c->head_len, ctx->rbuf + c->head_len, len - c->head_len);
		c->head = h;
		c->head_len = (uint32_t)len;
		return;
	}
	free(c->head);
	c->head = NULL;
	c->head_len = 0;
	c->hs = conn__hs_new(&ctx->req);
	if (c->hs == NULL) {
		sse_conn_close(c);
		return;
	}
	c->req = &ctx->req;
	if (r == RTW_ERROR) {
		if (ctx->req.too_large)
			conn__error(c, 431, "invalid_field", NULL, NULL, "request head is too large");
		else
			conn__error(c, 400, "invalid_field", NULL, NULL, "malformed request");
	} else {
		conn__route(c);
	}
	c->req = NULL;
}

/* After the head: the client only ever closes; discard what it sends. */
static void conn__read_discard(struct sse_conn *c)
{
	char buf[512];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0) {
			sse_conn_close(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				sse_conn_close(c);
			return;
		}
	}
}

void sse_conn_event(struct sse_conn *c, uint32_t events)
{
	if (c->state == SSE_CONN_CLOSED)
		return; /* a stale event for a connection closed this pass */
	if (events & EPOLLOUT)
		conn__write(c);
	if (c->state == SSE_CONN_CLOSED)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if (c->state == SSE_CONN_READING_HEAD)
			conn__read_head(c);
		else
			conn__read_discard(c);
	}
}

void sse_conn_accept(struct sse_ctx *ctx)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(ctx->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct sse_conn *c;
		char ip[INET6_ADDRSTRLEN] = "";
		bool loopback = false;
		int one = 1;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* out of descriptors: the listen socket stays
				 * readable, so refuse the oldest pending one
				 * with the reserve descriptor */
				ctx->m.rejected++;
				if (ctx->reserve_fd >= 0) {
					close(ctx->reserve_fd);
					fd = accept4(ctx->listen_fd, NULL, NULL, SOCK_CLOEXEC);
					if (fd >= 0)
						close(fd);
					ctx->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				}
				log_warn("out of file descriptors; refusing connections (run more rtw-sse processes)");
			}
			return;
		}
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
			loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
		}
		if (ctx->stopping || ctx->n_conns >= (size_t)ctx->cfg->sse_max_connections) {
			static const char busy[] =
			    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
			    "Retry-After: 1\r\nConnection: close\r\nContent-Length: 80\r\n\r\n"
			    "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections\"}}\n";
			ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
			close(fd);
			ctx->m.rejected++;
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		if (!loopback) {
			/* the local proxy (nginx) is exempt: all its clients share its address */
			struct sse_hentry *e = sse_htab_get(&ctx->ips, ip);
			struct sse_ipcount *ipc = e ? SSE_CONTAINER(e, struct sse_ipcount, he) : NULL;
			if (ipc && ipc->n >= ctx->cfg->sse_max_per_ip) {
				static const char busy[] =
				    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
				    "Retry-After: 5\r\nConnection: close\r\nContent-Length: 88\r\n\r\n"
				    "{\"error\":{\"code\":\"rate_limited\",\"message\":\"too many connections from "
				    "this address\"}}";
				ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
				(void)w;
				close(fd);
				free(c);
				ctx->m.rejected++;
				continue;
			}
			if (ipc == NULL) {
				ipc = calloc(1, sizeof(*ipc));
				if (ipc == NULL) {
					close(fd);
					free(c);
					continue;
				}
				snprintf(ipc->key, sizeof(ipc->key), "%s", ip);
				ipc->he.key = ipc->key;
				sse_htab_put(&ctx->ips, &ipc->he, sse_hash(ipc->key));
			}
			ipc->n++;
			c->ipc = ipc;
		}
		c->kind = SSE_H_CONN;
		c->ctx = ctx;
		c->fd = fd;
		c->state = SSE_CONN_READING_HEAD;
		c->born_ms = ctx->now_ms;
		sse_list_init(&c->job_link);
		sse_list_init(&c->sub.stream_link);
		sse_list_init(&c->sub.user_link);
		c->outq = c->out_inline;
		c->out_cap = SSE_OUT_INLINE;
		sse_list_add_tail(&ctx->heads, &c->link);
		ctx->n_conns++;
		ctx->m.accepted++;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			sse_conn_close(c);
			continue;
		}
	}
}

/* Header timeouts, stuck closings and heartbeats; from the tick timer. */
void sse_conn_tick(struct sse_ctx *ctx)
{
	struct sse_link *l, *next;
	uint64_t hb_ms = (uint64_t)ctx->cfg->sse_heartbeat_s * 1000u;
	bool hb = hb_ms > 0 && ctx->now_ms - ctx->last_hb_ms >= hb_ms;

	for (l = ctx->heads.next; l != &ctx->heads; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (ctx->now_ms - c->born_ms < (uint64_t)ctx->cfg->sse_header_timeout_ms)
			break; /* oldest first */
		conn__error(c, 408, "invalid_field", NULL, NULL, "request head not received in time");
	}
	if (hb)
		ctx->last_hb_ms = ctx->now_ms;
	for (l = ctx->conns.next; l != &ctx->conns; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (c->state == SSE_CONN_CLOSING && ctx->now_ms > c->deadline_ms)
			sse_conn_close(c);
		else if (hb && (c->state == SSE_CONN_LIVE || c->state == SSE_CONN_CATCHING_UP) && c->out_n == 0)
			sse_conn_push(c, ctx->heartbeat, false);
	}
}

/* SIGTERM: write what can be written at once, then end every stream. */
void sse_conn_shutdown_all(struct sse_ctx *ctx)
{
	struct sse_link *lists[2] = {&ctx->heads, &ctx->conns};

	for (int i = 0; i < 2; i++) {
		while (!sse_list_empty(lists[i])) {
			struct sse_conn *c = SSE_CONTAINER(lists[i]->next, struct sse_conn, link);
			if (c->out_n > 0)
				conn__write(c);
			if (c->state != SSE_CONN_CLOSED) {
				shutdown(c->fd, SHUT_WR);
				sse_conn_close(c);
			}
		}
	}
}
