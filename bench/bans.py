#!/usr/bin/python3
"""bench/bans.py: how long a ban takes to end a banned user's open streams
(doc/sse.md, "Bans"): N streams of one user spread over two rtw-sse
processes, then a global ban committed straight into rtw_bans; the time
from the commit to the close of the last stream, per repetition, and the
median. Measures; never fails on a number.

Usage: RTW_BUILDDIR=build/dev bench/bans.py [STREAMS [REPS]]   (default: 40 7)
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402
from rtwtest import SSEClient  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    s = rtwtest.Stack()
    s.start_sse()
    port2 = rtwtest.free_port()
    s.start_sse(name="rtw-sse-2", port=port2)
    rtwtest.wait_streams(s.sse_port)
    rtwtest.wait_streams(port2)
    took = []
    for rep in range(reps):
        user = "banned-%d" % rep
        streams = []
        for i in range(n):
            c = SSEClient(s.sse_port if i % 2 else port2,
                          "/v1/streams/b%d/events?access_token=%s" % (i % 4, s.token(user)))
            c.next_event()
            streams.append(c)
        conn = s.pg.connect()
        conn.autocommit = True
        conn.cursor().execute("INSERT INTO rtw_bans (user_id) VALUES (%s)", (user,))
        committed = time.monotonic()
        for c in streams:
            c.sock.settimeout(10)
            while c.sock.recv(65536):
                pass
        took.append((time.monotonic() - committed) * 1000)
        conn.close()
        for c in streams:
            c.close()
    print("commit of a global ban -> all %d streams closed (2 rtw-sse processes), ms: %s"
          % (n, " ".join("%.1f" % t for t in took)))
    print("median %.1f ms, max %.1f ms; load average %s"
          % (statistics.median(took), max(took), open("/proc/loadavg").read().split()[0]))
    s.stop_all()


if __name__ == "__main__":
    main()
