/*
 * commit.c: owns the writing of broadcasts and privates: one message in
 * its own statement, or many in one shared transaction (group commit).
 *
 * Group commit, leader/follower: a worker queues its validated message;
 * if no batch is being written it becomes the leader, takes up to
 * fcgi.group_commit_max queued messages and writes them with one INSERT
 * (one transaction, one commit, one NOTIFY) on its own connection, then
 * hands every waiter its result and wakes the next queued worker to lead.
 * Otherwise it sleeps on its worker's semaphore until its message is done
 * or the lead is handed to it; a waking follower takes no lock, so the
 * wake-ups of a batch do not queue on the mutex. A worker gets its answer
 * only after the commit that holds its row.
 *
 * Both check the author's bans in the insert statement itself (db.c's
 * ins_one, ins_many), so a POST pays no round trip of its own for them,
 * and a banned author's row is never written, alone or in a batch. The queue is the one piece of
 * state shared by the worker threads; its mutex guards it.
 */
#include "config.h"
#include "fcgi.h"
#include "log.h"

#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rows buffer keeps at most this much between batches. */
#define FCG_GC_ROWS_KEEP (1u << 20)

struct fcg_gc {
	pthread_mutex_t mu;
	struct fcg_gc_item *head, *tail;
	bool leading; /* a batch is being written */
	int max;
	struct fcg_metrics *m;
	struct rtw_buf rows; /* the batch as JSON; the leader's alone */
};

struct fcg_gc *fcg_gc_new(int max, struct fcg_metrics *m)
{
	struct fcg_gc *gc = calloc(1, sizeof(*gc));
	if (!gc)
		return NULL;
	pthread_mutex_init(&gc->mu, NULL);
	gc->max = max < 1 ? 1 : max;
	gc->m = m;
	gc->rows.max = SIZE_MAX;
	return gc;
}

void fcg_gc_free(struct fcg_gc *gc)
{
	if (!gc)
		return;
	pthread_mutex_destroy(&gc->mu);
	rtw_buf_free(&gc->rows);
	free(gc);
}

void fcg_gc_item_clear(struct fcg_gc_item *it)
{
	free(it->message);
	it->message = NULL;
}

/* Copies column col of row into out (cap bytes); false when it does not fit. */
static bool fcg__copy(char *out, size_t cap, PGresult *res, int row, int col)
{
	int len = PQgetlength(res, row, col);

	if ((size_t)len >= cap)
		return false;
	memcpy(out, PQgetvalue(res, row, col), (size_t)len + 1);
	return true;
}

static void fcg__fill(struct fcg_gc_item *it, PGresult *res, int row)
{
	if (PQgetisnull(res, row, 0)) {
		it->rc = RTW_DECLINED; /* its author is banned: nothing written */
		return;
	}
	/* the short columns go into the item itself: one allocation a row */
	if (!fcg__copy(it->id, sizeof(it->id), res, row, 0) ||
	    !fcg__copy(it->created_at, sizeof(it->created_at), res, row, 1) ||
	    !fcg__copy(it->ts, sizeof(it->ts), res, row, 2)) {
		it->rc = RTW_ERROR;
		return;
	}
	it->message = strdup(PQgetvalue(res, row, 3));
	it->rc = it->message ? RTW_OK : RTW_ERROR;
}

void fcg_insert_one(struct fcg_db *db, struct fcg_gc_item *it)
{
	const struct msg_in *m = it->m;
	char ts[32];
	char *text = json_dumps(m->message, JSON_COMPACT | JSON_ENCODE_ANY);
	PGresult *res = NULL;

	snprintf(ts, sizeof(ts), "%.17g", m->timestamp);
	const char *params[8] = {m->stream_id,
				 msg_type_name(m->type),
				 m->widget_key,
				 it->author,
				 m->has_to_user ? m->to_user_id : NULL,
				 text,
				 ts,
				 it->check_ban ? "true" : "false"};
	if (text)
		res = fcg_db_run(db, "ins_one", 8, params, PGRES_TUPLES_OK, NULL);
	if (res && PQntuples(res) == 0 && it->check_ban) {
		it->rc = RTW_DECLINED; /* no row: its author is banned */
	} else if (!res || PQntuples(res) != 1) {
		it->rc = RTW_AGAIN;
	} else {
		fcg__fill(it, res, 0);
	}
	PQclear(res);
	free(text);
}

/* Appends s as a JSON string. The ids of a message (stream, widget,
 * author, addressee) follow lib/msg.c's rules, which leave nothing to
 * escape: those go as they are; anything else through jansson. */
static int fcg__str(struct rtw_buf *b, const char *s)
{
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || *c == '"' || *c == '\\')
			return rtw_buf_json_str(b, s);
	return rtw_buf_add(b, "\"", 1) | rtw_buf_str(b, s) | rtw_buf_add(b, "\"", 1);
}

static int fcg__dump(const char *data, size_t len, void *b)
{
	return rtw_buf_add(b, data, len) == RTW_OK ? 0 : -1;
}

/* Appends one row of the batch as the JSON object jsonb_to_recordset
 * reads, straight into b: the waiter's decoded payload is borrowed (it
 * sleeps until the batch is done) and encoded in place. */
static int fcg__row(struct rtw_buf *b, const struct fcg_gc_item *it)
{
	const struct msg_in *m = it->m;
	char ts[40];
	int rc = RTW_OK;

	snprintf(ts, sizeof(ts), "%.17g", m->timestamp);
	rc |= rtw_buf_str(b, "{\"stream_id\":");
	rc |= fcg__str(b, m->stream_id);
	rc |= rtw_buf_str(b, ",\"type\":");
	rc |= fcg__str(b, msg_type_name(m->type));
	rc |= rtw_buf_str(b, ",\"widget_key\":");
	rc |= fcg__str(b, m->widget_key);
	rc |= rtw_buf_str(b, ",\"author_id\":");
	rc |= fcg__str(b, it->author);
	rc |= rtw_buf_str(b, ",\"to_user_id\":");
	rc |= m->has_to_user ? fcg__str(b, m->to_user_id) : rtw_buf_str(b, "null");
	rc |= rtw_buf_str(b, ",\"message\":");
	if (rc == RTW_OK && json_dump_callback(m->message, fcg__dump, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		rc = RTW_ERROR;
	rc |= rtw_buf_str(b, ",\"ts\":");
	rc |= rtw_buf_str(b, ts);
	rc |= rtw_buf_str(b, it->check_ban ? ",\"ban\":true}" : ",\"ban\":false}");
	return rc;
}

/* Writes batch (n items) in one statement, its rows formatted in the
 * committer's buffer (only the leader uses it); on a statement error (not
 * a lost connection, nor a commit in doubt, whose rows are stored) falls
 * back to one statement per item, so one bad row cannot fail the others. */
static void fcg__write_batch(struct fcg_gc *gc, struct fcg_db *db, struct fcg_gc_item **batch, int n)
{
	struct rtw_buf *b = &gc->rows;
	char sqlstate[6] = "";
	PGresult *res = NULL;
	int rc = RTW_OK;

	if (n == 1) {
		fcg_insert_one(db, batch[0]);
		return;
	}
	b->len = 0;
	rc |= rtw_buf_add(b, "[", 1);
	for (int i = 0; rc == RTW_OK && i < n; i++)
		rc |= (i ? rtw_buf_add(b, ",", 1) : RTW_OK) | fcg__row(b, batch[i]);
	rc |= rtw_buf_add(b, "]", 1);
	if (rc == RTW_OK) {
		const char *params[1] = {b->p};
		res = fcg_db_run(db, "ins_many", 1, params, PGRES_TUPLES_OK, sqlstate);
	}
	/* a batch of large messages does not pin its size for good */
	rtw_buf_shrink(b, FCG_GC_ROWS_KEEP);
	if (res && PQntuples(res) == n) {
		for (int i = 0; i < n; i++)
			fcg__fill(batch[i], res, i);
		PQclear(res);
		return;
	}
	PQclear(res);
	if (res || db->state != FCG_DB_READY || strcmp(sqlstate, FCG_IN_DOUBT) == 0) {
		for (int i = 0; i < n; i++)
			batch[i]->rc = RTW_AGAIN;
		return;
	}
	log_warn("worker %d: batch of %d failed; writing one by one", db->worker_id, n);
	for (int i = 0; i < n; i++)
		fcg_insert_one(db, batch[i]);
}

/* Waits on the worker's semaphore until another thread moves item out of
 * FCG_GC_QUEUED; returns the state it found. A post left over from an
 * earlier wait (a read interrupted by SIGUSR1 that saw the state first)
 * only costs one more look at the state. */
static int fcg__wait(struct fcg_gc_item *it)
{
	int st;

	while ((st = atomic_load_explicit(&it->state, memory_order_acquire)) == FCG_GC_QUEUED)
		sem_wait(it->sem); /* EINTR: look again */
	return st;
}

void fcg_gc_submit(struct fcg_gc *gc, struct fcg_db *db, struct fcg_gc_item *item)
{
	struct fcg_gc_item *batch[256];
	sem_t *wake[RTW_ARRAY_LEN(batch)];
	bool lead;

	atomic_store_explicit(&item->state, FCG_GC_QUEUED, memory_order_relaxed);
	item->next = NULL;
	item->rc = RTW_AGAIN;
	pthread_mutex_lock(&gc->mu);
	if (gc->tail)
		gc->tail->next = item;
	else
		gc->head = item;
	gc->tail = item;
	/* Nobody leads only when the queue was empty: item is alone in it. */
	lead = !gc->leading;
	gc->leading = true;
	pthread_mutex_unlock(&gc->mu);
	/* A follower sleeps until its batch is written, or until the leader
	 * before it hands it the lead: then item is the head of the queue. */
	if (!lead && fcg__wait(item) == FCG_GC_DONE)
		return;

	/* Lead: take up to max items from the head of the queue, which holds
	 * item (the queue was empty, or item was its head). */
	int n = 0, max = gc->max < (int)RTW_ARRAY_LEN(batch) ? gc->max : (int)RTW_ARRAY_LEN(batch);
	pthread_mutex_lock(&gc->mu);
	while (gc->head && n < max) {
		batch[n++] = gc->head;
		gc->head = gc->head->next;
	}
	if (!gc->head)
		gc->tail = NULL;
	pthread_mutex_unlock(&gc->mu);

	fcg__write_batch(gc, db, batch, n);
	FCG_COUNT(gc->m, gc_batches, 1);
	FCG_COUNT(gc->m, gc_rows, (uint_fast64_t)n);

	/* The next queued worker leads the next batch, woken first so that
	 * its statement is on its way while this batch's answers go out;
	 * with none, nobody leads until the next submit. */
	sem_t *next = NULL;
	pthread_mutex_lock(&gc->mu);
	if (gc->head) {
		next = gc->head->sem;
		atomic_store_explicit(&gc->head->state, FCG_GC_LEAD, memory_order_release);
	} else {
		gc->leading = false;
	}
	pthread_mutex_unlock(&gc->mu);
	if (next)
		sem_post(next);
	/* Each follower's item lives on its stack and may be gone as soon as
	 * its state is DONE: take its semaphore (one per worker, alive as long
	 * as the process) first. The followers take no lock on waking. */
	int nwake = 0;
	for (int i = 0; i < n; i++) {
		if (batch[i] == item)
			continue;
		wake[nwake++] = batch[i]->sem;
		atomic_store_explicit(&batch[i]->state, FCG_GC_DONE, memory_order_release);
	}
	for (int i = 0; i < nwake; i++)
		sem_post(wake[i]);
}
