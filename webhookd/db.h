/*
 * db.h: rtw-webhookd's query policy on its one PostgreSQL connection
 * (lib/pgconn.h): LISTEN on a channel plus a FIFO of short parameterized
 * statements, sent one at a time on the loop. When the connection drops,
 * the statements still waiting (including the one that was on the wire)
 * are sent again after the reconnect, so every statement given to it
 * must be idempotent.
 */
#ifndef WHK_DB_H
#define WHK_DB_H

#include "pgconn.h"

/* res is borrowed (cleared after the call): a result of the statement,
 * possibly an error; NULL when the statement was dropped (shutdown). */
typedef void (*whk_db_result_fn)(void *arg, PGresult *res);

struct whk_db__query;

struct whk_db {
	struct rtw_pgconn pc;
	char *channel;
	bool busy; /* the head of the queue is on the wire */
	struct whk_db__query *head, *tail;
	size_t pending;
	void (*on_notify)(void *arg);
	void (*on_ready)(void *arg);
	void *cb_arg;
};

/* Sets db up on loop; nothing connects before whk_db_start. on_notify
 * runs for each notification on channel, on_ready after each connect
 * (LISTEN is queued first). */
int whk_db_init(struct whk_db *db, struct rtw_loop *loop, const char *dsn, const char *channel,
		void (*on_notify)(void *), void (*on_ready)(void *), void *cb_arg) RTW_WUR;

/* Connects; reconnects follow by themselves (lib/pgconn.c's backoff). */
void whk_db_start(struct whk_db *db);

/* Queues one statement; params are copied. fn may be NULL. */
int whk_db_query(struct whk_db *db, const char *sql, int nparams, const char *const *params, whk_db_result_fn fn,
		 void *arg) RTW_WUR;

static inline bool whk_db_ready(const struct whk_db *db)
{
	return rtw_pgconn_up(&db->pc);
}

/* Closes the connection; queued statements get fn(arg, NULL). */
void whk_db_close(struct whk_db *db);

#endif
