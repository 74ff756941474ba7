#!/usr/bin/python3
"""bench/front_ab.py: nginx in front of rtw-sse over loopback TCP (A, the
shipped default) against a unix socket (B, sse.listen = unix:/path), or
with --b-events against the shipped events location with more directives
(B, e.g. "chunked_transfer_encoding off;"), side by side on one
bench/stack.py stack: subscribers through nginx, fan-out 1,000 x 80
msg/s, A and B alternating (nginx reloaded between them), medians over
the repetitions. Measures; never fails on a number.

usage: RTW_BUILDDIR=$PWD/build/dev nice -n -10 bench/front_ab.py [--reps N] [--tool bench/rtw-bench]
       [--b-events DIRECTIVES]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stack  # noqa: E402
import rtwtest  # noqa: E402  (stack put it on sys.path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tool", default=os.path.join(HERE, "rtw-bench"))
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=80)
    ap.add_argument("--b-events", default="",
                    help="B: these directives added to conf/nginx-rtw.conf's events location (instead of unix)")
    args = ap.parse_args()
    ns = type("Ns", (), {"sse_procs": 1, "apache_streams": 0})()
    st, info = stack.rtw(ns)
    try:
        conf = os.path.join(st.tmp, "nginx", "nginx.conf")
        with open(conf) as f:
            base = f.read()
        if args.b_events:
            # the same rtw-sse; B's nginx includes a copy of the routes with the directives added
            sse_pid = {"A": info["sse_pids"], "B": info["sse_pids"]}
            routes = os.path.join(rtwtest.SRCDIR, "conf", "nginx-rtw.conf")
            with open(routes) as f:
                rtext = f.read()
            loc = "location ~ ^/v1/streams/[^/]+/events$ {\n"
            assert loc in rtext
            b_routes = os.path.join(st.tmp, "nginx", "nginx-rtw-b.conf")
            with open(b_routes, "w") as f:
                f.write(rtext.replace(loc, loc + "    " + args.b_events + "\n"))
            text = {"A": base, "B": base.replace("include %s;" % routes, "include %s;" % b_routes)}
            assert text["B"] != base
            names = ("shipped", "+ " + args.b_events)
        else:
            sock = os.path.join(st.tmp, "rtw-sse.sock")
            st._daemon("rtw-sse-unix", [rtwtest.prog("rtw-sse")], None, {"RTW_SSE_LISTEN": "unix:" + sock})
            rtwtest.wait_for(lambda: os.path.exists(sock), 10, "rtw-sse to listen on " + sock)
            sse_pid = {"A": info["sse_pids"], "B": [st.daemons["rtw-sse-unix"].proc.pid]}
            tcp = "server 127.0.0.1:%d;" % info["sse_port"]
            text = {"A": base, "B": base.replace(tcp, "server unix:%s;" % sock)}
            names = ("TCP", "unix")
        res = {"A": [], "B": []}
        for rep in range(args.reps):
            for v in ("A", "B"):
                with open(conf, "w") as f:
                    f.write(text[v])
                subprocess.run(["nginx", "-c", conf, "-s", "reload"], check=True)
                time.sleep(2)  # the new workers replace the old ones
                s = "ab%d%s%d" % (int(time.time()) % 100000, v, rep)
                pids = (sse_pid[v] + info["fcgi_pids"] + stack.pids_of(info["nginx_master"]) +
                        stack.postgres_pids(st.pg.dir))
                port = info["http_port"]
                cmd = [args.tool, "run", "--format", "rtw", "--widget-key", info["widget_key"],
                       "--token", info["token"], "--sub", "127.0.0.1:%d/v1/streams/%s/events" % (port, s),
                       "--pub", "127.0.0.1:%d/v1/streams/%s/messages" % (port, s),
                       "--pids", ",".join(map(str, sse_pid[v])), "--pids-all", ",".join(map(str, pids)),
                       "--conns", str(args.conns), "--rate", str(args.rate), "--duration", "10",
                       "--pub-conns", "16", "--drain", "3"]
                with open("/proc/loadavg") as f:
                    load = f.read().split()[0]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                j = json.loads(r.stdout.strip().splitlines()[-1])
                res[v].append(j)
                print("%s rep%d load %s: p50 %.1f ms p99 %.1f ms, rtw-sse %.2f µs/delivery, pipeline %.2f, lost %d"
                      % (v, rep, load, j["p50_ms"], j["p99_ms"], j["cpu_us_per_delivery"],
                         j["all_cpu_us_per_delivery"], j["lost"]), flush=True)
        for v, name in zip(("A", "B"), names):
            print("median %s (%s): p50 %.1f ms, p99 %.1f ms, rtw-sse %.2f µs/delivery, pipeline %.2f" % (
                v, name, *(statistics.median(x[k] for x in res[v]) for k in
                           ("p50_ms", "p99_ms", "cpu_us_per_delivery", "all_cpu_us_per_delivery"))))
    finally:
        st.stop_all()
        st.pg.stop()


if __name__ == "__main__":
    main()
