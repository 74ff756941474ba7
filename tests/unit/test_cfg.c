/*
 * test_cfg.c: unit tests of the configuration table, its ranges and its
 * loader, and the check that doc/config.md documents every option with
 * its default and range (PgBouncer's rule).
 */
#include "config.h"
#include "cfg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_defaults(void **state)
{
	struct rtw_cfg cfg;
	char err[256];
	unsetenv("RTW_SSE_LISTEN");
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_OK);
	assert_string_equal(cfg.sse_listen, "127.0.0.1:8081");
	assert_int_equal(cfg.http_max_body, 65536);
	assert_string_equal(cfg.auth_mode, "token");
	cfg_free(&cfg);
}

static void test_env_override(void **state)
{
	struct rtw_cfg cfg;
	char err[256];
	setenv("RTW_SSE_HEARTBEAT_S", "3", 1);
	setenv("RTW_PGDSN", "dbname=x", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_OK);
	assert_int_equal(cfg.sse_heartbeat_s, 3);
	assert_string_equal(cfg.pgdsn, "dbname=x");
	cfg_free(&cfg);
	setenv("RTW_SSE_HEARTBEAT_S", "-1", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_ERROR);
	assert_non_null(strstr(err, "sse.heartbeat_s"));
	cfg_free(&cfg);
	unsetenv("RTW_SSE_HEARTBEAT_S");
	unsetenv("RTW_PGDSN");
}

static void test_ini_file(void **state)
{
	char path[] = "/tmp/rtw-cfg-XXXXXX";
	int fd = mkstemp(path);
	const char ini[] = "pgdsn = dbname=fromfile\n[sse]\nmax_connections = 77\n[auth]\nmode = open\n";
	struct rtw_cfg cfg;
	char err[256];

	assert_true(fd >= 0);
	assert_int_equal(write(fd, ini, sizeof(ini) - 1), (int)sizeof(ini) - 1);
	close(fd);
	assert_int_equal(cfg_load(&cfg, path, err, sizeof(err)), RTW_OK);
	assert_string_equal(cfg.pgdsn, "dbname=fromfile");
	assert_int_equal(cfg.sse_max_connections, 77);
	assert_string_equal(cfg.auth_mode, "open");
	cfg_free(&cfg);

	/* an unknown option is an error, not silently ignored */
	const char bad[] = "[sse]\nmax_conections = 5\n";
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, bad, sizeof(bad) - 1), (int)sizeof(bad) - 1);
	close(fd);
	assert_int_equal(cfg_load(&cfg, path, err, sizeof(err)), RTW_ERROR);
	assert_non_null(strstr(err, "sse.max_conections"));
	cfg_free(&cfg);
	unlink(path);
}

static void test_bad_values(void **state)
{
	struct rtw_cfg cfg;
	char err[256];
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_OK);
	assert_int_equal(cfg_set(&cfg, "http.max_body", "12k", err, sizeof(err)), RTW_ERROR);
	assert_int_equal(cfg_set(&cfg, "no.such", "1", err, sizeof(err)), RTW_ERROR);
	assert_int_equal(cfg_set(&cfg, "http.max_body", "1024", err, sizeof(err)), RTW_OK);
	assert_int_equal(cfg.http_max_body, 1024);
	cfg_free(&cfg);
	setenv("RTW_AUTH_MODE", "maybe", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_ERROR);
	cfg_free(&cfg);
	unsetenv("RTW_AUTH_MODE");
	/* anonymous viewers' tokens would fail the cap on every POST */
	setenv("RTW_AUTH_ANON_TTL_S", "7200", 1);
	setenv("RTW_AUTH_MAX_TOKEN_TTL_S", "3600", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_ERROR);
	assert_non_null(strstr(err, "auth.max_token_ttl_s"));
	cfg_free(&cfg);
	setenv("RTW_AUTH_MAX_TOKEN_TTL_S", "0", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_OK);
	cfg_free(&cfg);
	unsetenv("RTW_AUTH_ANON_TTL_S");
	unsetenv("RTW_AUTH_MAX_TOKEN_TTL_S");
}

/* Every integer option has a range that holds its default, and a value
 * outside it stops the load with a message naming the option and range. */
static void test_ranges(void **state)
{
	struct rtw_cfg cfg;
	char err[256], v[32];
	int ints = 0;

	for (const struct cfg_option *o = cfg_options; o->name; o++) {
		if (o->type != CFG_INT)
			continue;
		ints++;
		assert_true(o->min <= o->max);
		assert_true(atol(o->def) >= o->min && atol(o->def) <= o->max);
		assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_OK);
		snprintf(v, sizeof(v), "%ld", o->max);
		assert_int_equal(cfg_set(&cfg, o->name, v, err, sizeof(err)), RTW_OK);
		snprintf(v, sizeof(v), "%ld", o->min);
		assert_int_equal(cfg_set(&cfg, o->name, v, err, sizeof(err)), RTW_OK);
		snprintf(v, sizeof(v), "%ld", o->max + 1);
		assert_int_equal(cfg_set(&cfg, o->name, v, err, sizeof(err)), RTW_ERROR);
		assert_non_null(strstr(err, o->name));
		assert_non_null(strstr(err, "out of range"));
		if (o->min > 0) {
			snprintf(v, sizeof(v), "%ld", o->min - 1);
			assert_int_equal(cfg_set(&cfg, o->name, v, err, sizeof(err)), RTW_ERROR);
		}
		cfg_free(&cfg);
	}
	assert_true(ints > 20);

	/* checked at load, from the environment as from a file */
	setenv("RTW_FCGI_WORKERS", "0", 1);
	assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), RTW_ERROR);
	assert_string_equal(err, "invalid value for \"fcgi.workers\": 0 is out of range (1 to 1024)");
	cfg_free(&cfg);
	unsetenv("RTW_FCGI_WORKERS");
}

static void test_env_names(void **state)
{
	char out[64];
	cfg_env_name("auth.secret", out, sizeof(out));
	assert_string_equal(out, "RTW_AUTH_SECRET");
	cfg_env_name("webhook.secret", out, sizeof(out));
	assert_string_equal(out, "RTW_WEBHOOK_SECRET");
	cfg_env_name("pgdsn", out, sizeof(out));
	assert_string_equal(out, "RTW_PGDSN");
}

/* Every option in the table has a row in doc/config.md, with its default. */
static void test_every_option_documented(void **state)
{
	char path[1024];
	const char *src = getenv("RTW_SRCDIR");
	snprintf(path, sizeof(path), "%s/doc/config.md", src ? src : ".");
	char *doc = slurp(path);
	int missing = 0;

	assert_non_null(doc);
	for (const struct cfg_option *o = cfg_options; o->name; o++) {
		char row[256], env[128];
		snprintf(row, sizeof(row), "| `%s` |", o->name);
		cfg_env_name(o->name, env, sizeof(env));
		char *at = strstr(doc, row);
		if (!at) {
			fprintf(stderr, "doc/config.md has no row for option %s\n", o->name);
			missing++;
			continue;
		}
		char *eol = strchr(at, '\n');
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", eol ? (int)(eol - at) : (int)strlen(at), at);
		char def[256];
		snprintf(def, sizeof(def), "`%s`", o->def);
		if (o->def[0] && !strstr(line, def)) {
			fprintf(stderr, "doc/config.md row of %s does not give its default %s\n", o->name, def);
			missing++;
		}
		if (o->type == CFG_INT) {
			char range[96];
			snprintf(range, sizeof(range), "| integer (%ld to %ld) |", o->min, o->max);
			if (!strstr(line, range)) {
				fprintf(stderr, "doc/config.md row of %s does not give its range %s\n", o->name, range);
				missing++;
			}
		}
		if (!strstr(line, env)) {
			fprintf(stderr, "doc/config.md row of %s does not name %s\n", o->name, env);
			missing++;
		}
	}
	free(doc);
	assert_int_equal(missing, 0);
}

/* conf/rtw.ini.sample holds every option at its default: uncommented
 * (";name = v" -> "name = v") it loads, and gives the built-in defaults. */
static void test_sample_file_complete(void **state)
{
	char path[1024], tmp[] = "/tmp/rtw-sample-XXXXXX";
	const char *src = getenv("RTW_SRCDIR");
	snprintf(path, sizeof(path), "%s/conf/rtw.ini.sample", src ? src : ".");
	char *text = slurp(path);
	assert_non_null(text);
	int fd = mkstemp(tmp);
	assert_true(fd >= 0);
	FILE *out = fdopen(fd, "w");
	int options = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == ';' && line[1] >= 'a' && line[1] <= 'z') {
			line++;
			options++;
		}
		fprintf(out, "%s\n", line);
	}
	fclose(out);
	free(text);

	int want = 0;
	for (const struct cfg_option *o = cfg_options; o->name; o++)
		want++;
	assert_int_equal(options, want);

	struct rtw_cfg from_file, defaults;
	char err[256];
	assert_int_equal(cfg_load(&from_file, tmp, err, sizeof(err)), RTW_OK);
	assert_int_equal(cfg_load(&defaults, NULL, err, sizeof(err)), RTW_OK);
	for (const struct cfg_option *o = cfg_options; o->name; o++) {
		const char *a = (const char *)&from_file + o->offset, *b = (const char *)&defaults + o->offset;
		if (o->type == CFG_STR) {
			if (strcmp(*(char *const *)a, *(char *const *)b) != 0)
				fail_msg("sample value of %s differs from its default", o->name);
		} else if (o->type == CFG_INT) {
			if (*(const int *)a != *(const int *)b)
				fail_msg("sample value of %s differs from its default", o->name);
		} else if (*(const bool *)a != *(const bool *)b) {
			fail_msg("sample value of %s differs from its default", o->name);
		}
	}
	cfg_free(&from_file);
	cfg_free(&defaults);
	unlink(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_env_override),
	    cmocka_unit_test(test_ini_file),
	    cmocka_unit_test(test_bad_values),
	    cmocka_unit_test(test_ranges),
	    cmocka_unit_test(test_env_names),
	    cmocka_unit_test(test_every_option_documented),
	    cmocka_unit_test(test_sample_file_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
