/*
 * db.c: owns rtw-webhookd's non-blocking libpq connection: async connect
 * (PQconnectStart/PQconnectPoll), LISTEN, a FIFO of statements sent with
 * PQsendQueryParams and read with PQconsumeInput/PQisBusy, notifications,
 * and reconnects. Runs on the loop; never blocks.
 */
#include "config.h"
#include "db.h"
#include "log.h"
#include "pgutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define WHK_DB_RETRY_MS 1000

struct whk_db__query {
	struct whk_db__query *next;
	char *sql;
	int nparams;
	char **params;
	whk_db_result_fn fn;
	void *arg;
	PGresult *res; /* the first result, kept until the statement ends */
};

static void whk_db__drive(struct whk_db *db);
static void whk_db__io(void *arg, uint32_t events);

static void whk_db__query_free(struct whk_db__query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	PQclear(q->res);
	free(q);
}

static void whk_db__oneline(const char *in, char *out, size_t n)
{
	snprintf(out, n, "%s", in ? in : "");
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
	size_t len = strlen(out);
	while (len && out[len - 1] == ' ')
		out[--len] = '\0';
}

static void whk_db__lost(struct whk_db *db, const char *why)
{
	char msg[512];

	whk_db__oneline(why, msg, sizeof(msg));
	if (db->state == WHK_DB_READY)
		log_warn("lost database connection: %s", msg);
	else
		log_warn("could not connect to database: %s", msg);
	whk_loop_del(db->loop, &db->io);
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = WHK_DB_DOWN;
	db->busy = false;
	if (db->head) {
		PQclear(db->head->res);
		db->head->res = NULL;
	}
	db->retry_at_ms = rtw_now_ms() + WHK_DB_RETRY_MS;
}

/* (Re)registers the connection's socket, which may change while
 * connecting. */
static int whk_db__watch(struct whk_db *db, uint32_t events)
{
	int fd = PQsocket(db->conn);

	if (fd < 0)
		return RTW_ERROR;
	if (db->io.registered && db->io.fd != fd)
		whk_loop_del(db->loop, &db->io);
	if (!db->io.registered)
		return whk_loop_add(db->loop, &db->io, fd, events, whk_db__io, db) == RTW_OK ? RTW_OK : RTW_ERROR;
	return whk_loop_mod(db->loop, &db->io, events);
}

static void whk_db__send(struct whk_db *db)
{
	struct whk_db__query *q = db->head;

	if (db->state != WHK_DB_READY || db->busy || !q)
		return;
	if (!PQsendQueryParams(db->conn, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL, NULL, 0)) {
		whk_db__lost(db, PQerrorMessage(db->conn));
		return;
	}
	db->busy = true;
}

static void whk_db__finish_head(struct whk_db *db)
{
	struct whk_db__query *q = db->head;

	db->head = q->next;
	if (!db->head)
		db->tail = NULL;
	db->pending--;
	db->busy = false;
	if (q->fn)
		q->fn(q->arg, q->res);
	whk_db__query_free(q);
}

static void whk_db__read(struct whk_db *db)
{
	PGnotify *n;
	bool notified = false;

	if (!PQconsumeInput(db->conn)) {
		whk_db__lost(db, PQerrorMessage(db->conn));
		return;
	}
	while (db->busy && !PQisBusy(db->conn)) {
		PGresult *res = PQgetResult(db->conn);
		if (!res) {
			struct whk_db__query *q = db->head;
			if (q->res && PQresultStatus(q->res) == PGRES_FATAL_ERROR &&
			    pgu_connection_lost(db->conn, q->res)) {
				whk_db__lost(db, PQresultErrorMessage(q->res));
				return;
			}
			whk_db__finish_head(db);
			if (db->state != WHK_DB_READY)
				return;
			whk_db__send(db);
			continue;
		}
		if (!db->head->res)
			db->head->res = res;
		else
			PQclear(res);
	}
	while ((n = PQnotifies(db->conn)) != NULL) {
		notified = true;
		PQfreemem(n);
	}
	if (PQstatus(db->conn) == CONNECTION_BAD) {
		whk_db__lost(db, PQerrorMessage(db->conn));
		return;
	}
	if (notified && db->on_notify)
		db->on_notify(db->cb_arg);
}

static void whk_db__io(void *arg, uint32_t events)
{
	struct whk_db *db = arg;

	if (db->state == WHK_DB_CONNECTING) {
		whk_db__drive(db);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		whk_db__read(db);
	if (db->state == WHK_DB_READY) {
		int f = PQflush(db->conn);
		if (f < 0) {
			whk_db__lost(db, PQerrorMessage(db->conn));
			return;
		}
		if (whk_db__watch(db, EPOLLIN | (f == 1 ? EPOLLOUT : 0)) != RTW_OK)
			whk_db__lost(db, "could not watch the database socket");
	}
}

/* Advances an async connect. */
static void whk_db__drive(struct whk_db *db)
{
	PostgresPollingStatusType st = PQconnectPoll(db->conn);
	struct whk_db__query *lq;
	char sql[128];

	switch (st) {
	case PGRES_POLLING_READING:
		if (whk_db__watch(db, EPOLLIN) != RTW_OK)
			whk_db__lost(db, "could not watch the database socket");
		return;
	case PGRES_POLLING_WRITING:
		if (whk_db__watch(db, EPOLLOUT) != RTW_OK)
			whk_db__lost(db, "could not watch the database socket");
		return;
	case PGRES_POLLING_FAILED: whk_db__lost(db, PQerrorMessage(db->conn)); return;
	case PGRES_POLLING_OK:
	default: break;
	}
	if (PQsetnonblocking(db->conn, 1) != 0 || whk_db__watch(db, EPOLLIN) != RTW_OK) {
		whk_db__lost(db, PQerrorMessage(db->conn));
		return;
	}
	db->state = WHK_DB_READY;
	log_info("connected to database");
	/* LISTEN goes first, ahead of anything that waited for the connection */
	lq = calloc(1, sizeof(*lq));
	snprintf(sql, sizeof(sql), "LISTEN %s", db->channel);
	if (!lq || !(lq->sql = strdup(sql))) {
		free(lq);
		whk_db__lost(db, "out of memory");
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

static void whk_db__connect(struct whk_db *db)
{
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {db->dsn, "rtw-webhookd", NULL};

	db->conn = PQconnectStartParams(keys, vals, 1);
	if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD) {
		whk_db__lost(db, db->conn ? PQerrorMessage(db->conn) : "out of memory");
		return;
	}
	db->state = WHK_DB_CONNECTING;
	if (whk_db__watch(db, EPOLLOUT) != RTW_OK) {
		whk_db__lost(db, "could not watch the database socket");
		return;
	}
}

int whk_db_init(struct whk_db *db, struct whk_loop *loop, const char *dsn, const char *channel,
		void (*on_notify)(void *), void (*on_ready)(void *), void *cb_arg)
{
	memset(db, 0, sizeof(*db));
	db->loop = loop;
	db->io.fd = -1;
	db->on_notify = on_notify;
	db->on_ready = on_ready;
	db->cb_arg = cb_arg;
	db->dsn = strdup(dsn);
	db->channel = strdup(channel);
	if (!db->dsn || !db->channel)
		return RTW_ERROR;
	db->state = WHK_DB_DOWN;
	db->retry_at_ms = 0;
	return RTW_OK;
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
	if (db->state == WHK_DB_READY && whk_db__watch(db, EPOLLIN | EPOLLOUT) != RTW_OK)
		whk_db__lost(db, "could not watch the database socket");
	return RTW_OK;
fail:
	whk_db__query_free(q);
	return RTW_ERROR;
}

void whk_db_tick(struct whk_db *db, uint64_t now_ms)
{
	if (db->state == WHK_DB_DOWN && now_ms >= db->retry_at_ms)
		whk_db__connect(db);
}

void whk_db_close(struct whk_db *db)
{
	whk_loop_del(db->loop, &db->io);
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = WHK_DB_DOWN;
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
	free(db->dsn);
	free(db->channel);
	db->dsn = db->channel = NULL;
}
