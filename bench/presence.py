#!/usr/bin/python3
"""bench/presence.py: the PostgreSQL work of presence (doc/sse.md,
"Presence") for N connections on one stream, each its own viewer: the
rtw_presence_put() calls and the rows they insert, update and delete per
interval, from PostgreSQL's own statistics (pg_stat_user_functions,
pg_stat_user_tables), first with no viewer coming or going, then with one
viewer leaving and one arriving every interval. Not a timed test: it counts
work. The hard open-file limit (20,000 here) caps a process, so the
connections are spread over ceil(N / 15,000) rtw-sse processes sharing one
port and as many client processes, each from its own loopback address
(a source address has only ~28,000 ephemeral ports).

Usage: RTW_BUILDDIR=build/dev bench/presence.py [N ...]   (default: 50 50000)
"""
import math
import os
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402

PER_PROC = 15000
INTERVAL_MS = 2000
WINDOW = 10  # intervals per measurement
STREAM = "bench"


def client(port, src, first, count, interval_s):
    """A client process: count connections from src, users u<first>...;
    after a line on stdin, one viewer leaves and a new one arrives every
    interval (until stdin closes)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 1000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    socks = []

    def connect(user):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(("GET /v1/streams/%s/events?user_id=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (STREAM, user)).encode())
        return s
    for i in range(count):
        socks.append(connect("u%d" % (first + i)))
    print("ready", flush=True)
    if not sys.stdin.readline():
        return
    n = first + count
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        time.sleep(interval_s)
        socks.pop(0).close()
        socks.append(connect("u%d" % n))
        n += 1
        try:
            if sys.stdin.read() == "":
                return
        except (BlockingIOError, TypeError):
            pass


def stats(pg):
    f = pg.query("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = 'rtw_presence_put'")
    t = pg.query("SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0) "
                 "FROM pg_stat_user_tables WHERE relname = 'rtw_presence'")
    return [int(f[0][0])] + [int(x) for x in t[0]]


def measure(pg, label, n):
    # statistics reach the shared counters within a second of a
    # statement; one interval of margin on each side
    time.sleep(INTERVAL_MS / 1000)
    a = stats(pg)
    time.sleep(WINDOW * INTERVAL_MS / 1000)
    b = stats(pg)
    d = [(y - x) / WINDOW for x, y in zip(a, b)]
    print("| %d | %s | %.1f | %.1f | %.1f | %.1f |" % (n, label, d[0], d[1], d[2], d[3]), flush=True)


def run(n):
    procs = math.ceil(n / PER_PROC)
    S = rtwtest.Stack(auth="open")
    S.pg.psql_admin("ALTER DATABASE rtw SET track_functions = 'pl'")
    env = {"RTW_SSE_PRESENCE_INTERVAL_MS": str(INTERVAL_MS), "RTW_SSE_MAX_CONNECTIONS": str(PER_PROC + 1000),
           "RTW_LOG_LEVEL": "warn"}
    S.start_sse(env=env)
    rtwtest.wait_streams(S.sse_port)
    for k in range(1, procs):
        S.start_sse(env=env, name="rtw-sse-%d" % k, port=S.sse_port)
    time.sleep(1)
    kids = []
    for k in range(procs):
        count = min(PER_PROC, n - k * PER_PROC)
        kids.append(subprocess.Popen([sys.executable, __file__, "--client", str(S.sse_port), "127.0.0.%d" % (2 + k),
                                      str(k * PER_PROC), str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True))
    for kid in kids:
        assert kid.stdout.readline().strip() == "ready"

    def total():
        r = S.pg.query("SELECT coalesce(sum(connections), 0), coalesce(sum(viewers), 0) FROM rtw_presence_counts(%s)",
                       ([STREAM],))
        return int(r[0][0]) == n and int(r[0][1]) == n
    rtwtest.wait_for(total, 120, "presence to count %d connections" % n, interval=0.5)
    measure(S.pg, "steady", n)
    kids[0].stdin.write("churn\n")
    kids[0].stdin.flush()
    measure(S.pg, "1 leaves + 1 arrives per interval", n)
    for kid in kids:
        kid.stdin.close()
        kid.wait()
    S.stop_all()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, src, first, count = sys.argv[2:6]
        client(int(port), src, int(first), int(count), INTERVAL_MS / 1000)
        return
    ns = [int(a) for a in sys.argv[1:]] or [50, 50000]
    print("per interval (%d ms), averaged over %d intervals:" % (INTERVAL_MS, WINDOW))
    print("| connections | viewers coming and going | rtw_presence_put calls | rows inserted | rows updated "
          "| rows deleted |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        run(n)


if __name__ == "__main__":
    main()
