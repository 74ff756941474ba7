# conf/local.mk: what `make install` puts beside the programs and the SQL:
# the sample configuration (never over an existing one), the nginx and
# Apache snippets, the systemd units (their paths follow bindir and
# sysconfdir), the browser client and JSON error pages of web/, man pages
# and the documentation. tests/package/test_install.sh checks the result
# against the paths the docs name.
rtwconfdir = $(sysconfdir)/rtw
dist_rtwconf_DATA = conf/nginx-rtw.conf conf/apache-rtw.conf conf/apache-events-retry.lua

webdir = $(pkgdatadir)/web
dist_web_DATA = web/rtw.js
weberrorsdir = $(webdir)/errors
dist_weberrors_DATA = web/errors/413.json web/errors/503.json web/errors/400.json web/errors/404.json web/errors/414.json

dist_man_MANS = man/rtw-fcgi.8 man/rtw-sse.8 man/rtw-webhookd.8 man/rtwctl.1 man/rtw.ini.5

dist_doc_DATA = README.md conf/rtw.ini.sample doc/architecture.md doc/config.md doc/deploy.md \
	doc/fcgi.md doc/sse.md doc/webhooks.md doc/widgets.md doc/sql.md doc/performance.md doc/testing.md \
	doc/api.md doc/openapi.yaml doc/security.md doc/operations.md doc/publishing.md doc/scaling.md \
	conf/grafana-rtw.json conf/prometheus-rtw-rules.yml

systemdunitdir = $(systemdsystemunitdir)
RTW_UNITS = rtw-fcgi.service rtw-sse.service rtw-sse@.service rtw-webhookd.service
EXTRA_DIST += $(RTW_UNITS:%=conf/systemd/%) debian

install-data-local:
	$(MKDIR_P) '$(DESTDIR)$(systemdunitdir)' '$(DESTDIR)$(rtwconfdir)'
	for u in $(RTW_UNITS); do \
	  sed -e 's|/usr/bin/|$(bindir)/|g' -e 's|/etc/rtw/|$(rtwconfdir)/|g' \
	      -e 's|/usr/share/doc/rtw/|$(docdir)/|g' '$(srcdir)/conf/systemd/'"$$u" \
	      >'$(DESTDIR)$(systemdunitdir)/'"$$u" || exit 1; \
	  chmod 644 '$(DESTDIR)$(systemdunitdir)/'"$$u"; \
	done
	test -f '$(DESTDIR)$(rtwconfdir)/rtw.ini' || \
	  $(INSTALL_DATA) '$(srcdir)/conf/rtw.ini.sample' '$(DESTDIR)$(rtwconfdir)/rtw.ini'

# rtw.ini goes only while it is still the untouched sample.
uninstall-local:
	for u in $(RTW_UNITS); do rm -f '$(DESTDIR)$(systemdunitdir)/'"$$u"; done
	if cmp -s '$(srcdir)/conf/rtw.ini.sample' '$(DESTDIR)$(rtwconfdir)/rtw.ini'; then \
	  rm -f '$(DESTDIR)$(rtwconfdir)/rtw.ini'; fi

# The analysts' views and role (doc/sql.md), applied by rtwctl migrate.
dist_sql_DATA += sql/005_sql_views.sql
