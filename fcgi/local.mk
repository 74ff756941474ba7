# fcgi/: rtw-fcgi, the FastCGI application (ingest, history, webhook
# status). One worker thread per request in flight, each with its own
# PostgreSQL connection; see doc/fcgi.md.
bin_PROGRAMS += fcgi/rtw-fcgi
fcgi_rtw_fcgi_SOURCES = \
	fcgi/fcgi.h \
	fcgi/main.c \
	fcgi/http.c \
	fcgi/respond.c \
	fcgi/widget.c \
	fcgi/handlers.c \
	fcgi/publish.c \
	fcgi/bans.c \
	fcgi/db.c \
	fcgi/commit.c \
	fcgi/health.c
fcgi_rtw_fcgi_CFLAGS = $(RTW_CFLAGS)
fcgi_rtw_fcgi_LDADD = $(RTW_LIBS) $(FCGI_LIBS) $(HTTP_PARSER_LIBS)

# rtw_publish(): backend publishing from inside PostgreSQL (doc/publishing.md)
dist_sql_DATA += sql/006_publish.sql
# the per-row cost of rtw_messages' checks for batches (doc/performance.md)
dist_sql_DATA += sql/013_insert_cost.sql
