# sse/: rtw-sse, the Server-Sent Events daemon (one epoll loop per
# process; see doc/sse.md). The pure parts (frames, the subscriber index,
# the request-head glue) are also linked into the unit tests.
noinst_LIBRARIES += sse/libsse.a
sse_libsse_a_SOURCES = sse/sse.h sse/frame.c sse/subs.c sse/req.c
sse_libsse_a_CFLAGS = $(RTW_CFLAGS)

bin_PROGRAMS += sse/rtw-sse
sse_rtw_sse_SOURCES = sse/sse.h sse/tls.c sse/conn.c sse/bans.c sse/presence.c sse/routes.c sse/pg.c sse/relay.c sse/loop.c
sse_rtw_sse_CFLAGS = $(RTW_CFLAGS)
sse_rtw_sse_LDADD = sse/libsse.a $(RTW_LIBS) $(HTTP_PARSER_LIBS)
# Presence: each process's per-stream counts (doc/sse.md, "Presence").
dist_sql_DATA += sql/009_presence.sql
