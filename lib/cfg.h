/*
 * cfg.h: the deployment's configuration: one table of every option (name,
 * type, default, help), read from an INI file (inih) and overridden by
 * RTW_* environment variables. The table is the only global mutable state
 * besides logging; doc/config.md is checked against it by a unit test.
 *
 * Option names are "section.name" ("sse.listen"); options without a
 * section are top-level ("pgdsn"). The environment override of
 * "section.name" is RTW_SECTION_NAME, of "name" RTW_NAME.
 */
#ifndef RTW_CFG_H
#define RTW_CFG_H

#include "rtw.h"

struct rtw_cfg {
	/* top level */
	char *pgdsn;
	char *cells; /* rtwctl: every cell's pgdsn, | between */
	char *log_level;
	char *log_file;
	char *log_format; /* "text" or "json" */
	bool log_requests;
	/* [auth] */
	char *auth_mode; /* "token" or "open" */
	char *auth_secret;
	char *auth_secret_previous; /* verification only, during a rotation; "" when none */
	int auth_anon_ttl_s;
	int auth_max_token_ttl_s;
	/* [http] shared by rtw-fcgi and rtw-sse */
	char *http_cors_origins; /* deployment-wide allowed origins, comma list, "*" for any */
	int http_max_body;
	int http_max_batch_body;    /* POST /v1/messages */
	char *http_trusted_proxies; /* comma list of addresses and CIDRs (lib/clientaddr.h) */
	/* [fcgi] */
	char *fcgi_socket;
	char *fcgi_socket_mode; /* octal permissions of a unix socket */
	int fcgi_workers;
	int fcgi_backlog;
	int fcgi_group_commit_max;
	int fcgi_rate_limit_per_s;
	int fcgi_rate_limit_burst;
	int fcgi_rate_limit_per_ip_per_s;
	int fcgi_rate_limit_per_ip_burst;
	int fcgi_rate_limit_per_user_per_s;
	int fcgi_rate_limit_per_user_burst;
	char *fcgi_health_listen;
	/* [history] */
	int history_default_limit;
	int history_max_limit;
	int history_max_bytes;
	int history_max_scan;
	/* [sse] */
	char *sse_listen;
	char *sse_proxy_protocol_from; /* comma list of addresses and CIDRs (lib/clientaddr.h) */
	int sse_max_connections;
	int sse_max_per_ip;
	int sse_max_per_user;
	int sse_anon_per_ip_per_min;
	int sse_max_header_bytes;
	int sse_header_timeout_ms;
	int sse_heartbeat_s;
	int sse_retry_ms;
	int sse_outbuf_max;
	int sse_poll_interval_ms;
	int sse_batch_rows;
	int sse_hold_max_ms;
	int sse_presence_interval_ms;
	int sse_coalesce_ms;
	int sse_flush_slice_ms;
	bool sse_shared_tail;
	char *sse_relay;      /* abstract unix socket name of the host relay; empty: none */
	char *sse_tls_listen; /* "" : no TLS listener */
	char *sse_tls_cert;
	char *sse_tls_key;
	int sse_tls_max_handshakes;
	/* [webhook] */
	char *webhook_secret;
	char *webhook_allow_hosts; /* comma list of host:port opened even if internal */
	bool webhook_require_widget_hosts;
	bool webhook_refuse_anonymous;
	int webhook_widget_max_running;
	int webhook_author_max_running;
	int webhook_widget_max_queued;
	int webhook_author_max_queued;
	int webhook_concurrency;
	int webhook_connect_timeout_ms;
	int webhook_timeout_ms;
	int webhook_max_response;
	int webhook_result_body_max;
	int webhook_max_attempts;
	int webhook_backoff_base_ms;
	int webhook_backoff_max_ms;
	int webhook_lease_s;
	int webhook_poll_interval_ms;
	char *webhook_health_listen;
	/* [retention] */
	int retention_messages_days;
	int retention_jobs_days;
	int retention_idempotency_hours;
};

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL };

struct cfg_option {
	const char *name; /* "section.name" or "name" */
	enum cfg_type type;
	size_t offset; /* into struct rtw_cfg */
	const char *def;
	bool secret; /* never logged or dumped */
	const char *help;
	long min, max; /* CFG_INT: the accepted range, inclusive (doc/config.md says it) */
};

/* The table of every option, terminated by an entry with name == NULL. */
extern const struct cfg_option cfg_options[];

/* Loads defaults, then the INI file at path (NULL: none), then RTW_*
 * overrides. On failure writes a message into err and returns RTW_ERROR.
 * The strings in *cfg are owned by it; release with cfg_free(). */
int cfg_load(struct rtw_cfg *cfg, const char *path, char *err, size_t errlen) RTW_WUR;

/* Sets one option from its textual value; RTW_ERROR on unknown name or
 * bad value (message in err). */
int cfg_set(struct rtw_cfg *cfg, const char *name, const char *value, char *err, size_t errlen) RTW_WUR;

void cfg_free(struct rtw_cfg *cfg);

/* "RTW_SSE_LISTEN" for "sse.listen"; out needs strlen(name) + 5 bytes. */
void cfg_env_name(const char *name, char *out, size_t outlen);

#endif
