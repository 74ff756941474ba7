#!/usr/bin/python3
"""bench/history.py: "latest N" history on one large stream. Starts a
durable throwaway PostgreSQL, rtw-fcgi and nginx (tests/integration/
rtwtest.py; build with ./dev build and pass RTW_BUILDDIR=build/dev for an
optimized rtw-fcgi), loads ROWS broadcasts into one stream with one
generate_series INSERT, then prints the plans of both history directions
(EXPLAIN ANALYZE of the statements rtw-fcgi prepares) and the latency of
"the latest 50", newest-first pages deep in the stream and the first page
in stream order: in SQL (psycopg2, one connection) and over HTTP (GET
through nginx, one keep-alive connection). Measures; never fails on a
number. See doc/performance.md "History: latest N on a 10 M-row stream".

usage: RTW_BUILDDIR=build/dev /usr/bin/python3 bench/history.py [--rows N] [--reps N]
"""
import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402

tempfile.tempdir = os.environ.get("RTW_BENCH_TMP", "/tmp/rtwbench")
os.makedirs(tempfile.tempdir, mode=0o755, exist_ok=True)
os.chmod(tempfile.tempdir, 0o755)

# The statement rtw-fcgi prepares as hist_desc / hist_asc (fcgi/db.c),
# with the absent bounds it passes.
PAGE = ("SELECT m.id::text, m.stream_id, m.author_id, m.to_user_id, m.message::text, m.ts::text, m.type,"
        " m.widget_key::text, rtw_rfc3339(m.created_at)"
        " FROM rtw_messages m WHERE m.type = 'broadcast' AND m.ts >= 0 AND m.ts <= 'Infinity'"
        " AND (m.stream_id, m.widget_key, m.xid, m.id) > (%(s)s, %(w)s::uuid, %(lox)s::xid8, %(loi)s::bigint)"
        " AND (m.stream_id, m.widget_key, m.xid, m.id) < (%(s)s, %(w)s::uuid, least(%(hix)s::xid8, rtw_horizon()),"
        " CASE WHEN %(hix)s::xid8 < rtw_horizon() THEN %(hii)s::bigint ELSE 0 END)"
        " ORDER BY m.stream_id {d}, m.widget_key {d}, m.xid {d}, m.id {d} LIMIT 51")
MIN = {"lox": "0", "loi": "0"}
MAX = {"hix": "18446744073709551615", "hii": "9223372036854775807"}


def ms(samples):
    s = sorted(samples)
    return "median %.3f ms, p99 %.3f ms" % (statistics.median(s) * 1e3, s[int(len(s) * 0.99) - 1] * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=500)
    a = ap.parse_args()

    st = rtwtest.Stack(durable=True, extra_env={"RTW_LOG_LEVEL": "warn"})
    st.start_fcgi()
    st.start_nginx()
    stream, wk = "live", st.widget_key
    conn = st.pg.connect()
    cur = conn.cursor()
    t0 = time.time()
    # the stream: every 10th row is another widget's (a poll beside the chat)
    cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                " SELECT %s, 'broadcast', CASE WHEN g %% 10 = 0 THEN %s ELSE %s END::uuid, 'u' || (g %% 1000),"
                " jsonb_build_object('text', 'chat line number ' || g), g / 10.0"
                " FROM generate_series(1, %s) g", (stream, st.widget_key2, wk, a.rows))
    load = time.time() - t0
    # other streams, a tenth as many rows over 1,000 of them
    cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                " SELECT 'other' || (g %% 1000), 'broadcast', %s, 'u', jsonb_build_object('n', g), 0"
                " FROM generate_series(1, %s) g", (wk, a.rows // 10))
    t0 = time.time()
    cur.execute("VACUUM ANALYZE rtw_messages")
    vac = time.time() - t0
    cur.execute("SELECT pg_size_pretty(pg_total_relation_size('rtw_messages'))")
    print("loaded %d rows in %.0f s (one INSERT), %d more in other streams; VACUUM ANALYZE %.0f s;"
          " table with indexes %s" % (a.rows, load, a.rows // 10, vac, cur.fetchone()[0]))
    cur.execute("SELECT xid::text, id::text FROM rtw_messages WHERE stream_id = %s AND widget_key = %s"
                " AND id = %s", (stream, wk, a.rows // 2 + 1))
    mid_x, mid_i = cur.fetchone()

    cases = {
        "latest 50 (desc)": ("DESC", dict(MIN, **MAX)),
        "50 before the middle (desc, before_id)": ("DESC", dict(MIN, hix=mid_x, hii=mid_i)),
        "first 50 (asc)": ("", dict(MIN, **MAX)),
        "50 after the middle (asc, since_id)": ("", dict(MAX, lox=mid_x, loi=mid_i)),
    }
    for name, (d, b) in cases.items():
        sql = PAGE.format(d=d)
        params = dict(b, s=stream, w=wk)
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
        print("\n## %s\n%s" % (name, "\n".join(r[0] for r in cur.fetchall())))
        samples = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            cur.execute(sql, params)
            rows = cur.fetchall()
            samples.append(time.perf_counter() - t0)
        assert len(rows) == 51
        print("SQL, 51 rows: %s" % ms(samples))

    h = http.client.HTTPConnection("127.0.0.1", st.http_port)
    tok = st.token("viewer")
    for name, q in (("latest 50", "order=desc&limit=50"), ("50 before the middle", "order=desc&limit=50&before_id=%s"
                                                             % mid_i), ("first 50", "limit=50")):
        samples = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            h.request("GET", "/v1/streams/%s/messages?widget_key=%s&%s" % (stream, wk, q),
                      headers={"Authorization": "Bearer " + tok})
            r = h.getresponse()
            body = r.read()
            samples.append(time.perf_counter() - t0)
            assert r.status == 200, body[:300]
        print("HTTP GET %s through nginx (%d bytes): %s" % (name, len(body), ms(samples)))
    conn.close()
    st.stop_all()


if __name__ == "__main__":
    main()
