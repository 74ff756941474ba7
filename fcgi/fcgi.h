/*
 * fcgi.h: the internals of rtw-fcgi shared by its files: the per-worker
 * context (one thread, one FastCGI request at a time, one PostgreSQL
 * connection), the per-request context, the response writer, the database
 * layer and the group committer. Nothing here is used outside fcgi/.
 *
 * Threads: main.c starts fcgi.workers worker threads; each owns a struct
 * fcg_worker for its whole life and touches no other worker's state. The
 * shared mutable objects are the group committer (commit.c, its mutex),
 * the rate-limit buckets (lib/ratelimit.c, striped mutexes) and the metrics
 * (atomic counters, read by the health thread of health.c); the config is
 * read-only.
 *
 * Tiers: each file calls only files of lower tiers, never one above it or
 * beside it, so no file is both above and below another:
 *	0  db.c  health.c  (call nothing in fcgi/; lib/buf.c is the byte buffer)
 *	1  widget.c (db.c)   commit.c (db.c)
 *	2  respond.c (widget.c)
 *	3  handlers.c (respond.c, widget.c, commit.c, db.c)
 *	4  publish.c (handlers.c, respond.c, widget.c, db.c)   bans.c (handlers.c, respond.c, db.c)
 *	5  http.c (publish.c, bans.c, handlers.c, respond.c, health.c's counters)
 *	6  main.c
 */
#ifndef RTW_FCGI_H
#define RTW_FCGI_H

#include "rtw.h"
#include "buf.h"
#include "cfg.h"
#include "clientaddr.h"
#include "msg.h"
#include "reqid.h"
#include "token.h"

#include <fcgiapp.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

/* Buffers (request bodies, response heads and bodies) are lib/buf.c's
 * struct rtw_buf. */

/* ---- metrics (health.c formats them; everyone counts) ---- */

/* Routes as the metrics name them. */
enum fcg_mroute {
	FCG_M_MESSAGES_POST,
	FCG_M_MESSAGES_GET,
	FCG_M_WEBHOOK_GET,
	FCG_M_PUBLISH_POST,
	FCG_M_MESSAGE_DELETE,
	FCG_M_BANS, /* every method of the ban routes */
	FCG_M_OTHER,
	FCG_M_NROUTES
};
#define FCG_M_NSTATUS 15  /* the statuses rtw-fcgi answers, and "other" */
#define FCG_M_NBUCKETS 13 /* histogram upper bounds, +Inf excluded */

/* Process-wide counters: relaxed atomics, no lock on the request path. */
struct fcg_metrics {
	atomic_uint_fast64_t requests[FCG_M_NROUTES][FCG_M_NSTATUS];
	atomic_uint_fast64_t dur_bucket[FCG_M_NROUTES][FCG_M_NBUCKETS + 1]; /* not cumulative; last: +Inf */
	atomic_uint_fast64_t dur_sum_us[FCG_M_NROUTES];
	atomic_uint_fast64_t gc_batches, gc_rows, pg_reconnects, rate_limited, commits_in_doubt;
	atomic_int in_flight;
};

#define FCG_COUNT(m, field, n) atomic_fetch_add_explicit(&(m)->field, (n), memory_order_relaxed)

/* Records one finished request. */
void fcg_metrics_request(struct fcg_metrics *m, enum fcg_mroute route, int status, uint64_t duration_us);

/* The /healthz + /metrics listener (health.c): one thread, blocking I/O. */
struct fcg_health;
/* Starts listening on cfg->fcgi_health_listen (host:port) and its thread.
 * NULL on failure (message in err). m is borrowed for the process's life. */
struct fcg_health *fcg_health_start(const struct rtw_cfg *cfg, struct fcg_metrics *m, char *err, size_t errlen);
/* Stops the thread, closes the socket and its PostgreSQL connection. */
void fcg_health_stop(struct fcg_health *h);

/* ---- database layer (db.c) ---- */

enum fcg_db_state { FCG_DB_DOWN, FCG_DB_READY };

/* A worker's connection: DOWN until a connect succeeds; back to DOWN when
 * the server goes away (the next request reconnects, at most once per
 * retry interval, answering 503 meanwhile). */
struct fcg_db {
	enum fcg_db_state state;
	PGconn *conn;
	uint64_t next_try_ms;
	bool failing; /* a connect failed since the last success: log repeats at debug */
	const struct rtw_cfg *cfg;
	int worker_id;
	bool connected_once;	     /* a later connect counts as a reconnect */
	const char *streaming;	     /* the statement fcg_db_stream started, until its end */
	struct fcg_metrics *metrics; /* borrowed */
	bool warned;		     /* a plain WARNING (01000) arrived during the statement */
};

/* One cached row of rtw_widgets (widget.c, fcg_widget_get). */
#define FCG_WIDGET_CACHE 32
#define FCG_WIDGET_TTL_MS 1000
struct fcg_widget {
	char key[MSG_UUID_LEN + 1];
	bool exists, enabled;
	json_t *origins; /* owned array of strings */
	json_t *hosts;	 /* owned array of strings (webhook_hosts) */
	uint64_t fetched_ms;
};

/* Connects when needed. RTW_OK: ready; RTW_AGAIN: unavailable (answer 503). */
int fcg_db_ready(struct fcg_db *db) RTW_WUR;

/* Runs prepared statement name with text params. Returns the result (caller
 * PQclear's) when its status is expected; otherwise NULL, after marking the
 * connection DOWN when it was lost. *sqlstate (may be NULL) receives the
 * SQLSTATE of a failed statement ("" for a lost connection, FCG_IN_DOUBT
 * for a commit the synchronous standby may not have: its rows are stored
 * here, so they must not be written again). */
#define FCG_IN_DOUBT "01000"
PGresult *fcg_db_run(struct fcg_db *db, const char *name, int n, const char *const *params, ExecStatusType expected,
		     char sqlstate[6]) RTW_WUR;

/* Starts prepared statement name in single-row mode, so that a large
 * answer never sits whole in memory: read its rows with fcg_db_row until
 * it returns NULL (or drop the rest with fcg_db_stream_end) before the
 * connection runs anything else. RTW_OK, or RTW_AGAIN (unavailable). */
int fcg_db_stream(struct fcg_db *db, const char *name, int n, const char *const *params) RTW_WUR;
/* The next row of the streamed statement: a one-row result (caller
 * PQclear's), or NULL at its end, with *rc RTW_OK when the statement
 * succeeded and RTW_AGAIN when it failed or the connection was lost.
 * After NULL the statement is over. */
PGresult *fcg_db_row(struct fcg_db *db, int *rc) RTW_WUR;
/* Reads and drops the rest of the streamed statement's rows (a reader that
 * stops early); nothing to do when it is over. RTW_OK or RTW_AGAIN. */
int fcg_db_stream_end(struct fcg_db *db) RTW_WUR;

/* Plain command (BEGIN, COMMIT, ROLLBACK); RTW_OK or RTW_AGAIN/RTW_ERROR. */
int fcg_db_cmd(struct fcg_db *db, const char *sql) RTW_WUR;

void fcg_db_close(struct fcg_db *db);

/* ---- worker and request (main.c, http.c) ---- */

struct fcg_gc;
struct rtw_rl;

struct fcg_worker {
	int id;
	const struct rtw_cfg *cfg;
	int listen_fd;
	FCGX_Request fx;
	struct fcg_db db;
	struct fcg_gc *gc;
	struct rtw_rl *rl;	       /* shared rate-limit buckets; NULL: no limit */
	struct rtw_rl *rl_ip;	       /* shared per-client-address buckets of POSTs; NULL: no limit */
	struct rtw_rl *rl_user;	       /* shared per-author buckets over all streams; NULL: no limit */
	const struct rtw_trust *trust; /* http.trusted_proxies, read-only */
	struct fcg_metrics *metrics;   /* shared, atomics */
	struct fcg_widget widgets[FCG_WIDGET_CACHE];
	/* union of every enabled widget's origins, for preflights */
	json_t *all_origins;
	uint64_t all_origins_ms;
	struct rtw_buf body; /* request body, max http.max_body (http.max_batch_body for a batch) */
	struct rtw_buf out;  /* response body */
	struct rtw_buf head; /* response head */
	sem_t gc_sem;	     /* this worker's wait in the group committer */
	/* tokens this worker verified (lib/token.c's cache): a client's next
	 * request, whichever worker serves it, mostly skips the HMAC */
	struct tok_cache tokens;
	/* false while waiting for a request (in FCGX_Accept_r, possibly on a
	 * kept connection); read by main at SIGTERM to wake idle workers only */
	atomic_bool busy;
};

enum fcg_route {
	FCG_ROUTE_NONE,
	FCG_ROUTE_MESSAGES,
	FCG_ROUTE_WEBHOOK,
	FCG_ROUTE_PUBLISH,
	FCG_ROUTE_PRESENCE,
	FCG_ROUTE_MESSAGE, /* one message: /v1/streams/{s}/messages/{id} */
	FCG_ROUTE_BANS,	   /* /v1/bans, /v1/streams/{s}/bans: the list */
	FCG_ROUTE_BAN	   /* /v1/bans/{user}, /v1/streams/{s}/bans/{user} */
};

struct fcg_req {
	struct fcg_worker *w;
	const char *method;
	const char *query;  /* after '?', "" when none */
	const char *origin; /* NULL when absent */
	const char *content_type;
	const char *authorization;
	const char *idem_key;
	const char *remote_addr;   /* REMOTE_ADDR: who connected to the web server */
	const char *forwarded_for; /* X-Forwarded-For, read only when remote_addr is trusted */
	long long content_length;  /* -1 when absent */
	char path[512];		   /* percent-decoded, without the query */
	enum fcg_route route;
	char stream_id[MSG_ID_MAX + 1];
	char job_id[24];
	char msg_id[24];	      /* FCG_ROUTE_MESSAGE's id */
	char user_id[MSG_ID_MAX + 1]; /* FCG_ROUTE_BAN's user, as given ("": too long) */
	/* identity */
	bool has_claims;
	struct tok_claims claims;
	/* CORS: the widget whose origins apply, once known (borrowed from the cache) */
	const struct fcg_widget *widget;
	int retry_after; /* seconds, 0: none */
	const char *allow;
	int status; /* the status sent, for the metrics */
	/* for the request's log line */
	const char *error_code; /* the contract's code of an error answer (static), NULL otherwise */
	size_t bytes;		/* response body bytes */
	char request_id[RTW_REQID_MAX];
};

/* ---- responses (respond.c) ---- */

/* The methods each route allows (Allow, preflights). */
#define FCG_ALLOW_MESSAGES "GET, POST, OPTIONS"
#define FCG_ALLOW_WEBHOOK "GET, OPTIONS"
#define FCG_ALLOW_PUBLISH "POST, OPTIONS"
#define FCG_ALLOW_PRESENCE "GET, OPTIONS"
#define FCG_ALLOW_MESSAGE "DELETE, OPTIONS"
#define FCG_ALLOW_BANS "GET, OPTIONS"
#define FCG_ALLOW_BAN "PUT, DELETE, OPTIONS"

/* Sends status + JSON body (len bytes) with the CORS, Allow and
 * Retry-After headers the request calls for. */
void fcg_send(struct fcg_req *r, int status, const char *body, size_t len);
/* Sends j (stolen) as the body with status; 503 when j is NULL (out of
 * memory while building it) or cannot be written. */
void fcg_send_json(struct fcg_req *r, int status, json_t *j);
/* Sends the contract's error shape for err (Retry-After on 429/503). */
void fcg_send_error(struct fcg_req *r, const struct msg_error *err);
/* Shorthand: builds the error and sends it. */
void fcg_fail(struct fcg_req *r, int status, const char *code, const char *field, const char *fmt, ...)
    RTW_PRINTF(5, 6);
void fcg_unavailable(struct fcg_req *r);
/* Answers a CORS preflight (OPTIONS): 204 with the Access-Control-* and
 * Allow headers, no body. */
void fcg_send_preflight(struct fcg_req *r);

/* Serves one accepted request (http.c). */
void fcg_serve(struct fcg_worker *w);

/* ---- widget registry cache (widget.c) ---- */

/* Widget lookup through the worker's cache; NULL when the database is
 * unavailable (*lost set). The entry is borrowed until the next lookup. */
const struct fcg_widget *fcg_widget_get(struct fcg_worker *w, const char *key, bool *lost);
/* True when origin is allowed for every widget (http.cors_origins or the
 * union of enabled widgets' origins); used by preflights. */
bool fcg_origin_any_widget(struct fcg_worker *w, const char *origin);

/* ---- handlers (handlers.c) ---- */

void fcg_handle_post(struct fcg_req *r);
/* Token check (401; 403 forbidden when stream, if given, is outside the
 * token's streams); sends the error itself and returns RTW_ERROR. */
int fcg_req_auth(struct fcg_req *r, const char *stream) RTW_WUR;
/* Writes what an idempotent request stores, inside the transaction that
 * holds the key, formatting the answer into r->w->out with *status.
 * RTW_OK; RTW_DECLINED when it sent a refusal itself (nothing is kept);
 * RTW_AGAIN/RTW_ERROR: unavailable. */
typedef int (*fcg_write_fn)(struct fcg_req *r, void *arg, int *status);
/* Runs write under r->idem_key in the scope (scope, author): the first
 * request writes and stores the answer, a replay with the same body gets
 * it again, a different body 409; an invalid key is 400. Sends the
 * answer. */
void fcg_idempotent(struct fcg_req *r, const char *scope, const char *author, fcg_write_fn write, void *arg);
void fcg_handle_get_messages(struct fcg_req *r);
void fcg_handle_get_webhook(struct fcg_req *r);
void fcg_handle_get_presence(struct fcg_req *r);
/* DELETE /v1/streams/{s}/messages/{id}: redaction by the author or an admin. */
void fcg_handle_delete_message(struct fcg_req *r);

/* Per-address and per-(author, stream) rate limits (429, sent): what
 * every write counts against. RTW_OK or RTW_ERROR. */
int fcg_req_limits(struct fcg_req *r, const char *author) RTW_WUR;

/* ---- bans over HTTP (bans.c) ---- */

/* Most bans in force at once: rtw-sse holds no more (SSE_BANS_MAX). */
#define FCG_BANS_MAX 100000

/* PUT and DELETE /v1/bans/{user} and /v1/streams/{s}/bans/{user}, GET
 * /v1/bans and /v1/streams/{s}/bans: admin tokens only. */
void fcg_handle_ban(struct fcg_req *r);

/* ---- backend publishing (publish.c) ---- */

#define FCG_PUBLISH_MAX 1000 /* messages in one POST /v1/messages */

/* POST /v1/messages: a batch of messages from a service token, validated
 * as a whole, then stored in one transaction. */
void fcg_handle_publish(struct fcg_req *r);

/* ---- group commit (commit.c) ---- */

/* A validated broadcast or private waiting to be written. */
struct fcg_gc_item {
	/* in */
	const struct msg_in *m; /* borrowed; m->message is the payload */
	const char *author;
	bool check_ban; /* refuse the row when author is banned from the stream */
	/* out: RTW_OK with the columns below (message owned, free with
	 * fcg_gc_item_clear), RTW_DECLINED (check_ban: the author is banned;
	 * nothing written), RTW_AGAIN (unavailable) or RTW_ERROR */
	int rc;
	char id[24];	     /* a bigint as text */
	char created_at[48]; /* rtw_rfc3339() */
	char ts[40];	     /* a float8 as text */
	char *message;
	/* queue: state is FCG_GC_QUEUED until the leader of its batch sets
	 * FCG_GC_DONE, or hands it the lead (FCG_GC_LEAD); sem is its
	 * worker's, posted after each such change */
	struct fcg_gc_item *next;
	atomic_int state;
	sem_t *sem;
};
enum { FCG_GC_QUEUED, FCG_GC_LEAD, FCG_GC_DONE };

/* m (borrowed) counts batches and rows. */
struct fcg_gc *fcg_gc_new(int max, struct fcg_metrics *m);
void fcg_gc_free(struct fcg_gc *gc);
/* Writes item (in a shared transaction when others are waiting), using
 * db when this thread leads the batch. Returns when the item is done. */
void fcg_gc_submit(struct fcg_gc *gc, struct fcg_db *db, struct fcg_gc_item *item);
void fcg_gc_item_clear(struct fcg_gc_item *item);

/* Writes one message in its own statement (the path without group commit). */
void fcg_insert_one(struct fcg_db *db, struct fcg_gc_item *item);

#endif
