# lib/: code every rtw program shares (message model, config, logging,
# tokens, PostgreSQL helpers, the event loop and the async PostgreSQL
# connection of the two loop daemons, the per-key token buckets of the
# rate limits).
noinst_LIBRARIES += lib/librtw.a
lib_librtw_a_SOURCES = \
	lib/rtw.h lib/util.c \
	lib/log.h lib/log.c \
	lib/cfg.h lib/cfg.c \
	lib/daemon.h lib/daemon.c \
	lib/token.h lib/token.c \
	lib/msg.h lib/msg.c lib/msg_json.c \
	lib/pgutil.h lib/pgutil.c \
	lib/net.h lib/net.c \
	lib/probe.h lib/probe.c \
	lib/metrics.h lib/metrics.c \
	lib/url.h lib/url.c \
	lib/cors.h lib/cors.c \
	lib/clientaddr.h lib/clientaddr.c \
	lib/proxyproto.h lib/proxyproto.c \
	lib/anonid.h lib/anonid.c \
	lib/row.h lib/row.c \
	lib/loop.h lib/loop.c \
	lib/pgconn.h lib/pgconn.c \
	lib/ratelimit.h lib/ratelimit.c \
	lib/buf.h lib/buf.c \
	lib/reqid.h lib/reqid.c
lib_librtw_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBPQ_CFLAGS) $(INIH_CFLAGS) $(OPENSSL_CFLAGS)

# What a program linking librtw needs.
RTW_LIBS = lib/librtw.a $(JANSSON_LIBS) $(LIBPQ_LIBS) $(INIH_LIBS) $(OPENSSL_LIBS) $(PTHREAD_LIBS) -lm
RTW_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBPQ_CFLAGS) $(INIH_CFLAGS) $(OPENSSL_CFLAGS)

dist_sql_DATA += sql/001_init.sql
