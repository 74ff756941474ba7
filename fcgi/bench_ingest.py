"""fcgi/bench_ingest.py: measures durable ingest through nginx -> rtw-fcgi ->
PostgreSQL (fsync and synchronous_commit on) with wrk and fcgi/bench_post.lua,
for a few rtw-fcgi settings, 3 runs each, and prints the medians.

usage: RTW_BUILDDIR=. /usr/bin/python3 fcgi/bench_ingest.py [duration_s]
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402

DURATION = int(sys.argv[1]) if len(sys.argv) > 1 else 10
VARIANTS = [  # name, rtw-fcgi environment, wrk connections
    ("per-request, 8 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "1", "RTW_FCGI_WORKERS": "8"}, 64),
    ("per-request, 64 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "1", "RTW_FCGI_WORKERS": "64"}, 128),
    ("group commit, 8 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "64", "RTW_FCGI_WORKERS": "8"}, 64),
    ("group commit, 32 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "64", "RTW_FCGI_WORKERS": "32"}, 64),
    ("group commit, 64 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "64", "RTW_FCGI_WORKERS": "64"}, 128),
    ("group commit, 128 workers", {"RTW_FCGI_GROUP_COMMIT_MAX": "128", "RTW_FCGI_WORKERS": "128"}, 256),
    ("group commit, 64 w, unix", {"RTW_FCGI_GROUP_COMMIT_MAX": "64", "RTW_FCGI_WORKERS": "64", "unix": "1"}, 128),
    ("group commit, 128 w, unix", {"RTW_FCGI_GROUP_COMMIT_MAX": "128", "RTW_FCGI_WORKERS": "128", "unix": "1"}, 256),
]
ONLY = os.environ.get("BENCH_ONLY", "")  # run only variants whose name contains this


def wrk(st, streams, conns):
    env = dict(os.environ, RTW_BENCH_TOKEN=st.token("bench", ttl=3600), RTW_BENCH_WIDGET_KEY=st.widget_key,
               RTW_BENCH_STREAMS=str(streams))
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % DURATION, "-s",
                          os.path.join(HERE, "bench_post.lua"), st.url],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("wrk failed: %s %s" % (out.stdout[-2000:], out.stderr[-2000:]))
    out = out.stdout
    line = [x for x in out.splitlines() if x.startswith("WRKJSON ")][0]
    return json.loads(line[len("WRKJSON "):])


def start_unix(st, env):
    """rtw-fcgi on a unix socket and a second nginx in front of it."""
    sock = os.path.join(st.tmp, "fcgi.sock")
    env = dict(env)
    env.pop("unix")
    env["RTW_FCGI_SOCKET"] = sock
    env["RTW_FCGI_SOCKET_MODE"] = "0666"  # nginx workers run as another user
    st._daemon("rtw-fcgi", [rtwtest.prog("rtw-fcgi")], None, env)
    rtwtest.wait_for(lambda: os.path.exists(sock), 10, "the unix socket")
    assert os.stat(sock).st_mode & 0o777 == 0o666
    st.stop_nginx()
    rundir = os.path.join(st.tmp, "nginx-unix")
    os.makedirs(rundir, exist_ok=True)
    conf = os.path.join(rundir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(st.render("nginx.conf.in", RUNDIR=rundir, LISTEN="127.0.0.1:%d" % st.http_port,
                          FCGI_ADDR="unix:" + sock, SSE_ADDR="127.0.0.1:%d" % rtwtest.free_port(),
                          WEBROOT=os.path.join(rtwtest.SRCDIR, "web"), CONFDIR=os.path.join(rtwtest.SRCDIR, "conf")))
    subprocess.run(["nginx", "-c", conf, "-e", os.path.join(rundir, "nginx-error.log")], check=True)
    st.nginx_pidfile = os.path.join(rundir, "nginx.pid")
    rtwtest.wait_port(st.http_port)


def main():
    st = rtwtest.Stack(durable=True, extra_env={"RTW_LOG_LEVEL": "warn"})
    st.start_fcgi()
    st.start_nginx()
    results = {}
    for name, env, conns in VARIANTS:
        if ONLY and ONLY not in name:
            continue
        st.daemons["rtw-fcgi"].stop()
        if "unix" in env:
            start_unix(st, env)
        else:
            st.start_fcgi(env)
        runs = []
        for _ in range(3):
            before = st.pg.query("SELECT count(*) FROM rtw_messages")[0][0]
            xids = st.pg.query("SELECT count(DISTINCT xid) FROM rtw_messages")[0][0]
            r = wrk(st, 100, conns)
            stored = st.pg.query("SELECT count(*) FROM rtw_messages")[0][0] - before
            txns = st.pg.query("SELECT count(DISTINCT xid) FROM rtw_messages")[0][0] - xids
            ok = r["requests"] - r["non2xx"]
            assert stored >= ok, (stored, r)  # wrk drops replies in flight at the end
            runs.append((ok / r["duration_s"], r["p50_ms"], r["p99_ms"], r["non2xx"] + r["errors"], stored / max(txns, 1)))
        med = statistics.median(x[0] for x in runs)
        results[name] = med
        print("%-26s c=%-3d median %6.0f msg/s (runs: %s) p50 %.1f ms p99 %.1f ms rows/txn %.1f non-201: %d" % (
            name, conns, med, ", ".join("%.0f" % x[0] for x in runs), statistics.median(x[1] for x in runs),
            statistics.median(x[2] for x in runs), statistics.median(x[4] for x in runs),
            sum(x[3] for x in runs)), flush=True)
    return results


if __name__ == "__main__":
    main()
