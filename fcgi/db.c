/*
 * db.c: owns a worker's PostgreSQL connection: connecting with bounded
 * timeouts, preparing every statement rtw-fcgi runs, running them (a
 * history page row by row, in single-row mode) and noticing when the
 * server went away (the connection goes DOWN and the next
 * request reconnects; callers answer 503 meanwhile), and refusing a
 * commit the synchronous standby may not have (fcg_db__in_doubt). Blocking libpq, run on
 * the worker thread that owns the struct fcg_db; never shared. Tier 0 of
 * fcgi/: calls nothing else in fcgi/.
 */
#include "config.h"
#include "fcgi.h"
#include "row.h"
#include "log.h"
#include "pgutil.h"

#include <stdio.h>
#include <string.h>

/* Least time between two connect attempts of one worker. */
#define FCG_DB_RETRY_MS 500

/* A history page: one widget's broadcasts of one stream strictly between
 * two positions, ($1, $2, $6, $7) and ($1, $2, $8, $9) as
 * (stream_id, widget_key, xid, id), and below the horizon. An absent
 * since_id/before_id is passed as the lowest/highest (xid, id). Written
 * as one row comparison per side, the horizon folded into the upper one,
 * because that is what lets the btree start exactly at one bound and stop
 * at the other: a separate "xid < rtw_horizon()" or "stream_id = $1" key
 * would be chosen as the start instead, scanning from the stream's far
 * end. Only rtw_messages_history (stream_id, widget_key, xid, id) gives
 * that order, so both directions walk it (doc/fcgi.md shows the plans).
 * ORDER BY names are qualified on purpose: a bare "id" would mean the
 * output column id::text, sorting "10" before "9". Redacted messages
 * (redacted_by set) are left out by a filter on the rows the range
 * visits, so the plan stays one index range scan. */
/* clang-format off: one entry per line reads better as a table */
#define FCG_HIST_PAGE                                                                                                  \
	"SELECT " RTW_ROW_COLS " "                                                                                     \
	"FROM rtw_messages m WHERE m.type = 'broadcast' AND m.ts >= $3::float8 AND m.ts <= $4::float8 "                \
	"AND m.redacted_by IS NULL "                                                                                   \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) > ($1, $2::uuid, $6::xid8, $7::bigint) "                         \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) < ($1, $2::uuid, least($8::xid8, rtw_horizon()), "               \
	"CASE WHEN $8::xid8 < rtw_horizon() THEN $9::bigint ELSE 0 END) "
#define FCG_HIST_ASC "ORDER BY m.stream_id, m.widget_key, m.xid, m.id LIMIT $5::int"
#define FCG_HIST_DESC "ORDER BY m.stream_id DESC, m.widget_key DESC, m.xid DESC, m.id DESC LIMIT $5::int"
/* history.max_scan, for a page with timestamp filters (checked row by
 * row on the walk): the page walks at most $10 broadcasts of its range
 * (the inner LIMIT; the range's far bound does not stop a btree walk
 * that the row comparison decides on a later column, so it is the LIMIT
 * that bounds it), and the ($7)th broadcast of the range ($3, $4 and $5,
 * $6 its bounds; no row when it holds fewer), an index-only walk, is where
 * such a page stops. */
#define FCG_HIST_SCAN(order)                                                                                           \
	"SELECT " RTW_ROW_COLS " FROM (SELECT * FROM rtw_messages m WHERE m.type = 'broadcast' "                       \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) > ($1, $2::uuid, $6::xid8, $7::bigint) "                         \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) < ($1, $2::uuid, least($8::xid8, rtw_horizon()), "               \
	"CASE WHEN $8::xid8 < rtw_horizon() THEN $9::bigint ELSE 0 END) " order " LIMIT $10::int) m "                  \
	"WHERE m.ts >= $3::float8 AND m.ts <= $4::float8 AND m.redacted_by IS NULL " order " LIMIT $5::int"
#define FCG_HIST_ORDER_ASC "ORDER BY m.stream_id, m.widget_key, m.xid, m.id"
#define FCG_HIST_ORDER_DESC "ORDER BY m.stream_id DESC, m.widget_key DESC, m.xid DESC, m.id DESC"
#define FCG_HIST_CAP                                                                                                   \
	"SELECT m.xid::text, m.id::text FROM rtw_messages m WHERE m.type = 'broadcast' "                               \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) > ($1, $2::uuid, $3::xid8, $4::bigint) "                         \
	"AND (m.stream_id, m.widget_key, m.xid, m.id) < ($1, $2::uuid, least($5::xid8, rtw_horizon()), "               \
	"CASE WHEN $5::xid8 < rtw_horizon() THEN $6::bigint ELSE 0 END) "
#define FCG_HIST_CAP_ASC "ORDER BY m.stream_id, m.widget_key, m.xid, m.id OFFSET $7::int - 1 LIMIT 1"
#define FCG_HIST_CAP_DESC                                                                                              \
	"ORDER BY m.stream_id DESC, m.widget_key DESC, m.xid DESC, m.id DESC OFFSET $7::int - 1 LIMIT 1"

/* The transaction's order key (sql/003), read by an INSERT's rows after
 * its statement trigger has set it: a row that carries it already skips
 * the row trigger's PL/pgSQL call (sql/013_insert_cost.sql). */
#define FCG_ORDER_KEY "split_part(current_setting('rtw.order_key'), ':', 2)::xid8"

/* A ban as bans.c reads it. */
#define FCG_BAN_COLS "user_id, stream_id, rtw_rfc3339(until), rtw_rfc3339(created_at)"

static const struct {
	const char *name;
	const char *sql;
} fcg_db__stmts[] = {
    {"widget", "SELECT enabled, array_to_json(allowed_origins)::text, array_to_json(webhook_hosts)::text "
	       "FROM rtw_widgets WHERE widget_key = $1::uuid"},
    {"origins_all", "SELECT coalesce(json_agg(DISTINCT o), '[]')::text FROM rtw_widgets, unnest(allowed_origins) AS o "
		    "WHERE enabled"},
    /* The ban check of a POST rides in its insert (sql/012's rtw_banned,
     * when $8 asks for it): a banned author's row is not written and no
     * row comes back, in the same round trip. The EXISTS before it is
     * only a guard: an author without any row in rtw_bans is banned
     * nowhere, and that probe of the primary key's first column spares
     * the PL/pgSQL call of rtw_banned (the rule) for everyone else (7% of
     * the backend's CPU in the ingest profile). The row carries the
     * transaction's order key itself, as pub_many's rows do (below), so
     * that the row trigger's PL/pgSQL call is skipped too. */
    {"ins_one", "INSERT INTO rtw_messages (xid, stream_id, type, widget_key, author_id, to_user_id, message, ts) "
		"SELECT " FCG_ORDER_KEY ", $1, $2, $3::uuid, $4, $5, $6::jsonb, $7::float8 "
		"WHERE NOT ($8::bool AND EXISTS (SELECT 1 FROM rtw_bans b WHERE b.user_id = $4) "
		"AND rtw_banned($4, $1)) "
		"RETURNING id::text, rtw_rfc3339(created_at), ts::text, message::text"},
    /* Group commit: one statement (one transaction, one NOTIFY) for many
     * rows, with the ban check of each (its "ban" key) as in ins_one, guard
     * included. One answer row per input row, in input order (i), all NULL
     * for a banned one. Identity values are drawn in the order the kept rows are read
     * (ORDER BY r.i), so the n-th id (the bigint, not the text output
     * column) belongs to the n-th kept row. */
    {"ins_many", "WITH r AS MATERIALIZED (SELECT r.*, r.ban "
		 "AND EXISTS (SELECT 1 FROM rtw_bans b WHERE b.user_id = r.author_id) "
		 "AND rtw_banned(r.author_id, r.stream_id) AS banned "
		 "FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (stream_id text, type text, widget_key uuid, "
		 "author_id text, to_user_id text, message jsonb, ts float8, ban bool)) WITH ORDINALITY "
		 "AS r(stream_id, type, widget_key, author_id, to_user_id, message, ts, ban, i)), "
		 "ins AS (INSERT INTO rtw_messages "
		 "(xid, stream_id, type, widget_key, author_id, to_user_id, message, ts) "
		 "SELECT " FCG_ORDER_KEY ", "
		 "r.stream_id, r.type, r.widget_key, r.author_id, r.to_user_id, r.message, r.ts "
		 "FROM r WHERE NOT r.banned ORDER BY r.i "
		 "RETURNING id, created_at, ts, message), "
		 "kept AS (SELECT r.i, row_number() OVER (ORDER BY r.i) AS k FROM r WHERE NOT r.banned), "
		 "done AS (SELECT ins.*, row_number() OVER (ORDER BY ins.id) AS k FROM ins) "
		 "SELECT d.id::text, rtw_rfc3339(d.created_at), d.ts::text, d.message::text "
		 "FROM r LEFT JOIN kept ON kept.i = r.i LEFT JOIN done d ON d.k = kept.k ORDER BY r.i"},
    /* POST /v1/messages: the request body itself (a JSON array that
     * publish.c has checked message by message) is the recordset, so no
     * row is rebuilt in C; $2 is the author of messages without one. The
     * keys are the contract's; "timestamp" + 0 turns a -0 into 0 as
     * msg_decode does. Each row carries the transaction's order key
     * itself, read after the statement trigger has set it, so that
     * rtw_messages_key's WHEN clause spares the PL/pgSQL call per row
     * (sql/013_insert_cost.sql). The stored rows come straight from
     * RETURNING, in no promised order: publish.c puts them in id order,
     * which is the batch's (identity values are drawn in recordset order,
     * as above), instead of a CTE that PostgreSQL would store and sort. */
    {"pub_many", "INSERT INTO rtw_messages AS m (xid, stream_id, type, widget_key, author_id, to_user_id, message, ts) "
		 "SELECT " FCG_ORDER_KEY ", "
		 "r.stream_id, r.type, r.widget_key, coalesce(r.author_id, $2), r.to_user_id, r.message, "
		 "r.\"timestamp\" + 0 "
		 "FROM jsonb_to_recordset($1::jsonb) AS r(stream_id text, type text, widget_key uuid, author_id text, "
		 "to_user_id text, message jsonb, \"timestamp\" float8) "
		 "RETURNING " RTW_ROW_COLS},
    {"idem_claim", "INSERT INTO rtw_idempotency (stream_id, author_id, key, request_hash, status, response) "
		   "VALUES ($1, $2, $3, decode($4, 'hex'), 0, '') ON CONFLICT DO NOTHING RETURNING 1"},
    {"idem_get", "SELECT encode(request_hash, 'hex'), status, response FROM rtw_idempotency "
		 "WHERE stream_id = $1 AND author_id = $2 AND key = $3"},
    {"idem_set", "UPDATE rtw_idempotency SET status = $4::smallint, response = $5 "
		 "WHERE stream_id = $1 AND author_id = $2 AND key = $3"},
    {"job_ins", "INSERT INTO rtw_webhook_jobs (stream_id, widget_key, author_id, url, method, headers, body, ts) "
		"VALUES ($1, $2::uuid, $3, $4, $5, coalesce($6::jsonb, '{}'), $7::jsonb, $8::float8) "
		"RETURNING id::text, rtw_rfc3339(created_at)"},
    /* queued jobs of a widget and of an author, each counted up to its cap
     * only ($3, $4; 0: no cap, count 0), on sql/004's partial indexes */
    {"job_quota",
     "SELECT (SELECT count(*) FROM (SELECT 1 FROM rtw_webhook_jobs WHERE widget_key = $1::uuid AND status = 'queued' "
     "LIMIT $3::int) w), (SELECT count(*) FROM (SELECT 1 FROM rtw_webhook_jobs WHERE author_id = $2 "
     "AND status = 'queued' LIMIT $4::int) a)"},
    {"job_get",
     "SELECT id::text, status, attempts, last_http_status, last_error, author_id, stream_id, widget_key::text, "
     "url, method, rtw_rfc3339(created_at), rtw_rfc3339(started_at), rtw_rfc3339(finished_at), "
     "rtw_rfc3339(updated_at), rtw_rfc3339(run_at), response_excerpt, result_message_id::text "
     "FROM rtw_webhook_jobs WHERE id = $1::bigint"},
    /* presence (sql/009_presence.sql): the sums over live rtw-sse
     * processes, 0 when nobody watches; and, for admins, the viewers */
    {"presence", "SELECT coalesce(c.connections, 0)::text, coalesce(c.viewers, 0)::text, "
		 "rtw_rfc3339(coalesce(c.updated_at, (SELECT coalesce(min(seen_at), now()) FROM rtw_presence_procs "
		 "WHERE expires_at > now()))) "
		 "FROM (VALUES (1)) AS one LEFT JOIN rtw_presence_counts(ARRAY[$1]) AS c ON true"},
    {"presence_users", "SELECT coalesce(json_agg(u), '[]')::text FROM rtw_presence_users($1, 1000) AS u"},
    /* moderation (sql/012_moderation.sql): a ban of the author on the
     * stream or everywhere (the POSTs that write no row: request,
     * webhook); a redaction with its status and redact row (all NULL but
     * the status on a refusal) */
    {"banned", "SELECT rtw_banned($1, $2)"},
    /* the ban routes (bans.c): a ban replaces an earlier one of the same
     * user and stream, as rtwctl's does, ending $3 seconds from now or at
     * unix time $4 (both NULL: no end), unless $5 bans are in force
     * already (no row then; two PUTs at once may pass the cap by one);
     * ended bans of others go, so rtw_bans holds little more than what is
     * in force */
    {"ban_put", "WITH gone AS (DELETE FROM rtw_bans WHERE until <= now() AND (user_id, stream_id) <> ($1, $2)) "
		"INSERT INTO rtw_bans (user_id, stream_id, until) "
		"SELECT $1, $2, coalesce(now() + make_interval(secs => $3::float8), to_timestamp($4::float8)) "
		"WHERE (SELECT count(*) FROM (SELECT 1 FROM rtw_bans WHERE (until IS NULL OR until > now()) "
		"AND (user_id, stream_id) <> ($1, $2) LIMIT $5::int) n) < $5::int "
		"ON CONFLICT (user_id, stream_id) DO UPDATE SET until = EXCLUDED.until, created_at = now() "
		"RETURNING " FCG_BAN_COLS},
    {"ban_del", "DELETE FROM rtw_bans WHERE user_id = $1 AND stream_id = $2 RETURNING " FCG_BAN_COLS},
    {"bans_list", "SELECT " FCG_BAN_COLS " FROM rtw_bans WHERE stream_id = $1 AND (until IS NULL OR until > now()) "
		  "AND user_id COLLATE \"C\" > $2 ORDER BY user_id COLLATE \"C\" LIMIT $3::int"},
    {"redact", "SELECT r.status::text, " RTW_ROW_COLS " FROM rtw_redact($1, $2::bigint, $3, $4::bool) r, "
	       "LATERAL (SELECT (r.msg).*) m"},
    {"hist_pos", "SELECT xid::text FROM rtw_messages WHERE id = $1::bigint AND stream_id = $2 AND type = 'broadcast'"},
    {"hist_asc", FCG_HIST_PAGE FCG_HIST_ASC},
    {"hist_desc", FCG_HIST_PAGE FCG_HIST_DESC},
    {"hist_scan_asc", FCG_HIST_SCAN(FCG_HIST_ORDER_ASC)},
    {"hist_scan_desc", FCG_HIST_SCAN(FCG_HIST_ORDER_DESC)},
    {"hist_cap_asc", FCG_HIST_CAP FCG_HIST_CAP_ASC},
    {"hist_cap_desc", FCG_HIST_CAP FCG_HIST_CAP_DESC},
};
/* clang-format on */

static void fcg_db__down(struct fcg_db *db)
{
	db->streaming = NULL;
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = FCG_DB_DOWN;
	db->next_try_ms = rtw_now_ms() + FCG_DB_RETRY_MS;
}

static void fcg_db__oneline(const char *in, char *out, size_t outlen)
{
	size_t i = 0;
	for (; in && *in && i + 1 < outlen; in++)
		out[i++] = (*in == '\n') ? ' ' : *in;
	while (i && out[i - 1] == ' ')
		i--;
	out[i] = '\0';
}

/* Server notices: only the plain WARNING class (SQLSTATE 01000) matters,
 * and only to fcg_db__in_doubt. */
static void fcg_db__notice(void *arg, const PGresult *res)
{
	struct fcg_db *db = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (sev && code && strcmp(sev, "WARNING") == 0 && strcmp(code, "01000") == 0)
		db->warned = true;
}

/*
 * True when the statement just run ended a transaction (the connection is
 * idle again: a COMMIT, or a write outside BEGIN) and drew a plain WARNING.
 * With synchronous replication, a COMMIT whose wait for the standby is
 * cancelled (statement_timeout, pg_cancel_backend) keeps the local commit
 * and says only "canceling wait for synchronous replication ... might not
 * have been replicated" (SQLSTATE 01000; the text may be translated): the
 * caller must not acknowledge, since a failover now could lose the row.
 * Answering 503 makes the client retry with its Idempotency-Key, which
 * finds the row (or, after a failover that lost it, writes it again).
 * rtw-fcgi's writes raise no other 01000 warning; rtw_horizon()'s (sql/003)
 * come from reads, and only the history pages call it, not through here.
 */
static bool fcg_db__in_doubt(struct fcg_db *db)
{
	if (!db->warned || PQtransactionStatus(db->conn) != PQTRANS_IDLE)
		return false;
	log_warn("worker %d: a commit was not confirmed by the synchronous standby; not acknowledged", db->worker_id);
	if (db->metrics)
		FCG_COUNT(db->metrics, commits_in_doubt, 1);
	return true;
}

static int fcg_db__connect(struct fcg_db *db)
{
	char app[32], msg[512];
	snprintf(app, sizeof(app), "rtw-fcgi/%d", db->worker_id);
	/* Later keys override what the DSN (expanded from dbname) says: the
	 * timeouts keep a dead or stuck server from hanging a request. */
	const char *keys[] = {"dbname",	    "application_name", "connect_timeout", "tcp_user_timeout",
			      "keepalives", "keepalives_idle",	"options",	   NULL};
	const char *vals[] = {db->cfg->pgdsn,
			      app,
			      "3",
			      "5000",
			      "1",
			      "10",
			      "-c statement_timeout=10000 -c idle_in_transaction_session_timeout=20000",
			      NULL};

	db->conn = PQconnectdbParams(keys, vals, 1);
	if (db->conn)
		PQsetNoticeReceiver(db->conn, fcg_db__notice, db);
	if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
		fcg_db__oneline(db->conn ? PQerrorMessage(db->conn) : "out of memory", msg, sizeof(msg));
		if (db->failing)
			log_debug("worker %d: could not connect to database: %s", db->worker_id, msg);
		else
			log_warn("worker %d: could not connect to database: %s", db->worker_id, msg);
		db->failing = true;
		fcg_db__down(db);
		return RTW_AGAIN;
	}
	for (size_t i = 0; i < RTW_ARRAY_LEN(fcg_db__stmts); i++) {
		PGresult *res = PQprepare(db->conn, fcg_db__stmts[i].name, fcg_db__stmts[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			fcg_db__oneline(PQerrorMessage(db->conn), msg, sizeof(msg));
			log_error("worker %d: could not prepare statement \"%s\": %s", db->worker_id,
				  fcg_db__stmts[i].name, msg);
			PQclear(res);
			fcg_db__down(db);
			return RTW_AGAIN;
		}
		PQclear(res);
	}
	db->state = FCG_DB_READY;
	if (db->connected_once && db->metrics)
		FCG_COUNT(db->metrics, pg_reconnects, 1);
	db->connected_once = true;
	if (db->failing)
		log_info("worker %d: connected to database again", db->worker_id);
	db->failing = false;
	return RTW_OK;
}

int fcg_db_ready(struct fcg_db *db)
{
	if (db->state == FCG_DB_READY) {
		/* A server that went away while we were idle (restart, fast
		 * shutdown, pg_terminate_backend) left an EOF on the socket:
		 * reading it (libpq's sockets never block) notices the loss now,
		 * so this request reconnects at once instead of answering 503. */
		if (PQconsumeInput(db->conn) && PQstatus(db->conn) == CONNECTION_OK)
			return RTW_OK;
		log_info("worker %d: the database connection was closed; reconnecting", db->worker_id);
		fcg_db__down(db);
		db->next_try_ms = 0;
	}
	if (rtw_now_ms() < db->next_try_ms)
		return RTW_AGAIN;
	return fcg_db__connect(db);
}

PGresult *fcg_db_run(struct fcg_db *db, const char *name, int n, const char *const *params, ExecStatusType expected,
		     char sqlstate[6])
{
	PGresult *res;
	char msg[512];

	if (sqlstate)
		sqlstate[0] = '\0';
	if (fcg_db_ready(db) != RTW_OK)
		return NULL;
	db->warned = false;
	res = PQexecPrepared(db->conn, name, n, params, NULL, NULL, 0);
	if (PQresultStatus(res) == expected && !fcg_db__in_doubt(db))
		return res;
	if (PQresultStatus(res) == expected) {
		if (sqlstate)
			snprintf(sqlstate, 6, "%s", FCG_IN_DOUBT);
		PQclear(res);
		return NULL;
	}
	if (sqlstate)
		snprintf(sqlstate, 6, "%s", pgu_sqlstate(res));
	if (pgu_connection_lost(db->conn, res)) {
		log_warn("worker %d: lost the database connection", db->worker_id);
		PQclear(res);
		fcg_db__down(db);
		return NULL;
	}
	/* The primary message only: details may quote row values. */
	fcg_db__oneline(res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "no result", msg, sizeof(msg));
	log_error("worker %d: statement \"%s\" failed: %s (SQLSTATE %s)", db->worker_id, name, msg, pgu_sqlstate(res));
	PQclear(res);
	return NULL;
}

int fcg_db_stream(struct fcg_db *db, const char *name, int n, const char *const *params)
{
	if (fcg_db_ready(db) != RTW_OK)
		return RTW_AGAIN;
	if (!PQsendQueryPrepared(db->conn, name, n, params, NULL, NULL, 0) || !PQsetSingleRowMode(db->conn)) {
		log_warn("worker %d: could not send statement \"%s\"; reconnecting", db->worker_id, name);
		fcg_db__down(db);
		return RTW_AGAIN;
	}
	db->streaming = name;
	return RTW_OK;
}

PGresult *fcg_db_row(struct fcg_db *db, int *rc)
{
	PGresult *res;
	char msg[512];

	*rc = RTW_OK;
	if (!db->conn || !db->streaming) {
		*rc = db->conn ? RTW_OK : RTW_AGAIN;
		return NULL;
	}
	while ((res = PQgetResult(db->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_SINGLE_TUPLE && *rc == RTW_OK)
			return res;
		if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE && *rc == RTW_OK) {
			fcg_db__oneline(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), msg, sizeof(msg));
			log_error("worker %d: statement \"%s\" failed: %s (SQLSTATE %s)", db->worker_id, db->streaming,
				  msg, pgu_sqlstate(res));
			*rc = RTW_AGAIN;
		}
		/* after an error, the rest is read and dropped until the end */
		PQclear(res);
	}
	/* NULL: the statement is over and the connection idle, or lost */
	if (PQstatus(db->conn) != CONNECTION_OK) {
		log_warn("worker %d: lost the database connection", db->worker_id);
		fcg_db__down(db);
		*rc = RTW_AGAIN;
	}
	db->streaming = NULL;
	return NULL;
}

int fcg_db_stream_end(struct fcg_db *db)
{
	PGresult *res;
	int rc = RTW_OK;

	while (db->streaming && (res = fcg_db_row(db, &rc)) != NULL)
		PQclear(res);
	return rc;
}

int fcg_db_cmd(struct fcg_db *db, const char *sql)
{
	PGresult *res;
	int rc;

	if (fcg_db_ready(db) != RTW_OK)
		return RTW_AGAIN;
	db->warned = false;
	res = PQexec(db->conn, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		rc = fcg_db__in_doubt(db) ? RTW_AGAIN : RTW_OK;
	} else if (pgu_connection_lost(db->conn, res)) {
		log_warn("worker %d: lost the database connection", db->worker_id);
		fcg_db__down(db);
		rc = RTW_AGAIN;
	} else {
		rc = RTW_ERROR;
	}
	PQclear(res);
	return rc;
}

void fcg_db_close(struct fcg_db *db)
{
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = FCG_DB_DOWN;
}
