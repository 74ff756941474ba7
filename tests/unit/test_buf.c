/*
 * test_buf.c: unit tests of lib/buf.c, the bounded byte buffer rtw-fcgi
 * and rtw-webhookd collect bytes in: the maximum is exact (RTW_DECLINED
 * past it, nothing added), memory never grows past it, the text stays
 * NUL-terminated, an unbounded buffer (SIZE_MAX) grows, and shrinking
 * frees only a buffer that grew (cmocka). Pure.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"

static void test_maximum_is_exact(void **state)
{
	struct rtw_buf b = {.max = 5000};
	char chunk[1000];
	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 5; i++)
		assert_int_equal(rtw_buf_add(&b, chunk, sizeof(chunk)), RTW_OK);
	assert_int_equal(b.len, 5000);
	assert_int_equal(rtw_buf_add(&b, "y", 1), RTW_DECLINED);
	assert_int_equal(b.len, 5000);
	assert_int_equal(b.p[b.len], '\0');
	assert_true(b.cap <= b.max + 1); /* no doubling past what may be held */
	assert_int_equal(rtw_buf_add(&b, "", 0), RTW_OK);
	rtw_buf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.max, 5000);
}

static void test_one_add_over_the_maximum_adds_nothing(void **state)
{
	struct rtw_buf b = {.max = 10};
	(void)state;
	assert_int_equal(rtw_buf_str(&b, "abc"), RTW_OK);
	assert_int_equal(rtw_buf_str(&b, "defghijk"), RTW_DECLINED);
	assert_string_equal(b.p, "abc");
	assert_int_equal(rtw_buf_printf(&b, "%d%s", 12, "3456"), RTW_OK);
	assert_string_equal(b.p, "abc123456");
	rtw_buf_free(&b);
}

static void test_unbounded_grows(void **state)
{
	struct rtw_buf b = {.max = SIZE_MAX};
	char chunk[4096];
	(void)state;
	memset(chunk, 'z', sizeof(chunk));
	for (int i = 0; i < 64; i++)
		assert_int_equal(rtw_buf_add(&b, chunk, sizeof(chunk)), RTW_OK);
	assert_int_equal(b.len, 64 * sizeof(chunk));
	assert_true(b.cap > b.len);
	assert_int_equal(rtw_buf_json_str(&b, "q\"\n"), RTW_OK);
	assert_memory_equal(b.p + 64 * sizeof(chunk), "\"q\\\"\\n\"", 7);
	rtw_buf_free(&b);
}

static void test_shrink_frees_only_a_grown_buffer(void **state)
{
	struct rtw_buf b = {.max = SIZE_MAX};
	char big[8192] = {0};
	(void)state;
	assert_int_equal(rtw_buf_str(&b, "small"), RTW_OK);
	rtw_buf_shrink(&b, 4096);
	assert_non_null(b.p); /* kept for the next answer */
	assert_int_equal(b.len, 0);
	assert_int_equal(rtw_buf_add(&b, big, sizeof(big)), RTW_OK);
	rtw_buf_shrink(&b, 4096);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_maximum_is_exact),
	    cmocka_unit_test(test_one_add_over_the_maximum_adds_nothing),
	    cmocka_unit_test(test_unbounded_grows),
	    cmocka_unit_test(test_shrink_frees_only_a_grown_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
