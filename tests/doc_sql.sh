#!/bin/sh
# tests/doc_sql.sh: every SQL block of doc/sql.md's cookbook appears, as
# written (without its final semicolon), in tests/pgtap/cookbook.sql, which
# runs it against known data. Blocks before the "## Cookbook" heading are
# examples of setup, not queries, and are not checked.
src=${RTW_SRCDIR:-.}
exec /usr/bin/python3 - "$src/doc/sql.md" "$src/tests/pgtap/cookbook.sql" <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
test = open(sys.argv[2]).read()
cookbook = doc.split("\n## Cookbook\n", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```sql\n(.*?)```", cookbook, re.S)
missing = [b for b in blocks if b.strip().rstrip(";") not in test]
for b in missing:
    print("not in tests/pgtap/cookbook.sql:\n" + b)
print("%d of %d cookbook queries tested" % (len(blocks) - len(missing), len(blocks)))
sys.exit(1 if missing or not blocks else 0)
PY
