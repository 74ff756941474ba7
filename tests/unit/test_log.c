/*
 * test_log.c: unit tests of lib/log.c's two formats (text, and one JSON
 * object per line with its fixed keys and fields), the bound on a line's
 * length whatever the message and fields, and lib/reqid.c's request ids.
 */
#include "config.h"
#include "log.h"
#include "reqid.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char path[] = "/tmp/rtw-test-log-XXXXXX";

/* The file's lines, from offset *off on; advances *off. */
static char *read_new(long *off)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long end = ftell(f);
	char *buf = calloc(1, (size_t)(end - *off) + 1);
	fseek(f, *off, SEEK_SET);
	assert_int_equal(fread(buf, 1, (size_t)(end - *off), f), (size_t)(end - *off));
	fclose(f);
	*off = end;
	return buf;
}

static void test_json_lines(void **state)
{
	long off = 0;
	json_error_t jerr;

	assert_int_equal(log_init("rtw-test", "info", path), RTW_OK);
	assert_int_equal(log_set_format("json"), RTW_OK);
	log_info("plain %d", 42);
	json_t *f = json_pack("{s:s, s:i, s:n}", "stream", "s1", "status", 201, "error");
	log_event(LOG_LVL_WARN, "request", f);
	json_decref(f);
	log_debug("below the level");

	char *text = read_new(&off);
	char *nl = strchr(text, '\n');
	assert_non_null(nl);
	*nl = '\0';
	json_t *a = json_loads(text, 0, &jerr);
	json_t *b = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &jerr);
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(json_string_value(json_object_get(a, "msg")), "plain 42");
	assert_string_equal(json_string_value(json_object_get(a, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(a, "daemon")), "rtw-test");
	assert_int_equal(json_integer_value(json_object_get(a, "pid")), getpid());
	const char *ts = json_string_value(json_object_get(a, "ts"));
	assert_non_null(ts);
	assert_int_equal(strlen(ts), 24); /* 2026-01-02T03:04:05.678Z */
	assert_int_equal(ts[10], 'T');
	assert_int_equal(ts[19], '.');
	assert_int_equal(ts[23], 'Z');
	assert_string_equal(json_string_value(json_object_get(b, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(b, "stream")), "s1");
	assert_int_equal(json_integer_value(json_object_get(b, "status")), 201);
	assert_true(json_is_null(json_object_get(b, "error")));
	assert_null(strstr(nl + 1, "below the level"));
	json_decref(a);
	json_decref(b);
	free(text);
}

static void test_text_lines(void **state)
{
	long off = 0;

	assert_int_equal(log_init("rtw-test", "info", path), RTW_OK);
	free(read_new(&off));
	assert_int_equal(log_set_format("text"), RTW_OK);
	json_t *f = json_pack("{s:s, s:s, s:i, s:n}", "route", "/v1/x", "odd", "a b", "status", 404, "error");
	log_event(LOG_LVL_INFO, "request", f);
	json_decref(f);
	char *text = read_new(&off);
	assert_non_null(strstr(text, " rtw-test["));
	assert_non_null(strstr(text, "] INFO: request route=/v1/x odd=\"a b\" status=404\n"));
	free(text);
	assert_int_equal(log_set_format("yaml"), RTW_ERROR);
}

/* Neither a huge message nor many huge fields of bytes that JSON escapes
 * six-fold make a line longer than LOG_LINE_MAX; it stays one valid line. */
static void test_bounded(void **state)
{
	static char big[100000];
	long off = 0;
	json_error_t jerr;

	assert_int_equal(log_init("rtw-test", "info", path), RTW_OK);
	free(read_new(&off));
	for (int fmt = 0; fmt < 2; fmt++) {
		assert_int_equal(log_set_format(fmt ? "json" : "text"), RTW_OK);
		memset(big, 'x', sizeof(big) - 1);
		log_info("%s", big);
		memset(big, 1, sizeof(big) - 1); /* \u0001 when escaped */
		json_t *f = json_object();
		for (int i = 0; i < 40; i++) {
			char key[16];
			snprintf(key, sizeof(key), "k%d", i);
			json_object_set_new(f, key, json_string(big));
		}
		log_event(LOG_LVL_INFO, big, f);
		json_decref(f);
		char *text = read_new(&off);
		int lines = 0;
		for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
			assert_true(nl - line + 1 <= LOG_LINE_MAX);
			if (fmt) {
				*nl = '\0';
				json_t *j = json_loads(line, 0, &jerr);
				assert_non_null(j);
				assert_non_null(json_object_get(j, "msg"));
				json_decref(j);
			}
		}
		assert_int_equal(lines, 2);
		free(text);
	}
}

static void test_reqid(void **state)
{
	char a[RTW_REQID_MAX], b[RTW_REQID_MAX], long_id[RTW_REQID_MAX + 1];

	rtw_reqid_new(a);
	rtw_reqid_new(b);
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
	assert_true(rtw_reqid_valid(a));
	assert_true(rtw_reqid_valid("Zx7@q-AAAAs")); /* mod_unique_id */
	assert_false(rtw_reqid_valid(""));
	assert_false(rtw_reqid_valid(NULL));
	assert_false(rtw_reqid_valid("a b"));
	assert_false(rtw_reqid_valid("a\"b"));
	assert_false(rtw_reqid_valid("a\r\nSet-Cookie: x"));
	memset(long_id, 'a', RTW_REQID_MAX);
	long_id[RTW_REQID_MAX] = '\0';
	assert_false(rtw_reqid_valid(long_id));
	long_id[RTW_REQID_MAX - 1] = '\0';
	assert_true(rtw_reqid_valid(long_id));
	rtw_reqid_pick("front-1", true, a);
	assert_string_equal(a, "front-1");
	rtw_reqid_pick("front-1", false, a);
	assert_string_not_equal(a, "front-1");
	rtw_reqid_pick("bad id", true, a);
	assert_int_equal(strlen(a), 32);
}

int main(void)
{
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_lines),
	    cmocka_unit_test(test_text_lines),
	    cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_reqid),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(path);
	return rc;
}
