/*
 * relay.c: the host relay of the settled tail (sse.relay): one rtw-sse
 * process per host and database owns an abstract unix socket and streams
 * every settled batch its tail reads (rows and positions) and every ban
 * change to the other processes of the host, which then hold no LISTEN
 * and run no tail: PostgreSQL's NOTIFY wakes one backend per host instead
 * of one per process, and reads each range once. Both sides live here:
 * the serving side (accept, a bounded output buffer per peer, write
 * first) and the attached side (read, split records, hand batches to
 * pg.c). Never touches a client socket or PostgreSQL; pg.c decides what
 * a batch means (sse_pg_relayed). Runs on the loop (loop.c).
 *
 * States: OFF (no sse.relay), DETACHED (retrying every
 * sse.poll_interval_ms; PostgreSQL-active meanwhile), SERVING (holds the
 * name; PostgreSQL-active), ATTACHED (fed by the server; pg.c's poll
 * leaves a server silent while rows wait, for RELAY_LEAVE_POLLS). The name
 * (with the uid and a digest of the DSN, relay__name) is a
 * Linux abstract socket, so it is released when its holder dies and
 * binding it elects the server; both sides check that the peer runs under
 * the same uid (SO_PEERCRED), so no other user can read the rows or feed
 * fake ones.
 *
 * A record: 4-byte length (network order) of what follows, a type byte,
 * then for 'B' (a batch) the positions FROM and TO (4 x 8 bytes, network
 * order), a row count (4 bytes) and per row pg.c's columns, each a flag
 * byte (0: NULL, 1: text) and the text with its NUL; 'K' (the bans
 * changed) has no body.
 */
#include "config.h"
#include "sse.h"
#include "log.h"

#include <arpa/inet.h>
#include <openssl/sha.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A peer further behind than this is dropped: it falls back to its own
 * tail and reads what it missed from PostgreSQL. */
#define RELAY_OUT_MAX ((size_t)16 << 20)
/* The largest record accepted: a batch of sse.batch_rows big messages. */
#define RELAY_REC_MAX ((size_t)256 << 20)
#define RELAY_READ 65536
/* Poll intervals a process that left a silent server stays on its own. */
#define RELAY_LEAVE_POLLS 10

struct relay_peer {
	struct rtw_io io;
	struct sse_link link; /* on relay->peers */
	struct sse_relay *r;
	char *out; /* unsent bytes [off, len) */
	size_t off, len, cap;
};

static const char *const relay__state_names[] = {"off", "detached", "serving", "attached"};

static void relay__set_state(struct sse_relay *r, enum sse_relay_state to)
{
	if (r->state != to)
		log_info("relay %s: %s", r->name, relay__state_names[to]);
	r->state = to;
}

/* r->addr: what the host's processes of one deployment share. The DSN's
 * digest keeps two databases given the same sse.relay apart (their rows
 * must never cross); the uid keeps another user's processes from even
 * holding the name (SO_PEERCRED then checks the peer). */
static void relay__name(struct sse_relay *r, const char *pgdsn)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[17];

	SHA256((const unsigned char *)pgdsn, strlen(pgdsn), md);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(r->addr, sizeof(r->addr), "rtw-relay/%.60s/%u/%s", r->name, (unsigned)getuid(), hex);
}

static socklen_t relay__addr(const char *addr, struct sockaddr_un *sa)
{
	size_t n = strlen(addr);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path + 1, addr, n); /* sun_path[0] = '\0': the abstract namespace */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* Whether fd's peer runs under our uid. */
static bool relay__same_uid(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == getuid();
}

static void relay__release_peer(struct rtw_io *io)
{
	struct relay_peer *p = SSE_CONTAINER(io, struct relay_peer, io);

	close(io->fd);
	free(p->out);
	free(p);
}

static void relay__drop(struct relay_peer *p, const char *why)
{
	log_info("relay %s: dropped a peer (%s)", p->r->name, why);
	sse_list_del(&p->link);
	p->r->npeers--;
	rtw_loop_retire(&p->r->ctx->loop, &p->io, relay__release_peer);
}

/* Writes what p has queued; false when p was dropped. */
static bool relay__flush(struct relay_peer *p)
{
	while (p->off < p->len) {
		ssize_t w = send(p->io.fd, p->out + p->off, p->len - p->off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			relay__drop(p, strerror(errno));
			return false;
		}
		p->off += (size_t)w;
	}
	if (p->off == p->len)
		p->off = p->len = 0;
	if (rtw_loop_mod(&p->r->ctx->loop, &p->io, EPOLLIN | (p->len ? EPOLLOUT : 0)) != RTW_OK) {
		relay__drop(p, strerror(errno));
		return false;
	}
	return true;
}

/* Queues len bytes on p (copied) and writes them; a peer past
 * RELAY_OUT_MAX is dropped. */
static void relay__send(struct relay_peer *p, const char *buf, size_t len)
{
	if (p->len - p->off + len > RELAY_OUT_MAX) {
		relay__drop(p, "too far behind");
		return;
	}
	if (p->len + len > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		char *out;
		if (p->off) { /* compact first */
			memmove(p->out, p->out + p->off, p->len - p->off);
			p->len -= p->off;
			p->off = 0;
		}
		while (cap < p->len + len)
			cap *= 2;
		if (cap != p->cap) {
			if ((out = realloc(p->out, cap)) == NULL) {
				relay__drop(p, "out of memory");
				return;
			}
			p->out = out;
			p->cap = cap;
		}
	}
	memcpy(p->out + p->len, buf, len);
	p->len += len;
	relay__flush(p);
}

static void relay__broadcast(struct sse_relay *r, const char *buf, size_t len)
{
	struct sse_link *l = r->peers.next;

	while (l != &r->peers) {
		struct relay_peer *p = SSE_CONTAINER(l, struct relay_peer, link);
		l = l->next; /* p may be dropped */
		relay__send(p, buf, len);
	}
}

/* A peer's socket: it never sends; readable means closed (or junk). */
static void relay__peer_io(void *arg, uint32_t events)
{
	struct relay_peer *p = arg;
	char junk[256];

	if (events & EPOLLOUT && !relay__flush(p))
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		ssize_t n = recv(p->io.fd, junk, sizeof(junk), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			relay__drop(p, n == 0 ? "closed" : strerror(errno));
	}
}

static void relay__accept(void *arg, uint32_t events)
{
	struct sse_relay *r = arg;
	struct relay_peer *p;
	int fd;

	(void)events;
	while ((fd = accept4(r->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (!relay__same_uid(fd) || (p = calloc(1, sizeof(*p))) == NULL) {
			log_warn("relay %s: refused a peer (another uid, or out of memory)", r->name);
			close(fd);
			continue;
		}
		p->r = r;
		if (rtw_loop_add(&r->ctx->loop, &p->io, fd, EPOLLIN, relay__peer_io, p) != RTW_OK) {
			close(fd);
			free(p);
			continue;
		}
		sse_list_add_tail(&r->peers, &p->link);
		r->npeers++;
	}
}

/* ---- the attached side ---- */

static void relay__detach(struct sse_relay *r, const char *why);

static uint64_t relay__u64(const unsigned char *b)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static void relay__put_u64(char *b, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (char)(v & 0xff);
}

/* One batch record's body (after the type byte); false when malformed. */
static bool relay__batch(struct sse_relay *r, const char *b, size_t len)
{
	const unsigned char *u = (const unsigned char *)b;
	struct sse_pos from, to;
	uint32_t nrows;
	size_t nv, off = 36;
	const char **v;
	bool ok = true;

	if (len < 36)
		return false;
	from.xid = relay__u64(u);
	from.id = (int64_t)relay__u64(u + 8);
	to.xid = relay__u64(u + 16);
	to.id = (int64_t)relay__u64(u + 24);
	nrows = (uint32_t)u[32] << 24 | (uint32_t)u[33] << 16 | (uint32_t)u[34] << 8 | u[35];
	if (nrows > len / SSE_RELAY_NCOLS)
		return false;
	nv = (size_t)nrows * SSE_RELAY_NCOLS;
	if ((v = malloc((nv ? nv : 1) * sizeof(*v))) == NULL)
		return false;
	for (size_t i = 0; i < nv && ok; i++) {
		const char *nul;
		if (off >= len || (b[off] != 0 && b[off] != 1)) {
			ok = false;
		} else if (b[off++] == 0) {
			v[i] = NULL;
		} else if ((nul = memchr(b + off, '\0', len - off)) == NULL) {
			ok = false;
		} else {
			v[i] = b + off;
			off = (size_t)(nul - b) + 1;
		}
	}
	if (ok && off == len) {
		r->batches++;
		sse_pg_relayed(r->ctx, from, to, (int)nrows, v);
	}
	free(v);
	return ok && off == len;
}

/* Splits what was read into records and acts on each. */
static void relay__records(struct sse_relay *r)
{
	size_t at = 0;

	while (r->in_len - at >= 5) {
		const unsigned char *h = (const unsigned char *)r->in + at;
		size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
		if (len == 0 || len > RELAY_REC_MAX) {
			relay__detach(r, "a malformed record");
			return;
		}
		if (r->in_len - at - 4 < len)
			break;
		if (h[4] == 'K') {
			r->ctx->bans.wanted = true;
		} else if (h[4] != 'B' || !relay__batch(r, r->in + at + 5, len - 1)) {
			relay__detach(r, "a malformed record");
			return;
		}
		at += 4 + len;
	}
	memmove(r->in, r->in + at, r->in_len - at);
	r->in_len -= at;
}

static void relay__read(void *arg, uint32_t events)
{
	struct sse_relay *r = arg;

	(void)events;
	for (;;) {
		ssize_t n;
		if (r->in_cap - r->in_len < RELAY_READ) {
			size_t cap = r->in_cap ? r->in_cap * 2 : 4 * RELAY_READ;
			char *in;
			if (cap > RELAY_REC_MAX + 5 + RELAY_READ || (in = realloc(r->in, cap)) == NULL) {
				relay__detach(r, "a record too large");
				return;
			}
			r->in = in;
			r->in_cap = cap;
		}
		n = recv(r->io.fd, r->in + r->in_len, r->in_cap - r->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			relay__detach(r, n == 0 ? "the server closed" : strerror(errno));
			return;
		}
		r->in_len += (size_t)n;
		relay__records(r);
		if (r->state != SSE_RELAY_ATTACHED)
			return;
	}
}

/* Binds the name (then serves) or connects to its holder (then is fed).
 * A leader does not attach: it keeps its lock and its tail, and the
 * server reads behind it. */
static void relay__try(struct sse_relay *r)
{
	struct sockaddr_un sa;
	socklen_t sl = relay__addr(r->addr, &sa);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto retry;
	if (bind(fd, (struct sockaddr *)&sa, sl) == 0) {
		if (listen(fd, 64) != 0 ||
		    rtw_loop_add(&r->ctx->loop, &r->io, fd, EPOLLIN, relay__accept, r) != RTW_OK) {
			log_error("relay %s: could not listen: %s", r->name, strerror(errno));
			goto close;
		}
		relay__set_state(r, SSE_RELAY_SERVING);
		return;
	}
	if (errno != EADDRINUSE || r->ctx->leader)
		goto close;
	/* a unix stream connect completes at once or fails */
	if (connect(fd, (struct sockaddr *)&sa, sl) != 0 || !relay__same_uid(fd) ||
	    rtw_loop_add(&r->ctx->loop, &r->io, fd, EPOLLIN, relay__read, r) != RTW_OK)
		goto close;
	r->in_len = 0;
	r->attaches++;
	r->ctx->bans.wanted = true;				/* a change may have gone unheard meanwhile */
	r->ctx->settled_heard_ms = rtw_loop_now(&r->ctx->loop); /* silence counts from now */
	relay__set_state(r, SSE_RELAY_ATTACHED);
	return;
close:
	close(fd);
retry:
	relay__set_state(r, SSE_RELAY_DETACHED);
	if (rtw_timer_start(&r->timer, (uint64_t)r->ctx->cfg->sse_poll_interval_ms, 0) != RTW_OK)
		log_error("relay %s: could not arm the retry timer: %s", r->name, strerror(errno));
}

static void relay__close_fd(struct sse_relay *r)
{
	if (r->io.registered) {
		rtw_loop_del(&r->ctx->loop, &r->io);
		close(r->io.fd);
	}
}

/* The server is gone: PostgreSQL-active again (pg.c LISTENs and tails
 * from its cursor on its own), and at once try to take its place. */
static void relay__detach(struct sse_relay *r, const char *why)
{
	log_warn("relay %s: lost the server (%s)", r->name, why);
	relay__close_fd(r);
	r->in_len = 0;
	relay__set_state(r, SSE_RELAY_DETACHED);
	relay__try(r);
}

void sse_relay_leave(struct sse_ctx *ctx, const char *why)
{
	struct sse_relay *r = &ctx->relay;

	if (r->state != SSE_RELAY_ATTACHED)
		return;
	log_warn("relay %s: left the server (%s)", r->name, why);
	r->leaves++;
	relay__close_fd(r);
	r->in_len = 0;
	relay__set_state(r, SSE_RELAY_DETACHED);
	/* a stopped server still accepts: come back only after a while */
	if (rtw_timer_start(&r->timer, RELAY_LEAVE_POLLS * (uint64_t)ctx->cfg->sse_poll_interval_ms, 0) != RTW_OK)
		log_error("relay %s: could not arm the retry timer: %s", r->name, strerror(errno));
}

static void relay__timer(void *arg)
{
	struct sse_relay *r = arg;

	if (r->state == SSE_RELAY_DETACHED)
		relay__try(r);
}

int sse_relay_start(struct sse_ctx *ctx)
{
	struct sse_relay *r = &ctx->relay;

	r->ctx = ctx;
	r->io.fd = -1;
	r->name = ctx->cfg->sse_relay;
	sse_list_init(&r->peers);
	if (r->name == NULL || r->name[0] == '\0')
		return RTW_OK;
	relay__name(r, ctx->cfg->pgdsn);
	if (rtw_timer_init(&ctx->loop, &r->timer, relay__timer, r) != RTW_OK)
		return RTW_ERROR;
	r->timer_set = true;
	relay__try(r);
	return RTW_OK;
}

void sse_relay_close(struct sse_relay *r)
{
	if (r->ctx == NULL)
		return; /* never started */
	while (!sse_list_empty(&r->peers))
		relay__drop(SSE_CONTAINER(r->peers.next, struct relay_peer, link), "shutdown");
	relay__close_fd(r);
	if (r->timer_set)
		rtw_timer_close(&r->timer);
	r->timer_set = false;
	free(r->in);
	r->in = NULL;
	r->state = SSE_RELAY_OFF;
}

bool sse_relay_feeding(const struct sse_ctx *ctx)
{
	return ctx->relay.state == SSE_RELAY_SERVING && ctx->relay.npeers > 0;
}

void sse_relay_batch(struct sse_ctx *ctx, struct sse_pos from, struct sse_pos to, const PGresult *res, int nrows)
{
	size_t len = 5 + 36;
	char *buf, *w;

	if (!sse_relay_feeding(ctx))
		return;
	for (int i = 0; i < nrows; i++)
		for (int c = 0; c < SSE_RELAY_NCOLS; c++)
			len += 1 + (PQgetisnull(res, i, c) ? 0 : (size_t)PQgetlength(res, i, c) + 1);
	if (len - 4 > RELAY_REC_MAX || (buf = malloc(len)) == NULL) {
		/* the peers see a gap at the next batch and read it themselves */
		log_error("relay %s: could not build a batch of %d rows", ctx->relay.name, nrows);
		return;
	}
	w = buf;
	*w++ = (char)((len - 4) >> 24);
	*w++ = (char)((len - 4) >> 16);
	*w++ = (char)((len - 4) >> 8);
	*w++ = (char)(len - 4);
	*w++ = 'B';
	relay__put_u64(w, from.xid);
	relay__put_u64(w + 8, (uint64_t)from.id);
	relay__put_u64(w + 16, to.xid);
	relay__put_u64(w + 24, (uint64_t)to.id);
	w += 32;
	*w++ = (char)((uint32_t)nrows >> 24);
	*w++ = (char)((uint32_t)nrows >> 16);
	*w++ = (char)((uint32_t)nrows >> 8);
	*w++ = (char)nrows;
	for (int i = 0; i < nrows; i++)
		for (int c = 0; c < SSE_RELAY_NCOLS; c++) {
			size_t n;
			if (PQgetisnull(res, i, c)) {
				*w++ = 0;
				continue;
			}
			*w++ = 1;
			n = (size_t)PQgetlength(res, i, c);
			memcpy(w, PQgetvalue(res, i, c), n);
			w += n;
			*w++ = '\0';
		}
	ctx->relay.batches++;
	relay__broadcast(&ctx->relay, buf, len);
	free(buf);
}

void sse_relay_bans(struct sse_ctx *ctx)
{
	static const char rec[5] = {0, 0, 0, 1, 'K'};

	if (sse_relay_feeding(ctx))
		relay__broadcast(&ctx->relay, rec, sizeof(rec));
}
