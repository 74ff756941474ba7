/*
 * daemon.c: the start-up preamble of rtw-fcgi, rtw-sse, rtw-webhookd and
 * rtwctl: one option parser (--config FILE, --help, --version), the
 * configuration file choice (--config, else RTW_CONFIG, else the default
 * file if it exists), cfg_load() with its environment overrides, log_init()
 * and the auth checks a daemon makes before serving. No sockets, threads or
 * connections: --help and --version never start anything.
 */
#include "config.h"
#include "daemon.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *rtw_default_config(void)
{
	return RTW_SYSCONFDIR "/rtw/rtw.ini";
}

static void daemon__help(const struct rtw_prog *p, FILE *out)
{
	fprintf(out, "usage: %s [--config FILE]%s\n%s\n\n", p->name, p->usage ? " COMMAND ..." : "", p->summary);
	if (p->usage)
		fprintf(out, "%s\n", p->usage);
	fprintf(out,
		"  -c, --config FILE   read options from FILE (default %s,\n"
		"                      or RTW_CONFIG); RTW_* variables override it\n"
		"  -h, --help          print this help and exit\n"
		"  -V, --version       print the version and exit\n"
		"\nOptions: doc/config.md and %s(5); manual: %s(%s).\n",
		rtw_default_config(), "rtw.ini", p->name, p->usage ? "1" : "8");
}

/* The file to read, or NULL for none. A file the user named must open
 * (cfg_load() says so if not); the default file may be absent. */
static const char *daemon__config_path(const char *opt)
{
	const char *env = getenv("RTW_CONFIG");

	if (opt)
		return opt;
	if (env && env[0])
		return env;
	if (access(rtw_default_config(), F_OK) != 0)
		return NULL;
	return rtw_default_config();
}

int rtw_start(const struct rtw_prog *p, int argc, char **argv, struct rtw_cfg *cfg, int *argi)
{
	const char *opt_config = NULL;
	char err[512];
	int i = 1;

	/* By hand rather than getopt: options end at the first other word
	 * (rtwctl's command), whose own getopt_long() loop must start from a
	 * fresh getopt state. */
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && i + 1 < argc) {
			opt_config = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			opt_config = a + 9;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			daemon__help(p, stdout);
			return 0;
		} else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
			printf("%s (%s) %s\n", p->name, PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		} else {
			fprintf(stderr, "%s: unknown option \"%s\" (or it lacks its value)\nTry '%s --help'.\n",
				p->name, a, p->name);
			return 2;
		}
	}
	if ((p->flags & RTW_START_COMMANDS) ? i >= argc : i < argc) {
		if (i < argc)
			fprintf(stderr, "%s: unexpected argument \"%s\"\n", p->name, argv[i]);
		daemon__help(p, stderr);
		return 2;
	}
	if (argi)
		*argi = i;

	if (cfg_load(cfg, daemon__config_path(opt_config), err, sizeof(err)) != RTW_OK) {
		fprintf(stderr, "%s: %s\n", p->name, err);
		cfg_free(cfg);
		return 1;
	}
	if (log_init(p->name, cfg->log_level, (p->flags & RTW_START_LOG_FILE) ? cfg->log_file : "") != RTW_OK) {
		fprintf(stderr, "%s: could not set up logging (level \"%s\", file \"%s\")\n", p->name, cfg->log_level,
			cfg->log_file);
		cfg_free(cfg);
		return 1;
	}
	if (log_set_format(cfg->log_format) != RTW_OK) {
		fprintf(stderr, "%s: log_format must be text or json, not \"%s\"\n", p->name, cfg->log_format);
		cfg_free(cfg);
		return 1;
	}
	if (strcmp(cfg->auth_mode, "open") == 0) {
		if (p->flags & RTW_START_WARN_OPEN)
			log_warn("auth.mode is open: identities are taken from requests as given; use for local "
				 "experiments only");
	} else if ((p->flags & RTW_START_NEED_SECRET) && cfg->auth_secret[0] == '\0') {
		log_error("auth.secret is empty; set it (RTW_AUTH_SECRET) or use auth.mode = open");
		cfg_free(cfg);
		return 1;
	}
	return -1;
}
