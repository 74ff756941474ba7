"""test_horizon: only rtw's own writers hold delivery back (sql/003_horizon.sql).

Real nginx in front of rtw-fcgi and rtw-sse and a real PostgreSQL. Foreign
write transactions (another database, another table of rtw's database, a
prepared transaction) stay open while a broadcast is posted; the
subscriber must get it while they are still open, which is a fact checked
after delivery, not a timing. A writer of rtw's own left open (idle, or
busy in a long statement) is ended once it has held the horizon longer
than rtw.writer_timeout (2 s here), and delivery resumes with every
acknowledged message exactly once in stream order. A writer that wrote
elsewhere first (a "late" writer) keeps the order gap-free, and is refused
outside READ COMMITTED.

RTW_HORIZON_HOLD_S (default 20) is how long the foreign transactions may
stay open; the documented long run uses 60. The delays are printed, never
asserted.

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_horizon.py
"""
import json
import os
import random
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

HOLD = float(os.environ.get("RTW_HORIZON_HOLD_S", "20"))
WAIT = 30.0  # only ever a bound on waiting, never an assertion
ST = rtwtest.Stack()
# before any daemon connects: their sessions read it at start
ST.pg.query("ALTER DATABASE rtw SET rtw.writer_timeout = '2s'")
ST.pg.psql_admin("CREATE DATABASE other_app")
ST.start_fcgi()
ST.start_sse()
ST.start_nginx()
rtwtest.wait_streams(ST.http_port, WAIT)
TOKEN = ST.token("poster")
# what a platform sharing the cluster writes: a table in rtw's database and
# one in a database of its own
ST.pg.query("CREATE TABLE platform_rows (x int)")


def connect(dbname="rtw"):
    import psycopg2
    return psycopg2.connect(ST.pg.dsn.replace("dbname=rtw", "dbname=" + dbname))


_c = connect("other_app")
with _c.cursor() as _cur:
    _cur.execute("CREATE TABLE other_rows (x int)")
_c.commit()
_c.close()
_n = [0]


def stream_name():
    _n[0] += 1
    return "hz-%d-%d" % (os.getpid(), _n[0])


def subscribe(stream):
    path = "/v1/streams/%s/events?%s" % (stream, urllib.parse.urlencode({"access_token": TOKEN}))
    c = SSEClient(ST.http_port, path)
    assert c.status == 200, (c.status, c.body_text())
    init = c.next_event(WAIT)
    assert init["json"]["type"] == "init", init
    return c


def bcast(stream, payload):
    r = request(ST.http_port, "POST", "/v1/streams/%s/messages" % stream,
                {"type": "broadcast", "widget_key": ST.widget_key, "timestamp": 1, "message": payload},
                token=TOKEN, timeout=WAIT)
    assert r.status == 201, r
    return r.json["id"]


def open_xid(conn):
    """The xid the connection's open transaction holds, or None."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_xact_id_if_assigned()::text")
        return cur.fetchone()[0]


def running(xid):
    """True while the transaction xid is in progress (seen from outside)."""
    return ST.pg.query("SELECT pg_xact_status(%s::xid8)", (xid,))[0][0] == "in progress"


def stream_order(stream):
    return [r[0] for r in ST.pg.query("SELECT id::text FROM rtw_messages m WHERE m.stream_id = %s"
                                      " ORDER BY m.xid, m.id", (stream,))]


def read_until(c, last, timeout=WAIT):
    """Event ids up to and including `last`."""
    got = []
    while last not in got:
        got.append(c.next_event(timeout)["id"])
    return got


@test
def foreign_transactions_do_not_hold_delivery():
    """Another database, another table of rtw's database: both write and
    stay open; a broadcast posted meanwhile arrives while they are open."""
    other = connect("other_app")
    same = connect()
    with other.cursor() as cur:
        cur.execute("INSERT INTO other_rows VALUES (1)")
    with same.cursor() as cur:
        cur.execute("INSERT INTO platform_rows VALUES (1)")
    held = [open_xid(other), open_xid(same)]
    assert all(held), held
    opened = time.time()
    s = stream_name()
    c = subscribe(s)
    sent = time.time()
    mid = bcast(s, {"during": "foreign"})
    ev = c.next_event(HOLD)  # the foreign transactions end after HOLD at the latest
    delay = time.time() - sent
    assert ev["id"] == mid, ev
    # the fact: delivered while both foreign transactions were still open
    assert all(running(x) for x in held), held
    print("  delivered %.0f ms after the post; foreign transactions open for %.1f s" %
          (delay * 1000, time.time() - opened))
    # keep them open for the whole hold, posting as we go
    n = 1
    while time.time() - opened < HOLD:
        t0 = time.time()
        mid = bcast(s, {"n": n})
        assert c.next_event(WAIT)["id"] == mid
        delay = max(delay, time.time() - t0)
        n += 1
        time.sleep(0.5)
    assert all(running(x) for x in held), held
    print("  %d broadcasts during a %.0f s foreign transaction, slowest %.0f ms" % (n, HOLD, delay * 1000))
    other.rollback()
    same.rollback()
    other.close()
    same.close()
    c.close()


@test
def prepared_transaction_does_not_hold_delivery():
    admin = ST.pg.connect()
    p = connect()
    with p.cursor() as cur:
        cur.execute("INSERT INTO platform_rows VALUES (2)")
    xid = open_xid(p)
    gid = "hz-%d" % os.getpid()
    with p.cursor() as cur:
        cur.execute("PREPARE TRANSACTION %s", (gid,))
    p.close()
    try:
        s = stream_name()
        c = subscribe(s)
        mid = bcast(s, {"during": "prepared"})
        assert c.next_event(WAIT)["id"] == mid
        assert running(xid), xid
        assert ST.pg.query("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))[0][0] == 1
        c.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("ROLLBACK PREPARED %s", (gid,))
        admin.close()


@test
def late_writer_keeps_the_order_gap_free():
    """A writer that wrote another table first, then a message, and commits
    after later posts: every subscriber gets each message once, in the one
    stream order, live and on resume."""
    s = stream_name()
    c = subscribe(s)
    first = bcast(s, {"n": "first"})
    assert c.next_event(WAIT)["id"] == first
    w = connect()
    with w.cursor() as cur:
        cur.execute("INSERT INTO platform_rows VALUES (3)")
        cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                    " VALUES (%s, 'broadcast', %s, 'platform', '{\"late\": true}') RETURNING id::text",
                    (s, ST.widget_key))
        late = cur.fetchone()[0]
    after = [bcast(s, {"n": i}) for i in range(3)]
    w.commit()
    w.close()
    last = bcast(s, {"n": "last"})
    got = read_until(c, last)
    order = stream_order(s)
    assert [first] + got == order, (got, order)
    assert sorted(order) == sorted([first, late, last] + after), order
    # resume from the first message gets the same rest
    path = "/v1/streams/%s/events?%s" % (s, urllib.parse.urlencode({"access_token": TOKEN}))
    r = SSEClient(ST.http_port, path, headers={"Last-Event-ID": first})
    assert r.status == 200
    assert r.next_event(WAIT)["json"]["type"] == "init"
    assert read_until(r, last) == got
    r.close()
    c.close()


@test
def late_writer_outside_read_committed_is_refused():
    import psycopg2
    w = connect()
    w.set_session(isolation_level="REPEATABLE READ")
    try:
        with w.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (x int)")
            cur.execute("INSERT INTO t VALUES (1)")
            try:
                cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                            " VALUES ('hz-rr', 'broadcast', %s, 'platform', '1')", (ST.widget_key,))
                raise AssertionError("a REPEATABLE READ late writer was accepted")
            except psycopg2.Error as e:
                assert e.pgcode == "55000", e.pgcode
    finally:
        w.close()


def hung_writer(kind):
    """A writer of rtw's own left open (idle in its transaction, or busy in
    one long statement) holds delivery; it is ended within the bound and
    every acknowledged message is delivered once, in order."""
    import psycopg2
    s = stream_name()
    c = subscribe(s)
    w = connect()
    with w.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    outcome = []

    def busy():
        try:
            with w.cursor() as cur:
                cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                            " VALUES (%s, 'broadcast', %s, 'hung', '1'); SELECT pg_sleep(600)", (s, ST.widget_key))
            outcome.append("finished")
        except psycopg2.Error as e:
            outcome.append(e)

    if kind == "idle":
        with w.cursor() as cur:
            cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                        " VALUES (%s, 'broadcast', %s, 'hung', '1')", (s, ST.widget_key))
    else:
        t = threading.Thread(target=busy, daemon=True)
        t.start()
        wait_for(lambda: ST.pg.query("SELECT count(*) FROM rtw_horizon_holders WHERE pid = %s", (pid,))[0][0] == 1,
                 WAIT, "the writer holds its mark")
    acked = [bcast(s, {"n": i}) for i in range(5)]  # acknowledged while the writer holds the horizon
    got = read_until(c, acked[-1], WAIT)
    assert got == acked, (got, acked)
    # it was ended, not committed: its row is gone and its session too
    assert ST.pg.query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == [(0,)]
    assert ST.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id = %s AND author_id = 'hung'", (s,)) == [(0,)]
    if kind == "busy":
        t.join(WAIT)
        assert outcome and isinstance(outcome[0], psycopg2.Error), outcome
    else:
        try:
            with w.cursor() as cur:
                cur.execute("SELECT 1")
            raise AssertionError("the hung writer's session survived")
        except psycopg2.Error:
            pass
    assert "ending writer pid %d" % pid in open(os.path.join(ST.pg.dir, "log")).read()
    w.close()
    after = bcast(s, {"n": "after"})
    assert c.next_event(WAIT)["id"] == after
    assert stream_order(s) == acked + [after]
    c.close()


@test
def hung_idle_writer_is_ended():
    hung_writer("idle")


@test
def hung_busy_writer_is_ended():
    hung_writer("busy")


@test
def concurrent_writers_exactly_once():
    """fcgi posters and SQL writers (some late) at once: one order for all."""
    s = stream_name()
    subs = [subscribe(s) for _ in range(3)]
    ids, lock = [], threading.Lock()

    def poster(k):
        for i in range(15):
            mid = bcast(s, {"k": k, "i": i})
            with lock:
                ids.append(mid)

    def sql_writer(k, late):
        conn = connect()
        for i in range(25):
            with conn.cursor() as cur:
                if late:
                    cur.execute("INSERT INTO platform_rows VALUES (%s)", (i,))
                cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                            " VALUES (%s, 'broadcast', %s, 'sql', %s) RETURNING id::text",
                            (s, ST.widget_key, json.dumps({"k": k, "i": i})))
                mid = cur.fetchone()[0]
            time.sleep(random.random() * 0.02)  # commit out of id order now and then
            conn.commit()
            with lock:
                ids.append(mid)
        conn.close()

    # a reader of its own: every horizon it is given must be one no row
    # below it can still appear under (a row seen later below a horizon
    # is one rtw-sse would have passed for good)
    polls, done = [], threading.Event()

    def reader():
        conn = connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT rtw_horizon()::text::bigint, (SELECT coalesce(array_agg(m.id::text), '{}')"
                            " FROM rtw_messages m WHERE m.stream_id = %s)", (s,))
                polls.append(cur.fetchone())
        conn.close()

    threads = [threading.Thread(target=poster, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=sql_writer, args=(k, k % 2 == 1)) for k in range(6)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    last = bcast(s, {"last": True})
    order = stream_order(s)
    assert sorted(order) == sorted(ids + [last]), (len(order), len(ids))
    keys = {r[0]: int(r[1]) for r in ST.pg.query("SELECT id::text, xid::text FROM rtw_messages WHERE stream_id = %s",
                                                 (s,))}
    passed = [(h, mid) for h, seen in polls for mid in set(keys) - set(seen) if keys[mid] < h]
    assert not passed, ("rows appeared below a horizon already given", len(polls), passed[:5])
    for c in subs:
        assert read_until(c, last) == order
        c.close()


if __name__ == "__main__":
    rtwtest.main()
