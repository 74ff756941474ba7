/*
 * db.h: rtw-webhookd's one non-blocking PostgreSQL connection: LISTEN on a
 * channel plus a FIFO of short parameterized statements, sent one at a
 * time on the loop. When the connection drops, the statements still
 * waiting (including the one that was on the wire) are sent again after
 * the reconnect, so every statement given to it must be idempotent.
 */
#ifndef WHK_DB_H
#define WHK_DB_H

#include "loop.h"

#include <libpq-fe.h>

/* res is borrowed (cleared after the call): a result of the statement,
 * possibly an error; NULL when the statement was dropped (shutdown). */
typedef void (*whk_db_result_fn)(void *arg, PGresult *res);

enum whk_db_state { WHK_DB_DOWN, WHK_DB_CONNECTING, WHK_DB_READY };

struct whk_db__query;

struct whk_db {
	enum whk_db_state state;
	struct whk_loop *loop;
	struct whk_io io;
	PGconn *conn;
	char *dsn;
	char *channel;
	uint64_t retry_at_ms;
	bool busy; /* the head of the queue is on the wire */
	struct whk_db__query *head, *tail;
	size_t pending;
	void (*on_notify)(void *arg);
	void (*on_ready)(void *arg);
	void *cb_arg;
};

int whk_db_init(struct whk_db *db, struct whk_loop *loop, const char *dsn, const char *channel,
		void (*on_notify)(void *), void (*on_ready)(void *), void *cb_arg) RTW_WUR;

/* Queues one statement; params are copied. fn may be NULL. */
int whk_db_query(struct whk_db *db, const char *sql, int nparams, const char *const *params, whk_db_result_fn fn,
		 void *arg) RTW_WUR;

/* Starts a (re)connect when the connection is down and its delay passed. */
void whk_db_tick(struct whk_db *db, uint64_t now_ms);

static inline bool whk_db_ready(const struct whk_db *db)
{
	return db->state == WHK_DB_READY;
}

/* Closes the connection; queued statements get fn(arg, NULL). */
void whk_db_close(struct whk_db *db);

#endif
