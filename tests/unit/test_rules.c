/*
 * test_rules.c: unit tests of the small shared policies of lib/: the CORS
 * origin rule (cors.c), anonymous ids (anonid.c) and the row to stored
 * message mapping (row.c, over a result built with libpq's own
 * PQmakeEmptyPGresult/PQsetvalue, no server needed).
 */
#include "config.h"
#include "anonid.h"
#include "cors.h"
#include "row.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_cors(void **state)
{
	json_t *list = json_pack("[s,s]", "https://a.example", "HTTPS://B.example");
	json_t *any = json_pack("[s]", "*");

	assert_true(rtw_cors_any("*"));
	assert_false(rtw_cors_any("https://a.example"));
	assert_false(rtw_cors_any(NULL));
	assert_true(rtw_cors_cfg_allows("https://x.example, https://a.example", "https://A.example"));
	assert_true(rtw_cors_cfg_allows("*", "https://anything"));
	assert_false(rtw_cors_cfg_allows("https://x.example", "https://a.example"));
	assert_false(rtw_cors_cfg_allows("", "https://a.example"));
	assert_false(rtw_cors_cfg_allows("*", NULL));
	assert_true(rtw_cors_list_allows(list, "https://b.example"));
	assert_false(rtw_cors_list_allows(list, "https://c.example"));
	assert_true(rtw_cors_list_allows(any, "https://c.example"));
	assert_false(rtw_cors_list_allows(NULL, "https://c.example"));
	assert_false(rtw_cors_list_allows(list, NULL));
	assert_true(rtw_cors_echoable("https://a.example"));
	assert_false(rtw_cors_echoable("https://a.example\r\nX-Evil: 1"));
	assert_false(rtw_cors_echoable(""));
	assert_false(rtw_cors_echoable(NULL));
	json_decref(list);
	json_decref(any);
}

static void test_anon_id(void **state)
{
	char a[RTW_ANON_ID_LEN + 1], b[RTW_ANON_ID_LEN + 1];

	assert_int_equal(rtw_anon_id(a), RTW_OK);
	assert_int_equal(rtw_anon_id(b), RTW_OK);
	assert_int_equal(strlen(a), RTW_ANON_ID_LEN);
	assert_true(strncmp(a, "anon-", 5) == 0);
	assert_int_equal(strspn(a + 5, "0123456789abcdef"), 16);
	assert_true(msg_valid_user_id(a));
	assert_string_not_equal(a, b);
}

static void test_row(void **state)
{
	/* an extra column first, as rtw-sse selects the xid before the row */
	static const char *const vals[2][1 + RTW_ROW_NCOLS] = {
	    {"77", "5", "s1", "alice", NULL, "{\"t\":1}", "1.5", "broadcast", "0b7e8f9a-0000-4000-8000-000000000001",
	     "2026-11-27T22:00:00.000001Z"},
	    {"78", "6", "s1", "bob", "alice", "{}", "2", "direct", "0b7e8f9a-0000-4000-8000-000000000001",
	     "2026-11-27T22:00:01.000000Z"},
	};
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[1 + RTW_ROW_NCOLS];
	struct msg_stored m;

	assert_non_null(res);
	memset(attrs, 0, sizeof(attrs));
	for (int c = 0; c < 1 + RTW_ROW_NCOLS; c++) {
		attrs[c].name = (char *)"c";
		attrs[c].typid = 25; /* text */
		attrs[c].typlen = -1;
		attrs[c].atttypmod = -1;
	}
	assert_int_equal(PQsetResultAttrs(res, 1 + RTW_ROW_NCOLS, attrs), 1);
	for (int r = 0; r < 2; r++)
		for (int c = 0; c < 1 + RTW_ROW_NCOLS; c++)
			assert_int_equal(
			    PQsetvalue(res, r, c, (char *)vals[r][c], vals[r][c] ? (int)strlen(vals[r][c]) : -1), 1);
	rtw_row_message(res, 0, 1, &m);
	assert_string_equal(m.id, "5");
	assert_string_equal(m.stream_id, "s1");
	assert_string_equal(m.author_id, "alice");
	assert_null(m.to_user_id);
	assert_string_equal(m.message_json, "{\"t\":1}");
	assert_string_equal(m.timestamp, "1.5");
	assert_string_equal(m.type, "broadcast");
	assert_string_equal(m.widget_key, "0b7e8f9a-0000-4000-8000-000000000001");
	assert_string_equal(m.created_at, "2026-11-27T22:00:00.000001Z");
	rtw_row_message(res, 1, 1, &m);
	assert_string_equal(m.id, "6");
	assert_string_equal(m.to_user_id, "alice");
	assert_string_equal(m.type, "direct");
	PQclear(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cors),
	    cmocka_unit_test(test_anon_id),
	    cmocka_unit_test(test_row),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
