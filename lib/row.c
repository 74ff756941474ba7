/*
 * row.c: owns reading a stored message out of a libpq result row selected
 * with RTW_ROW_COLS, or out of the same column texts passed on by
 * rtw-sse's host relay. No queries, no copies: it only points into them.
 */
#include "config.h"
#include "row.h"

/* A NULL reads as "" (what PQgetvalue gives), but to_user_id stays NULL:
 * a broadcast. */
#define ROW__S(s) ((s) ? (s) : "")

void rtw_row_message_v(const char *const *v, struct msg_stored *m)
{
	m->id = ROW__S(v[0]);
	m->stream_id = ROW__S(v[1]);
	m->author_id = ROW__S(v[2]);
	m->to_user_id = v[3];
	m->message_json = ROW__S(v[4]);
	m->timestamp = ROW__S(v[5]);
	m->type = ROW__S(v[6]);
	m->widget_key = ROW__S(v[7]);
	m->created_at = ROW__S(v[8]);
}

void rtw_row_message(const PGresult *res, int row, int first, struct msg_stored *m)
{
	const char *v[RTW_ROW_NCOLS];

	for (int i = 0; i < RTW_ROW_NCOLS; i++)
		v[i] = PQgetisnull(res, row, first + i) ? NULL : PQgetvalue(res, row, first + i);
	rtw_row_message_v(v, m);
}
