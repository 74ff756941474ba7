#!/usr/bin/env bash
# tests/js/run.sh: the client SDK's unit tests (tests/js/*.test.mjs) under
# Node's built-in runner, for make check; ends with the "N passed, N failed"
# line that ./dev test counts.
set -uo pipefail
SRC=${RTW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v node >/dev/null || { echo "node is missing (apt-get install nodejs)"; exit 77; }
out=$(node --test "$SRC"/tests/js/*.test.mjs 2>&1)
rc=$?
printf '%s\n' "$out"
pass=$(printf '%s\n' "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -1)
fail=$(printf '%s\n' "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -1)
echo "${pass:-0} passed, ${fail:-1} failed"
exit $rc
