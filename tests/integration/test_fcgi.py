"""test_fcgi: rtw-fcgi through real nginx and a real PostgreSQL.

One test per message type and per row of the contract's error table
(429 on its own stack with a small limit), idempotency (replay, conflict,
race), concurrency, history paging under writers, CORS, body limits, open
mode, PostgreSQL going away and coming back, /healthz and /metrics, and
SIGTERM.
"""
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import rtwtest as t  # noqa: E402

# the test widget has no webhook host list (webhook.require_widget_hosts)
S = t.Stack(extra_env={"RTW_WEBHOOK_REQUIRE_WIDGET_HOSTS": "false"})
S.start_fcgi()
S.start_nginx()
P = S.http_port
TOK = S.token("alice")
PATH = "/v1/streams/s1/messages"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def post(body, path=PATH, token=TOK, headers=None, port=None):
    return t.request(port or P, "POST", path, body, token=token, headers=headers)


def bcast(**kw):
    m = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1.5, "message": {"v": 1}}
    m.update(kw)
    return m


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert r.header("Content-Type").startswith("application/json"), r.headers
    e = r.json["error"]
    assert e["code"] == code, r
    assert isinstance(e["message"], str) and e["message"], r
    if field is not None:
        assert e.get("field") == field, r


def rejected(status, code, body=None, field=None, stack=S, **kw):
    """Sends a request that must fail and leave the database untouched."""
    before = stack.pg.snapshot()
    r = post(body, **kw) if body is not None or kw.get("headers") else post(body, **kw)
    assert_error(r, status, code, field)
    assert stack.pg.snapshot() == before, "a rejected request changed the database"
    return r


def count(sql, params=None, stack=S):
    return stack.pg.query(sql, params)[0][0]


# ---- message types ---------------------------------------------------------

@t.test
def broadcast_201_stored_and_serialized():
    r = post(bcast(message={"param1": 0, "param3": {"paramB": False}}, timestamp=2365.123))
    assert r.status == 201, r
    m = r.json
    assert set(m) == {"id", "stream_id", "author_id", "message", "timestamp", "type", "widget_key", "created_at"}, m
    assert m["stream_id"] == "s1" and m["author_id"] == "alice" and m["type"] == "broadcast"
    assert m["timestamp"] == 2365.123 and m["message"] == {"param1": 0, "param3": {"paramB": False}}
    assert RFC3339.match(m["created_at"]), m
    assert count("SELECT count(*) FROM rtw_messages WHERE id = %s AND type = 'broadcast' AND author_id = 'alice'",
                 (int(m["id"]),)) == 1


@t.test
def private_201_and_never_in_history():
    r = post(bcast(type="private", to_user_id="bob", message="secret"))
    assert r.status == 201, r
    assert r.json["to_user_id"] == "bob" and r.json["type"] == "private"
    h = post({"type": "request", "widget_key": S.widget_key, "message": {"limit": 1000}})
    assert h.status == 200, h
    assert r.json["id"] not in [m["id"] for m in h.json["message"]["messages"]]
    assert all(m["type"] == "broadcast" for m in h.json["message"]["messages"])


@t.test
def webhook_202_queued_and_status():
    r = post({"type": "webhook", "widget_key": S.widget_key,
              "message": {"url": "https://example.com/hook", "method": "PUT", "headers": {"X-A": "1"},
                          "body": {"k": 2}}})
    assert r.status == 202, r
    j = r.json
    assert j["type"] == "webhook" and j["timestamp"] == 0 and j["author_id"] == "alice" and j["stream_id"] == "s1"
    assert j["message"]["status"] == "queued" and j["message"]["url"] == "https://example.com/hook"
    job = j["message"]["job_id"]
    row = S.pg.query("SELECT status, method, headers, body, author_id FROM rtw_webhook_jobs WHERE id = %s",
                     (int(job),))
    assert row == [("queued", "PUT", {"X-A": "1"}, {"k": 2}, "alice")], row
    mine = t.request(P, "GET", "/v1/webhooks/" + job, token=TOK)
    assert mine.status == 200 and mine.json["job_id"] == job and mine.json["status"] == "queued", mine
    assert mine.json["attempts"] == 0
    admin = t.request(P, "GET", "/v1/webhooks/" + job, token=S.token("root", admin=True))
    assert admin.status == 200, admin
    assert_error(t.request(P, "GET", "/v1/webhooks/" + job, token=S.token("mallory")), 404, "not_found")
    assert_error(t.request(P, "GET", "/v1/webhooks/999999999", token=TOK), 404, "not_found")
    assert_error(t.request(P, "GET", "/v1/webhooks/" + job), 401, "unauthorized")


@t.test
def webhook_string_url_defaults_to_post():
    r = post({"type": "webhook", "widget_key": S.widget_key, "message": "http://example.org/x"})
    assert r.status == 202, r
    assert S.pg.query("SELECT method, body FROM rtw_webhook_jobs WHERE id = %s",
                      (int(r.json["message"]["job_id"]),)) == [("POST", None)]


@t.test
def webhook_target_refused_scheme_and_widget_hosts():
    rejected(403, "webhook_target_refused", {"type": "webhook", "widget_key": S.widget_key,
                                             "message": "ftp://example.com/x"})
    key = S.add_widget("hooked", "--webhook-hosts", "ok.example")
    rejected(403, "webhook_target_refused", {"type": "webhook", "widget_key": key,
                                             "message": "https://evil.example/x"})
    r = post({"type": "webhook", "widget_key": key, "message": "https://OK.example:8443/x"})
    assert r.status == 202, r


@t.test
def request_200_envelope_and_get_alias():
    key = S.add_widget("hist-envelope")
    ids = [post(bcast(widget_key=key, timestamp=i)).json["id"] for i in range(3)]
    r = post({"type": "request", "widget_key": key})
    assert r.status == 200, r
    j = r.json
    assert j["type"] == "request" and j["stream_id"] == "s1" and j["widget_key"] == key
    assert j["author_id"] == "alice" and j["timestamp"] == 0
    assert [m["id"] for m in j["message"]["messages"]] == ids
    assert j["message"]["next_since_id"] is None
    g = t.request(P, "GET", PATH + "?widget_key=" + key, token=TOK)
    assert g.status == 200 and g.json == j, (g, j)


# ---- the error table -------------------------------------------------------

@t.test
def e400_invalid_json():
    rejected(400, "invalid_json", "{")
    rejected(400, "invalid_json", '{"type":"broadcast","type":"broadcast"}')
    rejected(400, "invalid_json", "[1]")
    rejected(400, "invalid_json", b'{"type":"broadcast","message":"\xff"}')


@t.test
def e400_invalid_field():
    rejected(400, "invalid_field", bcast(widget_key="not-a-uuid"), field="widget_key")
    rejected(400, "invalid_field", bcast(timestamp=-1), field="timestamp")
    rejected(400, "invalid_field", bcast(), path="/v1/streams/bad%20id/messages")
    rejected(400, "invalid_field", bcast(), headers={"Idempotency-Key": "k" * 129})


@t.test
def e400_missing_field():
    m = bcast()
    del m["timestamp"]
    rejected(400, "missing_field", m, field="timestamp")
    rejected(400, "missing_field", bcast(type="private"), field="to_user_id")
    rejected(400, "missing_field", bcast(widget_key=None), field="widget_key")


@t.test
def e400_unexpected_field():
    rejected(400, "unexpected_field", bcast(to_user_id="bob"), field="to_user_id")
    rejected(400, "unexpected_field", bcast(id="1"), field="id")
    rejected(400, "unexpected_field", bcast(extra=1), field="extra")


@t.test
def e400_unknown_type():
    rejected(400, "unknown_type", bcast(type="init"))
    rejected(400, "unknown_type", bcast(type="shout"))


@t.test
def e400_stream_mismatch():
    rejected(400, "stream_mismatch", bcast(stream_id="other"))


@t.test
def e401_unauthorized():
    rejected(401, "unauthorized", bcast(), token=None)
    rejected(401, "unauthorized", bcast(), token=t.mint("wrong-secret", "alice"))
    rejected(401, "unauthorized", bcast(), token=S.token("alice", exp=int(time.time()) - 10))
    rejected(401, "unauthorized", bcast(), token="garbage")
    assert_error(t.request(P, "GET", PATH + "?widget_key=" + S.widget_key), 401, "unauthorized")


@t.test
def e403_forbidden_stream_claim():
    rejected(403, "forbidden", bcast(), token=S.token("alice", streams=["other"]))
    assert post(bcast(), token=S.token("alice", streams=["s1"])).status == 201
    assert post(bcast(), token=S.token("alice", streams="*")).status == 201


@t.test
def e403_author_mismatch():
    rejected(403, "author_mismatch", bcast(author_id="bob"), field="author_id")
    assert post(bcast(author_id="alice")).status == 201


@t.test
def e403_unknown_widget_and_disable_within_two_seconds():
    rejected(403, "unknown_widget", bcast(widget_key=str(uuid.uuid4())))
    key = S.add_widget("to-disable")
    assert post(bcast(widget_key=key)).status == 201
    S.ctl("widget", "disable", key)
    t.wait_for(lambda: post(bcast(widget_key=key)).status == 403, 3.0, "the disable to take effect")
    rejected(403, "unknown_widget", bcast(widget_key=key))


@t.test
def e404_not_found():
    for path in ("/v1/nope", "/v1/streams/s1", "/v1/streams/s1/messages/extra", "/v1/webhooks/abc"):
        assert_error(t.request(P, "GET", path, token=TOK), 404, "not_found")


@t.test
def e405_method_not_allowed_with_allow():
    for method in ("PUT", "DELETE", "PATCH"):
        r = t.request(P, method, PATH, token=TOK)
        assert_error(r, 405, "method_not_allowed")
        assert set(r.header("Allow").replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}, r.headers
    r = t.request(P, "POST", "/v1/webhooks/1", bcast(), token=TOK)
    assert_error(r, 405, "method_not_allowed")
    assert "POST" not in r.header("Allow")


@t.test
def e409_idempotency_conflict():
    h = {"Idempotency-Key": "conflict-1"}
    assert post(bcast(), headers=h).status == 201
    rejected(409, "idempotency_conflict", bcast(message={"other": True}), headers=h)


@t.test
def e413_from_nginx_is_json():
    before = S.pg.snapshot()
    r = post("x" * (70 * 1024))
    assert_error(r, 413, "payload_too_large")
    assert S.pg.snapshot() == before


@t.test
def e415_unsupported_media_type():
    rejected(415, "unsupported_media_type", bcast(), headers={"Content-Type": "text/plain"})
    rejected(415, "unsupported_media_type", bcast(), headers={"Content-Type": "application/jsonx"})
    r = post(bcast(), headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status == 201, r


# ---- idempotency -----------------------------------------------------------

@t.test
def idempotent_retry_returns_first_answer_and_stores_nothing():
    h = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    first = post(bcast(), headers=h)
    assert first.status == 201, first
    before = S.pg.snapshot()
    again = post(bcast(), headers=h)
    assert again.status == 201 and again.json == first.json, (first, again)
    assert S.pg.snapshot() == before
    # the key is per author: another author may reuse it
    other = post(bcast(), headers=h, token=S.token("carol"))
    assert other.status == 201 and other.json["id"] != first.json["id"]
    # a webhook's 202 is replayed the same way
    hw = {"Idempotency-Key": "hook-" + uuid.uuid4().hex}
    w1 = post({"type": "webhook", "widget_key": S.widget_key, "message": "https://example.com/i"}, headers=hw)
    w2 = post({"type": "webhook", "widget_key": S.widget_key, "message": "https://example.com/i"}, headers=hw)
    assert w1.status == w2.status == 202 and w1.json == w2.json


@t.test
def idempotent_race_makes_exactly_one_message():
    key = "race-" + uuid.uuid4().hex
    body = bcast(message={"race": key})
    results = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        results.append(post(body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r.status == 201 for r in results), results
    assert len({r.body for r in results}) == 1, results
    assert count("SELECT count(*) FROM rtw_messages WHERE message->>'race' = %s", (key,)) == 1


# ---- concurrency -----------------------------------------------------------

@t.test
def concurrent_posts_each_stored_exactly_once():
    """8 threads x 50 posts, then 16 x 25: every 201 names its own row (the
    group committer hands each waiter the row of its own message), each id
    once, no extra rows."""
    for nthreads, per in ((8, 50), (16, 25)):
        stream = "conc-" + uuid.uuid4().hex[:8]
        got, errors = {}, []
        lock = threading.Lock()

        def writer(n):
            for i in range(per):
                r = post(bcast(message={"w": n, "i": i}, timestamp=n * 1000 + i),
                         path="/v1/streams/%s/messages" % stream)
                with lock:
                    if r.status == 201 and r.json["message"] == {"w": n, "i": i}:
                        got[r.json["id"]] = r.json
                    else:
                        errors.append((n, i, r))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(nthreads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors[:3]
        assert len(got) == nthreads * per
        rows = S.pg.query("SELECT id::text, message, ts FROM rtw_messages WHERE stream_id = %s", (stream,))
        assert len(rows) == nthreads * per
        for rid, message, ts in rows:
            assert got[rid]["message"] == message and got[rid]["timestamp"] == ts, (rid, got[rid], message)
            assert ts == message["w"] * 1000 + message["i"]


# ---- history ---------------------------------------------------------------

def walk(key, stream="s1", limit=7, since=None, extra=""):
    """Pages through history; returns the ids and the last since_id."""
    out = []
    while True:
        q = "%s?widget_key=%s&limit=%d%s" % ("/v1/streams/%s/messages" % stream, key, limit, extra)
        if since:
            q += "&since_id=" + since
        r = t.request(P, "GET", q, token=TOK)
        assert r.status == 200, r
        page = r.json["message"]
        assert len(page["messages"]) <= limit
        out += [m["id"] for m in page["messages"]]
        if page["messages"]:
            since = page["messages"][-1]["id"]
        if page["next_since_id"] is None:
            return out, since
        assert page["next_since_id"] == since


@t.test
def history_paging_under_writers_has_no_gap_or_duplicate():
    key = S.add_widget("paging")
    stream = "page-" + uuid.uuid4().hex[:8]
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            post(bcast(widget_key=key), path="/v1/streams/%s/messages" % stream)

    writers = [threading.Thread(target=writer) for _ in range(4)]
    for th in writers:
        th.start()
    seen, since = [], None
    deadline = time.time() + 3
    while time.time() < deadline:
        ids, since = walk(key, stream, 5, since)
        seen += ids
    stop.set()
    for th in writers:
        th.join()
    ids, since = walk(key, stream, 5, since)
    seen += ids
    assert len(seen) == len(set(seen)), "duplicates in history"
    rows = S.pg.query("SELECT m.id::text FROM rtw_messages m WHERE m.stream_id = %s AND m.widget_key = %s "
                      "ORDER BY m.xid, m.id", (stream, key))
    assert seen == [r[0] for r in rows], (len(seen), len(rows))
    assert len(seen) > 20


@t.test
def history_filters_limits_and_since_id_rules():
    key = S.add_widget("filters")
    ids = [post(bcast(widget_key=key, timestamp=float(i))).json["id"] for i in range(10)]
    r = post({"type": "request", "widget_key": key, "message": {"from_timestamp": 2, "to_timestamp": 4}})
    assert [m["timestamp"] for m in r.json["message"]["messages"]] == [2, 3, 4], r
    r = post({"type": "request", "widget_key": key, "message": {"limit": 3}})
    assert [m["id"] for m in r.json["message"]["messages"]] == ids[:3]
    assert r.json["message"]["next_since_id"] == ids[2]
    r = post({"type": "request", "widget_key": key, "message": {"since_id": ids[7]}})
    assert [m["id"] for m in r.json["message"]["messages"]] == ids[8:]
    assert r.json["message"]["next_since_id"] is None
    g = t.request(P, "GET", PATH + "?widget_key=%s&from_timestamp=8.5" % key, token=TOK)
    assert [m["id"] for m in g.json["message"]["messages"]] == ids[9:], g
    # since_id of another stream, of a private, of nothing: 400
    other = post(bcast(widget_key=key), path="/v1/streams/s2/messages").json["id"]
    priv = post(bcast(type="private", to_user_id="bob")).json["id"]
    for bad in (other, priv, "999999999"):
        assert_error(post({"type": "request", "widget_key": key, "message": {"since_id": bad}}),
                     400, "invalid_field", "since_id")
    for q in ("limit=abc", "limit=0", "limit=1001", "limit=-1", "from_timestamp=x", "since_id=abc"):
        assert_error(t.request(P, "GET", PATH + "?widget_key=%s&%s" % (key, q), token=TOK), 400, "invalid_field")
    # a malformed %-escape is refused, never passed through (it was, as "%zz")
    for q, field in (("author_id=%zz", "author_id"), ("cache=1%", "cache"), ("a%4=1", "query"),
                     ("since_id=%00", "since_id")):
        assert_error(t.request(P, "GET", PATH + "?widget_key=%s&%s" % (key, q), token=TOK), 400, "invalid_field",
                     field)
    g = t.request(P, "GET", PATH + "?widget_key=%s&limit=%%32" % key, token=TOK)
    assert g.status == 200 and len(g.json["message"]["messages"]) == 2, g
    assert_error(t.request(P, "GET", PATH, token=TOK), 400, "missing_field", "widget_key")
    assert_error(t.request(P, "GET", PATH + "?widget_key=" + str(uuid.uuid4()), token=TOK), 403, "unknown_widget")


def restart_ids(value):
    S.pg.query("ALTER TABLE rtw_messages ALTER COLUMN id RESTART WITH %d" % value)


@t.test
def history_orders_ids_numerically_across_digit_boundaries():
    """Rows of one transaction share an xid; within it the order is the
    numeric id (10 after 9), the same order since_id positions use."""
    key = S.add_widget("digits")
    restart_ids(10 ** 10 - 5)
    S.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts) "
               "SELECT 'digits', 'broadcast', %s, 'alice', to_jsonb(g), 0 FROM generate_series(1, 10) g", (key,))
    want = [r[0] for r in S.pg.query("SELECT id::text FROM rtw_messages WHERE stream_id = 'digits' "
                                     "ORDER BY id::bigint")]
    assert want[0] == str(10 ** 10 - 5) and want[-1] == str(10 ** 10 + 4)
    got, _ = walk(key, "digits", 3)
    assert got == want, (got, want)


@t.test
def group_commit_hands_each_waiter_its_row_across_digit_boundaries():
    """A table lock holds the first leader's INSERT while 15 more requests
    queue; on release they are written as one batch whose ids cross a digit
    boundary (99..., 100...), and each must get its own row back."""
    for exp in (11, 12):
        restart_ids(10 ** exp - 4)
        stream = "gc-" + uuid.uuid4().hex[:8]
        out = []
        locker = S.pg.connect()
        locker.autocommit = False
        try:
            with locker.cursor() as cur:
                cur.execute("LOCK TABLE rtw_messages IN EXCLUSIVE MODE")
            threads = [threading.Thread(target=lambda n=n: out.append(
                (n, post(bcast(message={"n": n}), path="/v1/streams/%s/messages" % stream)))) for n in range(16)]
            for th in threads:
                th.start()
            t.wait_for(lambda: count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND query LIKE '%%rtw_messages%%'") > 0, 10, "the leader to block")
            time.sleep(0.5)  # setup, not an assertion: lets the other requests queue behind the leader
        finally:
            locker.rollback()
            locker.close()
        for th in threads:
            th.join()
        assert all(r.status == 201 for _, r in out), out
        stored = dict((str(i), m) for i, m in S.pg.query(
            "SELECT id, message FROM rtw_messages WHERE stream_id = %s", (stream,)))
        assert len(stored) == 16
        batches = count("SELECT count(DISTINCT xid) FROM rtw_messages WHERE stream_id = %s", (stream,))
        assert batches < 16, "no shared batch formed"
        for n, r in out:
            # the answer is this request's own message, stored under that id
            assert r.json["message"] == {"n": n} and stored[r.json["id"]] == {"n": n}, (n, r.json)


# ---- CORS ------------------------------------------------------------------

@t.test
def cors_widget_origins_and_preflight():
    key = S.add_widget("cors", "--origins", "https://w.example,https://v.example")
    r = post(bcast(widget_key=key), headers={"Origin": "https://w.example"})
    assert r.status == 201 and r.header("Access-Control-Allow-Origin") == "https://w.example", r.headers
    assert "Retry-After" in r.header("Access-Control-Expose-Headers")
    r = post(bcast(widget_key=key), headers={"Origin": "https://evil.example"})
    assert r.status == 201 and r.header("Access-Control-Allow-Origin") is None, r.headers
    # errors carry CORS too, so the widget can read them
    r = post(bcast(widget_key=key, timestamp=-1), headers={"Origin": "https://w.example"})
    assert r.status == 400 and r.header("Access-Control-Allow-Origin") == "https://w.example"
    pre = t.request(P, "OPTIONS", PATH, headers={"Origin": "https://v.example",
                                                 "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status == 204, pre
    assert pre.header("Access-Control-Allow-Origin") == "https://v.example"
    assert "POST" in pre.header("Access-Control-Allow-Methods")
    allowed = {h.strip().lower() for h in pre.header("Access-Control-Allow-Headers").split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert int(pre.header("Access-Control-Max-Age")) > 0
    pre = t.request(P, "OPTIONS", PATH, headers={"Origin": "https://evil.example",
                                                 "Access-Control-Request-Method": "POST"})
    assert pre.status == 204 and pre.header("Access-Control-Allow-Origin") is None, pre.headers


# ---- spawn-fcgi (inherited fd 0) and Apache-style CGI variables ----------

def fcgi_call(port, params, body=b""):
    """One FastCGI request (responder role) on a fresh connection; returns
    (status, headers dict, body bytes) parsed from the CGI response."""
    import struct

    def rec(kind, content):
        return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content

    def nv(k, v):
        k, v = k.encode(), v.encode()
        enc = lambda n: bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)  # noqa: E731
        return enc(len(k)) + enc(len(v)) + k + v

    msg = rec(1, struct.pack(">HB5x", 1, 0)) + rec(4, b"".join(nv(k, v) for k, v in params.items())) + rec(4, b"")
    if body:
        msg += rec(5, body)
    msg += rec(5, b"")
    out = b""
    if isinstance(port, str):  # a unix socket path
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(port)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    with s:
        s.sendall(msg)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    while len(buf) >= 8:
        _, kind, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
        if kind == 6:
            out += buf[8:8 + clen]
        buf = buf[8 + clen + plen:]
    head, _, rest = out.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
    return int(headers["Status"].split()[0]), headers, rest


@t.test
def spawn_fcgi_inherited_socket_and_apache_variables():
    port = t.free_port()
    d = S._daemon("rtw-fcgi-spawn", ["spawn-fcgi", "-n", "-a", "127.0.0.1", "-p", str(port), "--",
                                     t.prog("rtw-fcgi")], port, {"RTW_FCGI_SOCKET": "", "RTW_FCGI_WORKERS": "2"})
    try:
        body = t.json.dumps(bcast(message="via apache")).encode()
        # mod_proxy_fcgi style: the path only in REQUEST_URI (with a query), PATH_INFO absent
        status, headers, out = fcgi_call(port, {
            "REQUEST_METHOD": "POST", "REQUEST_URI": "/v1/streams/s1/messages?x=1", "SCRIPT_NAME": "/v1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": "Bearer " + TOK}, body)
        assert status == 201, (status, out)
        assert t.json.loads(out)["message"] == "via apache"
        assert headers["Content-Type"] == "application/json"
        status, headers, out = fcgi_call(port, {"REQUEST_METHOD": "GET", "REQUEST_URI": "/v1/streams/s1/nope"})
        assert status == 404 and t.json.loads(out)["error"]["code"] == "not_found", out
        # the path is percent-decoded by the one decoder: a malformed escape is a 400
        status, headers, out = fcgi_call(port, {"REQUEST_METHOD": "GET", "REQUEST_URI": "/v1/streams/s%zz/messages"})
        assert status == 400 and t.json.loads(out)["error"] == {
            "code": "invalid_field", "field": "path", "message": "the path holds a malformed %-escape"}, out
        status, headers, out = fcgi_call(port, {
            "REQUEST_METHOD": "GET", "REQUEST_URI": "/v1/streams/s%31/messages", "HTTP_AUTHORIZATION": "Bearer " + TOK,
            "QUERY_STRING": "widget_key=" + str(uuid.uuid4())})
        assert status == 403 and t.json.loads(out)["error"]["code"] == "unknown_widget", out
    finally:
        assert d.stop(signal.SIGTERM) == 0


@t.test
def unix_socket_mode_and_cleanup():
    path = os.path.join(S.tmp, "fcgi-test.sock")
    d = S._daemon("rtw-fcgi-unix", [t.prog("rtw-fcgi")], None,
                  {"RTW_FCGI_SOCKET": path, "RTW_FCGI_SOCKET_MODE": "0640", "RTW_FCGI_WORKERS": "2"})
    try:
        t.wait_for(lambda: "listening" in d.log_text(), 10, "rtw-fcgi on the unix socket")
        assert os.stat(path).st_mode & 0o777 == 0o640
        status, _, out = fcgi_call(path, {"REQUEST_METHOD": "GET", "REQUEST_URI": "/v1/webhooks/1"})
        assert status == 401 and t.json.loads(out)["error"]["code"] == "unauthorized", out
    finally:
        assert d.stop(signal.SIGTERM) == 0
    assert not os.path.exists(path)


@t.test
def through_apache_mod_proxy_fcgi():
    ap = S.start_apache()
    r = post(bcast(message="via httpd"), port=ap, headers={"Idempotency-Key": "apache-" + uuid.uuid4().hex})
    assert r.status == 201 and r.json["message"] == "via httpd" and r.json["author_id"] == "alice", r
    g = t.request(ap, "GET", PATH + "?widget_key=%s&since_id=%s" % (S.widget_key, r.json["id"]), token=TOK)
    assert g.status == 200 and g.json["type"] == "request", g
    assert_error(t.request(ap, "GET", PATH + "?widget_key=" + S.widget_key), 401, "unauthorized")
    assert_error(t.request(ap, "GET", "/v1/nope", token=TOK), 404, "not_found")
    r = t.request(ap, "PUT", PATH, token=TOK)
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.header("Allow")
    assert_error(post(bcast(), path="/v1/streams/s1/messages", port=ap, token=TOK,
                      headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")


# ---- /metrics ----------------------------------------------------------

def metrics(stack=S):
    """{(name, frozenset(labels)): value} from rtw-fcgi's /metrics."""
    r = t.request(stack.fcgi_health_port, "GET", "/metrics")
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain"), r
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


@t.test
def metrics_count_requests_by_route_and_status():
    before = metrics()
    stream = "metrics-" + uuid.uuid4().hex[:8]
    for i in range(5):
        assert post(bcast(message={"i": i}), path="/v1/streams/%s/messages" % stream).status == 201
    assert t.request(P, "GET", PATH + "?widget_key=" + S.widget_key, token=TOK).status == 200
    assert t.request(P, "GET", "/v1/nope", token=TOK).status == 404
    assert t.request(P, "PUT", "/v1/bans/someone", token=TOK).status == 403  # not an admin
    # (not rejected(): snapshots of rtw_idempotency hold memoryview reprs with addresses)
    assert_error(post(bcast(type="shout")), 400, "unknown_type")
    after = metrics()

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)
    assert delta("rtw_fcgi_requests_total", route="messages_post", status="201") == 5
    assert delta("rtw_fcgi_requests_total", route="messages_post", status="400") == 1
    assert delta("rtw_fcgi_requests_total", route="messages_get", status="200") == 1
    assert delta("rtw_fcgi_requests_total", route="other", status="404") == 1
    assert delta("rtw_fcgi_requests_total", route="bans", status="403") == 1
    assert delta("rtw_fcgi_request_duration_seconds_count", route="messages_post") == 6
    assert delta("rtw_fcgi_request_duration_seconds_bucket", route="messages_post", le="+Inf") == 6
    assert delta("rtw_fcgi_request_duration_seconds_sum", route="messages_post") > 0
    # the histogram is cumulative
    les = [metric(after, "rtw_fcgi_request_duration_seconds_bucket", route="messages_post", le=le)
           for le in ("0.001", "0.01", "0.1", "1", "10", "+Inf")]
    assert les == sorted(les), les
    # every broadcast went through the group committer (sequential: one row per batch)
    assert delta("rtw_fcgi_group_commit_rows_total") == 5
    assert 1 <= delta("rtw_fcgi_group_commit_batches_total") <= 5
    assert metric(after, "rtw_fcgi_requests_in_flight") == 0
    assert metric(after, "rtw_fcgi_workers") >= 1
    assert ("rtw_fcgi_rate_limited_total", frozenset()) in after
    assert ("rtw_fcgi_pg_reconnects_total", frozenset()) in after
    # the listener answers nothing else
    assert t.request(S.fcgi_health_port, "GET", "/nope").status == 404
    assert t.request(S.fcgi_health_port, "POST", "/metrics", "x").status == 405
    with socket.create_connection(("127.0.0.1", S.fcgi_health_port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400"), "garbage must get a 400"
    # a client that sends nothing is dropped after the read timeout; others still get answers
    idle = socket.create_connection(("127.0.0.1", S.fcgi_health_port), timeout=5)
    try:
        th = threading.Thread(target=lambda: idle.recv(10))
        th.start()
        t0 = time.time()
        assert t.request(S.fcgi_health_port, "GET", "/healthz").status == 200
        assert time.time() - t0 < 4
        th.join(5)
    finally:
        idle.close()


# ---- 429 rate_limited and /healthz: a stack of their own -------------------

R = t.Stack(extra_env={"RTW_FCGI_RATE_LIMIT_PER_S": "1", "RTW_FCGI_RATE_LIMIT_BURST": "3"})
R.start_fcgi()
R.start_nginx()
R_KEY = R.add_widget("limited", "--origins", "https://w.example")


@t.test
def e429_rate_limited_per_author_and_stream_with_retry_after():
    tok = R.token("rl-alice")
    path = "/v1/streams/rl-%s/messages" % uuid.uuid4().hex[:8]
    body = {"type": "broadcast", "widget_key": R_KEY, "timestamp": 0, "message": "hi"}
    before_m = metrics(R)
    for _ in range(3):
        r = post(body, path=path, token=tok, port=R.http_port)
        assert r.status == 201, r
    before = R.pg.snapshot()
    r = post(body, path=path, token=tok, port=R.http_port, headers={"Origin": "https://w.example"})
    assert_error(r, 429, "rate_limited")
    assert int(r.header("Retry-After")) >= 1, r.headers
    assert r.header("Access-Control-Allow-Origin") == "https://w.example", r.headers
    assert "Retry-After" in r.header("Access-Control-Expose-Headers")
    # every type counts, request included; nothing is stored
    r = post({"type": "request", "widget_key": R_KEY}, path=path, token=tok, port=R.http_port)
    assert_error(r, 429, "rate_limited")
    r = post({"type": "webhook", "widget_key": R_KEY, "message": "https://example.com/x"}, path=path, token=tok,
             port=R.http_port, headers={"Idempotency-Key": "rl-" + uuid.uuid4().hex})
    assert_error(r, 429, "rate_limited")
    assert R.pg.snapshot() == before, "a refused request changed the database"
    # another author on the stream, the same author on another stream: not limited
    assert post(body, path=path, token=R.token("rl-bob"), port=R.http_port).status == 201
    assert post(body, path=path.replace("/rl-", "/rl2-"), token=tok, port=R.http_port).status == 201
    assert metric(metrics(R), "rtw_fcgi_rate_limited_total") - metric(before_m, "rtw_fcgi_rate_limited_total") == 3
    # after the announced wait, it passes again
    time.sleep(int(r.header("Retry-After")) + 0.05)
    r = post(body, path=path, token=tok, port=R.http_port)
    assert r.status == 201, r


@t.test
def healthz_follows_postgres():
    hp = R.fcgi_health_port
    r = t.request(hp, "GET", "/healthz")
    assert r.status == 200 and r.json == {"status": "ok", "service": "rtw-fcgi"}, r
    r = t.request(hp, "HEAD", "/healthz")
    assert r.status == 200 and r.body == b"", r
    before = metrics(R)
    R.pg.stop()
    try:
        # the verdict is cached for at most a second
        t.wait_for(lambda: t.request(hp, "GET", "/healthz").status == 503, 5, "/healthz to say 503")
        t0 = time.time()
        r = t.request(hp, "GET", "/healthz")
        assert r.status == 503 and r.json["status"] == "unavailable" and r.json["service"] == "rtw-fcgi", r
        assert time.time() - t0 < 4
        # metrics still answer without the database
        assert t.request(hp, "GET", "/metrics").status == 200
    finally:
        R.pg.start()
    t.wait_for(lambda: t.request(hp, "GET", "/healthz").status == 200, 10, "/healthz to say 200 again")
    body = {"type": "broadcast", "widget_key": R_KEY, "timestamp": 0, "message": "back"}
    t.wait_for(lambda: post(body, token=R.token("rl-carol-%s" % uuid.uuid4().hex[:6]),
                            port=R.http_port).status == 201, 10, "rtw-fcgi to reconnect")
    assert metric(metrics(R), "rtw_fcgi_pg_reconnects_total") > metric(before, "rtw_fcgi_pg_reconnects_total")


# ---- open mode, small body limit, PostgreSQL away, SIGTERM ---------------

O = t.Stack(auth="open", extra_env={"RTW_HTTP_MAX_BODY": "1000", "RTW_HTTP_CORS_ORIGINS": "*"})
O.start_fcgi()
O.start_nginx()


def opost(body, **kw):
    return post(body, token=None, port=O.http_port, **kw)


@t.test
def open_mode_author_from_message_or_generated():
    r = opost({"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": 1, "author_id": "zed"})
    assert r.status == 201 and r.json["author_id"] == "zed", r
    r = opost({"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": 1})
    assert r.status == 201 and r.json["author_id"], r
    r = opost({"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": 1},
              headers={"Origin": "https://anywhere.example"})
    assert r.header("Access-Control-Allow-Origin") == "https://anywhere.example"
    assert "open" in O.daemons["rtw-fcgi"].log_text()


@t.test
def e413_from_rtw_fcgi_with_length_and_chunked():
    before = O.pg.snapshot()
    big = {"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": "x" * 2000}
    r = opost(big)
    assert_error(r, 413, "payload_too_large")
    assert "1000" in r.json["error"]["message"], r  # rtw-fcgi's limit, not nginx's
    # a chunked body (no Content-Length): rtw-fcgi stops reading at the limit
    data = t.json.dumps(big).encode()
    with socket.create_connection(("127.0.0.1", O.http_port), timeout=10) as s:
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n" % (PATH, len(data))).encode()
                  + data + b"\r\n0\r\n\r\n")
        resp = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"payload_too_large"' in body and b"1000" in body, resp
    assert O.pg.snapshot() == before


@t.test
def postgres_stopped_gives_503_then_recovers_without_restart():
    body = {"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": "before"}
    assert opost(body).status == 201
    O.pg.stop()
    try:
        for _ in range(3):
            t0 = time.time()
            r = opost(body)
            assert_error(r, 503, "unavailable")
            assert int(r.header("Retry-After")) >= 1
            assert time.time() - t0 < 8, "503 took too long (hung on the dead server?)"
    finally:
        O.pg.start()
    t.wait_for(lambda: opost(body).status == 201, 10, "rtw-fcgi to reconnect")
    assert O.daemons["rtw-fcgi"].running()


@t.test
def sigterm_finishes_requests_in_flight_stops_accepting_exits_zero():
    d = O.daemons["rtw-fcgi"]
    locker = O.pg.connect()
    locker.autocommit = False
    result = []
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE rtw_messages IN EXCLUSIVE MODE")
        def in_flight():
            # A worker whose database failed in the last test waits
            # FCG_DB_RETRY_MS before reconnecting and answers 503 meanwhile:
            # post until one reaches the (locked) insert.
            for _ in range(50):
                r = opost({"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": "in flight"})
                if r.status != 503:
                    break
                time.sleep(0.1)
            result.append(r)
        th = threading.Thread(target=in_flight)
        th.start()
        t.wait_for(lambda: count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND query LIKE '%%rtw_messages%%'", stack=O) > 0, 10, "the insert to block")
        d.proc.send_signal(signal.SIGTERM)

        def refused():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", O.fcgi_port)) != 0
        t.wait_for(refused, 5, "rtw-fcgi to stop accepting")
        assert d.running(), "exited with a request in flight"
    finally:
        locker.rollback()
        locker.close()
    th.join(15)
    assert result and result[0].status == 201 and result[0].json["message"] == "in flight", result
    assert d.proc.wait(15) == 0
    assert "stopped" in d.log_text()


@t.test
def nginx_answers_json_503_while_rtw_fcgi_is_down():
    assert not O.daemons["rtw-fcgi"].running()
    r = opost({"type": "broadcast", "widget_key": O.widget_key, "timestamp": 0, "message": 1})
    assert_error(r, 503, "unavailable")
    assert int(r.header("Retry-After")) >= 1
    # the 413 handler still applies inside /v1/
    assert_error(opost("x" * (70 * 1024)), 413, "payload_too_large")


t.main()
