/*
 * publish.c: owns POST /v1/messages, backend publishing: a JSON array of
 * 1 to FCG_PUBLISH_MAX broadcasts and privates from a service token, each
 * with its own stream_id. Every message is checked first (lib/msg.c's
 * rules, then the token's streams and the widget registry); the first
 * one that fails refuses the whole batch with its "index". Otherwise all
 * are written by one INSERT (one transaction, one NOTIFY) and the answer
 * is the stored messages in the batch's order. Never writes a partial
 * batch; never goes through the group committer (a batch is one already).
 * Tier 4 of fcgi/: calls handlers.c (identity, Idempotency-Key),
 * respond.c, widget.c, commit.c (row objects), db.c and buf.c; called by
 * http.c. Runs on the worker thread.
 */
#include "config.h"
#include "fcgi.h"
#include "log.h"
#include "row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decoded batch: messages[i] is written by authors[i]. */
struct fcg__batch {
	size_t n;
	struct msg_in *messages;
	char (*authors)[MSG_ID_MAX + 1];
};

static void fcg__batch_clear(struct fcg__batch *b)
{
	for (size_t i = 0; b->messages && i < b->n; i++)
		msg_in_clear(&b->messages[i]);
	free(b->messages);
	free(b->authors);
	memset(b, 0, sizeof(*b));
}

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

/* Checks message i of the batch (v, borrowed) and decodes it into
 * b->messages[i] with its author. Sends the refusal itself. */
static int fcg__check_one(struct fcg_req *r, struct fcg__batch *b, size_t i, json_t *v)
{
	struct msg_in *m = &b->messages[i];
	struct msg_error err;
	const struct fcg_widget *wd;
	json_t *sid = json_object_get(v, "stream_id");
	bool lost;

	/* The stream comes from the message itself: it plays the part of the
	 * per-stream POST's path, so msg_decode_value's rules apply as they are. */
	if (json_is_object(v) && (!sid || json_is_null(sid))) {
		msg_error_set(&err, 400, "missing_field", "stream_id", "stream_id is required in a batch");
		goto refuse;
	}
	if (json_is_object(v) && !json_is_string(sid)) {
		msg_error_set(&err, 400, "invalid_field", "stream_id", "stream_id must be a string");
		goto refuse;
	}
	if (msg_decode_value(v, json_is_object(v) ? json_string_value(sid) : "", m, &err) != RTW_OK)
		goto refuse;
	if (m->type != MSG_BROADCAST && m->type != MSG_PRIVATE) {
		msg_error_set(&err, 400, "invalid_field", "type",
			      "a batch holds broadcast and private messages only, not %s", msg_type_name(m->type));
		goto refuse;
	}
	if (r->has_claims && !tok_allows_stream(&r->claims, m->stream_id)) {
		msg_error_set(&err, 403, "forbidden", "stream_id", "the token does not allow stream %s", m->stream_id);
		goto refuse;
	}
	if (!(wd = fcg_widget_get(r->w, m->widget_key, &lost))) {
		fcg_unavailable(r);
		return RTW_ERROR;
	}
	if (!wd->exists || !wd->enabled) {
		msg_error_set(&err, 403, "unknown_widget", "widget_key",
			      "widget_key is not a registered, enabled widget");
		goto refuse;
	}
	/* With a service token (or in open mode) any author_id is accepted, so
	 * this fails only when no anonymous id can be made (503). */
	return fcg_req_author(r, m->has_author ? m->author_id : NULL, b->authors[i]);
refuse:
	fcg__fail_at(r, &err, i);
	return RTW_ERROR;
}

/* Parses and checks the whole body into b. Sends the refusal itself. */
static int fcg__decode(struct fcg_req *r, struct fcg__batch *b)
{
	struct fcg_buf *body = &r->w->body;
	struct msg_error err;
	json_error_t jerr;
	json_t *root;
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
	b->n = json_array_size(root);
	if (b->n < 1 || b->n > FCG_PUBLISH_MAX) {
		msg_error_set(&err, 400, "invalid_field", NULL, "a batch holds 1 to %d messages, not %zu",
			      FCG_PUBLISH_MAX, b->n);
		b->n = 0;
		fcg_send_error(r, &err);
		goto out;
	}
	b->messages = calloc(b->n, sizeof(*b->messages));
	b->authors = calloc(b->n, sizeof(*b->authors));
	if (!b->messages || !b->authors) {
		fcg_unavailable(r);
		goto out;
	}
	for (size_t i = 0; i < b->n; i++)
		if (fcg__check_one(r, b, i, json_array_get(root, i)) != RTW_OK)
			goto out;
	rc = RTW_OK;
out:
	json_decref(root);
	return rc;
}

/* Writes the batch with one statement and formats the stored messages,
 * in order, into w->out. RTW_OK (*status 201) or RTW_AGAIN. */
static int fcg__write_batch(struct fcg_req *r, void *arg, int *status)
{
	const struct fcg__batch *b = arg;
	struct fcg_buf *o = &r->w->out;
	json_t *rows = json_array();
	char *text = NULL;
	PGresult *res = NULL;
	int rc = RTW_AGAIN;

	for (size_t i = 0; rows && i < b->n; i++) {
		if (json_array_append_new(rows, fcg_row_json(&b->messages[i], b->authors[i])) != 0) {
			json_decref(rows);
			rows = NULL;
		}
	}
	if (!rows || !(text = json_dumps(rows, JSON_COMPACT)))
		goto out;
	const char *params[1] = {text};
	res = fcg_db_run(&r->w->db, "pub_many", 1, params, PGRES_TUPLES_OK, NULL);
	if (!res || (size_t)PQntuples(res) != b->n)
		goto out;
	o->len = 0;
	o->max = SIZE_MAX;
	rc = fcg_buf_add(o, "[", 1);
	for (int i = 0; i < PQntuples(res) && rc == RTW_OK; i++) {
		struct msg_stored s;
		size_t len;
		char *js;

		rtw_row_message(res, i, 0, &s);
		if (!(js = msg_serialize(&s, &len))) {
			rc = RTW_ERROR;
			break;
		}
		rc = (i ? fcg_buf_add(o, ",", 1) : RTW_OK) | fcg_buf_add(o, js, len);
		free(js);
	}
	rc |= fcg_buf_add(o, "]", 1);
	rc = rc == RTW_OK ? RTW_OK : RTW_AGAIN;
	*status = 201;
out:
	PQclear(res);
	free(text);
	json_decref(rows);
	return rc;
}

void fcg_handle_publish(struct fcg_req *r)
{
	struct fcg__batch b = {0};
	int status;

	if (fcg_req_auth(r, NULL) != RTW_OK)
		return;
	/* Open mode trusts every caller with every author already. */
	if (r->has_claims && !r->claims.service) {
		fcg_fail(r, 403, "forbidden", NULL, "publishing a batch needs a service token");
		return;
	}
	if (fcg__decode(r, &b) != RTW_OK)
		goto out;
	if (r->idem_key) {
		/* The scope "" is no stream's: a batch key never meets a per-stream one. */
		fcg_idempotent(r, "", r->has_claims ? r->claims.sub : "", fcg__write_batch, &b);
		goto out;
	}
	if (fcg__write_batch(r, &b, &status) != RTW_OK) {
		fcg_unavailable(r);
		goto out;
	}
	fcg_send(r, status, r->w->out.p, r->w->out.len);
out:
	fcg__batch_clear(&b);
}
