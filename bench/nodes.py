#!/usr/bin/python3
"""bench/nodes.py: PostgreSQL's work per message as the number of rtw-sse
processes tailing one primary grows (issue 13 item 2, issue 15).

One throwaway stack (tests/integration/rtwtest.py: PostgreSQL with
pg_stat_statements, rtw-fcgi, nginx) and, for each count K, K rtw-sse
processes on their own ports (no subscribers: the tail runs the same for
every process whether anyone listens or not). For each K it measures an
idle phase (nothing posted: the safety poll only) and a publishing phase
(messages posted one by one at a fixed rate through nginx), and prints one
table: tail queries per message, rows the tail returned per message, the
tail's execution time and the CPU of the rtw-sse backends (from
/proc/<pid>/stat) per message and per idle second. Measures; never fails
on a number. The machine is shared: read ratios, not absolutes.

usage: RTW_BUILDDIR=$PWD/build/dev python3 bench/nodes.py [--counts 1,4,16,64]
       [--messages 200] [--rate 50] [--idle-s 5]
"""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids):
    """User + system CPU seconds of the processes still alive."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def sse_backends(pg):
    return [r[0] for r in pg.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'rtw-sse'")]


def tail_stats(pg):
    """(calls, rows, exec ms) of rtw-sse's tail statement so far."""
    r = pg.query("SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0), coalesce(sum(total_exec_time), 0) "
                 "FROM pg_stat_statements WHERE query LIKE 'SELECT m.xid::text,%%rtw_horizon() AS h%%'")
    return tuple(float(x) for x in r[0])


def measure(pg, seconds, work):
    """Runs work() (or sleeps) and returns the deltas over it."""
    pids = sse_backends(pg)
    pg.query("SELECT pg_stat_statements_reset()")
    c0, t0 = cpu_s(pids), time.time()
    work() if work else time.sleep(seconds)
    calls, rows, ms = tail_stats(pg)
    return {"calls": calls, "rows": rows, "exec_ms": ms, "cpu_s": cpu_s(pids) - c0, "wall_s": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,4,16,64")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--idle-s", type=float, default=5.0)
    a = ap.parse_args()

    st = rtwtest.Stack(extra_env={"RTW_FCGI_WORKERS": "4", "RTW_LOG_LEVEL": "warn"})
    st.pg.psql_admin("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    st.pg.restart()
    st.pg.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    st.start_fcgi()
    st.start_sse()
    port = st.start_nginx()
    token = st.token("bench")
    names = ["rtw-sse"]

    def publish():
        gap = 1.0 / a.rate
        t = time.time()
        for n in range(a.messages):
            rtwtest.request(port, "POST", "/v1/streams/bench%d/messages" % (n % 10),
                            {"type": "broadcast", "widget_key": st.widget_key, "timestamp": n, "message": {"n": n}},
                            token=token)
            t += gap
            time.sleep(max(0.0, t - time.time()))
        time.sleep(1.0)  # the last wake-ups finish

    print("load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    print("| rtw-sse procs | idle tail q/s | idle backend CPU ms/s | tail q/msg | tail rows/msg "
          "| tail exec µs/msg | backend CPU µs/msg | per proc: backend CPU µs/msg |")
    print("|---|---|---|---|---|---|---|---|")
    for k in [int(x) for x in a.counts.split(",")]:
        while len(names) < k:
            name = "rtw-sse-%d" % len(names)
            st.start_sse(name=name, port=rtwtest.free_port())
            names.append(name)
        while len(names) > k:
            st.daemons.pop(names.pop()).stop()
        rtwtest.wait_for(lambda: len(sse_backends(st.pg)) >= k, 60, "%d rtw-sse backends" % k)
        time.sleep(1.0)
        idle = measure(st.pg, a.idle_s, None)
        pub = measure(st.pg, 0, publish)
        m = a.messages
        # the idle rate is subtracted from the publishing phase: what is left
        # is the cost the messages caused
        extra_cpu = max(0.0, pub["cpu_s"] - idle["cpu_s"] / idle["wall_s"] * pub["wall_s"])
        print("| %d | %.1f | %.2f | %.2f | %.2f | %.0f | %.0f | %.1f |" %
              (k, idle["calls"] / idle["wall_s"], 1000 * idle["cpu_s"] / idle["wall_s"], pub["calls"] / m,
               pub["rows"] / m, 1000 * pub["exec_ms"] / m, 1e6 * extra_cpu / m, 1e6 * extra_cpu / m / k))
        sys.stdout.flush()
    st.stop_all()


if __name__ == "__main__":
    threading.current_thread().name = "nodes"
    main()
