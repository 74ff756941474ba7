#!/bin/sh
# tests/format.sh: every C file follows .clang-format (Debian's
# clang-format 14). Fix with: clang-format -i FILE
src=${RTW_SRCDIR:-.}
cd "$src" || exit 1
if ! command -v clang-format >/dev/null; then
	echo "SKIP: needs clang-format"
	[ "${RTW_REQUIRE_ALL:-}" = 1 ] && { echo "FAIL: RTW_REQUIRE_ALL=1: every test must run"; exit 1; }
	exit 77
fi
bad=0
for f in $(find lib fcgi sse webhookd ctl bench tests -name '*.[ch]' -not -path '*/corpus/*' | sort); do
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f (clang-format -i $f)"
		bad=$((bad + 1))
	fi
done
echo "$bad file(s) not formatted"
[ "$bad" -eq 0 ]
