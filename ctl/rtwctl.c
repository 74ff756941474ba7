/*
 * rtwctl.c: the admin command line: schema migrations, the widget
 * registry, token minting, publishing (rtw_publish), bans and a look at
 * what is stored. Blocking libpq;
 * every statement parameterized. With `cells` set, a database command runs
 * once per cell (ctl__cells), and stats adds the cells' counts up. Prints results on stdout, errors on
 * stderr, exits 0 on success, 1 on failure, 2 on bad usage.
 */
#include "config.h"
#include "cfg.h"
#include "daemon.h"
#include "msg.h"
#include "pgutil.h"
#include "row.h"
#include "token.h"

#include <getopt.h>
#include <inttypes.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CTL_COMMANDS                                                                                                   \
	"  migrate [--sql-dir DIR]          apply pending schema migrations\n"                                         \
	"  widget add NAME [--key UUID] [--origins O,O] [--webhook-hosts H,H]\n"                                       \
	"                                   register a widget, print its key\n"                                        \
	"  widget list                      list registered widgets\n"                                                 \
	"  widget enable KEY | disable KEY  switch a widget on or off\n"                                               \
	"  widget set KEY [--name N] [--origins O,O] [--webhook-hosts H,H]\n"                                          \
	"  token --user ID [--ttl S] [--stream S] [--admin] [--service]\n"                                             \
	"                                   mint an HS256 token (auth.secret); --service:\n"                           \
	"                                   backend publishing (POST /v1/messages)\n"                                  \
	"  publish --stream S --widget K [--type T] [--author A] [--to U] [--timestamp T] JSON\n"                      \
	"                                   publish one message (rtw_publish); without\n"                              \
	"                                   --stream, a message or an array from stdin\n"                              \
	"  user ban ID [--stream S] [--for DURATION]\n"                                                                \
	"                                   ban a user from a stream (default: every\n"                                \
	"                                   stream) for DURATION (90s, 15m, 2h, 7d;\n"                                 \
	"                                   default: until unbanned)\n"                                                \
	"  user unban ID [--stream S]       lift that ban\n"                                                           \
	"  user bans                        list the bans in force\n"                                                  \
	"  stats                            counts of messages and webhook jobs\n"                                     \
	"  tail [--stream S] [--all] [--last N] [--no-follow]\n"                                                       \
	"                                   print stored messages as JSON lines in stream\n"                           \
	"                                   order, then follow new ones (--all: also\n"                                \
	"                                   privates and webhook results)\n"
static const char usage[] = "usage: rtwctl [--config FILE] COMMAND ...\n\n" CTL_COMMANDS;

struct ctl {
	struct rtw_cfg cfg;
	PGconn *conn;
	/* over cells: the key the first cell's "widget add" drew, so every
	 * cell registers the widget under one key */
	char cell_key[MSG_UUID_LEN + 1];
	/* over cells: "stats" adds each cell's counts here, printed summed
	 * after the last cell (the few names stats can print; a name beyond
	 * the table is left out of the sum, and the sum says so) */
	struct ctl_count {
		char what[64];
		long long n;
	} sum[32];
	int nsum;
	bool sum_partial;
};

static int ctl__fail(const char *what, const char *detail)
{
	fprintf(stderr, "rtwctl: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	return 1;
}

static int ctl__connect(struct ctl *c)
{
	char err[512];
	if (!(c->conn = pgu_connect(c->cfg.pgdsn, "rtwctl", err, sizeof(err))))
		return ctl__fail(err, NULL);
	return 0;
}

/* Runs one parameterized statement and prints its rows tab-separated. */
static int ctl__query(struct ctl *c, const char *sql, int n, const char *const *params, bool header)
{
	PGresult *res = PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		rc = ctl__fail(PQresultErrorMessage(res), NULL);
	} else if (st == PGRES_TUPLES_OK) {
		int cols = PQnfields(res);
		for (int f = 0; header && f < cols; f++)
			printf("%s%s", PQfname(res, f), f + 1 < cols ? "\t" : "\n");
		for (int r = 0; r < PQntuples(res); r++)
			for (int f = 0; f < cols; f++)
				printf("%s%s", PQgetvalue(res, r, f), f + 1 < cols ? "\t" : "\n");
		if (!header && PQntuples(res) == 0)
			rc = ctl__fail("no such widget", NULL);
	} else if (strcmp(PQcmdTuples(res), "0") == 0) {
		rc = ctl__fail("no such widget", NULL);
	}
	PQclear(res);
	return rc;
}

static int cmd_migrate(struct ctl *c, int argc, char **argv)
{
	const char *dir = getenv("RTW_SQL_DIR") ? getenv("RTW_SQL_DIR") : RTW_SQL_DIR;
	char err[1024];
	int applied;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sql-dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else
			return fprintf(stderr, "%s", usage), 2;
	}
	if (ctl__connect(c))
		return 1;
	if (pgu_migrate(c->conn, dir, &applied, err, sizeof(err)) != RTW_OK)
		return ctl__fail("migration failed", err);
	printf("%d migration(s) applied\n", applied);
	return 0;
}

/* "a,b" -> "{a,b}" with each element double-quoted for an array literal;
 * elements may not hold quotes, braces or backslashes. */
static char *ctl__array_literal(const char *list)
{
	size_t n = strlen(list);
	char *out = malloc(3 * n + 3), *o = out;
	if (!out)
		return NULL;
	if (strpbrk(list, "\"{}\\")) {
		free(out);
		return NULL;
	}
	*o++ = '{';
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len) {
			if (o[-1] != '{')
				*o++ = ',';
			*o++ = '"';
			memcpy(o, p, len);
			o += len;
			*o++ = '"';
		}
		p += len + (p[len] == ',');
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

static int cmd_widget(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
					     {"name", required_argument, NULL, 'n'},
					     {"origins", required_argument, NULL, 'o'},
					     {"webhook-hosts", required_argument, NULL, 'w'},
					     {NULL, 0, NULL, 0}};
	const char *key = NULL, *name = NULL, *origins = NULL, *hosts = NULL;
	char keybuf[MSG_UUID_LEN + 1];
	char *origins_lit = NULL, *hosts_lit = NULL;
	int opt, rc = 2;

	if (argc < 2)
		goto usage;
	const char *sub = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': key = optarg; break;
		case 'n': name = optarg; break;
		case 'o': origins = optarg; break;
		case 'w': hosts = optarg; break;
		default: goto usage;
		}
	}
	if ((origins && !(origins_lit = ctl__array_literal(origins))) ||
	    (hosts && !(hosts_lit = ctl__array_literal(hosts)))) {
		rc = ctl__fail("invalid list", "origins and hosts may not contain quotes, braces or backslashes");
		goto out;
	}
	if (strcmp(sub, "list") == 0) {
		if (optind != argc)
			goto usage;
		if ((rc = ctl__connect(c)) == 0)
			rc = ctl__query(c,
					"SELECT widget_key, name, enabled, allowed_origins, webhook_hosts "
					"FROM rtw_widgets ORDER BY created_at, name",
					0, NULL, true);
		goto out;
	}
	if (strcmp(sub, "add") == 0) {
		if (optind + 1 != argc)
			goto usage;
		name = argv[optind];
		if (!key && c->cell_key[0])
			key = c->cell_key;
		if (!key) {
			unsigned char r[16];
			if (rtw_random(r, sizeof(r)) != RTW_OK) {
				rc = ctl__fail("could not generate a widget key", NULL);
				goto out;
			}
			r[6] = (r[6] & 0x0f) | 0x40; /* version 4 */
			r[8] = (r[8] & 0x3f) | 0x80; /* RFC 4122 variant */
			snprintf(keybuf, sizeof(keybuf),
				 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
				 r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
				 r[15]);
		} else if (!msg_valid_uuid(key, keybuf)) {
			rc = ctl__fail("invalid widget key", "expected a UUID");
			goto out;
		}
		snprintf(c->cell_key, sizeof(c->cell_key), "%s", keybuf);
		const char *params[] = {keybuf, name, origins_lit ? origins_lit : "{}", hosts_lit ? hosts_lit : "{}"};
		if ((rc = ctl__connect(c)) == 0)
			rc = ctl__query(
			    c,
			    "INSERT INTO rtw_widgets (widget_key, name, allowed_origins, webhook_hosts) "
			    "VALUES ($1, $2, $3, $4) ON CONFLICT (widget_key) DO UPDATE SET name = EXCLUDED.name, "
			    "updated_at = now() RETURNING widget_key",
			    4, params, false);
		goto out;
	}
	if (optind + 1 != argc)
		goto usage;
	if (!msg_valid_uuid(argv[optind], keybuf)) {
		rc = ctl__fail("invalid widget key", "expected a UUID");
		goto out;
	}
	if (strcmp(sub, "enable") == 0 || strcmp(sub, "disable") == 0) {
		const char *params[] = {keybuf, sub[0] == 'e' ? "true" : "false"};
		if ((rc = ctl__connect(c)) == 0)
			rc = ctl__query(c,
					"UPDATE rtw_widgets SET enabled = $2, updated_at = now() WHERE widget_key = $1",
					2, params, false);
	} else if (strcmp(sub, "set") == 0) {
		const char *params[] = {keybuf, name, origins_lit, hosts_lit};
		if ((rc = ctl__connect(c)) == 0)
			rc = ctl__query(c,
					"UPDATE rtw_widgets SET name = coalesce($2, name), "
					"allowed_origins = coalesce($3::text[], allowed_origins), "
					"webhook_hosts = coalesce($4::text[], webhook_hosts), updated_at = now() "
					"WHERE widget_key = $1",
					4, params, false);
	} else {
		goto usage;
	}
	goto out;
usage:
	fprintf(stderr, "%s", usage);
	rc = 2;
out:
	free(origins_lit);
	free(hosts_lit);
	return rc;
}

static int cmd_token(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"user", required_argument, NULL, 'u'},   {"ttl", required_argument, NULL, 't'},
	    {"stream", required_argument, NULL, 's'}, {"admin", no_argument, NULL, 'a'},
	    {"service", no_argument, NULL, 'S'},      {NULL, 0, NULL, 0}};
	const char *user = NULL, *stream = NULL;
	long ttl = 3600;
	bool admin = false, service = false;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': user = optarg; break;
		case 't': {
			/* a token always expires (contract 1.1): a whole number of
			 * seconds, at least 1, at most ten years */
			char *end;
			ttl = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || ttl < 1 || ttl > 10L * 366 * 86400)
				return ctl__fail("invalid --ttl",
						 "give the token's lifetime in seconds (1 to 316224000)");
			break;
		}
		case 's': stream = optarg; break;
		case 'a': admin = true; break;
		case 'S': service = true; break;
		default: return fprintf(stderr, "%s", usage), 2;
		}
	}
	if (!user || optind != argc)
		return fprintf(stderr, "%s", usage), 2;
	if (!msg_valid_user_id(user))
		return ctl__fail("invalid user id", NULL);
	if (stream && !msg_valid_stream_id(stream))
		return ctl__fail("invalid stream id", NULL);
	if (!c->cfg.auth_secret[0])
		return ctl__fail("auth.secret is not set", "set RTW_AUTH_SECRET or auth.secret in the config file");
	/* a token the daemons would refuse is no use to anyone */
	if (c->cfg.auth_max_token_ttl_s && ttl > c->cfg.auth_max_token_ttl_s) {
		char hint[128];
		snprintf(hint, sizeof(hint), "auth.max_token_ttl_s is %d; mint shorter tokens or raise it",
			 c->cfg.auth_max_token_ttl_s);
		return ctl__fail("--ttl is longer than the daemons accept", hint);
	}
	char *tok = tok_mint_service(c->cfg.auth_secret, strlen(c->cfg.auth_secret), user, (int64_t)time(NULL) + ttl,
				     stream, admin, service);
	if (!tok)
		return ctl__fail("could not mint a token", NULL);
	printf("%s\n", tok);
	free(tok);
	return 0;
}

/* The whole of stdin (at most max bytes) as a NUL-terminated string. */
static char *ctl__read_stdin(size_t max)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1), *bigger;
	size_t got;

	while (buf && (got = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += got;
		if (len == cap) {
			if (cap >= max || !(bigger = realloc(buf, 2 * cap + 1))) {
				free(buf);
				return NULL;
			}
			buf = bigger;
			cap *= 2;
		}
	}
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* publish: one message from the options (the payload as the argument), or
 * a message or an array of them from stdin; rtw_publish() checks them as
 * POST /v1/messages does and the stored ones are printed as JSON lines.
 * A refusal prints the contract's code and message and exits 1. */
static int cmd_publish(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"stream", required_argument, NULL, 's'},
					     {"widget", required_argument, NULL, 'w'},
					     {"type", required_argument, NULL, 't'},
					     {"author", required_argument, NULL, 'a'},
					     {"to", required_argument, NULL, 'u'},
					     {"timestamp", required_argument, NULL, 'T'},
					     {NULL, 0, NULL, 0}};
	const char *stream = NULL, *widget = NULL, *type = "broadcast", *author = "rtwctl", *to = NULL;
	double ts = 0;
	char *end, *input = NULL, *text = NULL;
	json_t *m = NULL, *payload = NULL;
	json_error_t jerr;
	PGresult *res = NULL;
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': stream = optarg; break;
		case 'w': widget = optarg; break;
		case 't': type = optarg; break;
		case 'a': author = optarg; break;
		case 'u': to = optarg; break;
		case 'T':
			ts = strtod(optarg, &end);
			if (end == optarg || *end)
				return fprintf(stderr, "%s", usage), 2;
			break;
		default: return fprintf(stderr, "%s", usage), 2;
		}
	}
	if (stream ? optind + 1 != argc : optind != argc)
		return fprintf(stderr, "%s", usage), 2;
	if (stream) {
		payload = json_loads(argv[optind], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (!payload)
			return ctl__fail("invalid_json: the message is not JSON", jerr.text);
		m = json_pack("{s:s,s:s,s:s?,s:s,s:f,s:O}", "stream_id", stream, "type", type, "widget_key", widget,
			      "author_id", author, "timestamp", ts, "message", payload);
		if (!m || (to && json_object_set_new(m, "to_user_id", json_string(to)) != 0) ||
		    !(text = json_dumps(m, JSON_COMPACT))) {
			rc = ctl__fail("could not build the message", "ids must be UTF-8");
			goto out;
		}
	} else if (!(text = input = ctl__read_stdin(64u << 20))) {
		rc = ctl__fail("could not read stdin", "at most 64 MiB");
		goto out;
	}
	if (ctl__connect(c))
		goto out;
	/* One statement: an array is published all or nothing. */
	const char *params[1] = {text};
	res =
	    PQexecParams(c->conn,
			 "SELECT e::text FROM rtw_publish($1::jsonb) AS r, "
			 "jsonb_array_elements(CASE jsonb_typeof(r) WHEN 'array' THEN r ELSE jsonb_build_array(r) END) "
			 "WITH ORDINALITY AS x(e, o) ORDER BY o",
			 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		/* the DETAIL of a refusal is the contract's JSON error */
		rc = ctl__fail(primary ? primary : PQerrorMessage(c->conn),
			       PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
		goto out;
	}
	for (int r = 0; r < PQntuples(res); r++)
		printf("%s\n", PQgetvalue(res, r, 0));
	rc = 0;
out:
	PQclear(res);
	json_decref(m);
	json_decref(payload);
	if (text != input)
		free(text);
	free(input);
	return rc;
}

/* user ban / unban / bans: rows of rtw_bans (sql/012_moderation.sql),
 * whose trigger tells every rtw-sse process, which ends the banned user's
 * open streams; rtw-fcgi checks every POST. A ban replaces an earlier one
 * of the same user and stream (its end included). */
static int cmd_user(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"stream", required_argument, NULL, 's'}, {"for", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
	const char *stream = "*", *dur = NULL, *sub = argc > 1 ? argv[1] : "";
	bool ban = strcmp(sub, "ban") == 0, unban = strcmp(sub, "unban") == 0;
	PGresult *res;
	int opt, rc = 0;

	if (strcmp(sub, "bans") == 0 && argc == 2) {
		if (ctl__connect(c))
			return 1;
		return ctl__query(c,
				  "SELECT user_id, stream_id, coalesce(rtw_rfc3339(until), 'never') AS until, "
				  "rtw_rfc3339(created_at) AS created_at FROM rtw_bans "
				  "WHERE until IS NULL OR until > now() ORDER BY user_id, stream_id",
				  0, NULL, true);
	}
	if (!ban && !unban)
		return fprintf(stderr, "%s", usage), 2;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': stream = optarg; break;
		case 'f':
			if (!ban)
				return fprintf(stderr, "%s", usage), 2;
			dur = optarg;
			break;
		default: return fprintf(stderr, "%s", usage), 2;
		}
	}
	if (optind != argc - 1)
		return fprintf(stderr, "%s", usage), 2;
	const char *user = argv[optind];
	if (!msg_valid_user_id(user))
		return ctl__fail("invalid user id", NULL);
	if (strcmp(stream, "*") != 0 && !msg_valid_stream_id(stream))
		return ctl__fail("invalid stream id", NULL);
	if (ctl__connect(c))
		return 1;
	const char *params[3] = {user, stream, dur};
	if (ban)
		/* PostgreSQL reads the duration (interval input: "90s", "15m",
		 * "2h", "7d", "1 day 2 hours"); it must be positive */
		res = PQexecParams(
		    c->conn,
		    "INSERT INTO rtw_bans (user_id, stream_id, until) "
		    "SELECT $1, $2, now() + $3::interval WHERE $3 IS NULL OR $3::interval > '0' "
		    "ON CONFLICT (user_id, stream_id) DO UPDATE SET until = EXCLUDED.until, created_at = now() "
		    "RETURNING user_id, stream_id, coalesce(rtw_rfc3339(until), 'never')",
		    3, NULL, params, NULL, NULL, 0);
	else
		res = PQexecParams(c->conn,
				   "DELETE FROM rtw_bans WHERE user_id = $1 AND stream_id = $2 RETURNING user_id", 2,
				   NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = ctl__fail(dur ? "could not ban (is --for a duration such as 15m?)" : "could not change the ban",
			       PQresultErrorMessage(res));
	else if (PQntuples(res) == 0)
		rc = ctl__fail(ban ? "invalid --for" : "no such ban", ban ? "the duration must be positive" : NULL);
	else if (ban)
		printf("banned %s on %s until %s\n", PQgetvalue(res, 0, 0),
		       strcmp(stream, "*") == 0 ? "every stream" : stream, PQgetvalue(res, 0, 2));
	else
		printf("unbanned %s on %s\n", user, strcmp(stream, "*") == 0 ? "every stream" : stream);
	PQclear(res);
	return rc;
}

static void ctl__sum_add(struct ctl *c, const char *what, long long n)
{
	int i;
	for (i = 0; i < c->nsum && strcmp(c->sum[i].what, what) != 0; i++)
		;
	if (i == c->nsum) {
		if (c->nsum == (int)(sizeof(c->sum) / sizeof(c->sum[0])) || strlen(what) >= sizeof(c->sum[0].what)) {
			c->sum_partial = true;
			return;
		}
		snprintf(c->sum[c->nsum++].what, sizeof(c->sum[0].what), "%s", what);
	}
	c->sum[i].n += n;
}

static int cmd_stats(struct ctl *c, int argc, char **argv)
{
	if (argc != 1)
		return fprintf(stderr, "%s", usage), 2;
	if (ctl__connect(c))
		return 1;
	PGresult *res = PQexec(c->conn, "SELECT 'messages.' || type AS what, count(*) FROM rtw_messages GROUP BY type "
					"UNION ALL SELECT 'webhook_jobs.' || status, count(*) FROM rtw_webhook_jobs "
					"GROUP BY status "
					"UNION ALL SELECT 'widgets', count(*) FROM rtw_widgets ORDER BY 1");
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = ctl__fail(PQresultErrorMessage(res), NULL);
	} else {
		printf("what\tcount\n");
		for (int r = 0; r < PQntuples(res); r++) {
			printf("%s\t%s\n", PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
			ctl__sum_add(c, PQgetvalue(res, r, 0), strtoll(PQgetvalue(res, r, 1), NULL, 10));
		}
	}
	PQclear(res);
	return rc;
}

/* After stats over cells: the counts summed over the cells that answered
 * (a failed cell is named on stderr and left out, so the exit status is
 * not 0). Sorted as each cell's own list is. */
static int ctl__count_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ctl_count *)a)->what, ((const struct ctl_count *)b)->what);
}

static void ctl__print_sum(struct ctl *c, int cells, int failed)
{
	qsort(c->sum, (size_t)c->nsum, sizeof(c->sum[0]), ctl__count_cmp);
	printf("== all cells (%d of %d answered) ==\nwhat\tcount\n", cells - failed, cells);
	for (int i = 0; i < c->nsum; i++)
		printf("%s\t%lld\n", c->sum[i].what, c->sum[i].n);
	if (c->sum_partial)
		fprintf(stderr, "rtwctl: the sum leaves out some counts (too many names)\n");
}

/* Prints rows (RTW_ROW_COLS, then the xid) as JSON lines; remembers the
 * last position. */
static int ctl__print_rows(PGresult *res, char *cur_xid, size_t xlen, char *cur_id, size_t ilen)
{
	for (int r = 0; r < PQntuples(res); r++) {
		struct msg_stored m;
		size_t len;
		char *json;

		rtw_row_message(res, r, 0, &m);
		json = msg_serialize(&m, &len);
		if (!json)
			return ctl__fail("could not serialize a stored message", m.id);
		printf("%s\n", json);
		free(json);
		snprintf(cur_xid, xlen, "%s", PQgetvalue(res, r, RTW_ROW_NCOLS));
		snprintf(cur_id, ilen, "%s", m.id);
	}
	fflush(stdout);
	return 0;
}

static int cmd_tail(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"stream", required_argument, NULL, 's'},
					     {"all", no_argument, NULL, 'a'},
					     {"last", required_argument, NULL, 'n'},
					     {"no-follow", no_argument, NULL, 'f'},
					     {NULL, 0, NULL, 0}};
	/* ORDER BY names below are qualified (m.) or renamed (sort_*): a bare
	 * "id" would be the text output column, and "10" < "9" as text. */
	static const char cols[] = "SELECT " RTW_ROW_COLS ", m.xid::text, "
				   "m.xid AS sort_xid, m.id AS sort_id FROM rtw_messages m ";
	const char *stream = NULL;
	bool all = false, follow = true;
	char last[16] = "10", cur_xid[32] = "0", cur_id[24] = "0", sql[1024];
	int opt, rc = 1;
	PGresult *res = NULL;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': stream = optarg; break;
		case 'a': all = true; break;
		case 'n': snprintf(last, sizeof(last), "%ld", strtol(optarg, NULL, 10)); break;
		case 'f': follow = false; break;
		default: return fprintf(stderr, "%s", usage), 2;
		}
	}
	if (optind != argc || (stream && !msg_valid_stream_id(stream)))
		return fprintf(stderr, "%s", usage), 2;
	if (ctl__connect(c))
		return 1;
	const char *filter = "($1::text IS NULL OR m.stream_id = $1) AND ($2::bool OR m.type = 'broadcast') "
			     "AND m.xid < rtw_horizon()";
	/* Where following starts: the newest settled row of any stream. The
	 * last N rows are read up to it, so nothing is shown twice or lost. */
	res = PQexec(c->conn, "SELECT m.xid::text, m.id::text FROM rtw_messages m WHERE m.xid < rtw_horizon() "
			      "ORDER BY m.xid DESC, m.id DESC LIMIT 1");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = ctl__fail(PQresultErrorMessage(res), NULL);
		goto out;
	}
	if (PQntuples(res) == 1) {
		snprintf(cur_xid, sizeof(cur_xid), "%s", PQgetvalue(res, 0, 0));
		snprintf(cur_id, sizeof(cur_id), "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	/* the last N rows up to there, oldest first */
	snprintf(sql, sizeof(sql),
		 "SELECT * FROM (%s WHERE %s AND (m.xid, m.id) <= ($4::xid8, $5::bigint) "
		 "ORDER BY m.xid DESC, m.id DESC LIMIT $3::int) t ORDER BY sort_xid, sort_id",
		 cols, filter);
	const char *p1[] = {stream, all ? "true" : "false", last, cur_xid, cur_id};
	res = PQexecParams(c->conn, sql, 5, NULL, p1, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = ctl__fail(PQresultErrorMessage(res), NULL);
		goto out;
	}
	char ignore_xid[32], ignore_id[24];
	if (ctl__print_rows(res, ignore_xid, sizeof(ignore_xid), ignore_id, sizeof(ignore_id)))
		goto out;
	if (!follow) {
		rc = 0;
		goto out;
	}
	PQclear(res);
	res = PQexec(c->conn, "LISTEN rtw_messages");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = ctl__fail(PQresultErrorMessage(res), NULL);
		goto out;
	}
	snprintf(sql, sizeof(sql), "%s WHERE %s AND (m.xid, m.id) > ($3::xid8, $4::bigint) ORDER BY m.xid, m.id", cols,
		 filter);
	for (;;) {
		/* Wake on NOTIFY, or every second: the horizon may have moved
		 * without one (a transaction elsewhere ended by rollback). */
		fd_set fds;
		struct timeval tv = {1, 0};
		FD_ZERO(&fds);
		FD_SET(PQsocket(c->conn), &fds);
		if (select(PQsocket(c->conn) + 1, &fds, NULL, NULL, &tv) < 0 || !PQconsumeInput(c->conn)) {
			rc = ctl__fail("lost the database connection", NULL);
			goto out;
		}
		PGnotify *n;
		while ((n = PQnotifies(c->conn)) != NULL)
			PQfreemem(n);
		PQclear(res);
		const char *p2[] = {stream, all ? "true" : "false", cur_xid, cur_id};
		res = PQexecParams(c->conn, sql, 4, NULL, p2, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			rc = ctl__fail(PQresultErrorMessage(res), NULL);
			goto out;
		}
		if (ctl__print_rows(res, cur_xid, sizeof(cur_xid), cur_id, sizeof(cur_id)))
			goto out;
	}
out:
	PQclear(res);
	return rc;
}

static int ctl__run(struct ctl *c, const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(c, argc, argv);
	if (strcmp(cmd, "widget") == 0)
		return cmd_widget(c, argc, argv);
	if (strcmp(cmd, "token") == 0)
		return cmd_token(c, argc, argv);
	if (strcmp(cmd, "tail") == 0)
		return cmd_tail(c, argc, argv);
	if (strcmp(cmd, "stats") == 0)
		return cmd_stats(c, argc, argv);
	if (strcmp(cmd, "publish") == 0)
		return cmd_publish(c, argc, argv);
	if (strcmp(cmd, "user") == 0)
		return cmd_user(c, argc, argv);
	fprintf(stderr, "%s", usage);
	return 2;
}

static bool ctl__has_arg(int argc, char **argv, const char *arg)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], arg) == 0)
			return true;
	return false;
}

/*
 * `cells` (doc/scaling.md): the command runs against every cell in turn,
 * each cell's output under a "== cell N ==" line, its errors prefixed
 * likewise; the exit status is the worst of them, so one failing cell
 * fails the whole run while the others still get the command. Commands
 * that belong to one cell are refused: publish (a stream lives in the cell
 * the front's hash picks) and a following tail (it never ends).
 */
static int ctl__cells(struct ctl *c, const char *cmd, int argc, char **argv)
{
	char *list = strdup(c->cfg.cells), *save = NULL, *dsn;
	char *own = c->cfg.pgdsn;
	int n = 0, worst = 0, failed = 0;

	if (list == NULL)
		return ctl__fail("out of memory", NULL);
	if (strcmp(cmd, "publish") == 0 || (strcmp(cmd, "tail") == 0 && !ctl__has_arg(argc, argv, "--no-follow"))) {
		free(list);
		fprintf(stderr, "rtwctl: %s runs against one cell: set cells empty and pgdsn to the cell's%s\n", cmd,
			strcmp(cmd, "tail") == 0 ? " (or add --no-follow)" : "");
		return 2;
	}
	for (dsn = strtok_r(list, "|", &save); dsn; dsn = strtok_r(NULL, "|", &save)) {
		int rc;
		dsn += strspn(dsn, " \t");
		if (*dsn == '\0')
			continue;
		c->cfg.pgdsn = dsn;
		printf("== cell %d ==\n", ++n);
		fflush(stdout);
		rc = ctl__run(c, cmd, argc, argv);
		fflush(stdout);
		if (rc != 0) {
			fprintf(stderr, "rtwctl: cell %d: %s failed (exit %d)\n", n, cmd, rc);
			failed++;
		}
		if (c->conn)
			PQfinish(c->conn);
		c->conn = NULL;
		if (rc > worst)
			worst = rc;
		if (rc == 2)
			break; /* bad usage is the same in every cell */
	}
	c->cfg.pgdsn = own;
	free(list);
	if (strcmp(cmd, "stats") == 0 && n > 0 && worst != 2)
		ctl__print_sum(c, n, failed);
	return n == 0 ? ctl__fail("cells lists no connection string", NULL) : worst;
}

int main(int argc, char **argv)
{
	static const struct rtw_prog prog = {"rtwctl", "The admin command line of rtw.", CTL_COMMANDS,
					     RTW_START_COMMANDS};
	struct ctl c = {0};
	int i, rc;

	/* Global options come before the command. */
	if ((rc = rtw_start(&prog, argc, argv, &c.cfg, &i)) >= 0)
		return rc;

	const char *cmd = argv[i];
	/* token touches no database: once, whatever cells says */
	if (c.cfg.cells[0] && strcmp(cmd, "token") != 0)
		rc = ctl__cells(&c, cmd, argc - i, argv + i);
	else
		rc = ctl__run(&c, cmd, argc - i, argv + i);
	if (c.conn)
		PQfinish(c.conn);
	cfg_free(&c.cfg);
	return rc;
}
