"""test_shared_tail: several rtw-sse processes on one database share one
tail (sse.shared_tail, doc/architecture.md "The shared tail"): one leader
computes the settled horizon and publishes each settled range on
rtw_settled, the followers read behind it or skip it.

Three rtw-sse processes on their own ports, rtw-fcgi behind nginx for the
POSTs, subscribers straight on each rtw-sse. Checks, each through the real
stack:

- exactly one leader; every process delivers every message of a stream to
  its subscriber exactly once in stream order; a follower passes ranges of
  streams it does not serve without a query (rtw_sse_tail_skipped_total);
- the leader SIGKILLed mid-stream: the subscribers of the survivors still
  get every message exactly once in order, and one survivor leads;
- a follower that missed a note (simulated: the leader stopped with
  SIGSTOP, a row committed, and a note whose range does not start at the
  follower's cursor) notices from the positions and reads from its cursor;
- the leader stopped (SIGSTOP) while rows arrive: the followers notice its
  silence at their poll and tail on their own, losing nothing, and
  everything is still exactly once after it continues.

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_shared_tail.py
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
import tailtest  # noqa: E402
from rtwtest import test, wait_for  # noqa: E402
from tailtest import WAIT, metric, received  # noqa: E402

T = tailtest.Procs({"RTW_SSE_POLL_INTERVAL_MS": "300"})
S, PROCS = T.S, T.procs
start, alive, subscribe, post, stored = T.start, T.alive, T.subscribe, T.post, T.stored

for _n in ("sse-a", "sse-b", "sse-c"):
    start(_n)


def leaders():
    return [n for n, p in alive().items() if metric(p, "rtw_sse_tail_leader") == 1]


def one_leader():
    wait_for(lambda: len(leaders()) == 1, WAIT, "exactly one leader")
    return leaders()[0]


@test
def one_leader_every_process_delivers_followers_skip():
    lead = one_leader()
    subs = {n: subscribe(p, "st1") for n, p in PROCS.items()}
    ids = [post("st1", i) for i in range(20)]
    assert sorted(stored("st1"), key=int) == sorted(ids, key=int)
    for n, c in subs.items():
        assert received(c, 20) == stored("st1"), n
    followers = [n for n in PROCS if n != lead]
    before = {n: metric(PROCS[n], "rtw_sse_tail_skipped_total") for n in followers}
    for i in range(5):
        post("nobody-here", i)
    # a stream no process serves: the followers pass its ranges unread
    for n in followers:
        wait_for(lambda n=n: metric(PROCS[n], "rtw_sse_tail_skipped_total") > before[n], WAIT,
                 "%s to skip a range of a stream it does not serve" % n)
    # and still deliver what follows on a stream they serve
    ids = [post("st1", 100 + i) for i in range(3)]
    for n, c in subs.items():
        assert received(c, 3) == ids, n
        c.close()


@test
def leader_killed_mid_stream():
    lead = one_leader()
    survivors = [n for n in PROCS if n != lead and S.daemons[n].running()]
    for c in T.kill_mid_stream(lead, survivors, "st2").values():
        c.close()
    new = one_leader()
    assert new in survivors, (new, survivors)
    assert metric(PROCS[new], "rtw_sse_tail_leader_takes_total") >= 1


@test
def follower_notices_a_missed_note():
    lead = one_leader()
    # a follower whose poll never comes during the test: only the gap can
    # bring it the row whose note it missed
    port = start("sse-d", {"RTW_SSE_POLL_INTERVAL_MS": "600000"})
    assert one_leader() == lead
    c = subscribe(port, "st3")
    first = post("st3", 0)
    assert received(c, 1) == [first]
    gaps = metric(port, "rtw_sse_tail_gaps_total")
    S.daemons[lead].send_signal(signal.SIGSTOP)
    try:
        # the note of this row never comes: the leader is stopped
        second = post("st3", 1)
        xid, = S.pg.query("SELECT xid::text FROM rtw_messages WHERE id = %s", (int(second), ))[0]
        # a later note whose range starts past the follower's cursor, as
        # after a note the follower missed (1:1 is below every position)
        S.pg.query("SELECT pg_notify('rtw_settled', %s)", ("1:1 %s:%s *" % (xid, second), ))
        assert received(c, 1) == [second]
    finally:
        S.daemons[lead].send_signal(signal.SIGCONT)
    assert metric(port, "rtw_sse_tail_gaps_total") > gaps
    third = post("st3", 2)
    assert received(c, 1) == [third]
    c.close()
    S.daemons["sse-d"].stop()


@test
def stopped_leader_followers_tail_alone():
    lead = one_leader()
    followers = [n for n in alive() if n != lead]
    T.stop_mid_stream(lead, followers, "st4", "rtw_sse_tail_own_total")
    assert one_leader() == lead


if __name__ == "__main__":
    rtwtest.main()
