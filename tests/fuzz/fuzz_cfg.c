/*
 * fuzz_cfg.c: libFuzzer driver for lib/cfg.c's cfg_set (what the INI
 * handler and the RTW_* overrides call) and cfg_env_name. Sets arbitrary
 * name/value pairs on a defaults-loaded config and checks that an
 * accepted value reads back, a refused one leaves the option unchanged
 * with a message, and cfg_free releases everything (LeakSanitizer).
 * abort() on a violation. Built with -DRTW_LIBFUZZER it is a libFuzzer
 * target; without it, main() (replay.h) replays the files and
 * directories named on the command line.
 *
 * Input: lines "name=value" (a line without '=' is a name with an empty
 * value); a name "#N" stands for the N-th option of the table.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

#define FUZZ_NAME "fuzz_cfg"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_cfg: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static size_t n_options(void)
{
	size_t n = 0;
	while (cfg_options[n].name)
		n++;
	return n;
}

static const struct cfg_option *find(const char *name)
{
	for (const struct cfg_option *o = cfg_options; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static void set_one(struct rtw_cfg *cfg, const char *name, const char *value)
{
	const struct cfg_option *o;
	char err[256] = "", env[128];
	char *base = (char *)cfg;
	struct rtw_cfg before = *cfg;
	int rc;

	if (name[0] == '#')
		name = cfg_options[strtoul(name + 1, NULL, 10) % n_options()].name;
	o = find(name);
	rc = cfg_set(cfg, name, value, err, sizeof(err));
	if (o == NULL) {
		CHECK(rc == RTW_ERROR && err[0] != '\0');
		return;
	}
	cfg_env_name(name, env, sizeof(env));
	CHECK(strncmp(env, "RTW_", 4) == 0 && strchr(env, '.') == NULL && strlen(env) == strlen(name) + 4);
	switch (o->type) {
	case CFG_STR:
		CHECK(rc == RTW_OK);
		CHECK(strcmp(*(char **)(base + o->offset), value) == 0);
		break;
	case CFG_INT: {
		int v = *(int *)(base + o->offset);
		if (rc == RTW_OK) {
			CHECK(v >= 0 && strtol(value, NULL, 10) == v);
		} else {
			CHECK(err[0] != '\0' && v == *(int *)((char *)&before + o->offset));
		}
		break;
	}
	case CFG_BOOL:
		if (rc != RTW_OK)
			CHECK(err[0] != '\0' &&
			      memcmp(base + o->offset, (char *)&before + o->offset, sizeof(bool)) == 0);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtw_cfg cfg;
	char err[256], *s, *line, *next;

	/* the defaults (and any RTW_* overrides of the environment) */
	CHECK(cfg_load(&cfg, NULL, err, sizeof(err)) == RTW_OK);
	s = malloc(size + 1);
	CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	for (line = s; line != NULL; line = next) {
		char *eq;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		eq = strchr(line, '=');
		if (eq)
			*eq++ = '\0';
		set_one(&cfg, line, eq ? eq : "");
	}
	cfg_free(&cfg);
	free(s);
	return 0;
}

#include "replay.h"
