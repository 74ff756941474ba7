"""test_sse: rtw-sse end to end against a real PostgreSQL.

Messages are inserted straight into rtw_messages with SQL (each writer in
its own transactions), so these tests depend on rtw-sse alone. Covers the
event-stream head and init, live delivery in stream order to many
subscribers while writers commit concurrently, exact resume with
Last-Event-ID, private and webhook-result isolation, widget filtering,
restarts of rtw-sse and PostgreSQL, a terminated backend, a slow consumer
(bounded memory, nothing lost), heartbeats, errors, nginx in front, and
live output held within its coalescing budget (sse.coalesce_ms), never
past it, and only when the next message is expected within it.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import threading
import time

import rtwtest
from rtwtest import SSEClient, request, test, wait_for

STACK = rtwtest.Stack(extra_env={"RTW_SSE_HEARTBEAT_S": "1", "RTW_LOG_LEVEL": os.environ.get("SSE_LOG", "info")})
# a small ASan quarantine keeps the memory bound meaningful in sanitizer builds
STACK.start_sse(env={"RTW_SSE_HEARTBEAT_S": "1",
                     "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")})
SSE = STACK.daemons["rtw-sse"]
rtwtest.wait_streams(STACK.sse_port)
_n = [0]


def stream_name(prefix="s"):
    _n[0] += 1
    return "%s%d-%d" % (prefix, os.getpid(), _n[0])


def insert(stream, typ="broadcast", author="writer", to=None, widget=None, message=None, conn=None, ts=1.0):
    """Inserts one message in its own transaction; returns its id (str)."""
    own = conn is None
    conn = conn or STACK.pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message, ts)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (stream, typ, widget or STACK.widget_key, author, to,
                         json.dumps(message if message is not None else {"n": 1}), ts))
            return str(cur.fetchone()[0])
    finally:
        if own:
            conn.close()


def stream_ids(stream, user=None):
    """Ids a subscriber `user` may see on the stream, in stream order."""
    rows = STACK.pg.query("SELECT m.id::text FROM rtw_messages m WHERE m.stream_id = %s"
                          " AND (m.to_user_id IS NULL OR m.to_user_id = %s) ORDER BY m.xid, m.id", (stream, user))
    return [r[0] for r in rows]


def subscribe(stream, token=None, last_id=None, query="", port=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if last_id:
        h["Last-Event-ID"] = last_id
    path = "/v1/streams/%s/events%s" % (stream, ("?" + query) if query else "")
    c = SSEClient(port or STACK.sse_port, path, headers=h)
    assert c.status == 200, (c.status, c.body_text())
    init = c.next_event()
    assert init["json"]["type"] == "init", init
    assert "id" not in init, init
    c.init = init["json"]
    return c


def read_ids(c, n, timeout=20.0):
    return [e["id"] for e in c.events(n, timeout)]


def read_ids_fast(c, n, timeout=60.0):
    """Ids and total data bytes of the next n events, for big volumes
    (SSEClient re-slices its buffer per event). Plain (unchunked) streams."""
    assert not c.chunked
    ids, nbytes = [], 0
    pending = c.buf
    c.buf = b""
    c.sock.settimeout(timeout)
    while True:
        blocks = pending.split(b"\n\n")
        pending = blocks.pop()
        for b in blocks:
            for line in b.split(b"\n"):
                if line.startswith(b"id: "):
                    ids.append(line[4:].decode())
                elif line.startswith(b"data: "):
                    nbytes += len(line) - 6
        if len(ids) >= n:
            break
        d = c.sock.recv(1 << 20)
        if not d:
            raise ConnectionError("event stream closed")
        pending += d
    assert len(ids) == n, (len(ids), n)
    c.buf = pending
    return ids, nbytes


def no_event(c, wait=0.7):
    try:
        ev = c.next_event(wait)
    except TimeoutError:
        return True
    raise AssertionError("unexpected event %r" % ev)


def wait_healthy(port=None, ok=True, timeout=30):
    if ok:
        rtwtest.wait_streams(port or STACK.sse_port, timeout)
        return
    wait_for(lambda: request(port or STACK.sse_port, "GET", "/healthz", timeout=2).status == 503, timeout,
             "/healthz 503")


def metric(name, port=None):
    body = request(port or STACK.sse_port, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def jwt_claims(tok):
    body = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@test
def head_init_and_live_broadcast():
    s = stream_name()
    c = SSEClient(STACK.sse_port, "/v1/streams/%s/events" % s)
    assert c.status == 200
    assert c.headers["content-type"] == "text/event-stream"
    assert c.headers["cache-control"] == "no-store"
    assert c.headers["x-accel-buffering"] == "no"
    init = c.next_event()
    assert c.retry == 2000, c.retry
    assert "id" not in init
    j = init["json"]
    assert list(j.keys()) == ["type", "stream_id", "author_id", "timestamp", "widget_key", "message"], j
    assert j["type"] == "init" and j["stream_id"] == s and j["timestamp"] == 0 and j["widget_key"] is None
    m = j["message"]
    assert m["resumed"] is False and m["last_event_id"] is None and m["heartbeat_s"] == 1
    assert m["connection_id"]
    assert j["author_id"].startswith("anon-")
    # the minted token is valid for this identity and stream only
    claims = jwt_claims(m["token"])
    assert claims["sub"] == j["author_id"] and claims["streams"] == [s] and claims["exp"] > time.time()
    head, body, sig = m["token"].split(".")
    want = hmac.new(STACK.secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    assert rtwtest.b64url(want) == sig
    mid = insert(s, message={"param1": 0, "param3": {"paramA": "x\ny", "paramB": False}}, ts=2365.123)
    ev = c.next_event()
    assert ev["id"] == mid
    d = ev["json"]
    assert d["id"] == mid and d["stream_id"] == s and d["author_id"] == "writer" and d["type"] == "broadcast"
    assert d["message"] == {"param1": 0, "param3": {"paramA": "x\ny", "paramB": False}}
    assert d["timestamp"] == 2365.123 and d["widget_key"] == STACK.widget_key
    assert "to_user_id" not in d
    assert d["created_at"].endswith("Z") and len(d["created_at"]) == 27
    c.close()


@test
def token_identity_and_errors():
    s = stream_name()
    c = subscribe(s, token=STACK.token("alice"))
    assert c.init["author_id"] == "alice" and "token" not in c.init["message"]
    c.close()
    c = subscribe(s, query="access_token=" + STACK.token("bob", streams=[s]))
    assert c.init["author_id"] == "bob"
    c.close()
    cases = [
        ("/v1/streams/%s/events?access_token=garbage" % s, {}, 401, "unauthorized"),
        ("/v1/streams/%s/events" % s, {"Authorization": "Bearer " + rtwtest.mint("wrong", "alice")}, 401,
         "unauthorized"),
        ("/v1/streams/%s/events" % s, {"Authorization": "Bearer " + STACK.token("alice", exp=int(time.time()) - 10)},
         401, "unauthorized"),
        ("/v1/streams/%s/events" % s, {"Authorization": "Bearer " + STACK.token("alice", streams=["other"])}, 403,
         "forbidden"),
        ("/v1/streams/bad%%20id/events", {}, 400, "invalid_field"),
        ("/v1/streams/%s/events?widget_key=not-a-uuid" % s, {}, 400, "invalid_field"),
        ("/v1/streams/%s/events?widget_key=6b9f652a-63fd-47d7-a3bc-418c1096eb8c" % s, {}, 403, "unknown_widget"),
        ("/v1/nope", {}, 404, "not_found"),
    ]
    for path, h, status, code in cases:
        r = request(STACK.sse_port, "GET", path, headers=h)
        assert r.status == status, (path, r)
        assert r.json["error"]["code"] == code, (path, r)
        assert r.header("Content-Type") == "application/json"
    r = request(STACK.sse_port, "POST", "/v1/streams/%s/events" % s, body={})
    assert r.status == 405 and r.json["error"]["code"] == "method_not_allowed" and "GET" in r.header("Allow")
    r = request(STACK.sse_port, "GET", "/v1/streams/%s/events" % s, headers={"X-Big": "a" * 9000})
    assert r.status in (400, 431), r


@test
def healthz_and_metrics_as_every_daemon():
    """/healthz and /metrics are lib/probe.c's answers: the one body shape,
    HEAD answered like GET without the body, other methods 405."""
    r = request(STACK.sse_port, "GET", "/healthz")
    assert r.status == 200 and r.json == {"status": "ok", "service": "rtw-sse"}, r
    h = request(STACK.sse_port, "HEAD", "/healthz")
    assert h.status == 200 and h.body == b"" and int(h.header("Content-Length")) == len(r.body), h
    m = request(STACK.sse_port, "GET", "/metrics")
    text = m.body.decode()
    assert m.status == 200 and m.header("Content-Type").startswith("text/plain"), m
    for line in ("# TYPE rtw_sse_connections gauge", "# TYPE rtw_sse_events_delivered_total counter",
                 "# TYPE rtw_sse_delivery_lag_seconds histogram", 'rtw_sse_delivery_lag_seconds_bucket{le="+Inf"} ',
                 "rtw_sse_delivery_lag_seconds_count ", "rtw_sse_pg_up 1", "rtw_sse_build_info{", "rtw_sse_process_open_fds "):
        assert line in text, (line, text)
    h = request(STACK.sse_port, "HEAD", "/metrics")
    assert h.status == 200 and h.body == b"" and int(h.header("Content-Length")) > 0, h
    r = request(STACK.sse_port, "POST", "/healthz", body={})
    assert r.status == 405 and "HEAD" in r.header("Allow"), r


@test
def heartbeat_comment():
    c = subscribe(stream_name())
    deadline = time.time() + 5
    while c.comments == 0 and time.time() < deadline:
        try:
            c.next_event(0.5)
        except TimeoutError:
            pass
    assert c.comments >= 1
    c.close()


def _writer(stream, n, errors, ids, lock):
    conn = STACK.pg.connect()
    conn.autocommit = False
    try:
        i = 0
        while i < n:
            k = min(n - i, random.choice([1, 1, 1, 2, 3]))
            with conn.cursor() as cur:
                for _ in range(k):
                    cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                                " VALUES (%s, 'broadcast', %s, 'w', %s, 1) RETURNING id",
                                (stream, STACK.widget_key, json.dumps({"i": i})))
                    with lock:
                        ids.append(str(cur.fetchone()[0]))
                    i += 1
                # commit out of id order now and then
                if random.random() < 0.3:
                    time.sleep(random.random() * 0.02)
            conn.commit()
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(e)
    finally:
        conn.close()


@test
def concurrent_writers_same_order_and_resume():
    s = stream_name()
    subs = [subscribe(s, token=STACK.token("u%d" % i)) for i in range(3)]
    errors, ids, lock = [], [], threading.Lock()
    per = 60
    threads = [threading.Thread(target=_writer, args=(s, per, errors, ids, lock)) for _ in range(8)]
    for t in threads:
        t.start()
    total = 8 * per
    # subscriber 2 reads a part, disconnects, resumes with Last-Event-ID
    first = read_ids(subs[2], 100)
    subs[2].close()
    got = [read_ids(subs[0], total), read_ids(subs[1], total)]
    for t in threads:
        t.join()
    assert not errors, errors
    resumed = subscribe(s, token=STACK.token("u2"), last_id=first[-1])
    assert resumed.init["message"]["resumed"] is True
    assert resumed.init["message"]["last_event_id"] == first[-1]
    rest = read_ids(resumed, total - len(first))
    got.append(first + rest)
    table = stream_ids(s)
    assert sorted(table, key=int) == sorted(ids, key=int)
    for k, g in enumerate(got):
        assert len(g) == len(set(g)), "duplicate"
        if g != table:
            diff = [(i, a, b) for i, (a, b) in enumerate(zip(g, table)) if a != b][:5]
            raise AssertionError("subscriber %d: order or set differs from the table's stream order: %r (len %d/%d)"
                                 % (k, diff, len(g), len(table)))
    for c in subs[:2] + [resumed]:
        no_event(c, 0.5)
        c.close()


@test
def private_and_webhook_isolation():
    s = stream_name()
    alice = subscribe(s, token=STACK.token("alice"))
    bob = subscribe(s, token=STACK.token("bob"))
    anon = subscribe(s)
    p1 = insert(s, "private", author="bob", to="alice", message={"secret": "for alice"})
    w1 = insert(s, "webhook", author="bob", to="bob", message={"job_id": "1", "status": "succeeded"})
    b1 = insert(s, "broadcast")
    a = alice.events(2)
    assert [e["id"] for e in a] == [p1, b1]
    assert a[0]["json"]["to_user_id"] == "alice" and a[0]["json"]["type"] == "private"
    b = bob.events(2)
    assert [e["id"] for e in b] == [w1, b1]
    assert b[0]["json"]["type"] == "webhook" and b[0]["json"]["to_user_id"] == "bob"
    assert [e["id"] for e in anon.events(1)] == [b1]
    # a private on another stream never crosses
    insert(stream_name(), "private", to="alice")
    for c in (alice, bob, anon):
        no_event(c)
    # resume keeps the isolation: bob replays from before p1
    bob.close()
    bob2 = subscribe(s, token=STACK.token("bob"), last_id=p1)
    assert bob2.init["message"]["resumed"] is False  # p1 is not bob's to know
    bob2.close()
    first = str(int(p1) - 1)
    insert_before = insert(s, "broadcast")
    bob3 = subscribe(s, token=STACK.token("bob"), last_id=w1)
    assert bob3.init["message"]["resumed"] is True
    assert [e["id"] for e in bob3.events(2)] == [b1, insert_before]
    no_event(bob3)
    del first
    for c in (alice, anon, bob3):
        c.close()


@test
def widget_filter():
    s = stream_name()
    c1 = subscribe(s, query="widget_key=" + STACK.widget_key.upper())
    assert c1.init["widget_key"] == STACK.widget_key
    insert(s, widget=STACK.widget_key2)
    m = insert(s, widget=STACK.widget_key)
    assert [e["id"] for e in c1.events(1)] == [m]
    no_event(c1)
    c1.close()


@test
def unknown_last_event_id_is_live_only():
    s = stream_name()
    # Live starts at the process's tail position; wait until the tail has
    # passed `old`, or it may still arrive live (committed a moment before
    # the connection: not a loss, and widgets dedupe history by id).
    barrier = subscribe(s)
    old = insert(s)
    assert [e["id"] for e in barrier.events(1)] == [old]
    barrier.close()
    for last in ("999999999", "abc", old + "0"):
        c = subscribe(s, last_id=last)
        assert c.init["message"]["resumed"] is False, (last, c.init)
        m = insert(s)
        assert [e["id"] for e in c.events(1)] == [m]
        c.close()
    # a message of another stream is unknown here
    c = subscribe(stream_name(), last_id=old)
    assert c.init["message"]["resumed"] is False
    c.close()


@test
def sse_killed_and_restarted_resume_loses_nothing():
    s = stream_name()
    c = subscribe(s, token=STACK.token("k"))
    ids = [insert(s) for _ in range(5)]
    got = read_ids(c, 5)
    assert got == ids
    SSE.stop(signal.SIGKILL)
    c.close()
    more = [insert(s) for _ in range(7)]
    more.append(insert(s, "private", to="k"))
    SSE.start()
    wait_healthy()
    c2 = subscribe(s, token=STACK.token("k"), last_id=got[-1])
    assert c2.init["message"]["resumed"] is True
    later = insert(s)
    assert read_ids(c2, len(more) + 1) == more + [later]
    no_event(c2)
    c2.close()


@test
def restart_starts_live_at_the_true_end():
    """The start cursor is the newest settled row in (xid, id) order, not in
    text order: with ids 9 and 10+ in one transaction, "9" > "12" as text
    and a text sort would replay 10..12 to a live-only subscriber."""
    s = stream_name("order")
    rtwtest.cross_a_power_of_ten(STACK.pg)
    conn = STACK.pg.connect()
    conn.autocommit = False
    for _ in range(12):
        insert(s, conn=conn)
    conn.commit()
    conn.close()
    SSE.stop(signal.SIGTERM)
    SSE.start()
    wait_healthy()
    c = subscribe(s, token=STACK.token("fresh"))
    assert c.init["message"]["resumed"] is False
    mine = insert(s, message={"after": "restart"})
    ev = c.next_event()
    assert ev["id"] == mine, "a live-only subscriber got an old row first: %r" % ev
    no_event(c)
    c.close()


@test
def two_processes_share_one_port():
    """Two rtw-sse processes on one port (SO_REUSEPORT), each with its own
    LISTEN connection: every subscriber, whichever process took it, gets
    every message once, in the same order; a subscriber resumes on
    whichever process takes its reconnect."""
    second = STACK.start_sse(name="rtw-sse-2", port=STACK.sse_port,
                             env={"RTW_SSE_HEARTBEAT_S": "1"})
    try:
        wait_for(lambda: STACK.pg.query("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE application_name = 'rtw-sse'")[0][0] >= 2, 20, "two LISTENers")
        def sockets(d):
            fds = os.listdir("/proc/%d/fd" % d.proc.pid)
            return sum(1 for f in fds if os.readlink("/proc/%d/fd/%s" % (d.proc.pid, f)).startswith("socket:"))
        base = [sockets(SSE), sockets(second)]
        s = stream_name("rp")
        # a process just started holds a new stream until it knows its position
        subs = [subscribe(s, token=STACK.token("rp%d" % i)) for i in range(12)]
        ids = [insert(s) for _ in range(20)]
        for c in subs:
            assert read_ids(c, 20) == ids
        # the kernel spread the connections over both processes
        spread = [sockets(SSE) - base[0], sockets(second) - base[1]]
        assert sum(spread) == 12 and min(spread) > 0, spread
        half = subs[0]
        half.close()
        more = [insert(s) for _ in range(5)]
        again = [subscribe(s, token=STACK.token("rp0"), last_id=ids[-1]) for _ in range(4)]
        for c in again:
            assert c.init["message"]["resumed"] is True
            assert read_ids(c, 5) == more
        for c in subs[1:] + again:
            c.close()
    finally:
        second.stop()


@test
def postgres_restart_live_and_resume():
    s = stream_name()
    live = subscribe(s, token=STACK.token("p"))
    before = [insert(s) for _ in range(3)]
    assert read_ids(live, 3) == before
    STACK.pg.stop()
    wait_healthy(ok=False)
    r = request(STACK.sse_port, "GET", "/healthz")
    assert r.status == 503 and r.json == {"status": "unavailable", "service": "rtw-sse",
                                          "error": "database unreachable"}, r
    STACK.pg.start()
    wait_healthy()
    after = [insert(s) for _ in range(4)]
    # the open stream survives and continues exactly
    assert read_ids(live, 4) == after
    live.close()
    c = subscribe(s, token=STACK.token("p"), last_id=before[0])
    assert read_ids(c, 6) == before[1:] + after
    no_event(c)
    c.close()
    assert metric("rtw_sse_pg_reconnects_total") >= 1


@test
def held_until_the_position_is_known():
    """A process started while PostgreSQL is down does not know where the
    stream is: it holds a new stream's head (never a 503, which a standard
    EventSource takes as final). Held past sse.hold_max_ms, the answer is a
    200 event stream with only a jittered retry:; a head still held when
    PostgreSQL comes back starts as usual, live from the true end."""
    s = stream_name("hold")
    STACK.pg.stop()
    short = STACK.start_sse(name="rtw-sse-hold1", port=rtwtest.free_port(), env={"RTW_SSE_HOLD_MAX_MS": "300"})
    held = STACK.start_sse(name="rtw-sse-hold2", port=rtwtest.free_port(), env={"RTW_SSE_HOLD_MAX_MS": "60000"})
    try:
        c = SSEClient(short.ready_port, "/v1/streams/%s/events" % s,
                      headers={"Authorization": "Bearer " + STACK.token("h")})
        assert c.status == 200 and c.headers["content-type"] == "text/event-stream", (c.status, c.headers)
        body = c.body_text()
        assert body.startswith("retry: ") and "data:" not in body, body
        assert 1000 <= int(body.split()[1]) < 3000, body
        c.close()
        assert metric("rtw_sse_hold_retries_total", port=short.ready_port) >= 1
        box = {}

        def open_held():
            box["c"] = subscribe(s, token=STACK.token("h2"), port=held.ready_port)
        t = threading.Thread(target=open_held)
        t.start()
        wait_for(lambda: metric("rtw_sse_connections", port=held.ready_port) >= 2, 10, "a held connection")
        assert "c" not in box
    finally:
        STACK.pg.start()
    t.join(60)
    c = box["c"]
    assert c.init["message"]["resumed"] is False, c.init
    a = insert(s)
    assert read_ids(c, 1) == [a]
    c.close()
    short.stop()
    held.stop()
    wait_healthy()


@test
def terminated_backend_reconnects_and_catches_up():
    s = stream_name()
    c = subscribe(s, token=STACK.token("t"))
    pids = STACK.pg.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'rtw-sse'")
    assert pids, "rtw-sse's backend not found"
    conn = STACK.pg.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rtw-sse'")
    # written while rtw-sse may be reconnecting: delivered by the catch-up from the cursor
    ids = [insert(s, conn=conn) for _ in range(10)]
    conn.close()
    assert read_ids(c, 10) == ids
    wait_healthy()
    more = insert(s)
    assert read_ids(c, 1) == [more]
    c.close()



@test
def slow_consumer_bounded_and_complete():
    s = stream_name()
    # a subscriber that does not read, with a tiny receive buffer
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", STACK.sse_port))
    slow.sendall(("GET /v1/streams/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                  % (s, STACK.token("slow"))).encode())
    fast = subscribe(s, token=STACK.token("fast"))
    time.sleep(0.3)
    pid = SSE.proc.pid
    rss0 = rtwtest.rss_kib(pid)
    cut0 = metric("rtw_sse_slow_consumer_cutoffs_total")
    payload = "x" * 10000
    n_rows, per_tx = 6000, 500
    conn = STACK.pg.connect()
    sent = 0
    ids, got = [], []
    rss_max = rss0
    with conn.cursor() as cur:
        for _ in range(n_rows // per_tx):
            cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                        " SELECT %s, 'broadcast', %s, 'w', jsonb_build_object('i', g, 'p', %s::text), 1"
                        " FROM generate_series(1, %s) g RETURNING id", (s, STACK.widget_key, payload, per_tx))
            ids += [str(r[0]) for r in cur.fetchall()]
            batch, nbytes = read_ids_fast(fast, per_tx)
            got += batch
            sent += nbytes
            rss_max = max(rss_max, rtwtest.rss_kib(pid))
    conn.close()
    assert got == ids
    assert sent > 50 * 1024 * 1024, sent
    growth_mb = (rss_max - rss0) / 1024.0
    print("slow consumer: %.1f MB sent to the fast reader, server RSS growth %.1f MB" % (sent / 1048576.0, growth_mb))
    assert growth_mb < 50, "rss grew by %.1f MB" % growth_mb
    assert metric("rtw_sse_slow_consumer_cutoffs_total") > cut0
    # the slow one now reads and gets everything, in order, once
    slow.settimeout(60)
    raw = bytearray()
    want = b"id: " + ids[-1].encode() + b"\n"
    while want not in raw[-30000:]:
        d = slow.recv(1 << 20)
        assert d, "closed"
        raw += d
    body = bytes(raw).split(b"\r\n\r\n", 1)[1]
    got_ids = [line[4:].decode() for line in body.split(b"\n") if line.startswith(b"id: ")]
    assert got_ids == ids, (len(got_ids), len(ids))
    slow.close()
    fast.close()


def _raw_subscriber(stream, token, last_id=None, rcvbuf=4096, port=None):
    """A subscriber on a raw socket with a small receive buffer that reads
    nothing until told to."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port or STACK.sse_port))
    sock.sendall(("GET /v1/streams/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
                  % (stream, token, ("Last-Event-ID: %s\r\n" % last_id) if last_id else "")).encode())
    return sock


def _read_raw_ids(sock, last, timeout=60):
    """Reads a raw subscriber until the event with id `last`; its ids."""
    sock.settimeout(timeout)
    raw = bytearray()
    want = b"id: " + last.encode() + b"\n"
    while want not in raw[-100000:]:
        d = sock.recv(1 << 20)
        assert d, "closed"
        raw += d
    body = bytes(raw).split(b"\r\n\r\n", 1)[1]
    return [line[4:].decode() for line in body.split(b"\n") if line.startswith(b"id: ")]


@test
def resuming_subscribers_that_never_read_are_bounded():
    """Catch-up obeys the output bound: resuming subscribers with a large
    backlog that never read cost rtw-sse about sse.outbuf_max (256 KiB)
    each, not a whole batch of rows (here 400 rows of 50 KB: 20 MB each,
    160 MB for eight); then they read, and each gets every row exactly
    once, in order."""
    s = stream_name("bk")
    tail0 = metric("rtw_sse_tail_rows_total")
    first = insert(s)
    payload = "y" * 50000
    conn = STACK.pg.connect()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                    " SELECT %s, 'broadcast', %s, 'w', jsonb_build_object('i', g, 'p', %s::text), 1"
                    " FROM generate_series(1, 400) g RETURNING id", (s, STACK.widget_key, payload))
        ids = [str(r[0]) for r in cur.fetchall()]
    conn.commit()
    conn.close()
    assert stream_ids(s) == [first] + ids
    # the tail has read the backlog (its one transient result is not a
    # subscriber's memory): measure from there
    wait_for(lambda: metric("rtw_sse_tail_rows_total") >= tail0 + 401, 20, "the tail to pass the backlog")
    time.sleep(0.5)
    pid = SSE.proc.pid
    rss0 = rtwtest.rss_kib(pid)
    resumed0 = metric("rtw_sse_resume_catchups_total")
    socks = [_raw_subscriber(s, STACK.token("bk%d" % i), last_id=first) for i in range(8)]
    wait_for(lambda: metric("rtw_sse_resume_catchups_total") >= resumed0 + 8, 20, "eight resumes")
    rss_max = rss0
    for _ in range(20):  # the catch-ups run; nobody reads
        time.sleep(0.1)
        rss_max = max(rss_max, rtwtest.rss_kib(pid))
    growth_mb = (rss_max - rss0) / 1024.0
    print("eight resuming subscribers that never read: server RSS growth %.1f MB" % growth_mb)
    assert growth_mb < 24, "rss grew by %.1f MB" % growth_mb
    for sock in socks:
        assert _read_raw_ids(sock, ids[-1]) == ids
        sock.close()


@test
def garbage_last_event_id_with_widget_filter_is_unknown():
    """A Last-Event-ID that is no message id, with a widget filter (so a
    handshake query runs), is an unknown id: the stream starts live."""
    s = stream_name()
    for bad in ("garbage", "12abc", "99999999999999999999", "-1"):
        c = subscribe(s, token=STACK.token("g"), last_id=bad, query="widget_key=" + STACK.widget_key)
        assert c.init["message"]["resumed"] is False, c.init
        assert c.init["message"]["last_event_id"] is None, c.init
        a = insert(s)
        assert read_ids(c, 1) == [a]
        c.close()


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@test
def dripped_head_costs_linear_time():
    """A request head that arrives in tiny pieces is scanned once, not
    parsed again from its first byte on every read: a 64 KB head in 8-byte
    pieces (8,000 reads) costs rtw-sse well under a CPU second (parsed
    from byte 0 each time it was 256 MB of parsing)."""
    d = STACK.start_sse(name="rtw-sse-drip", port=rtwtest.free_port(),
                        env={"RTW_SSE_MAX_HEADER_BYTES": "70000", "RTW_SSE_HEADER_TIMEOUT_MS": "120000"})
    try:
        s = stream_name()
        head = ("GET /v1/streams/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                % (s, STACK.token("drip"))).encode()
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 100) for i in range(560))
        data = head + pad + b"\r\n"
        assert 60000 < len(data) < 70000, len(data)
        hz = os.sysconf("SC_CLK_TCK")
        sock = socket.create_connection(("127.0.0.1", d.ready_port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = _cpu_ticks(d.proc.pid)
        for i in range(0, len(data), 8):
            sock.sendall(data[i:i + 8])
            time.sleep(0.0002)
        buf = b""
        while b"\ndata: " not in buf:  # the head and the init event
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
        cpu = (_cpu_ticks(d.proc.pid) - t0) / hz
        print("a %d-byte head in 8-byte pieces: %.2f s of rtw-sse CPU" % (len(data), cpu))
        assert buf.startswith(b"HTTP/1.1 200 "), buf[:200]
        assert cpu < 0.6, "%.2f s of CPU for one dripped head" % cpu
        sock.close()
    finally:
        d.stop()


@test
def through_nginx():
    STACK.fcgi_port = STACK.fcgi_port or rtwtest.free_port()
    port = STACK.start_nginx()
    s = stream_name()
    c = subscribe(s, token=STACK.token("n"), port=port)
    assert c.headers["content-type"] == "text/event-stream"
    a = insert(s)
    assert read_ids(c, 1) == [a]
    c.close()
    b = insert(s)
    c2 = subscribe(s, token=STACK.token("n"), last_id=a, port=port)
    assert c2.init["message"]["resumed"] is True
    assert read_ids(c2, 1) == [b]
    deadline = time.time() + 4
    while c2.comments == 0 and time.time() < deadline:
        try:
            c2.next_event(0.5)
        except TimeoutError:
            pass
    assert c2.comments >= 1, "heartbeat did not pass through nginx"
    c2.close()
    r = request(port, "GET", "/v1/streams/%s/events?access_token=bad" % s)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized"


@test
def sigterm_ends_streams_cleanly():
    """SIGTERM ends every stream with a retry: hint of its own, jittered
    around sse.retry_ms (2000), so the clients of a restart come back
    spread out rather than all at once."""
    s = stream_name()
    cs = [subscribe(s) for _ in range(6)]
    assert SSE.stop(signal.SIGTERM) == 0
    for c in cs:
        assert c.retry == 2000, c.retry
        try:
            while True:
                c.next_event(5)
        except ConnectionError:
            pass
        assert c.closed
    hints = [c.retry for c in cs]
    assert all(1000 <= h < 3000 for h in hints), hints
    assert len(set(hints)) > 1, hints
    c = cs[0]
    c.close()
    SSE.start()
    wait_healthy()


def _local_address():
    """A non-loopback address of this machine, or None: connections from it
    count against sse.max_per_ip at accept (loopback peers are trusted
    proxies, counted by the client their X-Forwarded-For names)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("192.0.2.1", 9))  # no packet is sent; picks the source address
            addr = u.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def _refusal(port, host="127.0.0.1", path=None, origin=None):
    """Connects (from host, to host), sends a GET of path (nothing when
    None) and reads the whole close-delimited answer: (status, headers,
    body)."""
    with socket.create_connection((host, port), timeout=15, source_address=(host, 0)) as s:
        if path:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
                path, "Origin: %s\r\n" % origin if origin else "")).encode())
        data = b"".join(iter(lambda: s.recv(65536), b""))
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _assert_refusal(answer, status, code):
    st, headers, body = answer
    assert st == status, answer
    # the declared length is the body's (it was hand-counted, and wrong)
    assert int(headers["content-length"]) == len(body), answer
    assert json.loads(body)["error"]["code"] == code, answer
    assert headers["connection"] == "close" and "retry-after" in headers, answer


def _assert_retry_stream(answer, retry_ms=2000):
    """Over capacity, /events: a 200 event stream that only says retry:,
    later than after a restart and jittered ([2, 6) x sse.retry_ms), then
    ends; never a non-200, on which a standard EventSource gives up."""
    st, headers, body = answer
    assert st == 200 and headers["content-type"] == "text/event-stream", answer
    assert headers["connection"] == "close", answer
    assert body.startswith(b"retry: ") and body.endswith(b"\n\n") and b"data:" not in body, answer
    assert 2 * retry_ms <= int(body.split(b"\n")[0][7:]) < 6 * retry_ms, answer


def _start_sse_wildcard(name, listen, env):
    """Starts an rtw-sse listening on a wildcard address (listen: a format
    with the port); (daemon, port). free_port checks 127.0.0.1 only, and on a
    busy machine a connection's local port may hold the same number on
    another address: then another port is tried."""
    for attempt in range(5):
        port = rtwtest.free_port()
        e = dict(env, RTW_SSE_LISTEN=listen % port)
        try:
            return STACK.start_sse(name=name, port=port, env=e), port
        except TimeoutError as err:
            if "Address already in use" not in str(err) or attempt == 4:
                raise


@test
def ipv4_peer_on_an_ipv6_listener_is_loopback():
    """rtw-sse listening on [::] sees an IPv4 peer as ::ffff:127.0.0.1: the
    local proxy reaching it over IPv4 is 127.0.0.1 there too, so a trusted
    proxy (http.trusted_proxies, loopback by default) whose X-Forwarded-For
    names the clients, not one address over sse.max_per_ip."""
    d, port = _start_sse_wildcard("rtw-sse-v6", "[::]:%d", {"RTW_SSE_MAX_PER_IP": "1"})
    try:
        s = stream_name()
        cs = [subscribe(s, token=STACK.token("v6-%d" % i), port=port,
                        headers={"X-Forwarded-For": "198.51.100.%d" % (i + 1)}) for i in range(3)]
        over = SSEClient(port, "/v1/streams/%s/events" % s, headers={
            "Authorization": "Bearer " + STACK.token("v6-x"), "X-Forwarded-For": "198.51.100.1"})
        assert over.status == 429, over.status  # the same client address again
        over.close()
        a = insert(s)
        for c in cs:
            assert read_ids(c, 1) == [a]
            c.close()
    finally:
        d.stop()


@test
def refusals_at_accept_declare_their_length():
    """Over sse.max_connections /events is answered 200 with a retry: (a
    standard EventSource would give up on a non-200) and anything else 503,
    whether the head is read or the over-capacity slots are taken and the
    answer is decided at accept; over sse.max_per_ip (peers that are not
    trusted proxies) 429; each JSON answer's Content-Length is exactly its
    body's length."""
    d, port = _start_sse_wildcard("rtw-sse-cap", "0.0.0.0:%d",
                                  {"RTW_SSE_MAX_CONNECTIONS": "2", "RTW_SSE_MAX_PER_IP": "1"})
    held = []
    try:
        wait_healthy(port)
        # only the /metrics request itself is open: the next ones are counted in order
        wait_for(lambda: metric("rtw_sse_connections", port) == 1, 20, "no leftover connections")
        addr = _local_address()
        if addr is not None:
            held.append(socket.create_connection((addr, port), timeout=15, source_address=(addr, 0)))
            wait_for(lambda: metric("rtw_sse_connections", port) == 2, 20, "the held connection")
            _assert_refusal(_refusal(port, addr), 429, "rate_limited")
        else:
            print("# no non-loopback address: the 429 refusal is not exercised")
            held.append(socket.create_connection(("127.0.0.1", port), timeout=15))
        held.append(socket.create_connection(("127.0.0.1", port), timeout=15))
        # full: a head is read and answered by its path
        _assert_refusal(_refusal(port, path="/healthz"), 503, "unavailable")
        _assert_retry_stream(_refusal(port, path="/v1/streams/full/events?access_token=x"))
        answer = _refusal(port, path="/v1/streams/full/events", origin="http://elsewhere.example")
        _assert_retry_stream(answer)
        assert "access-control-allow-origin" not in answer[1], answer  # the deployment's CORS rule holds
        # every over-capacity slot taken by a client that sends nothing:
        # the rest are answered at accept, /events (or no head yet) 200
        idle = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(64)]
        held += idle
        for _ in range(3):
            _assert_retry_stream(_refusal(port))
            _assert_retry_stream(_refusal(port, path="/v1/streams/full/events"))
        for h in held:
            h.close()
        held = []
        # the process is full until it has seen the held connections close
        wait_for(lambda: metric("rtw_sse_connections_rejected_total", port) >= (10 if addr else 9), 20,
                 "the refusals counted")
    finally:
        for h in held:
            h.close()
        d.stop()


def coalescing_sse(name):
    """A dedicated rtw-sse with a 1,000 ms coalescing budget: (daemon, port)."""
    port = rtwtest.free_port()
    d = STACK.start_sse(name=name, port=port, env={"RTW_SSE_COALESCE_MS": "1000"})
    return d, port


def insert_created_ago(stream, conn, interval):
    """Inserts a message whose created_at is interval (SQL) in the past; returns its id."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts, created_at)"
                    " VALUES (%s, 'broadcast', %s, 'writer', '{}', 1, now() - %s::interval) RETURNING id",
                    (stream, STACK.widget_key, interval))
        return str(cur.fetchone()[0])


@test
def coalesced_writes_keep_order_and_survive_a_close():
    """sse.coalesce_ms: a connection written to less than the window ago
    keeps its new live frames until the window ends. Held output still
    arrives whole, in stream order, once; a subscriber that leaves while
    its output is held is dropped cleanly (the others go on); held
    connections count in rtw_sse_coalesce_holds_total and messages that
    shared a write show as fewer writes than deliveries."""
    d, port = coalescing_sse("rtw-sse-coalesce")
    try:
        wait_healthy(port)
        s = stream_name("co")
        subs = [subscribe(s, token=STACK.token("co%d" % i), port=port) for i in range(4)]
        w0, d0 = metric("rtw_sse_writes_total", port), metric("rtw_sse_events_delivered_total", port)
        first = insert(s)  # after a quiet spell: written at once
        for c in subs:
            assert read_ids(c, 1) == [first]
        conn = STACK.pg.connect()
        try:
            ids = [first] + [insert(s, conn=conn) for _ in range(20)]  # within the window: held
            subs[3].close()  # leaves while its output is held
            ids += [insert(s, conn=conn) for _ in range(5)]
        finally:
            conn.close()
        for c in subs[:3]:
            assert read_ids(c, len(ids) - 1) == ids[1:]
        assert ids == stream_ids(s)
        assert metric("rtw_sse_coalesce_holds_total", port) > 0
        writes = metric("rtw_sse_writes_total", port) - w0
        delivered = metric("rtw_sse_events_delivered_total", port) - d0
        assert delivered >= 3 * len(ids) and writes < delivered, (writes, delivered)
        for c in subs[:3]:
            no_event(c, 0.5)
            c.close()
    finally:
        d.stop()


@test
def coalescing_never_holds_a_message_past_its_budget():
    """sse.coalesce_ms is a budget from the message's created_at: a live
    message that reaches rtw-sse with none of it left is written at once,
    even to a connection written a moment ago (which would hold a fresh
    one), and takes nothing with it out of order."""
    d, port = coalescing_sse("rtw-sse-budget")
    try:
        wait_healthy(port)
        s = stream_name("bu")
        c = subscribe(s, token=STACK.token("bu"), port=port)
        first = insert(s)  # after a quiet spell: written at once
        assert read_ids(c, 1) == [first]
        h0 = metric("rtw_sse_coalesce_holds_total", port)
        conn = STACK.pg.connect()
        try:
            old = insert_created_ago(s, conn, "10 s")
            assert read_ids(c, 1) == [old]
            assert metric("rtw_sse_coalesce_holds_total", port) == h0
            fresh = insert(s, conn=conn)  # written less than the budget ago: held
        finally:
            conn.close()
        assert read_ids(c, 1) == [fresh]
        assert metric("rtw_sse_coalesce_holds_total", port) > h0
        assert [first, old, fresh] == stream_ids(s)
        c.close()
    finally:
        d.stop()


@test
def coalescing_holds_only_when_a_companion_is_expected():
    """sse.coalesce_ms holds a live message only while the connection's
    messages come closer together than the budget: messages further apart
    than it are written at once, none held; a burst that follows is held
    again and shares writes."""
    d, port = coalescing_sse("rtw-sse-companion")
    try:
        wait_healthy(port)
        s = stream_name("cp")
        c = subscribe(s, token=STACK.token("cp"), port=port)
        h0 = metric("rtw_sse_coalesce_holds_total", port)
        conn = STACK.pg.connect()
        try:
            ids = []
            for _ in range(4):
                # the next one comes at least 1,200 ms later: further apart
                # than the 1,000 ms budget
                ids.append(insert(s, conn=conn))
                assert read_ids(c, 1) == ids[-1:]
                time.sleep(1.2)
            assert metric("rtw_sse_coalesce_holds_total", port) == h0
            w0, d0 = metric("rtw_sse_writes_total", port), metric("rtw_sse_events_delivered_total", port)
            burst = [insert(s, conn=conn) for _ in range(10)]  # close together, fresh: held
        finally:
            conn.close()
        assert read_ids(c, len(burst)) == burst
        assert ids + burst == stream_ids(s)
        assert metric("rtw_sse_coalesce_holds_total", port) > h0
        writes = metric("rtw_sse_writes_total", port) - w0
        delivered = metric("rtw_sse_events_delivered_total", port) - d0
        assert delivered >= len(burst) and writes < delivered, (writes, delivered)
        c.close()
    finally:
        d.stop()


if __name__ == "__main__":
    rtwtest.main()
