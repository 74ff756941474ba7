/*
 * db.c: owns rtw-webhookd's query policy: LISTEN first after every
 * connect, then a FIFO of statements sent with PQsendQueryParams one at a
 * time, each answered only once its transaction ended (on_done), and sent
 * again when the connection dropped before that. The connection itself
 * (connect, reads, notifications, reconnects) is lib/pgconn.c's. Runs on
 * the loop; never blocks.
 */
#include "config.h"
#include "db.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct whk_db__query {
	struct whk_db__query *next;
	char *sql;
	int nparams;
	char **params;
	whk_db_result_fn fn;
	void *arg;
	PGresult *res; /* the first result, kept until the statement ends */
};

static void whk_db__query_free(struct whk_db__query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	PQclear(q->res);
	free(q);
}

static void whk_db__send(struct whk_db *db)
{
	struct whk_db__query *q = db->head;

	if (db->busy || !q || rtw_pgconn_state(&db->pc) != RTW_PGCONN_READY)
		return;
	/* on RTW_ERROR the connection is lost and on_lost has run */
	if (rtw_pgconn_send_params(&db->pc, q->sql, q->nparams, (const char *const *)q->params) == RTW_OK)
		db->busy = true;
}

static void whk_db__on_result(struct rtw_pgconn *pc, PGresult *res, void *arg)
{
	struct whk_db *db = arg;

	if (db->busy && !db->head->res)
		db->head->res = rtw_pgconn_take_result(pc);
}

static void whk_db__on_done(struct rtw_pgconn *pc, void *arg)
{
	struct whk_db *db = arg;
	struct whk_db__query *q = db->head;

	if (!db->busy)
		return;
	db->head = q->next;
	if (!db->head)
		db->tail = NULL;
	db->pending--;
	db->busy = false;
	if (q->fn)
		q->fn(q->arg, q->res);
	whk_db__query_free(q);
	whk_db__send(db);
}

static void whk_db__on_notify(struct rtw_pgconn *pc, const char *channel, const char *payload, void *arg)
{
	struct whk_db *db = arg;

	if (db->on_notify)
		db->on_notify(db->cb_arg);
}

static void whk_db__on_lost(struct rtw_pgconn *pc, const char *why, void *arg)
{
	struct whk_db *db = arg;

	/* the statement on the wire is sent again after the reconnect */
	db->busy = false;
	if (db->head) {
		PQclear(db->head->res);
		db->head->res = NULL;
	}
}

static void whk_db__on_ready(struct rtw_pgconn *pc, void *arg)
{
	struct whk_db *db = arg;
	struct whk_db__query *lq = calloc(1, sizeof(*lq));
	char sql[128];

	/* LISTEN goes first, ahead of anything that waited for the connection */
	snprintf(sql, sizeof(sql), "LISTEN %s", db->channel);
	if (!lq || !(lq->sql = strdup(sql))) {
		free(lq);
		log_error("out of memory");
		return;
	}
	lq->next = db->head;
	db->head = lq;
	if (!db->tail)
		db->tail = lq;
	db->pending++;
	whk_db__send(db);
	if (db->on_ready)
		db->on_ready(db->cb_arg);
}

int whk_db_init(struct whk_db *db, struct rtw_loop *loop, const char *dsn, const char *channel,
		void (*on_notify)(void *), void (*on_ready)(void *), void *cb_arg)
{
	static const struct rtw_pgconn_callbacks cb = {
	    .on_ready = whk_db__on_ready,
	    .on_result = whk_db__on_result,
	    .on_done = whk_db__on_done,
	    .on_notify = whk_db__on_notify,
	    .on_lost = whk_db__on_lost,
	};

	memset(db, 0, sizeof(*db));
	db->on_notify = on_notify;
	db->on_ready = on_ready;
	db->cb_arg = cb_arg;
	if (!(db->channel = strdup(channel)))
		return RTW_ERROR;
	return rtw_pgconn_init(&db->pc, loop, dsn, "rtw-webhookd", &cb, db);
}

void whk_db_start(struct whk_db *db)
{
	rtw_pgconn_start(&db->pc);
}

int whk_db_query(struct whk_db *db, const char *sql, int nparams, const char *const *params, whk_db_result_fn fn,
		 void *arg)
{
	struct whk_db__query *q = calloc(1, sizeof(*q));

	if (!q)
		return RTW_ERROR;
	q->fn = fn;
	q->arg = arg;
	q->nparams = nparams;
	if (!(q->sql = strdup(sql)) || (nparams && !(q->params = calloc((size_t)nparams, sizeof(char *)))))
		goto fail;
	for (int i = 0; i < nparams; i++)
		if (params[i] && !(q->params[i] = strdup(params[i])))
			goto fail;
	if (db->tail)
		db->tail->next = q;
	else
		db->head = q;
	db->tail = q;
	db->pending++;
	whk_db__send(db);
	return RTW_OK;
fail:
	whk_db__query_free(q);
	return RTW_ERROR;
}

void whk_db_close(struct whk_db *db)
{
	rtw_pgconn_free(&db->pc);
	db->busy = false;
	while (db->head) {
		struct whk_db__query *q = db->head;
		db->head = q->next;
		PQclear(q->res);
		q->res = NULL;
		if (q->fn)
			q->fn(q->arg, NULL);
		whk_db__query_free(q);
	}
	db->tail = NULL;
	db->pending = 0;
	free(db->channel);
	db->channel = NULL;
}
