/*
 * cfg.c: owns the option table and the loading of struct rtw_cfg from
 * defaults, an INI file (parsed by inih) and RTW_* environment variables,
 * each integer checked against its range in the table. Called once at
 * start-up, before any thread or loop runs.
 */
#include "config.h"
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off: one entry per line reads better as a table */
#define OPT(n, t, field, d, h)                                                                                         \
	{                                                                                                              \
		n, t, offsetof(struct rtw_cfg, field), d, false, h, 0, 0                                               \
	}
/* An integer option and the range it must lie in (inclusive). */
#define INT(n, field, d, lo, hi, h)                                                                                    \
	{                                                                                                              \
		n, CFG_INT, offsetof(struct rtw_cfg, field), d, false, h, lo, hi                                       \
	}
#define SECRET(n, field, h)                                                                                            \
	{                                                                                                              \
		n, CFG_STR, offsetof(struct rtw_cfg, field), "", true, h, 0, 0                                         \
	}

const struct cfg_option cfg_options[] = {
    OPT("pgdsn", CFG_STR, pgdsn, "dbname=rtw", "libpq connection string of the rtw database"),
    OPT("cells", CFG_STR, cells, "",
	"rtwctl only: the libpq connection strings of every cell, separated by |; each command runs in every cell"),
    OPT("log_level", CFG_STR, log_level, "info", "minimum log level: debug, info, warn, error"),
    OPT("log_file", CFG_STR, log_file, "", "log file path; empty for stderr; reopened on SIGHUP"),
    OPT("log_format", CFG_STR, log_format, "text",
	"text, or json: one JSON object per line (ts, level, daemon, msg, fields)"),
    OPT("log_requests", CFG_BOOL, log_requests, "true",
	"one line per request (rtw-fcgi) and per ended stream (rtw-sse), at info"),

    OPT("auth.mode", CFG_STR, auth_mode, "token",
	"token (HS256 JWTs required) or open (ids taken as given; experiments only)"),
    SECRET("auth.secret", auth_secret, "HS256 signing key for tokens, raw bytes as written"),
    SECRET(
	"auth.secret_previous", auth_secret_previous,
	"the signing key before a rotation: still accepted when verifying tokens, never used to mint; empty when none"),
    INT("auth.anon_ttl_s", auth_anon_ttl_s, "86400", 60, 31536000,
	"lifetime of tokens minted for anonymous SSE subscribers, seconds"),
    INT("auth.max_token_ttl_s", auth_max_token_ttl_s, "2592000", 0, 315360000,
	"longest a token may still be valid when presented (exp minus now), seconds: a token further out is refused "
	"401 unauthorized, so a leaked one cannot outlive a month; 0: no cap"),

    OPT("http.cors_origins", CFG_STR, http_cors_origins, "",
	"origins allowed for every widget (comma list; * for any), besides each widget's own"),
    INT("http.max_body", http_max_body, "65536", 256, 67108864,
	"largest accepted request body, bytes (413 payload_too_large above)"),
    INT("http.max_batch_body", http_max_batch_body, "8388608", 256, 67108864,
	"largest accepted body of POST /v1/messages (backend publishing, up to 1000 messages), bytes"),
    OPT("http.trusted_proxies", CFG_STR, http_trusted_proxies, "127.0.0.0/8, ::1",
	"peers (addresses and CIDRs, comma list) whose X-Forwarded-For names the client for per-address limits"),

    OPT("fcgi.socket", CFG_STR, fcgi_socket, "127.0.0.1:9000",
	"FastCGI listen address: host:port, :port or a unix socket path; empty to use the inherited socket (fd 0)"),
    OPT("fcgi.socket_mode", CFG_STR, fcgi_socket_mode, "0660",
	"permissions (octal) of a unix fcgi.socket; the web server's user must be able to write it"),
    INT("fcgi.workers", fcgi_workers, "32", 1, 1024,
	"worker threads, each with its own PostgreSQL connection; also bounds a group-commit batch"),
    INT("fcgi.backlog", fcgi_backlog, "1024", 1, 65535, "listen backlog of the FastCGI socket"),
    INT("fcgi.group_commit_max", fcgi_group_commit_max, "64", 1, 10000,
	"most messages written in one shared transaction (1 disables group commit)"),
    INT("fcgi.rate_limit_per_s", fcgi_rate_limit_per_s, "50", 0, 1000000,
	"messages and history reads per second each author may send to one stream, per rtw-fcgi process (429 "
	"rate_limited above; 0 disables)"),
    INT("fcgi.rate_limit_burst", fcgi_rate_limit_burst, "100", 1, 1000000,
	"messages and history reads an author may send to one stream at once before fcgi.rate_limit_per_s applies"),
    INT("fcgi.rate_limit_per_user_per_s", fcgi_rate_limit_per_user_per_s, "100", 0, 1000000,
	"messages and history reads per second each author may send over all streams together, per rtw-fcgi "
	"process (429 rate_limited above; 0 disables)"),
    INT("fcgi.rate_limit_per_user_burst", fcgi_rate_limit_per_user_burst, "200", 1, 1000000,
	"messages and history reads an author may send over all streams at once before "
	"fcgi.rate_limit_per_user_per_s applies"),
    INT("fcgi.rate_limit_per_ip_per_s", fcgi_rate_limit_per_ip_per_s, "100", 0, 1000000,
	"POSTs per second from one client address, per rtw-fcgi process, whatever the author "
	"(429 rate_limited above; 0 disables)"),
    INT("fcgi.rate_limit_per_ip_burst", fcgi_rate_limit_per_ip_burst, "200", 1, 1000000,
	"POSTs one client address may send at once before fcgi.rate_limit_per_ip_per_s applies"),
    OPT("fcgi.health_listen", CFG_STR, fcgi_health_listen, "127.0.0.1:8083",
	"rtw-fcgi address for /healthz and /metrics (plain HTTP); empty to disable"),

    INT("history.default_limit", history_default_limit, "100", 1, 100000,
	"messages per history page when the request sets no limit"),
    INT("history.max_limit", history_max_limit, "1000", 1, 100000, "largest history page a request may ask for"),
    INT("history.max_bytes", history_max_bytes, "1048576", 1024, 1073741824,
	"most bytes in one history page; a longer page is cut short with its next id (one larger message is sent "
	"alone)"),
    INT("history.max_scan", history_max_scan, "1000", 1, 100000000,
	"most broadcasts one history page with from_timestamp or to_timestamp walks (those filters are checked row by "
	"row); a page cut there still sets its next id"),

    OPT("sse.listen", CFG_STR, sse_listen, "127.0.0.1:8081",
	"rtw-sse listen address host:port (SO_REUSEPORT: several processes may share it), or unix:/path for a front on "
	"this host (one path per process)"),
    OPT("sse.proxy_protocol_from", CFG_STR, sse_proxy_protocol_from, "",
	"peers (addresses and CIDRs, comma list) whose connections may open with a PROXY protocol header naming the "
	"client (nginx stream with proxy_protocol on); empty: none"),
    INT("sse.max_connections", sse_max_connections, "10000", 1, 1000000, "most client connections per rtw-sse process"),
    INT("sse.max_per_ip", sse_max_per_ip, "1000", 1, 1000000,
	"most connections from one client address per process (429 rate_limited above)"),
    INT("sse.max_per_user", sse_max_per_user, "100", 1, 1000000,
	"most open event streams of one identity (a token's sub, or a user_id in open mode) per process (429 "
	"rate_limited above)"),
    INT("sse.anon_per_ip_per_min", sse_anon_per_ip_per_min, "60", 0, 1000000,
	"anonymous identities one client address may be given per minute, per process (429 rate_limited above; 0 "
	"disables)"),
    INT("sse.max_header_bytes", sse_max_header_bytes, "8192", 1024, 1048576,
	"largest request head (request line and headers), bytes"),
    INT("sse.header_timeout_ms", sse_header_timeout_ms, "10000", 100, 600000,
	"time allowed to send the whole request head (slowloris guard)"),
    INT("sse.heartbeat_s", sse_heartbeat_s, "15", 1, 3600, "seconds between heartbeat comments on idle streams"),
    INT("sse.retry_ms", sse_retry_ms, "2000", 100, 3600000, "reconnect delay sent to clients in the retry: field"),
    INT("sse.outbuf_max", sse_outbuf_max, "262144", 4096, 1073741824,
	"most unsent bytes queued per connection before it is caught up from PostgreSQL instead"),
    INT("sse.poll_interval_ms", sse_poll_interval_ms, "1000", 10, 600000,
	"safety poll of the messages table when no NOTIFY arrives"),
    INT("sse.batch_rows", sse_batch_rows, "1000", 1, 100000, "most rows fetched per query when catching up"),
    INT("sse.hold_max_ms", sse_hold_max_ms, "5000", 100, 600000,
	"longest a new stream's head is held while rtw-sse cannot learn its position (then 200 with retry:)"),
    INT("sse.presence_interval_ms", sse_presence_interval_ms, "2000", 100, 60000,
	"how often each rtw-sse process writes its changed presence counts and reads the sums for presence=1 streams"),
    INT("sse.coalesce_ms", sse_coalesce_ms, "30", 0, 1000,
	"latency budget of coalesced writes: a live message may wait for later ones to share its write until this "
	"long after its created_at, less one flush round, when the next is expected by then (0: write at once)"),
    INT("sse.flush_slice_ms", sse_flush_slice_ms, "5", 0, 1000,
	"longest stretch of writes to clients before the loop looks at its other events again; a round over many "
	"connections goes on after them, so messages arriving meanwhile share the writes (0: one round at once)"),
    OPT("sse.shared_tail", CFG_BOOL, sse_shared_tail, "true",
	"one process per database (the leader) computes the settled horizon and publishes it on rtw_settled, the "
	"others read behind it; false: every process tails on its own"),
    OPT("sse.relay", CFG_STR, sse_relay, "",
	"host relay name (abstract unix socket, per uid and pgdsn): one process per host tails and streams settled "
	"rows to the others, which neither LISTEN nor tail (empty: none)"),
    OPT("sse.tls_listen", CFG_STR, sse_tls_listen, "",
	"rtw-sse's own TLS listener host:port (SO_REUSEPORT) for browsers to reach directly over https; empty: none "
	"(sse.listen stays plain)"),
    OPT("sse.tls_cert", CFG_STR, sse_tls_cert, "",
	"PEM file of the TLS listener's certificate chain (leaf first); read again on SIGHUP"),
    OPT("sse.tls_key", CFG_STR, sse_tls_key, "",
	"PEM file of the TLS listener's private key; read again on SIGHUP (a bad pair keeps the old one)"),
    INT("sse.tls_max_handshakes", sse_tls_max_handshakes, "256", 1, 1000000,
	"most TLS handshakes in progress per rtw-sse process; connections beyond are closed at accept"),

    SECRET("webhook.secret", webhook_secret, "HMAC-SHA256 key for X-RTW-Signature, raw bytes as written"),
    OPT("webhook.allow_hosts", CFG_STR, webhook_allow_hosts, "",
	"host:port webhook targets allowed even when they resolve to internal addresses (comma list; that port only)"),
    OPT("webhook.require_widget_hosts", CFG_BOOL, webhook_require_widget_hosts, "true",
	"a widget without webhook hosts may not call webhooks (403 webhook_target_refused)"),
    OPT("webhook.refuse_anonymous", CFG_BOOL, webhook_refuse_anonymous, "true",
	"anonymous viewers (identities minted by rtw) may not call webhooks (403 forbidden)"),
    INT("webhook.widget_max_running", webhook_widget_max_running, "8", 0, 100000,
	"most calls of one widget in flight at once, over all workers (0: no cap)"),
    INT("webhook.author_max_running", webhook_author_max_running, "2", 0, 100000,
	"most calls of one author in flight at once, over all workers (0: no cap)"),
    INT("webhook.widget_max_queued", webhook_widget_max_queued, "1000", 0, 10000000,
	"most queued jobs of one widget; more is 429 rate_limited (0: no cap)"),
    INT("webhook.author_max_queued", webhook_author_max_queued, "20", 0, 10000000,
	"most queued jobs of one author; more is 429 rate_limited (0: no cap)"),
    INT("webhook.concurrency", webhook_concurrency, "32", 1, 10000, "webhook calls in flight per worker"),
    INT("webhook.connect_timeout_ms", webhook_connect_timeout_ms, "5000", 10, 600000,
	"connect timeout of a webhook call"),
    INT("webhook.timeout_ms", webhook_timeout_ms, "15000", 10, 3600000, "total timeout of a webhook call"),
    INT("webhook.max_response", webhook_max_response, "1048576", 1, 1073741824,
	"largest response body read; larger responses fail the attempt"),
    INT("webhook.result_body_max", webhook_result_body_max, "4096", 0, 1048576,
	"response bytes kept in the result message and the job row"),
    INT("webhook.max_attempts", webhook_max_attempts, "5", 1, 100, "attempts before a retryable failure becomes final"),
    INT("webhook.backoff_base_ms", webhook_backoff_base_ms, "1000", 1, 86400000,
	"first retry delay; doubles each attempt, with jitter"),
    INT("webhook.backoff_max_ms", webhook_backoff_max_ms, "300000", 1, 86400000, "longest retry delay"),
    INT("webhook.lease_s", webhook_lease_s, "60", 1, 86400,
	"how long a claimed job belongs to its worker before another may retry it"),
    INT("webhook.poll_interval_ms", webhook_poll_interval_ms, "1000", 10, 600000,
	"how often the worker looks for due retries and runs maintenance"),
    OPT("webhook.health_listen", CFG_STR, webhook_health_listen, "127.0.0.1:8082",
	"rtw-webhookd address for /healthz and /metrics; empty to disable"),

    INT("retention.messages_days", retention_messages_days, "0", 0, 36500,
	"delete stored messages older than this many days (0 keeps them)"),
    INT("retention.jobs_days", retention_jobs_days, "30", 0, 36500,
	"delete finished webhook jobs older than this many days (0 keeps them)"),
    INT("retention.idempotency_hours", retention_idempotency_hours, "24", 0, 876000,
	"delete Idempotency-Key records older than this many hours (0 keeps them); a retry after that stores anew"),
    {NULL, CFG_STR, 0, NULL, false, NULL, 0, 0},
};
/* clang-format on */

static const struct cfg_option *cfg__find(const char *name)
{
	for (const struct cfg_option *o = cfg_options; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static int cfg__parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
		*out = true;
	else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
		*out = false;
	else
		return RTW_ERROR;
	return RTW_OK;
}

int cfg_set(struct rtw_cfg *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	const struct cfg_option *o = cfg__find(name);
	char *base = (char *)cfg;

	if (!o) {
		snprintf(err, errlen, "unknown configuration option \"%s\"", name);
		return RTW_ERROR;
	}
	switch (o->type) {
	case CFG_STR: {
		char **slot = (char **)(base + o->offset);
		char *copy = strdup(value);
		if (!copy) {
			snprintf(err, errlen, "out of memory");
			return RTW_ERROR;
		}
		free(*slot);
		*slot = copy;
		break;
	}
	case CFG_INT: {
		char *end;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end != '\0' || v < 0 || v > INT_MAX) {
			snprintf(err, errlen, "invalid value for \"%s\": expected a non-negative integer", name);
			return RTW_ERROR;
		}
		if (v < o->min || v > o->max) {
			snprintf(err, errlen, "invalid value for \"%s\": %ld is out of range (%ld to %ld)", name, v,
				 o->min, o->max);
			return RTW_ERROR;
		}
		*(int *)(base + o->offset) = (int)v;
		break;
	}
	case CFG_BOOL: {
		bool b;
		if (cfg__parse_bool(value, &b) != RTW_OK) {
			snprintf(err, errlen, "invalid value for \"%s\": expected true or false", name);
			return RTW_ERROR;
		}
		*(bool *)(base + o->offset) = b;
		break;
	}
	}
	return RTW_OK;
}

void cfg_env_name(const char *name, char *out, size_t outlen)
{
	size_t n = (size_t)snprintf(out, outlen, "RTW_");
	for (const char *p = name; *p && n + 1 < outlen; p++)
		out[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
	out[n] = '\0';
}

struct cfg__ini_ctx {
	struct rtw_cfg *cfg;
	char *err;
	size_t errlen;
	bool failed;
};

static int cfg__ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg__ini_ctx *ctx = user;
	char full[256];

	if (ctx->failed)
		return 0;
	if (section[0])
		snprintf(full, sizeof(full), "%s.%s", section, name);
	else
		snprintf(full, sizeof(full), "%s", name);
	if (cfg_set(ctx->cfg, full, value, ctx->err, ctx->errlen) != RTW_OK) {
		ctx->failed = true;
		return 0;
	}
	return 1;
}

int cfg_load(struct rtw_cfg *cfg, const char *path, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (const struct cfg_option *o = cfg_options; o->name; o++)
		if (cfg_set(cfg, o->name, o->def, err, errlen) != RTW_OK)
			return RTW_ERROR;
	if (path && path[0]) {
		struct cfg__ini_ctx ctx = {cfg, err, errlen, false};
		int rc = ini_parse(path, cfg__ini_handler, &ctx);
		if (ctx.failed)
			return RTW_ERROR;
		if (rc < 0) {
			snprintf(err, errlen, "could not open configuration file \"%s\"", path);
			return RTW_ERROR;
		}
		if (rc > 0) {
			snprintf(err, errlen, "syntax error in \"%s\" at line %d", path, rc);
			return RTW_ERROR;
		}
	}
	for (const struct cfg_option *o = cfg_options; o->name; o++) {
		char env[128];
		cfg_env_name(o->name, env, sizeof(env));
		const char *v = getenv(env);
		if (v && cfg_set(cfg, o->name, v, err, errlen) != RTW_OK)
			return RTW_ERROR;
	}
	if (strcmp(cfg->auth_mode, "token") != 0 && strcmp(cfg->auth_mode, "open") != 0) {
		snprintf(err, errlen, "invalid value for \"auth.mode\": expected token or open");
		return RTW_ERROR;
	}
	/* the tokens rtw-sse mints for anonymous viewers must pass the cap */
	if (cfg->auth_max_token_ttl_s && cfg->auth_anon_ttl_s > cfg->auth_max_token_ttl_s) {
		snprintf(err, errlen, "\"auth.anon_ttl_s\" (%d) must not exceed \"auth.max_token_ttl_s\" (%d)",
			 cfg->auth_anon_ttl_s, cfg->auth_max_token_ttl_s);
		return RTW_ERROR;
	}
	return RTW_OK;
}

void cfg_free(struct rtw_cfg *cfg)
{
	char *base = (char *)cfg;
	for (const struct cfg_option *o = cfg_options; o->name; o++)
		if (o->type == CFG_STR) {
			char **slot = (char **)(base + o->offset);
			free(*slot);
			*slot = NULL;
		}
}
