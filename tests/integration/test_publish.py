#!/usr/bin/python3
"""test_publish: backend publishing, through nginx and Apache: POST
/v1/messages with a service token (a batch stored in one transaction, in
order; the failing index; all or nothing; 403 without the service claim;
Idempotency-Key over the batch; the larger body limit on that path only;
subscribers receive a batch in order), the service token's freedom to name
the author on the per-stream POST, rtw_publish() inside a platform's long
transaction (delivered after its commit, in stream order), and rtwctl
publish and token --service."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
S.start_sse()
FRONTS = {"nginx": S.start_nginx(), "apache": S.start_apache()}
SERVICE = S.token("shop-backend", service=True)
VIEWER = S.token("viewer-1")


def bc(stream, text, ts=1.0, **extra):
    m = {"stream_id": stream, "type": "broadcast", "widget_key": S.widget_key, "timestamp": ts,
         "message": {"text": text}}
    m.update(extra)
    return m


def publish(port, batch, token=SERVICE, headers=None):
    return request(port, "POST", "/v1/messages", batch, token=token, headers=headers)


def count(stream_like):
    return S.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id LIKE %s", (stream_like,))[0][0]


def subscribe(port, stream, token):
    c = SSEClient(port, "/v1/streams/%s/events?access_token=%s" % (stream, token))
    assert c.status == 200, (c.status, c.body_text())
    init = c.next_event()
    assert init["json"]["type"] == "init", init
    return c


def history_ids(port, stream):
    r = request(port, "GET", "/v1/streams/%s/messages?widget_key=%s&limit=1000" % (stream, S.widget_key),
                token=VIEWER)
    assert r.status == 200, r
    return [m["id"] for m in r.json["message"]["messages"]]


@test
def batch_is_stored_in_order_through_both_fronts():
    for front, port in FRONTS.items():
        s1, s2 = "pub-ok-%s-1" % front, "pub-ok-%s-2" % front
        batch = [bc(s1, "a"), bc(s2, "b", author_id="price-bot"),
                 {"stream_id": s1, "type": "private", "to_user_id": "u-9", "widget_key": S.widget_key2,
                  "timestamp": 2.5, "message": [1, 2]},
                 bc(s1, "c", ts=0),
                 # written from the checked body itself: the stored form is still canonical
                 bc(s2, "d", ts=-0.0, widget_key=S.widget_key.upper())]
        r = publish(port, batch)
        assert r.status == 201, (front, r)
        out = r.json
        assert isinstance(out, list) and len(out) == 5, out
        assert [m.get("message") for m in out] == [{"text": "a"}, {"text": "b"}, [1, 2], {"text": "c"}, {"text": "d"}]
        assert [m["stream_id"] for m in out] == [s1, s2, s1, s1, s2], out
        # the token's sub by default; a service token may name any author
        assert [m["author_id"] for m in out] == ["shop-backend", "price-bot", "shop-backend", "shop-backend",
                                                 "shop-backend"], out
        assert out[4]["widget_key"] == S.widget_key and '"timestamp":0,' in r.body.decode(), r.body[-300:]
        assert out[2]["type"] == "private" and out[2]["to_user_id"] == "u-9", out[2]
        assert all(m["id"] and m["created_at"].endswith("Z") for m in out), out
        rows = S.pg.query("SELECT m.id::text, m.xid::text FROM rtw_messages m WHERE m.stream_id IN (%s, %s) "
                          "ORDER BY m.id",
                          (s1, s2))
        assert [r[0] for r in rows] == [m["id"] for m in out], (rows, out)
        assert len({r[1] for r in rows}) == 1, "one transaction: %r" % rows


@test
def failing_index_refuses_the_whole_batch():
    for front, port in FRONTS.items():
        s = "pub-bad-%s" % front
        cases = [
            ([bc(s, "x"), bc(s, "y"), bc(s, "z", ts=-1)], 400, "invalid_field", "timestamp", 2),
            ([bc(s, "x"), dict(bc(s, "y"), widget_key="00000000-0000-4000-8000-00000000dead")], 403,
             "unknown_widget", "widget_key", 1),
            ([dict(bc(s, "x"), type="webhook", message="https://example.com/")], 400, "invalid_field", "type", 0),
            ([bc(s, "x"), dict(bc(s, "y"), type="request", message={})], 400, "invalid_field", "type", 1),
            ([bc(s, "x"), {k: v for k, v in bc(s, "y").items() if k != "stream_id"}], 400, "missing_field",
             "stream_id", 1),
            ([bc(s, "x"), bc(s, "y"), dict(bc(s, "z"), id="7")], 400, "unexpected_field", "id", 2),
            ([bc(s, "x"), "not an object"], 400, "invalid_json", None, 1),
            ([bc(s, "x"), dict(bc(s, "y"), stream_id="bad/stream")], 400, "invalid_field", "stream_id", 1),
            ([dict(bc(s, "x"), type="init")], 400, "unknown_type", "type", 0),
        ]
        for batch, status, code, field, index in cases:
            before = count(s)
            r = publish(port, batch)
            assert r.status == status, (front, batch, r)
            err = r.json["error"]
            assert err["code"] == code and err.get("field") == field and err["index"] == index, (front, err)
            assert count(s) == before == 0, (front, "a refused batch stored something", batch)
        # a token limited to some streams: the first message outside them
        r = publish(port, [bc(s, "x"), bc("elsewhere", "y")], token=S.token("svc", service=True, streams=[s]))
        assert r.status == 403 and r.json["error"]["code"] == "forbidden" and r.json["error"]["index"] == 1, r
        assert count(s) == 0


@test
def all_or_nothing_at_the_last_of_1000():
    for front, port in FRONTS.items():
        s = "pub-aon-%s" % front
        snap = S.pg.snapshot()
        batch = [bc(s, "m%d" % i, ts=i) for i in range(1000)]
        batch[999]["to_user_id"] = "u-1"  # not allowed on a broadcast
        r = publish(port, batch)
        assert r.status == 400, r
        assert r.json["error"] == {"code": "unexpected_field", "field": "to_user_id", "index": 999,
                                   "message": "to_user_id is not allowed for type broadcast"}, r.json
        assert S.pg.snapshot() == snap, "the database changed after a refused batch"
        del batch[999]["to_user_id"]
        r = publish(port, batch)
        assert r.status == 201 and len(r.json) == 1000, r
        assert [m["message"]["text"] for m in r.json] == ["m%d" % i for i in range(1000)]
        assert count(s) == 1000


@test
def a_batch_across_a_power_of_ten_is_answered_in_its_order():
    # The stored rows come back from RETURNING in no promised order and
    # rtw-fcgi sorts them by id: numerically, not as text ("10" > "9").
    s = "pub-pow10"
    rtwtest.cross_a_power_of_ten(S.pg)
    batch = [bc(s, "m%d" % i, ts=i) for i in range(12)]
    r = publish(FRONTS["nginx"], batch)
    assert r.status == 201, r
    assert [m["message"]["text"] for m in r.json] == ["m%d" % i for i in range(12)], r.json
    ids = [int(m["id"]) for m in r.json]
    assert ids == sorted(ids) and len(str(ids[0])) < len(str(ids[-1])), ids
    # stream order (xid, id) is the batch's, and every row has the one key
    rows = S.pg.query("SELECT m.id, m.xid::text FROM rtw_messages m WHERE m.stream_id = %s ORDER BY m.xid, m.id",
                      (s,))
    assert [r[0] for r in rows] == ids, (rows, ids)
    assert len({r[1] for r in rows}) == 1, "one transaction, one order key: %r" % rows


@test
def batch_size_and_body_limits():
    for front, port in FRONTS.items():
        r = publish(port, [])
        assert r.status == 400 and r.json["error"]["code"] == "invalid_field", (front, r)
        r = publish(port, [bc("pub-lim", "x")] * 1001)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_field", (front, r)
        r = publish(port, {"not": "an array"})
        assert r.status == 400 and r.json["error"]["code"] == "invalid_json", (front, r)
        # about 2 MB: far above http.max_body, within http.max_batch_body
        big = [bc("pub-lim-%s" % front, "x" * 2000) for _ in range(1000)]
        r = publish(port, big)
        assert r.status == 201 and len(r.json) == 1000, (front, r)
        # above http.max_batch_body: the web server's JSON 413
        huge = [bc("pub-lim-%s" % front, "y" * 9000) for _ in range(1000)]
        r = publish(port, huge)
        assert r.status == 413 and r.json["error"]["code"] == "payload_too_large", (front, r)
        # the per-stream POST keeps http.max_body
        one = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "z" * 70000}
        r = request(port, "POST", "/v1/streams/pub-lim/messages", one, token=SERVICE)
        assert r.status == 413 and r.json["error"]["code"] == "payload_too_large", (front, r)


@test
def only_service_tokens_may_publish_a_batch():
    for front, port in FRONTS.items():
        r = publish(port, [bc("pub-403", "x")], token=VIEWER)
        assert r.status == 403 and r.json["error"]["code"] == "forbidden", (front, r)
        r = publish(port, [bc("pub-403", "x")], token=S.token("boss", admin=True))
        assert r.status == 403 and r.json["error"]["code"] == "forbidden", (front, r)
        r = publish(port, [bc("pub-403", "x")], token=None)
        assert r.status == 401 and r.json["error"]["code"] == "unauthorized", (front, r)
        assert count("pub-403") == 0
        r = request(port, "GET", "/v1/messages", token=SERVICE)
        assert r.status == 405 and r.header("Allow") == "POST, OPTIONS", (front, r)


@test
def service_token_names_any_author_on_the_stream_post():
    port = FRONTS["nginx"]
    body = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": 1, "author_id": "someone"}
    r = request(port, "POST", "/v1/streams/pub-author/messages", body, token=SERVICE)
    assert r.status == 201 and r.json["author_id"] == "someone", r
    r = request(port, "POST", "/v1/streams/pub-author/messages", body, token=VIEWER)
    assert r.status == 403 and r.json["error"]["code"] == "author_mismatch", r


@test
def idempotency_key_covers_the_batch():
    for front, port in FRONTS.items():
        s = "pub-idem-%s" % front
        batch = [bc(s, "one"), bc(s, "two")]
        key = {"Idempotency-Key": "batch-%s" % front}
        first = publish(port, batch, headers=key)
        assert first.status == 201, first
        again = publish(port, batch, headers=key)
        assert again.status == 201 and again.json == first.json, (first, again)
        assert count(s) == 2
        other = publish(port, [bc(s, "three")], headers=key)
        assert other.status == 409 and other.json["error"]["code"] == "idempotency_conflict", other
        # a refused batch keeps no key: fixed, the same key publishes
        bad = publish(port, [bc(s, "four", ts=-1)], headers={"Idempotency-Key": "fix-%s" % front})
        assert bad.status == 400 and bad.json["error"]["index"] == 0, bad
        good = publish(port, [bc(s, "four")], headers={"Idempotency-Key": "fix-%s" % front})
        assert good.status == 201, good
        assert count(s) == 3


@test
def subscriber_receives_a_batch_in_order():
    for front, port in FRONTS.items():
        s = "pub-live-%s" % front
        c = subscribe(port, s, VIEWER)
        try:
            batch = []
            for i in range(60):
                batch.append(bc(s if i % 3 else "pub-live-other", "n%d" % i))
            batch.append({"stream_id": s, "type": "private", "to_user_id": "viewer-1", "widget_key": S.widget_key,
                          "timestamp": 3, "message": "for you"})
            batch.append({"stream_id": s, "type": "private", "to_user_id": "viewer-2", "widget_key": S.widget_key,
                          "timestamp": 3, "message": "not for you"})
            r = publish(port, batch)
            assert r.status == 201, r
            want = [m["id"] for m in r.json if m["stream_id"] == s and m.get("to_user_id") in (None, "viewer-1")]
            got = [ev["id"] for ev in c.events(len(want))]
            assert got == want, (front, got, want)
        finally:
            c.close()


@test
def rtw_publish_in_a_platform_transaction_is_delivered_after_commit():
    port = FRONTS["nginx"]
    s = "pub-txn"
    c = subscribe(port, s, VIEWER)
    conn = S.pg.connect()
    conn.autocommit = False
    try:
        cur = conn.cursor()
        # the platform's own work first, then the publish, in one transaction
        cur.execute("CREATE TABLE IF NOT EXISTS platform_orders (id serial PRIMARY KEY, total numeric)")
        conn.commit()
        cur.execute("INSERT INTO platform_orders (total) VALUES (42)")
        cur.execute("SELECT rtw_publish(%s::jsonb)", (json.dumps(bc(s, "price changed", author_id="shop")),))
        published = cur.fetchone()[0]
        # meanwhile an ordinary message on the same stream
        r = request(port, "POST", "/v1/streams/%s/messages" % s,
                    {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "chat"},
                    token=VIEWER)
        assert r.status == 201, r
        try:
            ev = c.next_event(1.5)
            raise AssertionError("delivered before the platform's commit: %r" % ev)
        except TimeoutError:
            pass
        assert published["id"] not in history_ids(port, s), "history shows an uncommitted message"
        conn.commit()
        got = [ev["id"] for ev in c.events(2)]
        assert sorted(got) == sorted([published["id"], r.json["id"]]), got
        assert got == history_ids(port, s), (got, history_ids(port, s))
    finally:
        conn.close()
        c.close()


@test
def rtw_publish_rolled_back_is_never_delivered():
    port = FRONTS["apache"]
    s = "pub-rollback"
    c = subscribe(port, s, VIEWER)
    conn = S.pg.connect()
    conn.autocommit = False
    try:
        cur = conn.cursor()
        cur.execute("SELECT rtw_publish(%s::jsonb)", (json.dumps(bc(s, "never", author_id="shop")),))
        conn.rollback()
        r = request(port, "POST", "/v1/streams/%s/messages" % s,
                    {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "after"},
                    token=VIEWER)
        assert r.status == 201, r
        ev = c.next_event()
        assert ev["id"] == r.json["id"], ev
        assert count(s) == 1
    finally:
        conn.close()
        c.close()


@test
def open_mode_publishes_without_a_token():
    o = rtwtest.Stack(auth="open")
    o.start_fcgi()
    port = o.start_nginx()
    batch = [{"stream_id": "pub-open", "type": "broadcast", "widget_key": o.widget_key, "timestamp": 1,
              "message": i} for i in range(3)]
    batch[1]["author_id"] = "named"
    r = request(port, "POST", "/v1/messages", batch, headers={"Idempotency-Key": "open-1"})
    assert r.status == 201, r
    authors = [m["author_id"] for m in r.json]
    # one caller, one identity: the same anonymous id for every message without one
    assert authors[1] == "named" and authors[0] == authors[2] and authors[0] != "named", authors
    again = request(port, "POST", "/v1/messages", batch, headers={"Idempotency-Key": "open-1"})
    assert again.status == 201 and again.json == r.json, again
    assert o.pg.query("SELECT count(*) FROM rtw_messages")[0][0] == 3
    o.stop_all()


def rtwctl(*args, stdin=None):
    return subprocess.run([rtwtest.prog("rtwctl")] + list(args), env=S.env, input=stdin, capture_output=True,
                          text=True)


@test
def rtwctl_publish_one_and_an_array():
    r = rtwctl("publish", "--stream", "pub-ctl", "--widget", S.widget_key, "--author", "ops", "--timestamp", "4.5",
               '{"price": 12}')
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["stream_id"] == "pub-ctl" and m["author_id"] == "ops" and m["message"] == {"price": 12}, m
    assert m["timestamp"] == 4.5 and m["type"] == "broadcast", m
    r = rtwctl("publish", "--stream", "pub-ctl", "--widget", S.widget_key, "--type", "private", "--to", "u-5", '"hi"')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["to_user_id"] == "u-5", r.stdout
    arr = [dict(bc("pub-ctl", "s%d" % i), author_id="ops") for i in range(3)]
    r = rtwctl("publish", stdin=json.dumps(arr))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [m["message"]["text"] for m in lines] == ["s0", "s1", "s2"], lines
    assert count("pub-ctl") == 5
    # a refusal: the code, the index, nothing stored, exit 1
    arr[1]["timestamp"] = "late"
    r = rtwctl("publish", stdin=json.dumps(arr))
    assert r.returncode == 1, r
    assert "invalid_field: timestamp must be a number" in r.stderr and '"index": 1' in r.stderr, r.stderr
    assert count("pub-ctl") == 5
    r = rtwctl("publish", "--stream", "pub-ctl", "--widget", S.widget_key, "{not json")
    assert r.returncode == 1 and "invalid_json" in r.stderr, r


@test
def rtwctl_token_service_publishes():
    tok = rtwctl("token", "--user", "ctl-backend", "--service").stdout.strip()
    r = publish(FRONTS["nginx"], [bc("pub-ctl-tok", "x")], token=tok)
    assert r.status == 201 and r.json[0]["author_id"] == "ctl-backend", r
    tok = rtwctl("token", "--user", "ctl-viewer").stdout.strip()
    r = publish(FRONTS["nginx"], [bc("pub-ctl-tok", "x")], token=tok)
    assert r.status == 403, r


if __name__ == "__main__":
    rtwtest.main()
