/*
 * publish.c: owns POST /v1/messages, backend publishing: a JSON array of
 * 1 to FCG_PUBLISH_MAX broadcasts and privates from a service token, each
 * with its own stream_id. Every message is checked first (lib/msg.c's
 * rules, then the token's streams and the widget registry); the first
 * one that fails refuses the whole batch with its "index". Otherwise the
 * checked body itself is written by one INSERT (one transaction, one
 * NOTIFY; db.c's "pub_many") and the answer is the stored messages in the
 * batch's order. Never writes a partial batch; never goes through the
 * group committer (a batch is one already). Tier 4 of fcgi/: calls
 * handlers.c (identity, Idempotency-Key), respond.c, widget.c, db.c and
 * lib/buf.c; called by http.c. Runs on the worker thread.
 */
#include "config.h"
#include "anonid.h"
#include "fcgi.h"
#include "log.h"
#include "row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sends err with the batch index of the message at fault. */
static void fcg__fail_at(struct fcg_req *r, const struct msg_error *err, size_t index)
{
	char *text = msg_error_json(err);
	json_t *root = text ? json_loads(text, 0, NULL) : NULL;
	char *out = NULL;

	free(text);
	if (root && json_object_set_new(json_object_get(root, "error"), "index", json_integer((json_int_t)index)) == 0)
		out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!out) {
		fcg_unavailable(r);
		return;
	}
	fcg_send(r, err->status, out, strlen(out));
	free(out);
}

/* Checks message i of the batch (v, borrowed). Sends the refusal itself. */
static int fcg__check_one(struct fcg_req *r, size_t i, json_t *v)
{
	struct msg_in m;
	struct msg_error err;
	const struct fcg_widget *wd;
	bool lost;
	int rc = RTW_ERROR;

	/* the stream and the types a batch may hold are lib/msg.c's checks,
	 * in the order rtw_publish() makes them too */
	if (msg_decode_batch_value(v, &m, &err) != RTW_OK)
		goto refuse;
	if (r->has_claims && !tok_allows_stream(&r->claims, m.stream_id)) {
		msg_error_set(&err, 403, "forbidden", "stream_id", "the token does not allow stream %s", m.stream_id);
		goto refuse;
	}
	if (!(wd = fcg_widget_get(r->w, m.widget_key, &lost))) {
		fcg_unavailable(r);
		goto out;
	}
	if (!wd->exists || !wd->enabled) {
		msg_error_set(&err, 403, "unknown_widget", "widget_key",
			      "widget_key is not a registered, enabled widget");
		goto refuse;
	}
	/* Any author_id is accepted: only a service token (or open mode) gets here. */
	rc = RTW_OK;
	goto out;
refuse:
	fcg__fail_at(r, &err, i);
out:
	msg_in_clear(&m);
	return rc;
}

/* Parses and checks the whole body. Sends the refusal itself. */
static int fcg__check(struct fcg_req *r)
{
	struct rtw_buf *body = &r->w->body;
	struct msg_error err;
	json_error_t jerr;
	json_t *root;
	size_t n;
	int rc = RTW_ERROR;

	if (body->len == 0) {
		fcg_fail(r, 400, "invalid_json", NULL, "request body is empty");
		return RTW_ERROR;
	}
	root = json_loadb(body->p, body->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root) {
		/* jansson's own text may quote the input: the position only */
		fcg_fail(r, 400, "invalid_json", NULL, "invalid json at line %d, column %d", jerr.line, jerr.column);
		return RTW_ERROR;
	}
	if (!json_is_array(root)) {
		fcg_fail(r, 400, "invalid_json", NULL, "request body must be a json array of messages");
		goto out;
	}
	n = json_array_size(root);
	if (n < 1 || n > FCG_PUBLISH_MAX) {
		msg_error_set(&err, 400, "invalid_field", NULL, "a batch holds 1 to %d messages, not %zu",
			      FCG_PUBLISH_MAX, n);
		fcg_send_error(r, &err);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (fcg__check_one(r, i, json_array_get(root, i)) != RTW_OK)
			goto out;
	rc = RTW_OK;
out:
	json_decref(root);
	return rc;
}

/* A stored row of the batch and its id, to put the rows in id order. */
struct fcg__stored {
	unsigned long long id;
	int row;
};

static int fcg__by_id(const void *a, const void *b)
{
	const struct fcg__stored *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

/* Writes the checked body with one statement, author (borrowed) standing
 * in for a missing author_id, and formats the stored messages, in id
 * order (the batch's; RETURNING promises none), into w->out. RTW_OK
 * (*status 201) or RTW_AGAIN. */
static int fcg__write_batch(struct fcg_req *r, void *author, int *status)
{
	struct rtw_buf *o = &r->w->out;
	const char *params[2] = {r->w->body.p, author};
	struct fcg__stored rows[FCG_PUBLISH_MAX];
	PGresult *res;
	int n, rc;

	/* the body is NUL-terminated: rtw_buf keeps a spare byte (lib/buf.c) */
	res = fcg_db_run(&r->w->db, "pub_many", 2, params, PGRES_TUPLES_OK, NULL);
	if (!res)
		return RTW_AGAIN;
	n = PQntuples(res);
	if (n < 1 || n > FCG_PUBLISH_MAX) {
		PQclear(res);
		return RTW_AGAIN;
	}
	for (int i = 0; i < n; i++) {
		rows[i].id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		rows[i].row = i;
	}
	qsort(rows, (size_t)n, sizeof(rows[0]), fcg__by_id);
	o->len = 0;
	o->max = SIZE_MAX;
	rc = rtw_buf_add(o, "[", 1);
	for (int i = 0; i < n && rc == RTW_OK; i++) {
		struct msg_stored s;
		size_t len;
		char *js;

		rtw_row_message(res, rows[i].row, 0, &s);
		if (!(js = msg_serialize(&s, &len))) {
			rc = RTW_ERROR;
			break;
		}
		rc = (i ? rtw_buf_add(o, ",", 1) : RTW_OK) | rtw_buf_add(o, js, len);
		free(js);
	}
	rc |= rtw_buf_add(o, "]", 1);
	PQclear(res);
	*status = 201;
	return rc == RTW_OK ? RTW_OK : RTW_AGAIN;
}

void fcg_handle_publish(struct fcg_req *r)
{
	char author[MSG_ID_MAX + 1];
	int status;

	if (fcg_req_auth(r, NULL) != RTW_OK)
		return;
	/* Open mode trusts every caller with every author already. */
	if (r->has_claims && !r->claims.service) {
		fcg_fail(r, 403, "forbidden", NULL, "publishing a batch needs a service token");
		return;
	}
	if (fcg__check(r) != RTW_OK)
		return;
	/* Messages without author_id: the token's subject; in open mode one
	 * anonymous id for the whole batch (one caller, one identity). */
	if (r->has_claims)
		snprintf(author, sizeof(author), "%s", r->claims.sub);
	else if (rtw_anon_id(author) != RTW_OK) {
		fcg_unavailable(r);
		return;
	}
	if (r->idem_key) {
		/* The scope "" is no stream's: a batch key never meets a per-stream
		 * one. Keyed by the token's subject; in open mode by no one, since
		 * a fresh anonymous id would never match a retry. */
		fcg_idempotent(r, "", r->has_claims ? r->claims.sub : "", fcg__write_batch, author);
		return;
	}
	if (fcg__write_batch(r, author, &status) != RTW_OK) {
		fcg_unavailable(r);
		return;
	}
	fcg_send(r, status, r->w->out.p, r->w->out.len);
}
