#!/bin/bash
# tests/pgtap/run.sh: runs the pgTAP tests (tests/pgtap/*.sql) with pg_prove
# against a throwaway cluster migrated by rtwctl. The cluster comes from the
# integration harness so both layers share one way of starting PostgreSQL.
set -euo pipefail
src=${RTW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
exec /usr/bin/python3 - "$src" <<'PY'
import os, subprocess, sys
src = sys.argv[1]
sys.path.insert(0, os.path.join(src, "tests", "integration"))
import rtwtest
import shutil
rtwtest.need(shutil.which("pg_prove"), "pg_prove (libtap-parser-sourcehandler-pgtap-perl)")
rtwtest.need(os.path.exists("/usr/share/postgresql/%s/extension/pgtap.control" % rtwtest.PGBIN.split("/")[-2]),
             "pgTAP (postgresql-%s-pgtap)" % rtwtest.PGBIN.split("/")[-2])
stack = rtwtest.Stack()
stack.pg.query("CREATE EXTENSION IF NOT EXISTS pgtap")
tests = sorted(os.path.join(src, "tests", "pgtap", f)
               for f in os.listdir(os.path.join(src, "tests", "pgtap")) if f.endswith(".sql"))
r = subprocess.run(["pg_prove", "-h", "127.0.0.1", "-p", str(stack.pg.port), "-U", "postgres", "-d", "rtw"] + tests)
sys.exit(r.returncode)
PY
