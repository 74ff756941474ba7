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

check_PROGRAMS += tests/unit/test_fcgi_ratelimit
tests_unit_test_fcgi_ratelimit_SOURCES = tests/unit/test_fcgi_ratelimit.c fcgi/ratelimit.c
tests_unit_test_fcgi_ratelimit_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_fcgi_ratelimit_LDADD = $(UNIT_LIBS) -lm
TESTS += tests/unit/test_fcgi_ratelimit

check_PROGRAMS += tests/unit/test_sse
tests_unit_test_sse_SOURCES = tests/unit/test_sse.c
tests_unit_test_sse_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/sse
tests_unit_test_sse_LDADD = sse/libsse.a $(UNIT_LIBS) $(HTTP_PARSER_LIBS)
TESTS += tests/unit/test_sse

# Fuzz drivers: with --enable-fuzzing they are libFuzzer targets (clang);
# otherwise they replay the committed corpus as ordinary tests.
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz_msg
tests_fuzz_fuzz_msg_CFLAGS = $(RTW_CFLAGS) -DRTW_LIBFUZZER -fsanitize=fuzzer
tests_fuzz_fuzz_msg_LDFLAGS = -fsanitize=fuzzer
else
check_PROGRAMS += tests/fuzz/fuzz_msg
tests_fuzz_fuzz_msg_CFLAGS = $(RTW_CFLAGS)
TESTS += tests/fuzz/replay-msg.sh
endif
tests_fuzz_fuzz_msg_SOURCES = tests/fuzz/fuzz_msg.c
tests_fuzz_fuzz_msg_LDADD = $(RTW_LIBS)
EXTRA_DIST += tests/fuzz/corpus tests/fuzz/replay-msg.sh

# pgTAP: the schema and its functions and triggers, in a throwaway cluster.
TESTS += tests/pgtap/run.sh
EXTRA_DIST += tests/pgtap

# Integration tests (each starts its own PostgreSQL, daemons and web server).
INTEGRATION_TESTS = \
	tests/integration/test_ctl.py \
	tests/integration/test_fcgi.py \
	tests/integration/test_sse.py \
	tests/integration/test_webhook.py \
	tests/integration/test_e2e.py \
	tests/integration/test_apache.py \
	tests/integration/test_browser.py
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += tests/integration/rtwtest.py $(INTEGRATION_TESTS) \
	tests/browser/package.json tests/browser/package-lock.json tests/browser/driver.mjs
