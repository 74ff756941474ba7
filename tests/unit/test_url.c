/*
 * test_url.c: unit tests of lib/url.c, the one URL decoder and query
 * splitter: table of decodings, malformed escapes, limits, pairs.
 */
#include "config.h"
#include "url.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_decode(void **state)
{
	static const struct {
		const char *in;
		unsigned flags;
		int rc;
		const char *out;
	} cases[] = {
	    {"plain", 0, RTW_OK, "plain"},
	    {"a%20b", 0, RTW_OK, "a b"},
	    {"%41%6a%6A", 0, RTW_OK, "Ajj"},
	    {"a+b", 0, RTW_OK, "a+b"},
	    {"a+b", RTW_URL_PLUS, RTW_OK, "a b"},
	    {"%2B", RTW_URL_PLUS, RTW_OK, "+"},
	    {"%e2%82%ac", 0, RTW_OK, "\xe2\x82\xac"},
	    {"", 0, RTW_OK, ""},
	    /* malformed escapes are refused, never passed through */
	    {"%", 0, RTW_ERROR, NULL},
	    {"a%4", 0, RTW_ERROR, NULL},
	    {"%zz", 0, RTW_ERROR, NULL},
	    {"%4g", 0, RTW_ERROR, NULL},
	    {"100%", RTW_URL_PLUS, RTW_ERROR, NULL},
	    {"%%41", 0, RTW_ERROR, NULL},
	    /* no NUL byte in a decoded value */
	    {"a%00b", 0, RTW_ERROR, NULL},
	};
	char out[64];

	for (size_t i = 0; i < RTW_ARRAY_LEN(cases); i++) {
		int rc = rtw_url_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out), cases[i].flags);
		assert_int_equal(rc, cases[i].rc);
		if (cases[i].out)
			assert_string_equal(out, cases[i].out);
	}
}

static void test_decode_limits(void **state)
{
	char buf[16] = "a%41b%43";
	char small[4];

	/* in place */
	assert_int_equal(rtw_url_decode(buf, strlen(buf), buf, sizeof(buf), 0), RTW_OK);
	assert_string_equal(buf, "aAbC");
	/* only n bytes are read: the escape past them is malformed */
	assert_int_equal(rtw_url_decode("ab%41", 4, small, sizeof(small), 0), RTW_ERROR);
	assert_int_equal(rtw_url_decode("abc", 3, small, sizeof(small), 0), RTW_OK);
	assert_int_equal(rtw_url_decode("abcd", 4, small, sizeof(small), 0), RTW_DECLINED);
	assert_string_equal(small, "abc");
	assert_int_equal(rtw_url_decode("a", 1, small, 0, 0), RTW_DECLINED);
}

static void test_query(void **state)
{
	const char *q = "a=1&flag&&b=x%20y=z&=v";
	struct rtw_query_pair p;

	assert_true(rtw_query_next(&q, &p));
	assert_true(p.has_eq && p.name_len == 1 && strncmp(p.name, "a", 1) == 0);
	assert_true(p.value_len == 1 && p.value[0] == '1');
	assert_true(rtw_query_next(&q, &p));
	assert_false(p.has_eq);
	assert_true(p.name_len == 4 && p.value_len == 0);
	assert_true(rtw_query_next(&q, &p));
	assert_true(p.name_len == 0 && !p.has_eq);
	assert_true(rtw_query_next(&q, &p));
	assert_true(p.name_len == 1 && p.name[0] == 'b');
	assert_true(p.value_len == 7 && strncmp(p.value, "x%20y=z", 7) == 0);
	assert_true(rtw_query_next(&q, &p));
	assert_true(p.has_eq && p.name_len == 0 && p.value_len == 1);
	assert_false(rtw_query_next(&q, &p));
	q = NULL;
	assert_false(rtw_query_next(&q, &p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode),
	    cmocka_unit_test(test_decode_limits),
	    cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
