/*
 * daemon.h: the start-up preamble every rtw program shares: command-line
 * options (--config, --help, --version), the configuration (the INI file,
 * then RTW_* overrides), logging and the auth checks of the daemons. One
 * call at the top of each main(); it never starts anything.
 */
#ifndef RTW_DAEMON_H
#define RTW_DAEMON_H

#include "cfg.h"

/* What rtw_start() checks and sets up for a program. */
enum {
	RTW_START_LOG_FILE = 1 << 0,	/* log to log_file (daemons); otherwise always stderr */
	RTW_START_WARN_OPEN = 1 << 1,	/* warn that auth.mode = open is for experiments */
	RTW_START_NEED_SECRET = 1 << 2, /* token mode needs auth.secret (rtw-fcgi, rtw-sse) */
	RTW_START_COMMANDS = 1 << 3,	/* options end at the first other word, a command (rtwctl) */
};

struct rtw_prog {
	const char *name;    /* "rtw-sse": in --help, --version and every log line */
	const char *summary; /* one line for --help */
	const char *usage;   /* the commands block of --help; NULL for a daemon */
	unsigned flags;	     /* RTW_START_* */
};

/* The configuration file read when neither --config nor RTW_CONFIG names
 * one: $(sysconfdir)/rtw/rtw.ini. A missing default file is no error. */
const char *rtw_default_config(void);

/* Parses the options of argv, then loads *cfg and sets up logging as
 * p->flags ask. Returns -1 when the program should go on: *cfg is loaded
 * (release it with cfg_free()) and *argi, if not NULL, is the index of the
 * first argument after the options. Otherwise returns the status to exit
 * with: 0 after --help or --version, 1 for a configuration error, 2 for bad
 * usage; the message is printed and *cfg holds nothing to free. */
int rtw_start(const struct rtw_prog *p, int argc, char **argv, struct rtw_cfg *cfg, int *argi) RTW_WUR;

#endif
