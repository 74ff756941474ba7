/*
 * row.h: the one mapping from a row of rtw_messages to a stored message
 * (struct msg_stored), for every reader that serializes stored messages:
 * rtw-fcgi's history, rtw-sse's tail and catch-up, rtwctl tail. Readers
 * select RTW_ROW_COLS (the columns in this order, as text), possibly after
 * columns of their own, and map with rtw_row_message().
 */
#ifndef RTW_ROW_H
#define RTW_ROW_H

#include "msg.h"
#include "rtw.h"

#include <libpq-fe.h>

/* The select list of a stored message from "rtw_messages m". */
#define RTW_ROW_COLS                                                                                                   \
	"m.id::text, m.stream_id, m.author_id, m.to_user_id, m.message::text, m.ts::text, m.type, "                    \
	"m.widget_key::text, rtw_rfc3339(m.created_at)"
#define RTW_ROW_NCOLS 9

/* Fills m from row of res, whose columns first .. first + RTW_ROW_NCOLS - 1
 * are RTW_ROW_COLS. Every string is borrowed from res (valid until
 * PQclear); to_user_id is NULL for a broadcast. */
void rtw_row_message(const PGresult *res, int row, int first, struct msg_stored *m);
/* The same from the RTW_ROW_NCOLS column texts in v (borrowed; NULL: SQL
 * NULL), e.g. a row rtw-sse's host relay passed on. */
void rtw_row_message_v(const char *const *v, struct msg_stored *m);

#endif
