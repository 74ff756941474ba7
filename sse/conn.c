/*
 * conn.c: rtw-sse's client connections: accept and its limits (over
 * sse.max_connections a 200 that only says retry: on /events, the 503
 * elsewhere; the 429 per client address; the reserve descriptor at
 * EMFILE; each refusal answered with a request id of its own and logged,
 * one line a second at most), the end of a stream at its token's exp,
 * reading the
 * request head (with its timeout), the state machine ([tls_accept ->]
 * reading_head -> handshake -> catching_up <-> live -> closing -> closed,
 * changed only in sse_conn_set_state; tls_accept is the TLS handshake of a
 * connection from sse.tls_listen, under the head's timeout and
 * sse.tls_max_handshakes, whose reads and writes then go through tls.c
 * at the I/O edge: conn__recv, conn__send_tls, conn__shut_wr), fan-out to a stream's subscribers, and output: a
 * bounded ring of shared frame references written with writev at the end
 * of the pass, oldest first, a round over many connections cut into
 * sse.flush_slice_ms slices (live frames may wait within their
 * sse.coalesce_ms budget to share a write while messages come closer
 * together than it), EPOLLOUT armed only while output remains. A connection whose output
 * exceeds sse.outbuf_max drops its queued live frames and is caught up
 * from PostgreSQL; a catching-up connection asks for its next batch only
 * once its output drained below half of sse.outbuf_max (pg.c bounds the
 * batch by the rest). Heads held in the handshake longer than
 * sse.hold_max_ms, and every stream at shutdown, are told to retry with a
 * jittered retry: (never a non-200). Whole responses (errors and the like)
 * are queued here too, then the connection closes (responses are
 * close-delimited: Connection: close). Dead connections are parked and
 * freed after the loop pass.
 *
 * Tier: below routes.c, pg.c and loop.c; above frame.c, subs.c and req.c.
 * It decides nothing about what a request asks for: a complete head goes
 * back to the loop, which hands it to routes.c. Never blocks; never talks
 * to PostgreSQL (pg.c runs the queries connections wait for).
 */
#include "config.h"
#include "sse.h"
#include "cors.h"
#include "log.h"
#include "msg.h"
#include "proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONN_IOV_MAX 64
#define CONN_CLOSING_MS 5000

static const unsigned conn__legal[] = {
    [SSE_CONN_TLS_ACCEPT] = 1u << SSE_CONN_READING_HEAD | 1u << SSE_CONN_CLOSED,
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

/* The end of our output: on TLS a close_notify first, then the FIN. */
static void conn__shut_wr(struct sse_conn *c)
{
	if (c->tls)
		sse_tls_shutdown(c->tls);
	shutdown(c->fd, SHUT_WR);
}

/* recv(2) at the I/O edge: through TLS on the TLS port. */
static ssize_t conn__recv(struct sse_conn *c, void *buf, size_t len)
{
	if (c->tls)
		return sse_tls_recv(c->tls, buf, len);
	return recv(c->fd, buf, len, 0);
}

/* A catching-up connection asks for its next batch once its unsent output
 * is at most this; the batch is bounded by what is left of
 * sse.outbuf_max (pg.c), so output stays within about sse.outbuf_max. */
static size_t conn__low_water(const struct sse_ctx *ctx)
{
	return (size_t)ctx->cfg->sse_outbuf_max / 2;
}

/* A lagging connection drained below the low-water mark: its catch-up
 * continues. */
static void conn__maybe_resume(struct sse_conn *c)
{
	if (c->lagging && c->out_bytes <= conn__low_water(c->ctx)) {
		c->lagging = false;
		sse_conn_want_job(c);
	}
}

void sse_conn_set_state(struct sse_conn *c, enum sse_conn_state to)
{
	struct sse_ctx *ctx = c->ctx;
	enum sse_conn_state from = c->state;

	if (!(conn__legal[from] & (1u << to))) {
		log_error("illegal connection state change %d -> %d", (int)from, (int)to);
		abort();
	}
	c->state = to;
	if (from == SSE_CONN_TLS_ACCEPT)
		ctx->tls_accepting--;
	if ((from == SSE_CONN_READING_HEAD || from == SSE_CONN_TLS_ACCEPT) && to != SSE_CONN_READING_HEAD) {
		/* off the header-timeout list */
		sse_list_del(&c->link);
		sse_list_add_tail(to == SSE_CONN_CLOSED ? &ctx->closed : &ctx->conns, &c->link);
	} else if (to == SSE_CONN_CLOSED) {
		sse_list_del(&c->link);
		sse_list_add_tail(&ctx->closed, &c->link);
	}
	if (to == SSE_CONN_CLOSING)
		c->deadline_ms = sse_now(ctx) + CONN_CLOSING_MS;
	else if (to == SSE_CONN_HANDSHAKE)
		c->deadline_ms = sse_now(ctx) + (uint64_t)ctx->cfg->sse_hold_max_ms;
}

/* The line of an answered connection's end (log_requests): never its
 * token, its user id or its query. */
static void conn__log_end(const struct sse_conn *c)
{
	json_t *f = json_pack("{s:s?, s:s?, s:s?, s:i, s:I, s:i, s:I, s:i, s:s, s:s, s:s}", "stream",
			      c->stream_id[0] ? c->stream_id : NULL, "widget", c->has_widget ? c->widget : NULL,
			      "user_kind", c->user_kind, "status", c->status, "duration_ms",
			      (json_int_t)(sse_now(c->ctx) - c->born_ms), "frames", (int)c->frames, "bytes",
			      (json_int_t)c->bytes, "slow_cutoffs", (int)c->cutoffs, "end", c->end ? c->end : "closed",
			      "client", c->ipc ? c->ipc->key : c->peer, "request_id", c->request_id);
	log_event(LOG_LVL_INFO, "stream end", f);
	json_decref(f);
}

/* Gives back the slot *cnt holds in t (NULL: none), freeing the count
 * with its last slot. */
static void conn__count_put(struct sse_htab *t, struct sse_ipcount **cnt)
{
	if (*cnt == NULL)
		return;
	if (--(*cnt)->n == 0) {
		sse_htab_del(t, &(*cnt)->he);
		free(*cnt);
	}
	*cnt = NULL;
}

/* Takes one of key's max slots in t: the count (owned by t), or NULL when
 * key holds max already or memory ran out. */
static struct sse_ipcount *conn__count_take(struct sse_htab *t, const char *key, int max)
{
	struct sse_hentry *e = sse_htab_get(t, key);
	struct sse_ipcount *cnt = e ? SSE_CONTAINER(e, struct sse_ipcount, he) : NULL;

	if (cnt && cnt->n >= max)
		return NULL;
	if (cnt == NULL) {
		size_t n = strlen(key) + 1;
		cnt = calloc(1, sizeof(*cnt) + n);
		if (cnt == NULL)
			return NULL;
		memcpy(cnt->key, key, n);
		cnt->he.key = cnt->key;
		sse_htab_put(t, &cnt->he, sse_hash(cnt->key));
	}
	cnt->n++;
	return cnt;
}

void sse_conn_close(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;

	if (c->state == SSE_CONN_CLOSED)
		return;
	if (c->status && !c->probe && ctx->cfg->log_requests && log_enabled(LOG_LVL_INFO))
		conn__log_end(c);
	sse_conn_set_state(c, SSE_CONN_CLOSED);
	rtw_loop_del(&ctx->loop, &c->io);
	if (c->tls) {
		sse_tls_conn_free(c->tls);
		c->tls = NULL;
	}
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
	if (c->dirty) {
		sse_list_del(&c->dirty_link);
		if (!c->held)
			ctx->n_dirty--;
		c->dirty = c->held = false;
	}
	conn__count_put(&ctx->ips, &c->ipc);
	conn__count_put(&ctx->idents, &c->idc);
	ctx->n_conns--;
	if (c->over)
		ctx->n_over--;
}

void sse_conn_hs_free(struct sse_conn *c)
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
	sse_conn_hs_free(c);
	free(c);
}

void sse_conn_free_closed(struct sse_ctx *ctx)
{
	struct sse_link *l = ctx->closed.next, *next;

	/* closed connections left the flush lists in sse_conn_close */
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
	struct sse_ctx *ctx = c->ctx;

	if (c->dirty && !(c->held && c->out_urgent))
		return;
	if (c->held)
		sse_list_del(&c->dirty_link); /* held, now due: something will not wait */
	c->dirty = true;
	c->held = false;
	sse_list_add_tail(&ctx->dirty, &c->dirty_link);
	ctx->n_dirty++;
}

/* Coalescing (sse.coalesce_ms, a latency budget): most of rtw-sse's CPU
 * in a fan-out is the kernel's, per sendmsg (doc/performance.md), so when
 * messages arrive close together a connection's live frames wait for the
 * next ones and leave in one write. How long is bounded by the budget, not
 * by a fixed window: each frame may wait only until its created_at plus
 * sse.coalesce_ms, less what a flush round takes (flush_cost_us), and a
 * connection is held until the earliest such deadline of its frames. A
 * frame that reached rtw-sse with no budget left (a slow commit, a busy
 * host) goes at once, and so do the frames queued before it. Holding only
 * pays when companions come within the budget: a connection whose live
 * frames usually arrive further apart than the budget (gap_ms, a moving
 * average; 20 msg/s against 30 ms) is written at once, as is one whose
 * frames' gap is not known yet (a lone message has nothing to wait for).
 * Output that is not live frames (heads, catch-up rows, heartbeats,
 * answers) is never held. */
uint64_t sse_conn_hold_until(const struct sse_ctx *ctx, double lag_s)
{
	double budget_ms = (double)ctx->cfg->sse_coalesce_ms;
	/* the flush round that writes it, and the loop clock's 1 ms steps */
	double left_ms = budget_ms - lag_s * 1000.0 - (double)ctx->flush_cost_us / 1000.0 - 1.0;

	if (budget_ms <= 0 || left_ms < 1.0)
		return 0;
	return sse_now(ctx) + (uint64_t)left_ms;
}

/* A live frame queued now: the gap since the connection's last one joins
 * its moving average (frames of one tail batch share a loop time and make
 * no gap). A gap longer than twice the budget counts as that: it only has
 * to say "too far apart to hold", and a burst after a quiet spell should
 * be held again after a few messages. */
static void conn__live_gap(struct sse_conn *c, uint64_t now)
{
	double cap = 2.0 * (double)c->ctx->cfg->sse_coalesce_ms, gap;

	if (c->live_ms != 0 && now > c->live_ms) {
		gap = (double)(now - c->live_ms);
		if (gap > cap)
			gap = cap;
		c->gap_ms = c->gap_ms > 0 ? c->gap_ms + (gap - c->gap_ms) / 4 : gap;
	}
	c->live_ms = now;
}

/* The held connections whose hold has ended go back to the flush list;
 * returns the earliest hold left (0: none). */
static uint64_t conn__release_held(struct sse_ctx *ctx, uint64_t now)
{
	struct sse_link *l, *next;
	uint64_t wake = 0;

	for (l = ctx->held.next; l != &ctx->held; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, dirty_link);
		next = l->next;
		if (now >= c->hold_until_ms) {
			sse_list_del(l);
			c->held = false;
			sse_list_add_tail(&ctx->dirty, l);
			ctx->n_dirty++;
		} else if (wake == 0 || c->hold_until_ms < wake) {
			wake = c->hold_until_ms;
		}
	}
	return wake;
}

/* The end of a round (every connection that was on the flush list when it
 * began has been written or held): its wall time is the margin a hold
 * leaves, followed at once when longer, forgotten over a few dozen rounds. */
static void conn__round_done(struct sse_ctx *ctx, uint64_t now_us)
{
	uint64_t us = now_us - ctx->round_t0_us;

	ctx->round_left = 0;
	ctx->flush_cost_us = us > ctx->flush_cost_us ? us : ctx->flush_cost_us - ctx->flush_cost_us / 16;
	sse_metrics_stage(ctx, SSE_STAGE_FLUSH, (double)us / 1e6);
}

void sse_conn_flush_dirty(struct sse_ctx *ctx)
{
	uint64_t now = rtw_now_ms(), wake;
	uint64_t t0 = rtw_wall_us(), now_us = t0;
	uint64_t slice_us = (uint64_t)ctx->cfg->sse_flush_slice_ms * 1000;
	bool held = false;

	if (ctx->held_wake_ms != 0 && now >= ctx->held_wake_ms)
		ctx->held_wake_ms = conn__release_held(ctx, now);
	if (sse_list_empty(&ctx->dirty))
		ctx->round_left = 0; /* its last connections closed */
	while (!sse_list_empty(&ctx->dirty)) {
		struct sse_conn *c = SSE_CONTAINER(ctx->dirty.next, struct sse_conn, dirty_link);

		if (ctx->round_left == 0) {
			ctx->round_left = ctx->n_dirty;
			ctx->round_t0_us = now_us;
		} else if (slice_us && now_us - t0 >= slice_us) {
			break; /* the loop's events first (a new message joins the rest) */
		}
		sse_list_del(&c->dirty_link);
		ctx->n_dirty--;
		ctx->round_left--;
		if (!c->out_urgent && !c->want_out && now < c->hold_until_ms) {
			c->held = true; /* stays dirty */
			sse_list_add_tail(&ctx->held, &c->dirty_link);
			if (ctx->held_wake_ms == 0 || c->hold_until_ms < ctx->held_wake_ms)
				ctx->held_wake_ms = c->hold_until_ms;
			held = true;
		} else {
			c->dirty = false;
			c->out_urgent = false;
			c->hold_until_ms = 0;
			conn__write(c);
			now_us = rtw_wall_us();
		}
		/* closed connections left the list: a round may end short */
		if (ctx->round_left == 0 || sse_list_empty(&ctx->dirty))
			conn__round_done(ctx, now_us);
	}
	if (held)
		ctx->m.coalesce_holds++;
	/* resume a cut round as soon as the loop's events are served */
	wake = !sse_list_empty(&ctx->dirty) ? now : ctx->held_wake_ms;
	if (wake != 0 && (ctx->flush_due_ms == 0 || wake < ctx->flush_due_ms)) {
		ctx->flush_due_ms = wake;
		if (rtw_timer_start(&ctx->flush_timer, wake - now, 0) != RTW_OK)
			log_error("could not arm the flush timer: %s", strerror(errno));
	}
}

static void conn__set_out(struct sse_conn *c, bool on)
{
	if (c->want_out == on || c->state == SSE_CONN_CLOSED)
		return;
	c->want_out = on;
	if (rtw_loop_mod(&c->ctx->loop, &c->io, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0)) != RTW_OK)
		log_error("could not change epoll registration: %s", strerror(errno));
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
	/* the frames begun: partly written, or in a TLS record that waits to
	 * be written again with the same bytes */
	size_t begun = c->head_off + c->tls_pending, kept = 0;
	uint32_t keep = 0;
	struct sse_pos pos = c->sent_pos;

	for (; keep < c->out_n && begun > 0; keep++) {
		struct sse_frame *f = c->outq[(c->out_head + keep) & (c->out_cap - 1)];
		begun = begun > f->len ? begun - f->len : 0;
		kept += f->len;
		if (f->has_pos)
			pos = f->pos;
	}
	for (uint32_t i = keep; i < c->out_n; i++)
		sse_frame_unref(c->outq[(c->out_head + i) & (c->out_cap - 1)]);
	c->out_bytes = kept - c->head_off;
	c->out_n = keep;
	c->pos = pos;
	c->ctx->m.slow_cutoffs++;
	c->cutoffs++;
	sse_conn_set_state(c, SSE_CONN_CATCHING_UP);
	c->lagging = true;
	conn__maybe_resume(c);
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
			sse_conn_why(c, "error");
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
	if (live && f->has_pos) {
		c->pos = f->pos;
		conn__live_gap(c, sse_now(c->ctx));
	}
	if (!live || f->hold_until_ms == 0)
		c->out_urgent = true;
	else if (c->hold_until_ms == 0 && !c->out_urgent) {
		/* the first held frame: hold only while the connection's
		 * messages come closer together than the budget. Not "before
		 * this frame's deadline": arrivals are irregular, and at 80
		 * msg/s with a 30 ms budget that stricter rule wrote 1.35
		 * messages per write instead of 2 (twice the CPU) for no p99
		 * gain. A frame held in vain waits within its budget. */
		if (c->gap_ms > 0 && c->gap_ms < (double)c->ctx->cfg->sse_coalesce_ms)
			c->hold_until_ms = f->hold_until_ms;
		else
			c->out_urgent = true;
	} else if (f->hold_until_ms < c->hold_until_ms) {
		c->hold_until_ms = f->hold_until_ms;
		if (c->held && c->hold_until_ms < c->ctx->held_wake_ms)
			c->ctx->held_wake_ms = c->hold_until_ms;
	}
	conn__mark_dirty(c);
}

static void conn__drained(struct sse_conn *c)
{
	conn__set_out(c, false);
	if (c->state == SSE_CONN_CLOSING) {
		conn__shut_wr(c);
		sse_conn_close(c);
		return;
	}
	conn__maybe_resume(c);
	/* give the ring back when it grew for a burst */
	if (c->outq != c->out_inline) {
		free(c->outq);
		c->outq = c->out_inline;
		c->out_cap = SSE_OUT_INLINE;
		c->out_head = 0;
	}
}

/* TLS: the queue's next bytes, one record's worth at most, copied into
 * one buffer for one SSL_write, so a coalesced flush is one record and
 * one write(2) as it is one sendmsg on the plain path. */
static ssize_t conn__send_tls(struct sse_conn *c)
{
	char *buf = c->ctx->tls_wbuf;
	size_t n = 0;
	ssize_t w;

	for (uint32_t i = 0; i < c->out_n && n < SSE_TLS_RECORD; i++) {
		struct sse_frame *f = c->outq[(c->out_head + i) & (c->out_cap - 1)];
		size_t off = i == 0 ? c->head_off : 0, len = f->len - off;
		if (len > SSE_TLS_RECORD - n)
			len = SSE_TLS_RECORD - n;
		memcpy(buf + n, f->data + off, len);
		n += len;
	}
	w = sse_tls_send(c->tls, buf, n, &c->tls_write_wants_read);
	/* after EAGAIN the record holds these bytes: they stay queued */
	c->tls_pending = w < 0 ? (uint32_t)n : 0;
	return w;
}

/* One sendmsg of the queued frames (at most CONN_IOV_MAX of them). */
static ssize_t conn__send_plain(struct sse_conn *c)
{
	struct iovec iov[CONN_IOV_MAX];
	int n = 0;

	for (uint32_t i = 0; i < c->out_n && n < CONN_IOV_MAX; i++, n++) {
		struct sse_frame *f = c->outq[(c->out_head + i) & (c->out_cap - 1)];
		size_t off = i == 0 ? c->head_off : 0;
		iov[n].iov_base = f->data + off;
		iov[n].iov_len = f->len - off;
	}
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	return sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void conn__write(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;

	while (c->out_n > 0) {
		ssize_t w;

		ctx->m.writes++;
		w = c->tls ? conn__send_tls(c) : conn__send_plain(c);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* a TLS write that waits for input is retried on
				 * EPOLLIN (sse_conn_event), not on a writable socket */
				conn__set_out(c, !c->tls_write_wants_read);
				conn__maybe_resume(c);
				return;
			}
			sse_conn_why(c, "client_closed");
			sse_conn_close(c);
			return;
		}
		ctx->m.bytes_sent += (uint64_t)w;
		c->bytes += (uint64_t)w;
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
				c->frames++;
			}
			sse_frame_unref(f);
			c->out_head = (c->out_head + 1) & (c->out_cap - 1);
			c->out_n--;
		}
	}
	conn__drained(c);
}

/* ---- whole responses --------------------------------------------------------- */

/* request_id: NULL where no request was read (a refusal at accept). */
static void conn__cors(const struct rtw_cfg *cfg, const char *origin, const char *request_id, bool widget_ok, char *out,
		       size_t cap)
{
	int n = 0;

	out[0] = '\0';
	if (request_id) {
		n = snprintf(out, cap, "X-RTW-Request-Id: %s\r\n", request_id);
		if (n < 0 || (size_t)n >= cap)
			return;
	}
	if (rtw_cors_any(cfg->http_cors_origins))
		snprintf(out + n, cap - (size_t)n, "Access-Control-Allow-Origin: *\r\n");
	else if (rtw_cors_echoable(origin) && (widget_ok || rtw_cors_cfg_allows(cfg->http_cors_origins, origin)))
		snprintf(out + n, cap - (size_t)n,
			 "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
			 "Access-Control-Expose-Headers: X-RTW-Request-Id\r\n",
			 origin);
}

void sse_conn_cors(const struct sse_conn *c, bool widget_ok, char *out, size_t cap)
{
	conn__cors(c->ctx->cfg, c->hs ? c->hs->origin : NULL, c->request_id, widget_ok, out, cap);
}

/* Queues f (a whole response; NULL: out of memory) and closes the
 * connection once it is written. */
static void conn__answer(struct sse_conn *c, struct sse_frame *f)
{
	sse_conn_why(c, "answered");
	if (f == NULL) {
		sse_conn_close(c);
		return;
	}
	if (c->in_index) {
		sse_index_remove(&c->ctx->ix, &c->sub);
		c->in_index = false;
	}
	sse_conn_set_state(c, SSE_CONN_CLOSING);
	sse_conn_push(c, f, false);
	sse_frame_unref(f);
}

/* The CORS headers for the connection's request, then extra. */
static void conn__headers(const struct sse_conn *c, const char *extra, char *out, size_t cap)
{
	char cors[SSE_CORS_MAX];

	sse_conn_cors(c, false, cors, sizeof(cors));
	snprintf(out, cap, "%s%s", cors, extra ? extra : "");
}

void sse_conn_respond(struct sse_conn *c, int status, const char *ctype, const char *extra, const char *body,
		      size_t blen, bool head_only)
{
	char headers[SSE_CORS_MAX + 512];

	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	c->status = status;
	conn__headers(c, extra, headers, sizeof(headers));
	conn__answer(c, sse_frame_response(status, ctype, headers, body, blen, head_only));
}

/* The contract's error JSON and a newline, as a response frame; NULL on
 * out of memory. */
static struct sse_frame *conn__error_frame(int status, const char *code, const char *field, const char *headers,
					   const char *message)
{
	struct msg_error err;
	struct sse_frame *f = NULL;
	char *json, *body;
	size_t n;

	msg_error_set(&err, status, code, field, "%s", message);
	json = msg_error_json(&err);
	if (json == NULL)
		return NULL;
	n = strlen(json);
	body = malloc(n + 1);
	if (body) {
		memcpy(body, json, n);
		body[n] = '\n';
		f = sse_frame_response(status, "application/json", headers, body, n + 1, false);
		free(body);
	}
	free(json);
	return f;
}

void sse_conn_error(struct sse_conn *c, int status, const char *code, const char *field, const char *extra,
		    const char *message)
{
	char headers[SSE_CORS_MAX + 512];

	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	c->status = status;
	conn__headers(c, extra, headers, sizeof(headers));
	conn__answer(c, conn__error_frame(status, code, field, headers, message));
}

/* base jittered to [base/2, base*3/2) */
static int conn__jitter(uint64_t base)
{
	uint32_t r = 0;

	if (rtw_random(&r, sizeof(r)) != RTW_OK)
		return (int)base;
	return (int)(base / 2 + base * r / UINT32_MAX);
}

int sse_conn_retry_jitter(const struct sse_ctx *ctx)
{
	return conn__jitter((uint64_t)ctx->cfg->sse_retry_ms);
}

/* Over capacity the retry: is four times the usual one (jittered to
 * [2, 6) times sse.retry_ms): the process is full, not restarting. */
static struct sse_frame *conn__busy_stream(const struct rtw_cfg *cfg, const char *origin, const char *request_id)
{
	char cors[SSE_CORS_MAX];

	conn__cors(cfg, origin, request_id, false, cors, sizeof(cors));
	return sse_frame_stream_retry(cors, conn__jitter(4 * (uint64_t)cfg->sse_retry_ms));
}

void sse_conn_refuse_over(struct sse_conn *c, const struct sse_req *r)
{
	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	c->ctx->m.rejected++;
	if (r->route == SSE_ROUTE_EVENTS && r->method == HTTP_GET)
		conn__answer(c, conn__busy_stream(c->ctx->cfg, r->has_origin ? r->origin : NULL, c->request_id));
	else
		sse_conn_error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "too many connections");
}

void sse_conn_retry_later(struct sse_conn *c)
{
	char cors[SSE_CORS_MAX];

	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	c->status = 200;
	sse_conn_why(c, "retry");
	sse_conn_cors(c, false, cors, sizeof(cors));
	conn__answer(c, sse_frame_stream_retry(cors, sse_conn_retry_jitter(c->ctx)));
}

/* ---- the stream --------------------------------------------------------------- */

void sse_conn_go_live(struct sse_conn *c)
{
	if (sse_pos_cmp(c->pos, c->ctx->cursor) < 0)
		c->pos = c->ctx->cursor;
	sse_conn_set_state(c, SSE_CONN_LIVE);
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
		sse_conn_go_live(c);
		return;
	}
	/* more to fetch: once the socket drained below the low-water mark */
	c->lagging = true;
	conn__maybe_resume(c);
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

bool sse_conn_dispatch_presence(struct sse_stream *st, struct sse_frame *f, bool only_waiting)
{
	struct sse_link *l, *next;
	bool left = false;

	for (l = st->subs.next; l != &st->subs; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, sub.stream_link);
		next = l->next; /* push may close c, unlinking it */
		if (c->sub.presence == SSE_PRESENCE_OFF || (only_waiting && c->sub.presence != SSE_PRESENCE_WAITING))
			continue;
		/* only once the stream's head is out; no id, so a catching-up
		 * connection may have it between its rows. Not live: a frame
		 * every few seconds never turns a connection into a catch-up */
		if (c->state != SSE_CONN_LIVE && c->state != SSE_CONN_CATCHING_UP) {
			left = left || c->sub.presence == SSE_PRESENCE_WAITING;
			continue;
		}
		c->sub.presence = SSE_PRESENCE_SENT;
		sse_conn_push(c, f, false);
	}
	return left;
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

/* True when data[0..len) holds the blank line that ends a head, looking
 * only at the bytes from `from` on (and the two before them), so a head
 * that arrives in many pieces is scanned once in all. */
static bool conn__head_ended(const char *data, size_t len, size_t from)
{
	size_t i = from >= 2 ? from - 2 : 0;

	for (; i + 1 < len; i++) {
		if (data[i] != '\n')
			continue;
		if (data[i + 1] == '\n' || (data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n'))
			return true;
	}
	return false;
}

/* Appends n bytes to c's incomplete head, growing it geometrically (at
 * most cap bytes in all). RTW_OK or RTW_ERROR (out of memory). */
static int conn__head_append(struct sse_conn *c, const char *data, size_t n, size_t cap)
{
	if (c->head_len + n > c->head_cap) {
		size_t want = c->head_cap ? (size_t)c->head_cap * 2 : 256;
		char *h;
		while (want < c->head_len + n)
			want *= 2;
		if (want > cap)
			want = cap;
		h = realloc(c->head, want);
		if (h == NULL)
			return RTW_ERROR;
		c->head = h;
		c->head_cap = (uint32_t)want;
	}
	memcpy(c->head + c->head_len, data, n);
	c->head_len += (uint32_t)n;
	return RTW_OK;
}

/* The PROXY protocol header a peer in sse.proxy_protocol_from (a TCP
 * pass-through: nginx stream with proxy_protocol on) opens a connection
 * with. data[0..*len) was just read into ctx->rbuf, after c->head_len
 * bytes kept from earlier reads. Once the header is whole, the client it
 * names becomes c's peer, so the per-address limits and the trust of
 * X-Forwarded-For and X-Request-Id apply to the client as if it had
 * connected directly (routes.c counts it), and the bytes after the header
 * are moved to the front of ctx->rbuf as the head's first *len bytes. A
 * connection that opens with an HTTP request instead is the peer's own
 * (the same front's http proxy, a health check): a client behind either
 * path can never choose the first bytes, so this is no guess. RTW_OK:
 * done; RTW_AGAIN: incomplete, kept for the next read; RTW_ERROR: c was
 * answered (400) or closed. */
static int conn__proxy_header(struct sse_conn *c, size_t *len, size_t cap, bool eof)
{
	struct sse_ctx *ctx = c->ctx;
	const char *data = ctx->rbuf;
	size_t old = c->head_len, total = old + *len;
	struct rtw_proxy pp;
	int r;

	if (old > 0) {
		if (conn__head_append(c, ctx->rbuf, *len, cap) != RTW_OK) {
			sse_conn_close(c);
			return RTW_ERROR;
		}
		data = c->head;
	}
	r = rtw_proxy_parse(data, total, &pp);
	if (r == RTW_AGAIN) {
		if (eof || (old == 0 && conn__head_append(c, data, total, cap) != RTW_OK)) {
			sse_conn_close(c);
			return RTW_ERROR;
		}
		return RTW_AGAIN;
	}
	if (r == RTW_DECLINED)
		pp.len = 0; /* an HTTP request: all of it is the head */
	else if (r != RTW_OK) {
		ctx->m.proxy_refused++;
		rtw_reqid_new(c->request_id);
		sse_conn_error(c, 400, "invalid_field", NULL, NULL, "malformed PROXY protocol header");
		return RTW_ERROR;
	}
	c->proxy_pending = false;
	if (pp.addr[0])
		snprintf(c->peer, sizeof(c->peer), "%s", pp.addr);
	*len = total - pp.len;
	memmove(ctx->rbuf, data + pp.len, *len);
	free(c->head);
	c->head = NULL;
	c->head_len = c->head_cap = 0;
	return RTW_OK;
}

/* Reads what the socket has; once the head's blank line has arrived (or
 * it outgrew sse.max_header_bytes), parses it whole, once, with the
 * loop's one parser into its scratch request: a connection owns no parser
 * state, only the bytes of an incomplete head (heads almost always arrive
 * in one read and are parsed straight from the read buffer), so a burst of
 * thousands of pending handshakes costs no large transient allocations,
 * and a head dripped byte by byte costs linear time (each byte is scanned
 * for the blank line once, and parsed once). Returns the loop's scratch
 * request when a head became complete and valid (routing is the
 * caller's), NULL otherwise (a malformed or too large head is answered
 * here). */
static const struct sse_req *conn__read_head(struct sse_conn *c)
{
	struct sse_ctx *ctx = c->ctx;
	size_t max = (size_t)ctx->cfg->sse_max_header_bytes;
	size_t cap = max + SSE_RBUF_SLACK;
	size_t len = 0, old = c->head_len, total;
	const char *data;
	bool eof = false;
	int r;

	while (old + len < cap) {
		ssize_t n = conn__recv(c, ctx->rbuf + len, cap - old - len);
		if (n == 0) {
			eof = true;
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				sse_conn_close(c);
				return NULL;
			}
			break;
		}
		len += (size_t)n;
	}
	if (c->proxy_pending) {
		if (len == 0 && !eof)
			return NULL;
		if (conn__proxy_header(c, &len, cap, eof) != RTW_OK)
			return NULL;
		old = 0;
	}
	data = ctx->rbuf;
	if (old == 0) {
		/* http-parser skips blank lines before the request line: drop
		 * them, so a blank line found later is the head's end */
		while (len > 0 && (*data == '\r' || *data == '\n')) {
			data++;
			len--;
		}
	}
	if (len == 0) {
		if (eof)
			sse_conn_close(c);
		return NULL;
	}
	if (old > 0) {
		if (conn__head_append(c, data, len, cap) != RTW_OK) {
			sse_conn_close(c);
			return NULL;
		}
		data = c->head;
	}
	total = old + len;
	if (!conn__head_ended(data, total, old) && total <= max) {
		if (eof || (old == 0 && conn__head_append(c, data, len, cap) != RTW_OK))
			sse_conn_close(c);
		return NULL;
	}
	sse_reqparser_reset(ctx->parser);
	memset(&ctx->req, 0, sizeof(ctx->req));
	r = sse_reqparser_feed(ctx->parser, data, total, &ctx->req);
	if (r == RTW_AGAIN) {
		/* the parser wants more after all (cannot happen with a blank
		 * line seen): keep the bytes, wait for the timeout */
		if (eof || (old == 0 && conn__head_append(c, data, len, cap) != RTW_OK))
			sse_conn_close(c);
		return NULL;
	}
	free(c->head);
	c->head = NULL;
	c->head_len = c->head_cap = 0;
	/* X-Request-Id only from a front we trust, as X-Forwarded-For */
	rtw_reqid_pick(ctx->req.has_request_id ? ctx->req.request_id : NULL, rtw_trust_has(&ctx->trust, c->peer),
		       c->request_id);
	c->hs = conn__hs_new(&ctx->req);
	if (c->hs == NULL) {
		sse_conn_close(c);
		return NULL;
	}
	if (r == RTW_ERROR) {
		if (ctx->req.too_large)
			sse_conn_error(c, 431, "invalid_field", NULL, NULL, "request head is too large");
		else
			sse_conn_error(c, 400, "invalid_field", NULL, NULL, "malformed request");
		return NULL;
	}
	return &ctx->req;
}

/* After the head: the client only ever closes; discard what it sends. */
static void conn__read_discard(struct sse_conn *c)
{
	char buf[512];

	for (;;) {
		ssize_t n = conn__recv(c, buf, sizeof(buf));
		if (n == 0) {
			sse_conn_why(c, "client_closed");
			sse_conn_close(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				sse_conn_why(c, "client_closed");
				sse_conn_close(c);
			}
			return;
		}
	}
}

/* The TLS handshake (SSE_CONN_TLS_ACCEPT), on any event: RTW_OK once it
 * is done (the head is read next), RTW_AGAIN while it waits for the
 * socket, RTW_ERROR when it failed (c is closed: nothing can be answered
 * before TLS is up, not even to plain HTTP sent to this port). */
static int conn__tls_accept(struct sse_conn *c)
{
	bool want_out;
	int r = sse_tls_handshake(c->tls, &want_out);

	if (r == RTW_OK) {
		c->ctx->m.tls_handshakes++;
		conn__set_out(c, false);
		sse_conn_set_state(c, SSE_CONN_READING_HEAD);
		return RTW_OK;
	}
	if (r == RTW_AGAIN) {
		conn__set_out(c, want_out);
		return RTW_AGAIN;
	}
	c->ctx->m.tls_failed++;
	sse_conn_close(c);
	return RTW_ERROR;
}

const struct sse_req *sse_conn_event(struct sse_conn *c, uint32_t events)
{
	if (c->state == SSE_CONN_CLOSED)
		return NULL; /* a stale event for a connection closed this pass */
	if (c->state == SSE_CONN_TLS_ACCEPT && conn__tls_accept(c) != RTW_OK)
		return NULL;
	if (events & EPOLLOUT)
		conn__write(c);
	if (c->state == SSE_CONN_CLOSED)
		return NULL;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if (c->state == SSE_CONN_READING_HEAD)
			return conn__read_head(c);
		conn__read_discard(c);
		if (c->tls_write_wants_read && c->state != SSE_CONN_CLOSED)
			conn__write(c); /* the input it waited for was read */
	}
	return NULL;
}

int sse_conn_setup(struct sse_ctx *ctx)
{
	ctx->heartbeat = sse_frame_static(": hb\n\n", 6);
	if (ctx->heartbeat == NULL)
		return RTW_ERROR;
	return RTW_OK;
}

void sse_conn_teardown(struct sse_ctx *ctx)
{
	free(ctx->heartbeat);
	ctx->heartbeat = NULL;
}

/* A connection refused at accept, in the log: at most one line a second
 * (a crowd refused, or descriptors run out, must not flood the log; the
 * line counts the refusals left out since the last one). request_id: the
 * one its answer carried, NULL when it got none. */
static void conn__log_refused(struct sse_ctx *ctx, int status, const char *reason, const char *client,
			      const char *request_id)
{
	uint64_t now = sse_now(ctx);
	json_t *f;

	if (!ctx->cfg->log_requests || !log_enabled(LOG_LVL_INFO))
		return;
	if (ctx->refused_log_ms && now - ctx->refused_log_ms < 1000) {
		ctx->refused_unlogged++;
		return;
	}
	f = json_pack("{s:i, s:s, s:s?, s:s?, s:I}", "status", status, "end", reason, "client", client, "request_id",
		      request_id, "unlogged_before", (json_int_t)ctx->refused_unlogged);
	log_event(LOG_LVL_INFO, "connection refused", f);
	json_decref(f);
	ctx->refused_log_ms = now;
	ctx->refused_unlogged = 0;
}

/* Answers a connection refused at accept (one attempt, never blocks),
 * closes it and logs it. f: the answer (borrowed; NULL: out of memory,
 * closed unanswered). */
static void conn__refuse(struct sse_ctx *ctx, int fd, const struct sse_frame *f, int status, const char *reason,
			 const char *client, const char *request_id)
{
	if (f) {
		ssize_t w = send(fd, f->data, f->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
	}
	close(fd);
	ctx->m.rejected++;
	conn__log_refused(ctx, f ? status : 0, reason, client, f ? request_id : NULL);
}

/* The contract's error for a connection refused at accept, with a request
 * id of its own (the head is not read: no id from a front) in
 * X-RTW-Request-Id, for the logs to meet the client's report. */
static struct sse_frame *conn__refusal(const struct rtw_cfg *cfg, int status, const char *code, const char *retry_after,
				       const char *message, const char *request_id)
{
	char headers[SSE_CORS_MAX + 64];
	size_t n;

	conn__cors(cfg, NULL, request_id, false, headers, sizeof(headers));
	n = strlen(headers);
	snprintf(headers + n, sizeof(headers) - n, "Retry-After: %s\r\n", retry_after);
	return conn__error_frame(status, code, NULL, headers, message);
}

/* What one read at accept may find of a request head (request line,
 * usually Origin): heads are read, not left unread, so the close after
 * the answer does not reset the connection. */
#define CONN_PEEK_MAX 2048

/* False only when the head's request line is complete and its path does
 * not end in /events: no head yet, or a cut one, counts as /events, which
 * is nearly all rtw-sse serves, so a standard EventSource is never given
 * a 503 on a guess. */
static bool conn__maybe_events(const char *head)
{
	const char *t = strchr(head, ' '), *end;

	if (t == NULL)
		return true;
	t++;
	end = t + strcspn(t, " ?\r\n");
	if (*end == '\0')
		return true;
	return end - t >= 7 && memcmp(end - 7, "/events", 7) == 0;
}

/* The value of head's Origin header (NUL-terminated in place), or NULL. */
static const char *conn__raw_origin(char *head)
{
	for (char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, "origin:", 7) == 0) {
			char *v = p + 9 + strspn(p + 9, " \t");
			size_t n = strcspn(v, " \t\r\n");
			if (v[n] == '\0')
				return NULL; /* cut */
			v[n] = '\0';
			return v;
		}
	}
	return NULL;
}

/* Over capacity with every SSE_OVER_MAX slot taken: decided from one
 * non-blocking read, without a connection object, so a crowd costs a
 * read, a random number and a write each. */
static void conn__refuse_over_now(struct sse_ctx *ctx, int fd, const char *peer)
{
	char head[CONN_PEEK_MAX + 1], rid[RTW_REQID_MAX], *h = head;
	ssize_t n = recv(fd, head, CONN_PEEK_MAX, MSG_DONTWAIT);
	bool events;
	struct sse_frame *f;
	struct rtw_proxy pp;

	head[n > 0 ? n : 0] = '\0';
	if (n > 0 && rtw_trust_has(&ctx->pp_from, peer)) {
		/* the head after a pass-through's PROXY header; a cut one
		 * counts as /events */
		int r = rtw_proxy_parse(head, (size_t)n, &pp);
		h = r == RTW_OK ? head + pp.len : r == RTW_DECLINED ? head : head + n;
	}
	rtw_reqid_new(rid);
	events = conn__maybe_events(h);
	if (events)
		f = conn__busy_stream(ctx->cfg, conn__raw_origin(h), rid);
	else
		f = conn__refusal(ctx->cfg, 503, "unavailable", "1", "too many connections", rid);
	conn__refuse(ctx, fd, f, events ? 200 : 503, "max_connections", peer, rid);
	if (f)
		sse_frame_unref(f);
}

void sse_conn_accept(struct sse_ctx *ctx, bool tls)
{
	int lfd = tls ? ctx->tls_listen_fd : ctx->listen_fd;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct sse_conn *c;
		char ip[INET6_ADDRSTRLEN] = "", key[RTW_CLIENT_KEY_MAX];
		int one = 1;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* out of descriptors: the listen socket stays
				 * readable, so refuse the oldest pending one
				 * with the reserve descriptor */
				if (ctx->reserve_fd >= 0) {
					close(ctx->reserve_fd);
					fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
					if (fd >= 0)
						conn__refuse(ctx, fd, NULL, 0, "out_of_descriptors", NULL, NULL);
					ctx->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				}
				/* once a second at most: each pending connection comes back here */
				if (sse_now(ctx) - ctx->emfile_log_ms >= 1000) {
					ctx->emfile_log_ms = sse_now(ctx);
					log_warn("out of file descriptors; refusing connections (run more rtw-sse "
						 "processes)");
				}
			}
			return;
		}
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) /* an IPv4 peer on a [::] listener */
				inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			else
				inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		} else if (ss.ss_family == AF_UNIX) {
			/* sse.listen = unix:/path: the peer is a front on this
			 * host, as trusted as one on loopback (its clients come
			 * from X-Forwarded-For) */
			snprintf(ip, sizeof(ip), "127.0.0.1");
		}
		/* Full (or stopping): a few are let in to have their heads
		 * read and answered (sse_conn_refuse_over), the rest are
		 * answered at once. Either way /events gets a 200 that says
		 * retry: a standard EventSource gives up on a non-200. */
		bool over = ctx->stopping || ctx->n_conns >= (size_t)ctx->cfg->sse_max_connections;
		if (over && tls) {
			/* nothing can be answered before a handshake, and a full
			 * process spends none: closed (an EventSource retries) */
			conn__refuse(ctx, fd, NULL, 0, "max_connections", ip, NULL);
			continue;
		}
		if (over && ctx->n_over >= SSE_OVER_MAX) {
			conn__refuse_over_now(ctx, fd, ip);
			continue;
		}
		if (tls && ctx->tls_accepting >= (size_t)ctx->cfg->sse_tls_max_handshakes) {
			/* handshakes cost CPU and tens of KiB each while they
			 * last: an outsider may not start more than this */
			ctx->m.tls_refused++;
			conn__refuse(ctx, fd, NULL, 0, "tls_max_handshakes", ip, NULL);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->ctx = ctx;
		memcpy(c->peer, ip, sizeof(ip));
		c->over = over;
		c->proxy_pending = !tls && rtw_trust_has(&ctx->pp_from, ip);
		/* A peer that is not a trusted proxy is the client: count it
		 * now. A trusted proxy's clients are counted once the head
		 * names them (X-Forwarded-For; routes.c), a pass-through's
		 * once its PROXY header does. Not one that is only answered. */
		if (!over && !c->proxy_pending && !rtw_trust_has(&ctx->trust, ip)) {
			rtw_client_key(&ctx->trust, ip, NULL, key);
			if (sse_conn_count_addr(c, key) != RTW_OK) {
				char rid[RTW_REQID_MAX];
				struct sse_frame *f;
				rtw_reqid_new(rid);
				/* on the TLS port: closed unanswered, before any handshake */
				f = tls ? NULL
					: conn__refusal(ctx->cfg, 429, "rate_limited", "5",
							"too many connections from this address", rid);
				conn__refuse(ctx, fd, f, 429, "max_per_ip", key, rid);
				if (f)
					sse_frame_unref(f);
				free(c);
				continue;
			}
		}
		c->fd = fd;
		c->state = tls ? SSE_CONN_TLS_ACCEPT : SSE_CONN_READING_HEAD;
		ctx->tls_accepting += tls;
		c->born_ms = sse_now(ctx);
		sse_list_init(&c->job_link);
		sse_list_init(&c->sub.stream_link);
		sse_list_init(&c->sub.user_link);
		c->outq = c->out_inline;
		c->out_cap = SSE_OUT_INLINE;
		sse_list_add_tail(&ctx->heads, &c->link);
		ctx->n_conns++;
		ctx->n_over += over;
		ctx->m.accepted++;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((tls && (c->tls = sse_tls_new(ctx, fd)) == NULL) ||
		    rtw_loop_add(&ctx->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, ctx->conn_io, c) != RTW_OK) {
			sse_conn_close(c);
			continue;
		}
	}
}

int sse_conn_count_addr(struct sse_conn *c, const char *key)
{
	if (c->ipc)
		return RTW_OK;
	c->ipc = conn__count_take(&c->ctx->ips, key, c->ctx->cfg->sse_max_per_ip);
	return c->ipc ? RTW_OK : RTW_ERROR;
}

int sse_conn_count_user(struct sse_conn *c, const char *user)
{
	if (c->idc)
		return RTW_OK;
	c->idc = conn__count_take(&c->ctx->idents, user, c->ctx->cfg->sse_max_per_user);
	return c->idc ? RTW_OK : RTW_ERROR;
}

void sse_conn_end(struct sse_conn *c)
{
	if (c->state == SSE_CONN_CLOSED || c->state == SSE_CONN_CLOSING)
		return;
	if (c->in_index) {
		sse_index_remove(&c->ctx->ix, &c->sub);
		c->in_index = false;
	}
	sse_conn_set_state(c, SSE_CONN_CLOSING);
	if (c->out_n == 0) {
		conn__shut_wr(c);
		sse_conn_close(c);
	}
}

/* Header timeouts, holds, stuck closings, streams whose token expired,
 * and heartbeats; from the tick timer. */
void sse_conn_tick(struct sse_ctx *ctx)
{
	struct sse_link *l, *next;
	uint64_t hb_ms = (uint64_t)ctx->cfg->sse_heartbeat_s * 1000u;
	bool hb = hb_ms > 0 && sse_now(ctx) - ctx->last_hb_ms >= hb_ms;

	for (l = ctx->heads.next; l != &ctx->heads; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (sse_now(ctx) - c->born_ms < (uint64_t)ctx->cfg->sse_header_timeout_ms)
			break; /* oldest first */
		if (c->state == SSE_CONN_TLS_ACCEPT) {
			ctx->m.tls_timeouts++;
			sse_conn_close(c); /* no TLS yet: nothing can be answered */
			continue;
		}
		rtw_reqid_new(c->request_id); /* no head, so no id from the front */
		sse_conn_error(c, 408, "invalid_field", NULL, NULL, "request head not received in time");
	}
	if (hb)
		ctx->last_hb_ms = sse_now(ctx);
	int64_t now_s = (int64_t)time(NULL);
	for (l = ctx->conns.next; l != &ctx->conns; l = next) {
		struct sse_conn *c = SSE_CONTAINER(l, struct sse_conn, link);
		next = l->next;
		if (c->state == SSE_CONN_CLOSING && sse_now(ctx) > c->deadline_ms)
			sse_conn_close(c);
		else if (c->state == SSE_CONN_HANDSHAKE && !c->pg_job && sse_now(ctx) > c->deadline_ms) {
			ctx->m.hold_retries++;
			sse_conn_retry_later(c); /* held too long: PostgreSQL is still away */
		} else if (c->exp_s && now_s >= c->exp_s && c->state != SSE_CONN_CLOSING) {
			sse_conn_why(c, "exp");
			sse_conn_end(c); /* contract: a stream ends at its token's exp */
		} else if (hb && (c->state == SSE_CONN_LIVE || c->state == SSE_CONN_CATCHING_UP) && c->out_n == 0)
			sse_conn_push(c, ctx->heartbeat, false);
	}
}

/* A streaming connection's last words at shutdown: a retry: line with its
 * own jittered delay (the reconnects of a restart spread over a second or
 * more instead of arriving at once). */
static void conn__retry_hint(struct sse_conn *c)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "retry: %d\n\n", sse_conn_retry_jitter(c->ctx));
	struct sse_frame *f = sse_frame_raw(line, (size_t)n);

	if (f) {
		sse_conn_push(c, f, false);
		sse_frame_unref(f);
	}
}

/* SIGTERM: held heads are told to retry, streams get a jittered retry:
 * hint; what can be written at once is, then every stream ends. */
void sse_conn_shutdown_all(struct sse_ctx *ctx)
{
	struct sse_link *lists[2] = {&ctx->heads, &ctx->conns};

	for (int i = 0; i < 2; i++) {
		while (!sse_list_empty(lists[i])) {
			struct sse_conn *c = SSE_CONTAINER(lists[i]->next, struct sse_conn, link);
			sse_conn_why(c, "shutdown");
			if (c->state == SSE_CONN_HANDSHAKE)
				sse_conn_retry_later(c);
			else if (c->state == SSE_CONN_LIVE || c->state == SSE_CONN_CATCHING_UP)
				conn__retry_hint(c);
			if (c->out_n > 0)
				conn__write(c);
			if (c->state != SSE_CONN_CLOSED) {
				conn__shut_wr(c);
				sse_conn_close(c);
			}
		}
	}
}
