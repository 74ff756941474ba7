"""test_failover: PostgreSQL failover under load, on PostgreSQL's own
streaming replication (doc/scaling.md).

A primary and a synchronous standby (pg_basebackup -R,
synchronous_commit = remote_apply); rtw-fcgi and rtw-sse behind nginx, all
connecting with one multi-host DSN and target_session_attrs=read-write. A
publisher posts numbered messages through nginx, retrying each with one
Idempotency-Key until acknowledged; a subscriber follows the stream through
nginx, resuming with Last-Event-ID whenever its stream ends. Midway the
primary is stopped hard (pg_ctl -m immediate) and the standby promoted.

First, with replay paused on the standby, a POST's commit waits for it and
is cancelled (pg_cancel_backend, as statement_timeout would): rtw-fcgi must
answer 503, not acknowledge a row the standby may lack, and the retry with
the same Idempotency-Key gets the one stored row; POSTs without a key
(the group commit) get 503 too and are never written twice.

Then the failover. Checks: every acknowledged message is on the new primary and reached the
subscriber exactly once, in one order; no message is stored twice; the
daemons found the new primary by themselves; a Last-Event-ID issued by the
old primary resumes exactly on the new one.

In make check (so ./dev test); about 25 s.

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_failover.py
"""
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

N = 60  # messages; the failover happens after FAIL_AT are acknowledged
FAIL_AT = 20
STREAM = "failover"
WAIT = 60.0  # only ever a bound on waiting, never an assertion

S = rtwtest.Stack()
PRIMARY = S.pg
STANDBY = rtwtest.Standby(S.tmp, PRIMARY, name="standby_b")
for stmt in ("ALTER SYSTEM SET synchronous_standby_names = 'standby_b'",
             "ALTER SYSTEM SET synchronous_commit = 'remote_apply'", "SELECT pg_reload_conf()"):
    PRIMARY.psql_admin(stmt)
wait_for(lambda: PRIMARY.query("SELECT sync_state FROM pg_stat_replication") == [("sync", )], WAIT,
         "the standby to be synchronous")
S.env["RTW_PGDSN"] = ("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=rtw user=postgres "
                      "target_session_attrs=read-write" % (PRIMARY.port, STANDBY.port))
S.start_fcgi()
S.start_sse()
PORT = S.start_nginx()
TOKEN = S.token("alice")


def body(n):
    return {"type": "broadcast", "widget_key": S.widget_key, "timestamp": n, "message": {"n": n}}


class Publisher(threading.Thread):
    """Posts 0..N-1 in order; each message keeps its Idempotency-Key across
    retries. acked[n] = the id of the acknowledged message n."""

    def __init__(self):
        super().__init__(daemon=True)
        self.acked = {}
        self.failed_tries = 0
        self.error = None

    def run(self):
        try:
            deadline = time.time() + WAIT
            for n in range(N):
                key = uuid.uuid4().hex
                while n not in self.acked:
                    assert time.time() < deadline, "message %d never acknowledged" % n
                    try:
                        r = request(PORT, "POST", "/v1/streams/%s/messages" % STREAM, body(n), token=TOKEN,
                                    headers={"Idempotency-Key": key}, timeout=15)
                    except OSError:
                        r = None
                    if r is not None and r.status == 201:
                        self.acked[n] = r.json["id"]
                    else:
                        self.failed_tries += 1
                        time.sleep(0.2)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def follow(last_id, want, deadline, seen=None):
    """Events of STREAM after last_id until `want` message numbers were
    seen, reconnecting with Last-Event-ID whenever the stream ends.
    Returns [(id, n)] in arrival order (also appended to `seen`, which the
    caller may read should this fail)."""
    seen = [] if seen is None else seen
    while len({n for _, n in seen}) < want:
        assert time.time() < deadline, "only %d of %d messages arrived" % (len(seen), want)
        h = {"Last-Event-ID": last_id} if last_id else {}
        try:
            c = SSEClient(PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, TOKEN), headers=h)
        except OSError:
            time.sleep(0.2)
            continue
        try:
            while len({n for _, n in seen}) < want:
                ev = c.next_event(timeout=5)
                m = ev.get("json") or {}
                if m.get("type") == "broadcast" and "id" in ev:
                    seen.append((ev["id"], m["message"]["n"]))
                    last_id = ev["id"]
        except (OSError, ConnectionError, TimeoutError):
            time.sleep(0.2)
        finally:
            c.close()
    return seen


def metric(name):
    r = request(S.fcgi_health_port, "GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


@test
def cancelled_sync_wait_is_not_acknowledged():
    """A COMMIT whose wait for the synchronous standby is cancelled stays
    committed on the primary alone: rtw-fcgi answers 503, not 201, and the
    client's retry with the same Idempotency-Key gets the one stored row."""
    key = uuid.uuid4().hex
    msg = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": {"doubt": True}}
    STANDBY.query("SELECT pg_wal_replay_pause()")  # remote_apply commits now wait
    got = {}
    t = threading.Thread(target=lambda: got.update(
        r=request(PORT, "POST", "/v1/streams/doubt/messages", msg, token=TOKEN,
                  headers={"Idempotency-Key": key}, timeout=30)), daemon=True)
    t.start()
    waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
    wait_for(lambda: PRIMARY.query(waiting), WAIT, "a commit waiting for the standby")
    before = metric("rtw_fcgi_commits_in_doubt_total")
    for (pid, ) in PRIMARY.query(waiting):
        PRIMARY.query("SELECT pg_cancel_backend(%s)", (pid, ))
    t.join(WAIT)
    assert got["r"].status == 503, (got["r"].status, got["r"].body)
    assert metric("rtw_fcgi_commits_in_doubt_total") == before + 1
    # the group commit (POSTs without a key): a batch in doubt is stored
    # once and answered 503, never written again row by row
    codes = []
    posts = [threading.Thread(target=lambda: codes.append(request(
        PORT, "POST", "/v1/streams/doubt-many/messages", msg, token=TOKEN, timeout=30).status), daemon=True)
             for _ in range(4)]
    for p in posts:
        p.start()
    deadline = time.time() + WAIT
    while any(p.is_alive() for p in posts):
        assert time.time() < deadline, "POSTs still waiting for the standby"
        for (pid, ) in PRIMARY.query(waiting):
            PRIMARY.query("SELECT pg_cancel_backend(%s)", (pid, ))
        time.sleep(0.05)
    assert codes == [503] * 4, codes
    stored = PRIMARY.query("SELECT count(*) FROM rtw_messages WHERE stream_id = 'doubt-many'")[0][0]
    assert stored <= 4, stored
    STANDBY.query("SELECT pg_wal_replay_resume()")
    r = request(PORT, "POST", "/v1/streams/doubt/messages", msg, token=TOKEN, headers={"Idempotency-Key": key})
    assert r.status == 201, (r.status, r.body)
    rows = PRIMARY.query("SELECT id::text FROM rtw_messages WHERE stream_id = 'doubt'")
    assert rows == [(str(r.json["id"]), )], (rows, r.json)
    # the retry's own commit waited for the standby, which so holds the row
    assert STANDBY.query("SELECT id::text FROM rtw_messages WHERE stream_id = 'doubt'") == rows


@test
def promotion_mid_run_loses_nothing_duplicates_nothing():
    pub = Publisher()
    seen = []
    sub = threading.Thread(target=follow, args=(None, N, time.time() + 2 * WAIT, seen), daemon=True)
    sub.start()
    time.sleep(0.5)  # the subscriber is in before the first post
    pub.start()
    wait_for(lambda: len(pub.acked) >= FAIL_AT or pub.error, WAIT, "the first acknowledgements")
    PRIMARY.stop(mode="immediate")
    STANDBY.promote()
    pub.join(2 * WAIT)
    assert pub.error is None, pub.error
    assert sorted(pub.acked) == list(range(N)), sorted(pub.acked)
    sub.join(2 * WAIT)
    missing = sorted(set(range(N)) - {n for _, n in seen})
    assert not missing, ("missing", missing, "seen", seen, "holders",
                         STANDBY.query("SELECT xid::text, pid, state, query FROM rtw_horizon_holders"),
                         "tail", STANDBY.query("SELECT max(xid)::text, rtw_horizon()::text FROM rtw_messages"))
    # every acknowledged message is on the new primary, stored once
    rows = STANDBY.query("SELECT id, (message->>'n')::int FROM rtw_messages WHERE stream_id = %s", (STREAM, ))
    by_n = {}
    for rid, n in rows:
        by_n.setdefault(n, []).append(str(rid))
    assert sorted(by_n) == list(range(N)), sorted(by_n)
    dup = {n: ids for n, ids in by_n.items() if len(ids) > 1}
    assert not dup, dup
    for n, mid in pub.acked.items():
        assert by_n[n] == [str(mid)], (n, mid, by_n[n])
    # the subscriber saw each exactly once, with the acknowledged ids
    assert sorted(n for _, n in seen) == list(range(N)), seen
    assert all(str(pub.acked[n]) == i for i, n in seen), seen
    # the order is the new primary's stream order
    order = [str(r[0]) for r in STANDBY.query("SELECT id FROM rtw_messages WHERE stream_id = %s ORDER BY xid, id",
                                              (STREAM, ))]
    assert [i for i, _ in seen] == order, (seen, order)
    # the daemons are up and on the new primary by themselves
    assert S.daemons["rtw-fcgi"].running() and S.daemons["rtw-sse"].running()
    apps = {r[0].split("/")[0] for r in STANDBY.query("SELECT application_name FROM pg_stat_activity")}
    assert {"rtw-fcgi", "rtw-sse"} <= apps, apps
    # a position issued by the old primary resumes exactly on the new one
    early = str(pub.acked[FAIL_AT // 2])
    rest = follow(early, len(order) - order.index(early) - 1, time.time() + WAIT)
    assert [i for i, _ in rest] == order[order.index(early) + 1:], (rest, order)


if __name__ == "__main__":
    rtwtest.main()
