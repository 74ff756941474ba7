#!/bin/bash
# tests/unit/run-pgconn.sh: runs tests/unit/test_pgconn against a throwaway
# PostgreSQL cluster started by the integration harness (the same one
# tests/pgtap/run.sh uses), whose connection string it passes in
# RTW_TEST_PGDSN.
set -euo pipefail
src=${RTW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${RTW_BUILDDIR:-$src}
exec /usr/bin/python3 - "$src" "$build" <<'PY'
import os, subprocess, sys
src, build = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(src, "tests", "integration"))
import rtwtest
pg = rtwtest.Postgres(rtwtest.TempDir().path)
env = dict(os.environ, RTW_TEST_PGDSN=pg.dsn)
r = subprocess.run([os.path.join(build, "tests", "unit", "test_pgconn")], env=env)
sys.exit(r.returncode)
PY
