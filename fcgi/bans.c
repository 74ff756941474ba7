/*
 * bans.c: owns the ban routes of rtw-fcgi, for admin tokens only: PUT and
 * DELETE of one user's ban (/v1/bans/{user}: every stream;
 * /v1/streams/{s}/bans/{user}: one stream) and the lists of the bans in
 * force (GET /v1/bans, GET /v1/streams/{s}/bans). The rows are rtw_bans
 * (sql/012_moderation.sql), written as rtwctl writes them; their trigger
 * NOTIFYs rtw_bans, so every rtw-sse process ends the user's open streams,
 * and rtw-fcgi's inserts refuse the user's POSTs from the commit on.
 * Never checks a POST itself (commit.c's inserts do). Tier 4 of fcgi/:
 * calls handlers.c (identity, limits), respond.c and db.c; called by
 * http.c. Runs on the worker thread; each write is one statement.
 */
#include "config.h"
#include "fcgi.h"
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The longest ban with an end (for_s, until): ten years, as rtwctl token's
 * --ttl; a longer one is a ban without an end. */
#define FCG_BAN_MAX_S 315360000
#define FCG_BANS_PAGE 100 /* a list's default length */
#define FCG_BANS_PAGE_MAX 1000

/* rtw_bans's stream_id of the request: "*" is every stream. */
static const char *fcg__scope(const struct fcg_req *r)
{
	return r->stream_id[0] ? r->stream_id : "*";
}

/* An admin token, allowed the stream of the route (every stream, for a
 * global route), within the per-address and per-identity limits. Open
 * mode has no identity to trust with bans: 403. Sends the refusal itself
 * and returns RTW_ERROR. */
static int fcg__admin(struct fcg_req *r)
{
	if (fcg_req_auth(r, r->stream_id[0] ? r->stream_id : NULL) != RTW_OK)
		return RTW_ERROR;
	if (!r->has_claims || !r->claims.admin) {
		fcg_fail(r, 403, "forbidden", NULL, "only an admin token may ban");
		return RTW_ERROR;
	}
	if (!r->stream_id[0] && !r->claims.streams_any) {
		fcg_fail(r, 403, "forbidden", NULL, "a ban on every stream needs a token for every stream");
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* n decimal digits at s into *v. */
static bool fcg__digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* An RFC 3339 date-time ("2026-11-28T14:00:00Z", fraction and offset
 * optional parts of the grammar) as unix seconds. Checked here rather
 * than by PostgreSQL, whose timestamptz input also takes "now", "epoch"
 * and local formats. */
static bool fcg__rfc3339(const char *s, double *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	double frac = 0, scale = 0.1;
	struct tm tm;
	time_t t;

	if (strlen(s) < 20 || !fcg__digits(s, 4, &y) || s[4] != '-' || !fcg__digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !fcg__digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !fcg__digits(s + 11, 2, &h) ||
	    s[13] != ':' || !fcg__digits(s + 14, 2, &mi) || s[16] != ':' || !fcg__digits(s + 17, 2, &sec))
		return false;
	s += 19;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return false;
		for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
			frac += (*s - '0') * scale;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s == '-' ? -1 : 1;
		if (!fcg__digits(s + 1, 2, &oh) || s[3] != ':' || !fcg__digits(s + 4, 2, &om) || oh > 23 || om > 59)
			return false;
		s += 6;
	} else {
		return false;
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec > 59 ? 59 : sec; /* a leap second counts as the one before */
	t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d) /* 31 April came back as 1 May */
		return false;
	*out = (double)t + frac - sign * (oh * 3600 + om * 60);
	return true;
}

/* The PUT body: nothing, or an object with for_s (whole seconds) or until
 * (RFC 3339), each optional, null meaning absent; both absent: no end.
 * for_s goes to PostgreSQL as given, so its clock starts the ban, as
 * rtwctl's --for does; until as unix seconds. end[0] and end[1] receive
 * them as text, NULL when absent. Sends 400 itself and returns RTW_ERROR. */
static int fcg__ban_body(struct fcg_req *r, char text[2][32], const char *end[2])
{
	const struct rtw_buf *b = &r->w->body;
	json_error_t jerr;
	json_t *root, *v;
	const char *key;
	double now = (double)time(NULL), until;
	int rc = RTW_ERROR;

	end[0] = end[1] = NULL;
	if (b->len == 0)
		return RTW_OK;
	if (!(root = json_loadb(b->p, b->len, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(root)) {
		fcg_fail(r, 400, "invalid_json", NULL, "the body must be one JSON object");
		goto out;
	}
	json_object_foreach (root, key, v) {
		if (strcmp(key, "for_s") != 0 && strcmp(key, "until") != 0) {
			fcg_fail(r, 400, "unexpected_field", strlen(key) <= 64 ? key : NULL,
				 "a ban takes only for_s or until");
			goto out;
		}
	}
	json_t *f = json_object_get(root, "for_s"), *u = json_object_get(root, "until");
	if (f && !json_is_null(f) && u && !json_is_null(u)) {
		fcg_fail(r, 400, "invalid_field", "until", "give for_s or until, not both");
		goto out;
	}
	if (f && !json_is_null(f)) {
		if (!json_is_integer(f) || json_integer_value(f) < 1 || json_integer_value(f) > FCG_BAN_MAX_S) {
			fcg_fail(r, 400, "invalid_field", "for_s",
				 "for_s must be a whole number of seconds from 1 to %d", FCG_BAN_MAX_S);
			goto out;
		}
		snprintf(text[0], 32, "%" JSON_INTEGER_FORMAT, json_integer_value(f));
		end[0] = text[0];
	} else if (u && !json_is_null(u)) {
		if (!json_is_string(u) || !fcg__rfc3339(json_string_value(u), &until) || until <= now ||
		    until > now + FCG_BAN_MAX_S) {
			fcg_fail(r, 400, "invalid_field", "until",
				 "until must be an RFC 3339 time in the next %d seconds", FCG_BAN_MAX_S);
			goto out;
		}
		snprintf(text[1], 32, "%.6f", until);
		end[1] = text[1];
	}
	rc = RTW_OK;
out:
	json_decref(root);
	return rc;
}

/* Row row of a ban statement's answer (user_id, stream_id, until,
 * created_at) as the contract's ban object; new reference or NULL. */
static json_t *fcg__ban_json(PGresult *res, int row)
{
	const char *stream = PQgetvalue(res, row, 1);
	return json_pack("{s:s,s:s?,s:s?,s:s}", "user_id", PQgetvalue(res, row, 0), "stream_id",
			 strcmp(stream, "*") == 0 ? NULL : stream, "until",
			 PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2), "created_at",
			 PQgetvalue(res, row, 3));
}

/* PUT: bans (again: a second PUT replaces the end, as rtwctl does), 200
 * with the ban; 403 forbidden when FCG_BANS_MAX bans are in force. */
static void fcg__put(struct fcg_req *r)
{
	char text[2][32], cap[16];
	const char *end[2];
	PGresult *res;

	if (fcg__ban_body(r, text, end) != RTW_OK)
		return;
	snprintf(cap, sizeof(cap), "%d", FCG_BANS_MAX);
	const char *params[5] = {r->user_id, fcg__scope(r), end[0], end[1], cap};
	if (!(res = fcg_db_run(&r->w->db, "ban_put", 5, params, PGRES_TUPLES_OK, NULL))) {
		fcg_unavailable(r);
		return;
	}
	if (PQntuples(res) != 1)
		fcg_fail(r, 403, "forbidden", NULL, "%d bans are in force already; lift some first", FCG_BANS_MAX);
	else
		fcg_send_json(r, 200, fcg__ban_json(res, 0));
	PQclear(res);
}

/* DELETE: lifts the ban, 200 with it (an ended one too); 404 when there
 * is none, so a second DELETE is 404 and changes nothing. */
static void fcg__delete(struct fcg_req *r)
{
	const char *params[2] = {r->user_id, fcg__scope(r)};
	PGresult *res;

	if (!(res = fcg_db_run(&r->w->db, "ban_del", 2, params, PGRES_TUPLES_OK, NULL))) {
		fcg_unavailable(r);
		return;
	}
	if (PQntuples(res) != 1)
		fcg_fail(r, 404, "not_found", NULL, "%s is not banned %s", r->user_id,
			 r->stream_id[0] ? "from this stream" : "from every stream");
	else
		fcg_send_json(r, 200, fcg__ban_json(res, 0));
	PQclear(res);
}

/* after (a user id: the page starts after it) and limit from the query;
 * other parameters (access_token) are ignored. Sends 400 itself. */
static int fcg__list_query(struct fcg_req *r, char after[MSG_ID_MAX + 1], int *limit)
{
	const char *q = r->query;
	struct rtw_query_pair kv;
	char name[16], val[MSG_ID_MAX + 1];

	after[0] = '\0';
	*limit = FCG_BANS_PAGE;
	while (rtw_query_next(&q, &kv)) {
		if (rtw_url_decode(kv.name, kv.name_len, name, sizeof(name), RTW_URL_PLUS) != RTW_OK ||
		    (strcmp(name, "after") != 0 && strcmp(name, "limit") != 0))
			continue;
		if (rtw_url_decode(kv.value, kv.value_len, val, sizeof(val), RTW_URL_PLUS) != RTW_OK)
			val[0] = '\x01'; /* refused below */
		if (strcmp(name, "after") == 0 && (val[0] == '\0' || msg_valid_user_id(val))) {
			memcpy(after, val, strlen(val) + 1);
			continue;
		}
		char *endp;
		long l = strtol(val, &endp, 10);
		if (strcmp(name, "limit") == 0 && val[0] >= '0' && val[0] <= '9' && !*endp && l >= 1 &&
		    l <= FCG_BANS_PAGE_MAX) {
			*limit = (int)l;
			continue;
		}
		fcg_fail(r, 400, "invalid_field", name,
			 strcmp(name, "limit") == 0 ? "limit must be an integer from 1 to 1000"
						    : "after must be a user id");
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* GET: the bans in force of the route's scope (a stream's own, or the
 * ones on every stream), by user id (bytewise), a page at a time;
 * next_after is set when more remain. */
static void fcg__list(struct fcg_req *r)
{
	char after[MSG_ID_MAX + 1], lim[16];
	int limit, n;
	PGresult *res;
	json_t *j, *bans;

	if (fcg__list_query(r, after, &limit) != RTW_OK)
		return;
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[3] = {fcg__scope(r), after, lim};
	if (!(res = fcg_db_run(&r->w->db, "bans_list", 3, params, PGRES_TUPLES_OK, NULL))) {
		fcg_unavailable(r);
		return;
	}
	n = PQntuples(res) > limit ? limit : PQntuples(res);
	bans = json_array();
	for (int i = 0; bans && i < n; i++) {
		if (json_array_append_new(bans, fcg__ban_json(res, i)) != 0) {
			json_decref(bans);
			bans = NULL;
		}
	}
	j = bans ? json_pack("{s:s?,s:o,s:s?}", "stream_id", r->stream_id[0] ? r->stream_id : NULL, "bans", bans,
			     "next_after", PQntuples(res) > limit ? PQgetvalue(res, n - 1, 0) : NULL)
		 : NULL;
	PQclear(res);
	fcg_send_json(r, 200, j);
}

void fcg_handle_ban(struct fcg_req *r)
{
	if (fcg__admin(r) != RTW_OK)
		return;
	if (r->route == FCG_ROUTE_BANS) {
		fcg__list(r);
		return;
	}
	if (!msg_valid_user_id(r->user_id)) {
		fcg_fail(r, 400, "invalid_field", "user_id",
			 "user id must be 1 to %d printable ASCII characters, without spaces, quotes or backslashes",
			 MSG_ID_MAX);
		return;
	}
	if (fcg_req_limits(r, r->claims.sub) != RTW_OK)
		return;
	if (strcmp(r->method, "PUT") == 0)
		fcg__put(r);
	else
		fcg__delete(r);
}
