# tests/: the three layers behind `make check`: unit tests (cmocka) on pure
# code, pgTAP tests on the schema, integration tests (Python harness
# tests/integration/rtwtest.py) against real PostgreSQL, daemons, nginx
# and Apache on free loopback ports; plus replay of the fuzz corpora.
TEST_EXTENSIONS = .py .sh
PY_LOG_COMPILER = $(PYTHON3)
SH_LOG_COMPILER = bash
AM_TESTS_ENVIRONMENT = RTW_SRCDIR='$(abs_top_srcdir)' RTW_BUILDDIR='$(abs_top_builddir)'; export RTW_SRCDIR RTW_BUILDDIR;

UNIT_CFLAGS = $(RTW_CFLAGS) $(CMOCKA_CFLAGS)
UNIT_LIBS = $(RTW_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_cfg tests/unit/test_token tests/unit/test_msg
tests_unit_test_cfg_SOURCES = tests/unit/test_cfg.c
tests_unit_test_cfg_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_cfg_LDADD = $(UNIT_LIBS)
tests_unit_test_token_SOURCES = tests/unit/test_token.c
tests_unit_test_token_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_token_LDADD = $(UNIT_LIBS)
tests_unit_test_msg_SOURCES = tests/unit/test_msg.c
tests_unit_test_msg_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_msg_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_cfg tests/unit/test_token tests/unit/test_msg

check_PROGRAMS += tests/unit/test_whk_addr tests/unit/test_whk_job
tests_unit_test_whk_addr_SOURCES = tests/unit/test_whk_addr.c webhookd/addr.c
tests_unit_test_whk_addr_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_whk_addr_LDADD = $(UNIT_LIBS)
tests_unit_test_whk_job_SOURCES = tests/unit/test_whk_job.c webhookd/job.c
tests_unit_test_whk_job_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_whk_job_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_whk_addr tests/unit/test_whk_job

check_PROGRAMS += tests/unit/test_ratelimit
tests_unit_test_ratelimit_SOURCES = tests/unit/test_ratelimit.c
tests_unit_test_ratelimit_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_ratelimit_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_ratelimit
check_PROGRAMS += tests/unit/test_buf
tests_unit_test_buf_SOURCES = tests/unit/test_buf.c
tests_unit_test_buf_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_buf_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_buf

check_PROGRAMS += tests/unit/test_probe
tests_unit_test_probe_SOURCES = tests/unit/test_probe.c
tests_unit_test_probe_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_probe_LDADD = $(UNIT_LIBS) $(HTTP_PARSER_LIBS)
TESTS += tests/unit/test_probe

check_PROGRAMS += tests/unit/test_log
tests_unit_test_log_SOURCES = tests/unit/test_log.c
tests_unit_test_log_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_log_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_log

check_PROGRAMS += tests/unit/test_metrics
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c
tests_unit_test_metrics_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_metrics_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_metrics

check_PROGRAMS += tests/unit/test_url tests/unit/test_rules
tests_unit_test_url_SOURCES = tests/unit/test_url.c
tests_unit_test_url_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_url_LDADD = $(UNIT_LIBS)
tests_unit_test_rules_SOURCES = tests/unit/test_rules.c
tests_unit_test_rules_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_rules_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_url tests/unit/test_rules

check_PROGRAMS += tests/unit/test_clientaddr
tests_unit_test_clientaddr_SOURCES = tests/unit/test_clientaddr.c
tests_unit_test_clientaddr_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_clientaddr_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_clientaddr

check_PROGRAMS += tests/unit/test_proxyproto
tests_unit_test_proxyproto_SOURCES = tests/unit/test_proxyproto.c
tests_unit_test_proxyproto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_proxyproto_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_proxyproto

check_PROGRAMS += tests/unit/test_sse
tests_unit_test_sse_SOURCES = tests/unit/test_sse.c
tests_unit_test_sse_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/sse
tests_unit_test_sse_LDADD = sse/libsse.a $(UNIT_LIBS) $(HTTP_PARSER_LIBS)
TESTS += tests/unit/test_sse

check_PROGRAMS += tests/unit/test_loop tests/unit/test_pgconn
tests_unit_test_loop_SOURCES = tests/unit/test_loop.c
tests_unit_test_loop_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_loop_LDADD = $(UNIT_LIBS)
tests_unit_test_pgconn_SOURCES = tests/unit/test_pgconn.c
tests_unit_test_pgconn_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_pgconn_LDADD = $(UNIT_LIBS)
# test_pgconn needs a PostgreSQL: its script starts a throwaway cluster
TESTS += tests/unit/test_loop tests/unit/run-pgconn.sh
EXTRA_DIST += tests/unit/run-pgconn.sh

# Fuzz drivers: with --enable-fuzzing they are libFuzzer targets (clang);
# otherwise they replay the committed corpus as ordinary tests. Each lists
# the file it fuzzes among its sources, so that file is built with the
# driver's flags (coverage instrumentation under FUZZING) rather than
# taken from a library. See doc/testing.md.
FUZZ_DRIVERS = tests/fuzz/fuzz_msg tests/fuzz/fuzz_token tests/fuzz/fuzz_sse_req \
	tests/fuzz/fuzz_whk_url tests/fuzz/fuzz_cfg tests/fuzz/fuzz_clientaddr tests/fuzz/fuzz_proxyproto
FUZZ_REPLAYS = tests/fuzz/replay-msg.sh tests/fuzz/replay-token.sh tests/fuzz/replay-sse-req.sh \
	tests/fuzz/replay-whk-url.sh tests/fuzz/replay-cfg.sh tests/fuzz/replay-clientaddr.sh \
	tests/fuzz/replay-proxyproto.sh
if FUZZING
noinst_PROGRAMS += $(FUZZ_DRIVERS)
FUZZ_COMPILE_FLAGS = -DRTW_LIBFUZZER -fsanitize=fuzzer
FUZZ_LINK_FLAGS = -fsanitize=fuzzer
else
check_PROGRAMS += $(FUZZ_DRIVERS)
FUZZ_COMPILE_FLAGS =
FUZZ_LINK_FLAGS =
TESTS += $(FUZZ_REPLAYS)
endif
tests_fuzz_fuzz_msg_SOURCES = tests/fuzz/fuzz_msg.c lib/msg.c lib/msg_json.c
tests_fuzz_fuzz_msg_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS)
tests_fuzz_fuzz_msg_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_msg_LDADD = $(RTW_LIBS)
tests_fuzz_fuzz_token_SOURCES = tests/fuzz/fuzz_token.c tests/fuzz/replay.h lib/token.c
tests_fuzz_fuzz_token_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS)
tests_fuzz_fuzz_token_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_token_LDADD = $(RTW_LIBS)
tests_fuzz_fuzz_sse_req_SOURCES = tests/fuzz/fuzz_sse_req.c tests/fuzz/replay.h sse/req.c lib/url.c
tests_fuzz_fuzz_sse_req_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS) -I$(top_srcdir)/sse
tests_fuzz_fuzz_sse_req_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_sse_req_LDADD = $(RTW_LIBS) $(HTTP_PARSER_LIBS)
# fuzz_whk_url #includes webhookd/fetch.c to reach its static checks.
tests_fuzz_fuzz_whk_url_SOURCES = tests/fuzz/fuzz_whk_url.c tests/fuzz/replay.h \
	webhookd/addr.c webhookd/job.c
tests_fuzz_fuzz_whk_url_CFLAGS = $(RTW_CFLAGS) $(LIBCURL_CFLAGS) $(FUZZ_COMPILE_FLAGS) -I$(top_srcdir)/webhookd
tests_fuzz_fuzz_whk_url_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_whk_url_LDADD = $(RTW_LIBS) $(LIBCURL_LIBS)
tests_fuzz_fuzz_cfg_SOURCES = tests/fuzz/fuzz_cfg.c tests/fuzz/replay.h lib/cfg.c
tests_fuzz_fuzz_cfg_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS)
tests_fuzz_fuzz_cfg_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_cfg_LDADD = $(RTW_LIBS)
tests_fuzz_fuzz_clientaddr_SOURCES = tests/fuzz/fuzz_clientaddr.c tests/fuzz/replay.h lib/clientaddr.c
tests_fuzz_fuzz_clientaddr_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS)
tests_fuzz_fuzz_clientaddr_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_clientaddr_LDADD = $(RTW_LIBS)
tests_fuzz_fuzz_proxyproto_SOURCES = tests/fuzz/fuzz_proxyproto.c tests/fuzz/replay.h lib/proxyproto.c
tests_fuzz_fuzz_proxyproto_CFLAGS = $(RTW_CFLAGS) $(FUZZ_COMPILE_FLAGS)
tests_fuzz_fuzz_proxyproto_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_proxyproto_LDADD = $(RTW_LIBS)
EXTRA_DIST += tests/fuzz/corpus $(FUZZ_REPLAYS)

# Formatting: every C file follows .clang-format.
TESTS += tests/format.sh
EXTRA_DIST += tests/format.sh

# pgTAP: the schema and its functions and triggers, in a throwaway cluster.
TESTS += tests/pgtap/run.sh
EXTRA_DIST += tests/pgtap

# The client SDK (web/rtw.js): unit tests under Node's built-in runner.
TESTS += tests/js/run.sh
EXTRA_DIST += tests/js/run.sh tests/js/rtw.test.mjs

# Integration tests (each starts its own PostgreSQL, daemons and web server).
INTEGRATION_TESTS = \
	tests/integration/test_ctl.py \
	tests/integration/test_fcgi.py \
	tests/integration/test_fcgi_kept.py \
	tests/integration/test_history.py \
	tests/integration/test_sse.py \
	tests/integration/test_tokens.py \
	tests/integration/test_limits.py \
	tests/integration/test_webhook.py \
	tests/integration/test_e2e.py \
	tests/integration/test_horizon.py \
	tests/integration/test_apache.py \
	tests/integration/test_front_retry.py \
	tests/integration/test_unix_front.py \
	tests/integration/test_stream_front.py \
	tests/integration/test_hostile.py \
	tests/integration/test_abuse.py \
	tests/integration/test_isolation.py \
	tests/integration/test_openapi.py \
	tests/integration/test_publish.py \
	tests/integration/test_presence.py \
	tests/integration/test_moderation.py \
	tests/integration/test_cells.py \
	tests/integration/test_failover.py \
	tests/integration/test_shared_tail.py \
	tests/integration/test_relay.py \
	tests/integration/test_observability.py \
	tests/integration/test_logs.py \
	tests/integration/test_browser.py
TESTS += $(INTEGRATION_TESTS)
# rtw_publish() and POST /v1/messages through one table of messages.
TESTS += tests/integration/test_publish_parity.py
EXTRA_DIST += tests/integration/test_publish_parity.py
# rtw-sse's own TLS port (sse.tls_listen).
TESTS += tests/integration/test_tls.py
EXTRA_DIST += tests/integration/test_tls.py
EXTRA_DIST += tests/integration/rtwtest.py tests/integration/tailtest.py $(INTEGRATION_TESTS) tests/integration/test_failover.py \
	tests/browser/package.json tests/browser/package-lock.json tests/browser/driver.mjs

# The fault suite (short version; `./dev fault` runs the long one): the
# whole stack under kills and restarts, judged by the `eventsource` npm
# package (tests/fault/node_modules, installed by ./dev test with npm ci).
TESTS += tests/fault/test_fault.py
EXTRA_DIST += tests/fault/test_fault.py tests/fault/es-clients.mjs tests/fault/package.json \
	tests/fault/package-lock.json
