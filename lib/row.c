/*
 * row.c: owns reading a stored message out of a libpq result row selected
 * with RTW_ROW_COLS. No queries, no copies: it only points into the result.
 */
#include "config.h"
#include "row.h"

void rtw_row_message(const PGresult *res, int row, int first, struct msg_stored *m)
{
	m->id = PQgetvalue(res, row, first + 0);
	m->stream_id = PQgetvalue(res, row, first + 1);
	m->author_id = PQgetvalue(res, row, first + 2);
	m->to_user_id = PQgetisnull(res, row, first + 3) ? NULL : PQgetvalue(res, row, first + 3);
	m->message_json = PQgetvalue(res, row, first + 4);
	m->timestamp = PQgetvalue(res, row, first + 5);
	m->type = PQgetvalue(res, row, first + 6);
	m->widget_key = PQgetvalue(res, row, first + 7);
	m->created_at = PQgetvalue(res, row, first + 8);
}
