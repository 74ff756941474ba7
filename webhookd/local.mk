# webhookd/: rtw-webhookd, the webhook worker (libcurl multi + libpq on
# one epoll loop: lib/loop.c, lib/pgconn.c). Pure parts (addr.c, job.c)
# are unit-tested by tests/unit/test_whk_addr.c and
# tests/unit/test_whk_job.c.
bin_PROGRAMS += webhookd/rtw-webhookd
webhookd_rtw_webhookd_SOURCES = \
	webhookd/addr.h webhookd/addr.c \
	webhookd/job.h webhookd/job.c \
	webhookd/db.h webhookd/db.c \
	webhookd/fetch.h webhookd/fetch.c \
	webhookd/worker.h webhookd/worker.c \
	webhookd/health.h webhookd/health.c \
	webhookd/main.c
webhookd_rtw_webhookd_CFLAGS = $(RTW_CFLAGS) $(LIBCURL_CFLAGS)
webhookd_rtw_webhookd_LDADD = $(RTW_LIBS) $(LIBCURL_LIBS) $(HTTP_PARSER_LIBS)

dist_sql_DATA += sql/002_webhooks.sql
dist_sql_DATA += sql/004_webhook_fairness.sql
dist_sql_DATA += sql/010_idempotency_retention.sql
