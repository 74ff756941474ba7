"""test_relay: the host relay (sse.relay, doc/scaling.md "PostgreSQL's work
per rtw-sse process"): one rtw-sse process of the host holds the relay's
name and streams every settled row to the others, which neither LISTEN
nor tail while it feeds them.

Three rtw-sse processes with one relay name (unique to this run), rtw-fcgi
behind nginx for the POSTs, subscribers straight on each rtw-sse. Checks,
each through the real stack:

- exactly one process serves the relay and the others are attached; every
  process delivers every message of a stream exactly once in stream order,
  the attached ones from the relay's batches (rtw_sse_relay_rows_total);
- a process started later attaches and delivers from its own position;
- a process given the same relay name but another DSN never attaches (its
  rows could be another database's): it serves a relay of its own;
- the server stopped (SIGSTOP) while rows arrive: the attached processes
  notice its silence at their poll, leave it and deliver on their own,
  everything still exactly once in order after it continues;
- the server SIGKILLed mid-stream: the others still deliver every message
  exactly once in order (they tail on their own, then one serves and the
  rest attach to it).

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_relay.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
import tailtest  # noqa: E402
from rtwtest import test, wait_for  # noqa: E402
from tailtest import WAIT, metric, received  # noqa: E402

SERVING, ATTACHED = 2, 3
T = tailtest.Procs({"RTW_SSE_POLL_INTERVAL_MS": "300", "RTW_SSE_RELAY": "rtw-test-relay-%d" % os.getpid()})
S, PROCS = T.S, T.procs
start, alive, subscribe, post, stored = T.start, T.alive, T.subscribe, T.post, T.stored

for _n in ("sse-a", "sse-b", "sse-c"):
    start(_n)


def states():
    return {n: metric(p, "rtw_sse_relay_state") for n, p in alive().items()}


def one_server():
    """The serving process once exactly one serves and every other is attached."""
    def settled():
        st = states()
        return sorted(st.values()) == [SERVING] + [ATTACHED] * (len(st) - 1)
    wait_for(settled, WAIT, "one relay server, the rest attached")
    return [n for n, s in states().items() if s == SERVING][0]


@test
def one_server_feeds_the_others():
    server = one_server()
    subs = {n: subscribe(p, "r1") for n, p in PROCS.items()}
    rows = {n: metric(p, "rtw_sse_relay_rows_total") for n, p in PROCS.items()}
    ids = [post("r1", i) for i in range(20)]
    assert sorted(stored("r1"), key=int) == sorted(ids, key=int)
    for n, c in subs.items():
        assert received(c, 20) == stored("r1"), n
        c.close()
    for n, p in PROCS.items():
        if n != server:
            assert metric(p, "rtw_sse_relay_rows_total") > rows[n], n
    assert metric(PROCS[server], "rtw_sse_relay_peers") == 2


@test
def a_late_process_attaches():
    server = one_server()
    before = [post("r2", i) for i in range(5)]
    port = start("sse-d")
    assert one_server() == server
    c = subscribe(port, "r2")
    ids = [post("r2", 5 + i) for i in range(5)]
    assert received(c, 5) == ids
    assert stored("r2") == before + ids
    c.close()


@test
def another_dsn_never_attaches():
    server = one_server()
    peers = metric(PROCS[server], "rtw_sse_relay_peers")
    # the same database, spelt another way: what the digest sees is the DSN
    port = T.start("sse-other", env={"RTW_PGDSN": S.pg.dsn + " connect_timeout=9"})
    wait_for(lambda: metric(port, "rtw_sse_relay_state") == SERVING, WAIT, "its own relay")
    assert metric(PROCS[server], "rtw_sse_relay_peers") == peers
    c = subscribe(port, "r-other")
    ids = [post("r-other", i) for i in range(5)]
    assert received(c, 5) == ids
    c.close()
    S.daemons["sse-other"].stop()
    del PROCS["sse-other"]


@test
def stopped_server_peers_leave():
    server = one_server()
    peers = [n for n in alive() if n != server]
    T.stop_mid_stream(server, peers, "r4", "rtw_sse_relay_leaves_total")
    assert one_server() == server


@test
def server_killed_mid_stream():
    server = one_server()
    survivors = [n for n in alive() if n != server]
    subs = T.kill_mid_stream(server, survivors, "r3")
    new = one_server()
    assert new in survivors, (new, survivors)
    # and the new arrangement delivers as well
    ids = [post("r3", 100 + i) for i in range(5)]
    for n, c in subs.items():
        assert received(c, 5) == ids, n
        c.close()


if __name__ == "__main__":
    rtwtest.main()
