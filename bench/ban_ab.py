#!/usr/bin/python3
"""bench/ban_ab.py: the cost of a POST's ban check, two rtw-fcgi builds side
by side: A (--before, a build whose check is a statement of its own) and B
(this build's, whose check rides in the insert), on one durable PostgreSQL
behind one nginx, A and B alternating on the same port, one message per
POST (bench/post.lua). Per run: accepted POSTs/s, p50/p99, and the CPU
that rtw-fcgi and PostgreSQL spend per stored message. Medians over the
repetitions, and B/A. Measures; never fails on a number.

usage: RTW_BUILDDIR=$PWD/build/dev nice -n -10 bench/ban_ab.py --before OLD/fcgi/rtw-fcgi
       [--reps 3] [--duration 8] [--conns 1,32]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stack  # noqa: E402
import rtwtest  # noqa: E402  (stack put it on sys.path)


def cpu_by_pid(pids):
    """{pid: CPU seconds} of pids and their children, each on its own."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in (p for pid in pids for p in stack.pids_of(pid)):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return out


def cpu_delta(before, after):
    """CPU spent between two cpu_by_pid samples by the processes alive at
    the second (one that started in between counts whole; one that ended,
    such as the backend of the run before, not at all)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items())


def wrk(port, conns, duration, token, widget, prefix):
    e = dict(os.environ, RTW_BENCH_TOKEN=token, RTW_BENCH_WIDGET_KEY=widget, RTW_BENCH_STREAMS="100",
             RTW_BENCH_PREFIX=prefix)
    cmd = ["wrk", "-t%d" % min(conns, 2), "-c%d" % conns, "-d%ds" % duration, "--latency", "-s",
           os.path.join(HERE, "post.lua"), "http://127.0.0.1:%d/" % port]
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=duration + 60).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
    raise RuntimeError("wrk said nothing usable: " + out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the rtw-fcgi binary to compare against")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conns", default="1,32")
    args = ap.parse_args()
    builds = {"A": os.path.abspath(args.before), "B": rtwtest.prog("rtw-fcgi")}
    st = rtwtest.Stack(durable=True)
    st.fcgi_port = rtwtest.free_port()
    st.start_nginx()
    token = st.token("publisher", ttl=86400)
    # a table with bans in it (of others), as on a live deployment
    st.pg.query("INSERT INTO rtw_bans (user_id, stream_id) SELECT 'banned-' || g, 'ingest-' || (g % 100) "
                "FROM generate_series(1, 1000) g")
    env = {"RTW_FCGI_SOCKET": "127.0.0.1:%d" % st.fcgi_port}
    res = {}
    n = 0
    for rep in range(args.reps):
        for conns in [int(c) for c in args.conns.split(",")]:
            for name in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                d = st._daemon("rtw-fcgi-" + name, [builds[name]], st.fcgi_port, env)
                n += 1
                prefix = "ab%d" % n
                pg = stack.postgres_pids(st.pg.dir)[:1]
                cpu0 = stack.cpu_seconds([d.proc.pid]), cpu_by_pid(pg)
                r = wrk(st.http_port, conns, args.duration, token, st.widget_key, prefix)
                cpu1 = stack.cpu_seconds([d.proc.pid]), cpu_by_pid(pg)
                rows = st.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id LIKE %s",
                                   (prefix + "-%",))[0][0]
                d.stop()
                acked = r.get("statuses", {}).get("201", 0)
                row = {"ok_per_s": acked / r["duration_s"], "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"),
                       "fcgi_us": (cpu1[0] - cpu0[0]) * 1e6 / rows if rows else None,
                       "pg_us": cpu_delta(cpu0[1], cpu1[1]) * 1e6 / rows if rows else None,
                       "lost": max(acked - rows, 0)}
                res.setdefault((conns, name), []).append(row)
                print("rep %d c=%d %s: %.0f POST/s p50 %.2f ms p99 %.2f ms, CPU/msg fcgi %.0f us pg %.0f us, "
                      "load %s" % (rep, conns, name, row["ok_per_s"], row["p50_ms"], row["p99_ms"],
                                   row["fcgi_us"] or 0, row["pg_us"] or 0,
                                   open("/proc/loadavg").read().split()[0]), flush=True)
    print("\nmedians over %d reps (B/A):" % args.reps)
    for conns in [int(c) for c in args.conns.split(",")]:
        for k in ("ok_per_s", "p50_ms", "p99_ms", "fcgi_us", "pg_us"):
            a = statistics.median(x[k] for x in res[(conns, "A")])
            b = statistics.median(x[k] for x in res[(conns, "B")])
            print("c=%-3d %-9s A %9.2f  B %9.2f  B/A %.2f" % (conns, k, a, b, b / a if a else float("nan")))
    print("lost acknowledged rows:", sum(x["lost"] for v in res.values() for x in v))
    st.stop_all()


if __name__ == "__main__":
    main()
