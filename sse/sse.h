/*
 * sse.h: the internals of rtw-sse, the Server-Sent Events daemon, shared
 * by its files. Each file owns one subsystem; the files form tiers, and a
 * file calls only files of lower tiers (never one above it):
 *   loop.c    main(), the one epoll loop, timers, signals          (top)
 *   pg.c      the non-blocking libpq side: LISTEN, the (xid, id)
 *             tail, handshakes and per-connection catch-ups,
 *             reconnects; hands rows and answers down
 *   routes.c  what a request head asks for: the events route
 *             (identity, the handshake's answer, init), /healthz,
 *             /metrics, the CORS preflight
 *   bans.c    the bans in force, loaded from PostgreSQL: refuses a
 *             banned user's new streams, ends its open ones
 *   presence.c  this process's per-stream counts written to
 *             PostgreSQL, the sums read back, presence frames
 *   conn.c    client connections: accept and limits, reading the
 *             head, the state machine, the output ring and writing,
 *             fan-out, timeouts and heartbeats
 *   tls.c     TLS on the own port (sse.tls_listen): the certificate,
 *             its reload, the handshake, reads and writes conn.c
 *             makes through it
 *   frame.c   every frame a client is sent: refcounted, preformatted
 *             events shared by all recipients, stream heads, responses
 *   subs.c    the subscriber index: stream -> connections, (stream,
 *             user) -> connections, so fan-out of a private costs
 *             O(its recipients); which streams' counts changed
 *   req.c     the request-head glue over http-parser and the query
 *             string                                              (bottom)
 * Everything runs on the one loop thread of the process; nothing is
 * shared between processes (several may share the port via SO_REUSEPORT).
 */
#ifndef RTW_SSE_H
#define RTW_SSE_H

#include "rtw.h"
#include "cfg.h"
#include "clientaddr.h"
#include "msg.h"
#include "loop.h"
#include "pgconn.h"
#include "reqid.h"
#include "row.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/uio.h>

/* ---- positions in stream order -------------------------------------- */

/* A message's place in the one stream order: (transaction id, row id). */
struct sse_pos {
	uint64_t xid;
	int64_t id;
};

static inline int sse_pos_cmp(struct sse_pos a, struct sse_pos b)
{
	if (a.xid != b.xid)
		return a.xid < b.xid ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

/* ---- frames (frame.c) ------------------------------------------------ */

/* One event as wire bytes, shared by every connection it is queued on.
 * A frame with refs == 0 after sse_frame_unref is freed; a static frame
 * (heartbeat) has refs < 0 and is never freed. has_pos is false for
 * frames that are not messages (init, heartbeat). */
struct sse_frame {
	int refs;
	bool has_pos;
	/* a live message: the loop time (ms) by which it must be written,
	 * from its created_at and sse.coalesce_ms (sse_conn_hold_until);
	 * 0: never held */
	uint64_t hold_until_ms;
	struct sse_pos pos;
	uint32_t len;
	char data[];
};

/* "id: <id>\ndata: <json>\n\n" for a message serialized by msg_serialize.
 * Returns a new frame with refs 1, or NULL (out of memory). */
struct sse_frame *sse_frame_event(const char *id, const char *json, size_t json_len, struct sse_pos pos) RTW_WUR;

/* A frame of exactly the given bytes (refs 1), no position. */
struct sse_frame *sse_frame_raw(const char *bytes, size_t len) RTW_WUR;

/* Builds a message frame from the row's text columns (see struct
 * msg_stored); NULL when the row cannot be serialized. */
struct msg_stored;
struct sse_frame *sse_frame_row(const struct msg_stored *m, struct sse_pos pos) RTW_WUR;

static inline struct sse_frame *sse_frame_ref(struct sse_frame *f)
{
	if (f->refs > 0)
		f->refs++;
	return f;
}

void sse_frame_unref(struct sse_frame *f);

/* A whole close-delimited HTTP/1.1 response: status line, Content-Type,
 * Content-Length (computed from blen), Cache-Control: no-store,
 * Connection: close, then headers (complete lines ending in CRLF, or
 * NULL), a blank line and the body (left out when head_only: the answer
 * to HEAD). Returns a new frame (refs 1, no position), or NULL (out of
 * memory, or headers too long). */
struct sse_frame *sse_frame_response(int status, const char *ctype, const char *headers, const char *body, size_t blen,
				     bool head_only) RTW_WUR;

/* The head of an event stream (200, text/event-stream, the given header
 * lines or NULL), "retry: <retry_ms>" and the init event
 * "data: <init_json>\n\n" (no id:). A new frame (refs 1), or NULL (out of
 * memory, a newline in init_json, headers too long). */
struct sse_frame *sse_frame_stream_open(const char *headers, int retry_ms, const char *init_json,
					size_t init_len) RTW_WUR;

/* The whole answer to a stream that cannot start now: the same 200 head
 * and "retry: <retry_ms>", no event; the connection then closes, and a
 * standard EventSource reconnects after retry_ms (any non-200 would end it
 * for good). A new frame (refs 1), or NULL. */
struct sse_frame *sse_frame_stream_retry(const char *headers, int retry_ms) RTW_WUR;

/* A frame that is never freed by unref (refs < 0), e.g. the heartbeat
 * comment every connection shares; the owner frees it with free(). */
struct sse_frame *sse_frame_static(const char *bytes, size_t len) RTW_WUR;

/* ---- subscriber index (subs.c) ---------------------------------------- */

/* An intrusive doubly linked list node. */
struct sse_link {
	struct sse_link *prev, *next;
};

static inline void sse_list_init(struct sse_link *l)
{
	l->prev = l->next = l;
}

static inline bool sse_list_empty(const struct sse_link *l)
{
	return l->next == l;
}

static inline void sse_list_add_tail(struct sse_link *head, struct sse_link *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void sse_list_del(struct sse_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define SSE_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A string-keyed chained hash table of entries that embed struct
 * sse_hentry (intrusive: the table never allocates entries). */
struct sse_hentry {
	struct sse_hentry *next;
	uint32_t hash;
	const char *key; /* borrowed from the entry */
};

struct sse_htab {
	struct sse_hentry **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

uint32_t sse_hash(const char *s);
int sse_htab_init(struct sse_htab *t, size_t nbuckets) RTW_WUR;
void sse_htab_free(struct sse_htab *t); /* frees the buckets, not the entries */
struct sse_hentry *sse_htab_get(const struct sse_htab *t, const char *key);
/* Inserts e (its key must be set and not present); grows the table. */
void sse_htab_put(struct sse_htab *t, struct sse_hentry *e, uint32_t hash);
void sse_htab_del(struct sse_htab *t, struct sse_hentry *e);

/* Subscribers of one user on one stream. */
struct sse_user {
	struct sse_hentry he;
	struct sse_link subs; /* struct sse_sub.user_link */
	char id[];
};

/* Subscribers of one stream, and its users (users.count: its distinct
 * viewers in this process). */
struct sse_stream {
	struct sse_hentry he;
	struct sse_link subs; /* struct sse_sub.stream_link, every subscriber */
	struct sse_htab users;
	size_t n_subs;
	/* presence (presence.c reads and resets these) */
	struct sse_link changed; /* on ix->changed: subscribers came or went since the last put */
	bool put;		 /* its row was written (or is being written) */
	size_t n_presence;	 /* subscribers that asked for presence frames */
	bool presence_new;	 /* one of them has had no frame yet */
	bool framed;		 /* frame_* hold the counts of the last frame */
	uint64_t frame_conns, frame_viewers, frame_ms;
	char id[];
};

/* A subscriber's presence frames: not asked for, asked for and none
 * received yet, received. */
enum sse_sub_presence { SSE_PRESENCE_OFF, SSE_PRESENCE_WAITING, SSE_PRESENCE_SENT };

/* The index entry a connection embeds. */
struct sse_sub {
	struct sse_link stream_link;
	struct sse_link user_link;
	struct sse_stream *stream;
	struct sse_user *user;
	enum sse_sub_presence presence;
};

/* A stream whose last subscriber left after its presence row was
 * written: the row is removed by the next put. */
struct sse_gone {
	struct sse_link link;
	char id[];
};

struct sse_index {
	struct sse_htab streams;
	size_t n_subs;
	struct sse_link changed; /* struct sse_stream.changed */
	struct sse_link gone;	 /* struct sse_gone.link */
	bool gone_lost;		 /* a gone entry could not be kept: the next put is full */
};

int sse_index_init(struct sse_index *ix) RTW_WUR;
/* Frees the tables; every subscriber must have been removed. */
void sse_index_free(struct sse_index *ix);
/* Adds sub to stream_id and user_id (both copied when new).
 * RTW_OK or RTW_ERROR (out of memory; sub is then not indexed). */
int sse_index_add(struct sse_index *ix, struct sse_sub *sub, const char *stream_id, const char *user_id) RTW_WUR;
/* Removes sub; frees the stream and user entries left empty. */
void sse_index_remove(struct sse_index *ix, struct sse_sub *sub);
/* The stream's entry (NULL when nobody listens), and its user's. */
struct sse_stream *sse_index_stream(const struct sse_index *ix, const char *stream_id);
struct sse_user *sse_index_user(const struct sse_stream *st, const char *user_id);
/* sub (indexed) asked for presence frames. */
void sse_index_want_presence(struct sse_index *ix, struct sse_sub *sub);
/* Up to n streams with the most viewers (distinct users) into top, most
 * first (ties: more connections first); returns how many. Borrowed
 * until the index changes. */
size_t sse_index_top(const struct sse_index *ix, const struct sse_stream **top, size_t n);

/* ---- request head (req.c) --------------------------------------------- */

enum sse_route { SSE_ROUTE_NONE, SSE_ROUTE_EVENTS, SSE_ROUTE_HEALTHZ, SSE_ROUTE_METRICS };

#define SSE_TOKEN_MAX 4096
#define SSE_QVAL_MAX 256
#define SSE_XFF_MAX 256

/* What rtw-sse needs from a request head. Strings are NUL-terminated;
 * an over-long value sets bad_field. */
struct sse_req {
	int method; /* enum http_method */
	enum sse_route route;
	bool bad_path; /* an events path whose stream id is not valid */
	bool head_done;
	bool too_large;
	bool http10;
	char stream_id[129];
	bool has_widget;
	char widget_key[SSE_QVAL_MAX];
	bool has_last_id;
	char last_id[SSE_QVAL_MAX];
	bool has_user;
	char user_id[SSE_QVAL_MAX];
	bool has_token;
	char token[SSE_TOKEN_MAX];
	bool has_origin;
	char origin[SSE_QVAL_MAX];
	bool auth_other; /* an Authorization header that is not "Bearer <token>" */
	/* X-Forwarded-For (several headers joined by commas): its rightmost
	 * SSE_XFF_MAX - 1 bytes, cut at a comma, since only the right end is
	 * read (lib/clientaddr.c) */
	bool has_xff;
	bool xff_cut;
	uint32_t xff_len;
	char xff[SSE_XFF_MAX];
	bool has_request_id; /* X-Request-Id, valid (lib/reqid.h); used only from a trusted proxy */
	char request_id[RTW_REQID_MAX];
	bool presence;	       /* presence=1 */
	const char *bad_field; /* static name of an over-long field, or NULL */
};

/* Parser state while a head is read (one per loop, reset per head). */
struct sse_reqparser;

/* New parser (NULL on out of memory); max_bytes bounds the whole head. */
struct sse_reqparser *sse_reqparser_new(size_t max_bytes) RTW_WUR;
void sse_reqparser_free(struct sse_reqparser *p);
/* Makes p ready for a new head (one parser serves every connection of a
 * loop: heads are parsed whole, see conn.c). */
void sse_reqparser_reset(struct sse_reqparser *p);
/* Feeds bytes. RTW_OK when the head is complete (*req filled), RTW_AGAIN
 * when more is needed, RTW_ERROR on a malformed or too large head
 * (req->too_large tells which). */
int sse_reqparser_feed(struct sse_reqparser *p, const char *data, size_t len, struct sse_req *req) RTW_WUR;

/* Decodes %XX and '+' in place; false on a malformed escape or NUL. */
bool sse_url_decode(char *s);

/* ---- connections (conn.c) ---------------------------------------------- */

/* A connection's state; every change goes through sse_conn_set_state. */
enum sse_conn_state {
	SSE_CONN_TLS_ACCEPT,   /* TLS port: the TLS handshake, under the header timeout
				* (ctx->tls_accepting counts these) */
	SSE_CONN_READING_HEAD, /* reading the request head (header timeout runs) */
	SSE_CONN_HANDSHAKE,    /* waiting for the handshake query: the head is held
				* while the position is unknown (PostgreSQL down, or
				* not asked yet), at most sse.hold_max_ms */
	SSE_CONN_CATCHING_UP,  /* streaming rows from PostgreSQL up to the cursor */
	SSE_CONN_LIVE,	       /* fed by the tail */
	SSE_CONN_CLOSING,      /* flushing a final answer, then closed */
	SSE_CONN_CLOSED	       /* parked; freed after the loop pass */
};

struct sse_ctx;

#define SSE_OUT_INLINE 2
/* Connections accepted over sse.max_connections to read their heads (so
 * /events can be told apart and answered 200 with a retry:); beyond them
 * a refusal is decided from what one read at accept finds (conn.c). */
#define SSE_OVER_MAX 64
#define SSE_RBUF_SLACK 1024

/* What a connection keeps of its request head from routing until its
 * stream starts (the handshake query may take a while): exactly-sized
 * strings in one allocation, NULL when absent. */
struct sse_hs {
	char *last_id;
	char *origin;
	char *minted; /* the token minted for an anonymous subscriber (own allocation) */
	char buf[];
};

struct sse_conn {
	struct rtw_io io; /* on ctx->loop while open */
	struct sse_ctx *ctx;
	int fd;
	enum sse_conn_state state;
	bool in_index;
	bool dirty;		     /* on ctx->dirty or ctx->held: has output to flush */
	bool held;		     /* of those, on ctx->held: live output waiting within its budget */
	bool want_out;		     /* EPOLLOUT armed */
	bool pg_job;		     /* a query for it is in flight; do not free */
	bool queued_job;	     /* on ctx->jobs */
	bool lagging;		     /* output overflowed; catch up when drained */
	bool over;		     /* accepted over sse.max_connections: its head is answered, never streamed */
	bool out_urgent;	     /* queued output other than live frames: not held */
	bool proxy_pending;	     /* its peer is in sse.proxy_protocol_from: a PROXY header may come first */
	bool tls_write_wants_read;   /* TLS: a write waits for input (a key update); retried on EPOLLIN */
	struct ssl_st *tls;	     /* accepted on sse.tls_listen: its TLS session (tls.c); NULL: plain */
	uint32_t tls_pending;	     /* TLS: bytes after head_off in a record not yet on the wire (a write that
				      * met EAGAIN must be retried with them: they are kept queued) */
	struct sse_ipcount *ipc;     /* the client address it counts under; NULL until known */
	struct sse_ipcount *idc;     /* the identity it counts under (sse.max_per_user); NULL until known */
	int64_t exp_s;		     /* unix time its identity's token expires (the stream ends); 0: never */
	char peer[INET6_ADDRSTRLEN]; /* the socket peer's address, "" when not IP */
	uint64_t deadline_ms;	     /* HANDSHAKE: stop holding; CLOSING: stop flushing */
	struct sse_link link;	     /* ctx->conns or ctx->closed */
	struct sse_link job_link;    /* ctx->jobs */
	struct sse_link dirty_link;  /* ctx->dirty or ctx->held */
	struct sse_sub sub;
	char *head;	   /* READING_HEAD: the bytes of an incomplete head */
	uint32_t head_len; /* parsed once, when its end has arrived */
	uint32_t head_cap;
	struct sse_hs *hs; /* what the head leaves until the stream starts */
	uint64_t born_ms;
	uint64_t live_ms;	 /* loop time its last live frame was queued (sse.coalesce_ms) */
	double gap_ms;		 /* the usual gap between its live frames (moving average); 0: unknown */
	uint64_t hold_until_ms;	 /* held live output leaves by then: its frames' earliest; 0: none held */
	struct sse_pos pos;	 /* last position queued (or skipped) */
	struct sse_pos sent_pos; /* last position fully written */
	uint32_t catchup_rows;	 /* row limit of its next catch-up batch (pg.c) */
	/* output: a ring (power-of-two capacity) of frame references, inline
	 * for the usual one or two frames; head_off bytes of the first are
	 * written */
	struct sse_frame **outq;
	uint32_t out_cap, out_head, out_n, head_off;
	size_t out_bytes;
	struct sse_frame *out_inline[SSE_OUT_INLINE];
	char widget[MSG_UUID_LEN + 1];
	bool has_widget;
	/* for the line logged when it ends (log_requests) */
	int status;			/* the answer's status once one was queued, 0 before */
	const char *user_kind;		/* static: "token", "anonymous", "open"; NULL before */
	const char *end;		/* static: why it ended (sse_conn_why), NULL while open */
	uint32_t frames, cutoffs;	/* events written; slow-consumer cutoffs */
	uint64_t bytes;			/* bytes written */
	char stream_id[MSG_ID_MAX + 1]; /* "" until routed to a stream */
	char request_id[RTW_REQID_MAX];
	bool probe; /* answered /healthz or /metrics: no stream-end line (probes poll every few seconds) */
};

/* Notes why c ends (a static string: "client_closed", "exp", "shutdown",
 * "ban", "retry", "answered", "error"); the first reason given wins. */
static inline void sse_conn_why(struct sse_conn *c, const char *reason)
{
	if (!c->end)
		c->end = reason;
}

/* Connections per key: per client address (lib/clientaddr.h's key: the
 * peer, or behind a trusted proxy the address it reports; ctx->ips) and
 * per identity (the subscriber's id; ctx->idents). */
struct sse_ipcount {
	struct sse_hentry he;
	int n;
	char key[];
};

/* ---- the process context (loop.c owns it) ------------------------------ */

struct rtw_rl; /* lib/ratelimit.h: fixed-memory token buckets */

/* What the one in-flight query is. */
enum sse_pg_query {
	SSE_Q_NONE,
	SSE_Q_SETUP,
	SSE_Q_CURSOR,
	SSE_Q_TAIL,
	SSE_Q_HANDSHAKE,
	SSE_Q_CATCHUP,
	SSE_Q_PRESENCE_PUT,
	SSE_Q_PRESENCE_GET,
	SSE_Q_BANS,
	SSE_Q_LISTEN,  /* the leader's LISTEN rtw_messages */
	SSE_Q_PROBE,   /* a follower's poll: try to lead, any rows past the cursor? */
	SSE_Q_NOTE,    /* the leader's NOTIFY rtw_settled */
	SSE_Q_RELISTEN /* LISTEN again (the relay was lost) or UNLISTEN (fed by one) */
};

/* The shared tail (pg.c, sse.shared_tail): one process per database, the
 * leader, computes the settled horizon and publishes each settled range
 * on channel rtw_settled as "FROMXID:FROMID TOXID:TOID STREAMS" (STREAMS:
 * the range's stream ids separated by commas, or "*" when they do not
 * fit); every other process reads (cursor, TO] with a plain range scan,
 * or skips it with no query when it serves none of the streams (and never
 * skips while it feeds the host relay's peers: relay.c). */
#define SSE_NOTE_MAX 7900 /* NOTIFY payloads must stay under 8000 bytes */

/* The host relay (relay.c, sse.relay). */
enum sse_relay_state {
	SSE_RELAY_OFF,	    /* no sse.relay */
	SSE_RELAY_DETACHED, /* neither serving nor fed: PostgreSQL-active, retrying */
	SSE_RELAY_SERVING,  /* holds the name: PostgreSQL-active, feeds the host's other processes */
	SSE_RELAY_ATTACHED  /* fed by the server: no LISTEN, no tail of its own */
};
/* The columns of a relayed row: pg.c's tail columns (position's xid, the
 * stored message, created_at's epoch). */
#define SSE_RELAY_NCOLS (2 + RTW_ROW_NCOLS)
struct sse_relay {
	struct sse_ctx *ctx;
	const char *name; /* borrowed from the config */
	/* the socket's abstract name: name, uid and a digest of pgdsn, so
	 * that two deployments (or users) given one name never meet */
	char addr[100];
	enum sse_relay_state state;
	struct rtw_io io;	/* serving: the listening socket; attached: the server */
	struct rtw_timer timer; /* retries while detached */
	bool timer_set;		/* timer initialised */
	struct sse_link peers;	/* serving: the fed processes */
	size_t npeers;
	char *in; /* attached: bytes read, not yet a whole record */
	size_t in_len, in_cap;
	uint64_t batches, attaches; /* batches sent (serving) or received (attached); attaches */
	uint64_t leaves;	    /* servers left for their silence (sse_relay_leave) */
};

/* The bans in force (bans.c). At most SSE_BANS_MAX are held; beyond, a
 * load is cut (and logged). rtw-fcgi's ban routes refuse a new ban past
 * the same number (FCG_BANS_MAX, fcgi/fcgi.h). */
#define SSE_BANS_MAX 100000
#define SSE_BANS_RELOAD_MS 10000 /* the safety-net reload, besides every NOTIFY rtw_bans */
struct sse_bans {
	struct sse_htab tab; /* struct sse_ban (bans.c) */
	bool wanted;	     /* a NOTIFY, a (re)connect or the reload timer: load again */
	uint64_t next_ms;    /* the next safety-net reload */
	uint64_t loads, ended;
};

/* Presence (presence.c): this process's counts, written every
 * sse.presence_interval_ms, and the sums over every process read back for
 * the streams that have presence subscribers. */
struct sse_presence {
	struct rtw_timer timer;
	char instance[96]; /* host:pid:random, the process's key in rtw_presence */
	char ttl_ms[24];   /* how long readers trust a put */
	bool put_wanted;   /* the timer fired: put, then get */
	bool get_wanted;
	bool full;     /* the next put carries every stream (first, or after a failure) */
	bool put_full; /* the put in flight carries every stream */
	bool known;    /* a put succeeded: the shutdown drops the rows */
	char *rows;    /* the put in flight's JSON, or the get's array */
	uint64_t puts, rows_put, frames;
};

#define SSE_LAG_BUCKETS 10

/* The stages of the live path that rtw_sse_stage_seconds times. */
enum sse_stage {
	SSE_STAGE_TAIL_WAIT,  /* NOTIFY (or poll) to the tail query sent: queued behind other queries */
	SSE_STAGE_TAIL_QUERY, /* tail query sent to its rows received */
	SSE_STAGE_FLUSH,      /* one flush of every connection with output */
	SSE_STAGE_N
};

struct sse_stage_hist {
	uint64_t bucket[SSE_LAG_BUCKETS + 1]; /* last is +Inf */
	double sum;
};

struct sse_metrics {
	uint64_t delivered, bytes_sent, resume_catchups, slow_cutoffs, pg_reconnects;
	uint64_t accepted, rejected, tail_rows;
	/* connections from sse.proxy_protocol_from whose PROXY header was malformed */
	uint64_t proxy_refused;
	uint64_t writes;	 /* sendmsg calls to clients */
	uint64_t tail_unsettled; /* tail batches stopped at a row behind the horizon */
	uint64_t coalesce_holds; /* flushes that held a connection's live output (sse.coalesce_ms) */
	uint64_t tail_skipped;	 /* settled ranges passed with no query: none of their streams served here */
	uint64_t tail_gaps;	 /* settled ranges that did not start at the cursor (a missed note) */
	uint64_t tail_own;	 /* a follower's own tails: the leader was silent while rows waited */
	uint64_t leader_takes;	 /* times this process became the leader */
	uint64_t relay_rows;	 /* rows dispatched from the host relay's batches (sse.relay) */
	struct sse_stage_hist stage[SSE_STAGE_N];
	uint64_t hold_retries; /* held heads told to retry (the position stayed unknown) */
	/* the TLS port (tls.c, conn.c) */
	uint64_t tls_handshakes, tls_failed, tls_timeouts, tls_refused, tls_reloads, tls_reload_failures;
	uint64_t lag_bucket[SSE_LAG_BUCKETS + 1]; /* last is +Inf */
	double lag_sum;
	double lag_max;
};

struct sse_ctx {
	const struct rtw_cfg *cfg;
	bool token_mode;
	struct rtw_loop loop;
	struct rtw_io listen_io;
	struct rtw_timer tick;	   /* header timeouts, heartbeats, trim */
	struct rtw_signal signals; /* SIGTERM, SIGINT, SIGHUP */
	struct rtw_hook pass_end;  /* queries, flushes and frees after each pass */
	int listen_fd;
	/* the TLS port (sse.tls_listen; tls.c): -1 and NULL when off */
	int tls_listen_fd;
	struct rtw_io tls_listen_io;
	struct ssl_ctx_st *tls_ctx; /* the current certificate's; connections hold their own reference */
	char *tls_wbuf;		    /* SSE_TLS_RECORD bytes: one record's plaintext, filled from a queue */
	size_t tls_accepting;	    /* connections in SSE_CONN_TLS_ACCEPT (sse.tls_max_handshakes) */
	int reserve_fd;		    /* spare descriptor to refuse connections at EMFILE */
	rtw_io_fn conn_io;	    /* a connection's socket callback (loop.c's) */
	bool stopping;
	uint64_t last_hb_ms;
	struct sse_index ix;
	struct sse_link heads;	      /* connections reading their head, oldest first */
	struct sse_link conns;	      /* every other open connection */
	struct sse_link closed;	      /* parked, freed after the pass */
	struct sse_link jobs;	      /* connections waiting for a query */
	struct sse_link dirty;	      /* connections with output to write, oldest first */
	struct sse_link held;	      /* connections whose live output waits within its budget */
	size_t n_dirty;		      /* on ctx->dirty */
	size_t round_left;	      /* of ctx->dirty, still to write in the current round (0: none begun) */
	uint64_t round_t0_us;	      /* when the current round began */
	uint64_t held_wake_ms;	      /* the earliest hold_until_ms on ctx->held; 0: none held */
	struct rtw_timer flush_timer; /* ends a coalescing hold, or resumes a round cut by sse.flush_slice_ms */
	uint64_t flush_due_ms;	      /* when flush_timer fires; 0: stopped */
	uint64_t flush_cost_us;	      /* the longest recent round (decaying): what a hold leaves it */
	size_t n_conns;
	size_t n_over;		     /* of n_conns, those accepted over capacity (SSE_OVER_MAX at most) */
	struct sse_htab ips;	     /* struct sse_ipcount, per client address */
	struct sse_htab idents;	     /* struct sse_ipcount, per identity */
	struct rtw_trust trust;	     /* http.trusted_proxies */
	struct rtw_trust pp_from;    /* sse.proxy_protocol_from */
	struct rtw_rl *anon_rl;	     /* anonymous identities per client address; NULL: no limit */
	struct sse_frame *heartbeat; /* ": hb\n\n", static */
	/* request heads: parsed whole, one at a time, into these (no
	 * per-connection parser; see conn.c) */
	struct sse_reqparser *parser;
	struct sse_req req;
	char *rbuf; /* sse.max_header_bytes + SSE_RBUF_SLACK */
	uint64_t trim_accepted, trim_last_accepted, trim_ms;
	/* PostgreSQL */
	struct rtw_pgconn pg;	   /* the connection half (lib/pgconn.c) */
	struct rtw_timer pg_timer; /* safety poll, re-poll behind the horizon */
	bool pg_ready;		   /* connected, LISTENing and prepared: changed only in pg.c */
	enum sse_pg_query pg_q;
	int pg_setup_step;
	struct sse_conn *pg_job_conn;
	struct sse_pos pg_job_target;
	bool tail_wanted;
	uint64_t tail_wanted_us; /* when tail_wanted was set (rtw_wall_us) */
	uint64_t tail_sent_us;	 /* when the tail query in flight was sent */
	bool tail_pending;	 /* rows exist behind the horizon: re-poll soon */
	bool cursor_valid;
	bool pg_was_ready;
	struct sse_pos cursor; /* everything <= cursor has been dispatched */
	uint64_t repoll_ms;
	/* the shared tail (sse.shared_tail; pg.c) */
	bool leader;		   /* this session holds the leader lock: it tails and publishes */
	bool leader_listening;	   /* the leader's LISTEN rtw_messages is done in this session */
	bool probe_wanted;	   /* a follower's poll is due */
	bool own_tail;		   /* the next tail is a follower's own, with the horizon */
	bool tail_alone;	   /* the tail in flight computes the horizon (not a range) */
	struct sse_pos settled;	   /* the newest settled position heard from the leader */
	uint64_t settled_heard_ms; /* when a note was last heard (rtw_loop_now) */
	bool note_wanted;	   /* the leader has a note to send */
	size_t note_len;
	char note[SSE_NOTE_MAX + 1];
	bool pg_listening; /* this session LISTENs (and holds the followers' mark): not fed by a relay */
	struct sse_relay relay;
	bool jobs_turn; /* alternate tail and connection jobs */
	struct sse_presence pres;
	struct sse_bans bans;
	struct sse_metrics m;
	/* the log of connections refused at accept: one line a second at
	 * most (conn.c) */
	uint64_t refused_log_ms, emfile_log_ms;
	uint64_t refused_unlogged;
};

/* The PostgreSQL connection is ready: queries may be sent. */
static inline bool sse_pg_up(const struct sse_ctx *ctx)
{
	return ctx->pg_ready;
}

/* The loop's clock as of this pass. */
static inline uint64_t sse_now(const struct sse_ctx *ctx)
{
	return rtw_loop_now(&ctx->loop);
}

/* ---- conn.c ---- */

/* Builds the frames the connections share (heartbeat, refusals).
 * RTW_OK, or RTW_ERROR (out of memory); teardown frees what was built. */
int sse_conn_setup(struct sse_ctx *ctx) RTW_WUR;
void sse_conn_teardown(struct sse_ctx *ctx);
/* Accepts what the plain listener (tls false) or the TLS one has pending. */
void sse_conn_accept(struct sse_ctx *ctx, bool tls);
/* Counts c under the client address key (sse.max_per_ip). RTW_OK, or
 * RTW_ERROR when the address holds its maximum already (the caller
 * refuses c: 429) or memory ran out. */
int sse_conn_count_addr(struct sse_conn *c, const char *key) RTW_WUR;
/* Counts c under its identity, the subscriber id user (sse.max_per_user):
 * RTW_OK, or RTW_ERROR when the identity holds its maximum already (the
 * caller refuses c: 429) or memory ran out. */
int sse_conn_count_user(struct sse_conn *c, const char *user) RTW_WUR;
/* Ends a stream cleanly: no more events, what is queued is written, then
 * the connection closes (the client reconnects). */
void sse_conn_end(struct sse_conn *c);
/* Handles a socket event. Returns the loop's scratch request when a
 * complete, well-formed head was read (the caller routes it before the
 * next event: the request is reused), NULL otherwise. */
const struct sse_req *sse_conn_event(struct sse_conn *c, uint32_t events);
void sse_conn_set_state(struct sse_conn *c, enum sse_conn_state to);
void sse_conn_close(struct sse_conn *c);
/* Queues a frame reference (the caller keeps its own). live: apply the
 * output bound (overflow turns the connection into a catch-up). */
void sse_conn_push(struct sse_conn *c, struct sse_frame *f, bool live);
/* The loop time (ms) by which a live message lag_s seconds past its
 * created_at must be written for it to arrive within sse.coalesce_ms of
 * it, less the time a flush pass takes; 0 when it must go at once (no
 * budget left, or coalescing off). Stored in the frame's hold_until_ms. */
uint64_t sse_conn_hold_until(const struct sse_ctx *ctx, double lag_s);
/* Writes the connections with new output, oldest first, for at most
 * sse.flush_slice_ms at a time: a round over many connections is cut into
 * slices with the loop's events between them (flush_timer resumes it), so
 * messages that arrive meanwhile join the output of the connections not
 * yet written and leave in the same write. One that has only live frames
 * queued, whose frames usually arrive less than sse.coalesce_ms apart
 * (companions are expected), and whose earliest frame's
 * hold_until_ms is still ahead is held until then (flush_timer), so the
 * messages that arrive meanwhile leave in the same write; anything else
 * goes at once. */
void sse_conn_flush_dirty(struct sse_ctx *ctx);
void sse_conn_free_closed(struct sse_ctx *ctx);
void sse_conn_tick(struct sse_ctx *ctx);
void sse_conn_shutdown_all(struct sse_ctx *ctx);
/* Starts feeding c from the tail, at the cursor or its own later position. */
void sse_conn_go_live(struct sse_conn *c);
/* A catch-up batch ended (ok false: PostgreSQL failed; full: more may follow). */
void sse_conn_catchup_done(struct sse_conn *c, bool ok, bool full);
/* Queues c for a PostgreSQL job (handshake or catch-up). */
void sse_conn_want_job(struct sse_conn *c);
/* Queues f (borrowed) on the stream's subscribers, or on to_user's when
 * given, except those filtering on another widget. */
void sse_conn_dispatch(struct sse_ctx *ctx, struct sse_frame *f, const char *stream_id, const char *to_user,
		       const char *widget_key);
/* A reconnect delay for the retry: field: sse.retry_ms jittered to
 * [retry_ms/2, retry_ms*3/2), so that clients told at once (a restart)
 * do not come back at once. */
int sse_conn_retry_jitter(const struct sse_ctx *ctx);
/* Ends a stream that cannot start now (held too long, a failed handshake,
 * shutdown): 200 text/event-stream with a jittered retry: and no event,
 * then closes. Nothing when c is already closing. */
void sse_conn_retry_later(struct sse_conn *c);
/* Answers r on a connection accepted over capacity (c->over): /events
 * gets 200 text/event-stream with a retry: of sse.retry_ms x [2, 6)
 * (a crowd told at once comes back spread out, later than after a
 * restart) and no event, anything else the 503 JSON; then closes. */
void sse_conn_refuse_over(struct sse_conn *c, const struct sse_req *r);
/* Frees what the head left (Last-Event-ID, Origin, minted token). */
void sse_conn_hs_free(struct sse_conn *c);
/* Queues f (borrowed, a presence frame) on the stream's streaming
 * subscribers that asked for presence (only_waiting: those that have had
 * none yet), whatever their widget filter. True when a subscriber that
 * has had none is still left (its stream has not started yet). */
bool sse_conn_dispatch_presence(struct sse_stream *st, struct sse_frame *f, bool only_waiting);

#define SSE_CORS_MAX 512
/* The header lines every answer to c carries into out (always
 * NUL-terminated): X-RTW-Request-Id, then CORS for c's request Origin by
 * lib/cors.c's rule: "*", or the Origin echoed when the deployment or
 * (widget_ok) a widget allows it. */
void sse_conn_cors(const struct sse_conn *c, bool widget_ok, char *out, size_t cap);
/* Queues a whole response (extra: header lines or NULL; head_only: the
 * answer to HEAD) and closes c once it is written; nothing when c is
 * already closing. */
void sse_conn_respond(struct sse_conn *c, int status, const char *ctype, const char *extra, const char *body,
		      size_t blen, bool head_only);
/* The same with the contract's error JSON as the body. */
void sse_conn_error(struct sse_conn *c, int status, const char *code, const char *field, const char *extra,
		    const char *message);

/* ---- tls.c ---- */

/* The plaintext of one TLS record at most: what one write takes. */
#define SSE_TLS_RECORD 16384
struct ssl_st;
/* Loads sse.tls_cert and sse.tls_key into a new server context and makes
 * it the one new connections use. RTW_OK, or RTW_ERROR (logged; the
 * context loaded before, if any, stays). */
int sse_tls_load(struct sse_ctx *ctx) RTW_WUR;
void sse_tls_free(struct sse_ctx *ctx);
/* A server session on fd with the current context: new (sse_tls_conn_free),
 * NULL when out of memory. */
struct ssl_st *sse_tls_new(struct sse_ctx *ctx, int fd) RTW_WUR;
void sse_tls_conn_free(struct ssl_st *s);
/* Runs the handshake on: RTW_OK when done, RTW_AGAIN when it waits for the
 * socket (*want_out: for output), RTW_ERROR when it failed. */
int sse_tls_handshake(struct ssl_st *s, bool *want_out) RTW_WUR;
/* recv(2) and send(2) through TLS: bytes, 0 at the client's end (recv),
 * or -1 with errno (EAGAIN: wait; *wants_read: for input). A send that
 * met EAGAIN must be repeated with at least the same bytes. */
ssize_t sse_tls_recv(struct ssl_st *s, void *buf, size_t len) RTW_WUR;
ssize_t sse_tls_send(struct ssl_st *s, const void *buf, size_t len, bool *wants_read) RTW_WUR;
/* Sends close_notify once, never waiting. */
void sse_tls_shutdown(struct ssl_st *s);

/* ---- routes.c ---- */

/* Answers a complete head (borrowed; valid only during the call). */
void sse_route(struct sse_conn *c, const struct sse_req *r);
/* The handshake query's answer (NULL result: PostgreSQL unavailable). */
void sse_route_handshake_done(struct sse_conn *c, PGresult *res);
/* Records one delivery lag (created_at to dispatch) for /metrics. */
void sse_metrics_lag(struct sse_ctx *ctx, double seconds);
/* Records the time one stage of the live path took, for /metrics. */
void sse_metrics_stage(struct sse_ctx *ctx, enum sse_stage stage, double seconds);

/* ---- bans.c ---- */

int sse_bans_init(struct sse_bans *b) RTW_WUR;
void sse_bans_free(struct sse_bans *b);
/* True when user may not watch stream now (a ban of the stream or of
 * every stream, not expired). */
bool sse_bans_banned(const struct sse_ctx *ctx, const char *user, const char *stream);
/* True when the set should be loaded (pg.c then runs sse_bans). */
bool sse_bans_due(struct sse_ctx *ctx);
/* The load's rows (key, until) or NULL (it failed: the old set stays);
 * replaces the set and ends the streams it bans. */
void sse_bans_loaded(struct sse_ctx *ctx, PGresult *res);

/* ---- presence.c ---- */

/* Sets up the instance id and the put timer on ctx->loop. RTW_OK, or
 * RTW_ERROR (timerfd). */
int sse_presence_start(struct sse_ctx *ctx) RTW_WUR;
/* The next presence statement to send, when one is due: *q, the prepared
 * statement's name and its parameters (borrowed until
 * sse_presence_done). False when none is due. */
bool sse_presence_next(struct sse_ctx *ctx, enum sse_pg_query *q, const char **stmt, int *n, const char *v[4]);
/* The answer to the statement q (NULL: it failed or was abandoned). */
void sse_presence_done(struct sse_ctx *ctx, enum sse_pg_query q, PGresult *res);
/* At a clean shutdown: removes this process's rows (one blocking
 * statement on a short-lived connection, bounded by a connect timeout). */
void sse_presence_drop(struct sse_ctx *ctx);
void sse_presence_close(struct sse_ctx *ctx);

/* ---- pg.c ---- */
/* Sets up the connection and its timer on ctx->loop and starts
 * connecting. RTW_OK, or RTW_ERROR (out of memory, timerfd). */
int sse_pg_start(struct sse_ctx *ctx) RTW_WUR;
/* Sends the next query when none is in flight (the loop calls it after
 * each pass's events and again after flushing). */
void sse_pg_kick(struct sse_ctx *ctx);
void sse_pg_close(struct sse_ctx *ctx);
/* A batch from the host relay: every settled row in (from, to], nrows rows
 * of SSE_RELAY_NCOLS column texts each in v (borrowed; NULL: SQL NULL).
 * Dispatched when it continues the cursor; otherwise read from PostgreSQL
 * (a gap) or ignored (already dispatched). */
void sse_pg_relayed(struct sse_ctx *ctx, struct sse_pos from, struct sse_pos to, int nrows, const char *const *v);

/* ---- relay.c ---- */

/* Binds or joins the host relay when sse.relay is set. RTW_OK, or
 * RTW_ERROR (timerfd). */
int sse_relay_start(struct sse_ctx *ctx) RTW_WUR;
void sse_relay_close(struct sse_relay *r);
/* This process serves the relay to at least one peer. */
bool sse_relay_feeding(const struct sse_ctx *ctx);
static inline bool sse_relay_attached(const struct sse_ctx *ctx)
{
	return ctx->relay.state == SSE_RELAY_ATTACHED;
}
/* Sends the peers the settled rows 0 .. nrows-1 of res (pg.c's tail
 * columns) that took the cursor from from to to. */
void sse_relay_batch(struct sse_ctx *ctx, struct sse_pos from, struct sse_pos to, const PGresult *res, int nrows);
/* Leaves the server (it was silent while rows waited): on our own for a
 * while, then attach again. */
void sse_relay_leave(struct sse_ctx *ctx, const char *why);
/* Tells the peers that the bans changed (NOTIFY rtw_bans). */
void sse_relay_bans(struct sse_ctx *ctx);

#endif
