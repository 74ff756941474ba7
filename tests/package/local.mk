# tests/package/local.mk: the checks of what rtw ships: the cookbook of
# doc/sql.md against its pgTAP test, `make install DESTDIR=...` against the
# paths the docs name, and (under ./dev test) the Debian package and the
# deploy guide on this machine.
TESTS += tests/doc_sql.sh tests/package/test_install.sh tests/package/test_deb.py
EXTRA_DIST += tests/doc_sql.sh tests/package/test_install.sh tests/package/test_deb.py
