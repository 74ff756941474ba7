#!/bin/bash
# tests/package/test_install.sh: `make install DESTDIR=...` (with the
# Debian layout: prefix /usr, sysconfdir /etc) holds every file a deployment
# needs and every installed path that doc/deploy.md, doc/sql.md, README.md
# and the man pages name; the installed programs answer --help and
# --version without starting; `make uninstall` removes what install added.
set -euo pipefail
src=${RTW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${RTW_BUILDDIR:-$src}
dest=$(mktemp -d /tmp/rtw-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
dirs=(prefix=/usr sysconfdir=/etc systemdsystemunitdir=/lib/systemd/system)
fail=0 checked=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -C "$build" -s install DESTDIR="$dest" "${dirs[@]}" >/dev/null

for f in usr/bin/rtw-fcgi usr/bin/rtw-sse usr/bin/rtw-webhookd usr/bin/rtwctl \
	usr/share/rtw/sql/001_init.sql usr/share/rtw/sql/005_sql_views.sql \
	usr/share/rtw/web/rtw.js usr/share/rtw/web/errors/413.json usr/share/rtw/web/errors/503.json \
	etc/rtw/rtw.ini etc/rtw/nginx-rtw.conf etc/rtw/apache-rtw.conf etc/rtw/apache-events-retry.lua \
	lib/systemd/system/rtw-fcgi.service lib/systemd/system/rtw-sse.service \
	lib/systemd/system/rtw-sse@.service lib/systemd/system/rtw-webhookd.service \
	usr/share/man/man8/rtw-fcgi.8 usr/share/man/man8/rtw-sse.8 usr/share/man/man8/rtw-webhookd.8 \
	usr/share/man/man1/rtwctl.1 usr/share/man/man5/rtw.ini.5 \
	usr/share/doc/rtw/deploy.md usr/share/doc/rtw/config.md usr/share/doc/rtw/sql.md \
	usr/share/doc/rtw/rtw.ini.sample; do
	checked=$((checked + 1))
	[ -f "$dest/$f" ] || bad "not installed: /$f"
done

# Every installed path the docs name (what an operator is told to use),
# except files the operator writes (secrets.env) and folders.
docs=("$src/doc/deploy.md" "$src/doc/sql.md" "$src/README.md" "$src"/man/*.[158])
while read -r p; do
	checked=$((checked + 1))
	[ -e "$dest$p" ] || bad "named in the docs but not installed: $p"
done < <(grep -ohE '/(usr/share/rtw|usr/share/doc/rtw|etc/rtw|lib/systemd/system|usr/bin)/[A-Za-z0-9_.@/-]*[A-Za-z0-9_@]' "${docs[@]}" |
	sed -e 's/\\//g' | grep -v -e '/etc/rtw/secrets.env' -e '@$' | sort -u)

# The units start the installed programs and read the installed files.
for u in "$dest"/lib/systemd/system/rtw-*.service; do
	checked=$((checked + 1))
	exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u")
	[ -x "$dest$exe" ] || bad "$(basename "$u"): ExecStart $exe is not installed"
done

# --help and --version never start anything (no PostgreSQL, no port).
for p in rtw-fcgi rtw-sse rtw-webhookd rtwctl; do
	checked=$((checked + 2))
	out=$(RTW_PGDSN=host=/nonexistent timeout 10 "$dest/usr/bin/$p" --help) || bad "$p --help failed"
	grep -q "^usage: $p" <<<"$out" || bad "$p --help: no usage line"
	out=$(timeout 10 "$dest/usr/bin/$p" --version) || bad "$p --version failed"
	grep -qE "^$p \(rtw\) [0-9]" <<<"$out" || bad "$p --version: \"$out\""
done
checked=$((checked + 1))
if "$dest/usr/bin/rtw-sse" --config "$dest/nonexistent.ini" 2>/dev/null; then
	bad "a missing --config file is not an error"
fi

env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -C "$build" -s uninstall DESTDIR="$dest" "${dirs[@]}" >/dev/null
left=$(find "$dest" -type f)
checked=$((checked + 1))
[ -z "$left" ] || bad "left after make uninstall: $left"

echo "$((checked - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
