#!/usr/bin/python3
"""test_apache: rtw behind Apache httpd (conf/apache.conf.in +
conf/apache-rtw.conf): FastCGI ingest and history through mod_proxy_fcgi,
Server-Sent Events through mod_proxy_http without buffering, the contract's
JSON errors (from rtw-fcgi and from Apache itself), CORS preflights, and
the events pool's cap that keeps worker threads for POSTs."""
import concurrent.futures
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
S.start_sse()
PORT = S.start_apache()
TOKEN = S.token("alice")
STREAM = "apache-1"


def post(body, token=TOKEN, headers=None, stream=STREAM):
    return request(PORT, "POST", "/v1/streams/%s/messages" % stream, body, token=token, headers=headers)


def bc(text, ts=1.5):
    return {"type": "broadcast", "widget_key": S.widget_key, "timestamp": ts, "message": {"text": text}}


def next_with_id(c, mid, timeout=10.0):
    """The event with id mid. Events before it may be earlier broadcasts of
    this stream that rtw-sse's tail had not passed yet when we subscribed
    ("live" starts at the tail's position, not at the connect instant)."""
    while True:
        ev = c.next_event(timeout)
        if ev.get("id") == mid:
            return ev
        assert ev["json"]["type"] == "broadcast" and ev["json"]["stream_id"] == STREAM, ev


@test
def static_demo_page_served():
    r = request(PORT, "GET", "/")
    assert r.status == 200, r
    assert b"rtw.js" in r.body
    r = request(PORT, "GET", "/rtw.js")
    assert r.status == 200 and b"RTW" in r.body, r


@test
def broadcast_through_apache_is_stored():
    r = post(bc("hello apache"))
    assert r.status == 201, r
    m = r.json
    assert m["type"] == "broadcast" and m["author_id"] == "alice" and m["stream_id"] == STREAM, m
    assert m["message"] == {"text": "hello apache"}
    assert m["id"] and m["created_at"].endswith("Z")
    assert r.header("Content-Type").startswith("application/json"), r.headers
    rows = S.pg.query("SELECT author_id, message->>'text' FROM rtw_messages WHERE id = %s", (int(m["id"]),))
    assert rows == [("alice", "hello apache")], rows


@test
def history_get_through_apache():
    r = post(bc("for history", ts=7))
    assert r.status == 201, r
    mid = r.json["id"]
    r = request(PORT, "GET", "/v1/streams/%s/messages?widget_key=%s&limit=1000" % (STREAM, S.widget_key), token=TOKEN)
    assert r.status == 200, r
    env = r.json
    assert env["type"] == "request" and env["stream_id"] == STREAM, env
    ids = [m["id"] for m in env["message"]["messages"]]
    assert mid in ids, (mid, ids)
    # filters travel through Apache's query string untouched
    r = request(PORT, "GET", "/v1/streams/%s/messages?widget_key=%s&from_timestamp=6.5&to_timestamp=7.5"
                % (STREAM, S.widget_key), token=TOKEN)
    assert r.status == 200, r
    assert [m["id"] for m in r.json["message"]["messages"]] == [mid], r.json


@test
def authorization_header_reaches_rtw_fcgi():
    # Apache hides Authorization from FastCGI apps unless CGIPassAuth is on:
    # without it every token would look missing.
    r = post(bc("no token"), token=None)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    r = post(bc("bad token"), token=TOKEN[:-4] + "AAAA")
    assert r.status == 401, r
    r = post(bc("good token"))
    assert r.status == 201, r


@test
def idempotency_key_header_passes():
    key = "apache-key-1"
    a = post(bc("once"), headers={"Idempotency-Key": key})
    b = post(bc("once"), headers={"Idempotency-Key": key})
    assert a.status == 201 and b.status == 201, (a, b)
    assert a.json["id"] == b.json["id"], (a.json, b.json)
    c = post(bc("different"), headers={"Idempotency-Key": key})
    assert c.status == 409 and c.json["error"]["code"] == "idempotency_conflict", c


@test
def sse_through_apache_receives_live_broadcast():
    c = rtwtest.SSEClient(PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, S.token("bob")))
    try:
        assert c.status == 200, c.status
        assert c.headers.get("content-type", "").startswith("text/event-stream"), c.headers
        init = c.next_event(10)
        assert init["json"]["type"] == "init" and init["json"]["author_id"] == "bob", init
        assert "id" not in init
        r = post(bc("live via apache"))
        assert r.status == 201, r
        ev = next_with_id(c, r.json["id"])
        assert ev["json"]["type"] == "broadcast" and ev["json"]["message"] == {"text": "live via apache"}, ev
    finally:
        c.close()


@test
def sse_anonymous_init_token_can_post_through_apache():
    c = rtwtest.SSEClient(PORT, "/v1/streams/%s/events?widget_key=%s" % (STREAM, S.widget_key))
    try:
        init = c.next_event(10)["json"]
        tok = init["message"].get("token")
        assert tok, init
        r = post(bc("from an anonymous viewer"), token=tok)
        assert r.status == 201, r
        assert r.json["author_id"] == init["author_id"], (r.json, init)
        ev = next_with_id(c, r.json["id"])
        assert ev["json"]["author_id"] == init["author_id"], ev
    finally:
        c.close()


@test
def sse_resume_with_last_event_id_through_apache():
    first = post(bc("r1")).json
    second = post(bc("r2")).json
    third = post(bc("r3")).json
    c = rtwtest.SSEClient(PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, TOKEN),
                          headers={"Last-Event-ID": first["id"]})
    try:
        init = c.next_event(10)["json"]
        assert init["message"]["resumed"] is True and init["message"]["last_event_id"] == first["id"], init
        got = [c.next_event(10)["id"] for _ in range(2)]
        assert got == [second["id"], third["id"]], got
    finally:
        c.close()


@test
def sse_invalid_token_is_401_through_apache():
    c = rtwtest.SSEClient(PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, "x.y.z"))
    try:
        assert c.status == 401, c.status
    finally:
        c.close()


@test
def invalid_json_is_400_json():
    r = post('{"type": "broadcast", "type": "broadcast"}')
    assert r.status == 400, r
    assert r.json["error"]["code"] == "invalid_json", r
    r = post({"type": "broadcast", "widget_key": S.widget_key, "message": {"a": 1}})
    assert r.status == 400 and r.json["error"]["code"] == "missing_field", r
    assert r.json["error"]["field"] == "timestamp", r


@test
def oversized_body_is_json_413_from_apache():
    before = S.pg.snapshot()
    big = json.dumps(bc("x" * (70 * 1024)))
    r = post(big)
    assert r.status == 413, r
    assert r.header("Content-Type").startswith("application/json"), r.headers
    assert r.json["error"]["code"] == "payload_too_large", r
    assert S.pg.snapshot() == before


@test
def oversized_chunked_body_is_413():
    # no Content-Length: LimitRequestBody stops it while reading
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        def chunks():
            for _ in range(80):
                yield b"x" * 1024
        conn.request("POST", "/v1/streams/%s/messages" % STREAM, body=chunks(),
                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN},
                     encode_chunked=True)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 413, (r.status, body)
    finally:
        conn.close()


@test
def body_just_under_limit_is_accepted():
    # the limit is not off by a lot: a 60 KiB message still goes through
    r = post(bc("y" * (60 * 1024)))
    assert r.status == 201, r


@test
def cors_preflight_through_apache():
    S.add_widget("cors-widget", "--origins", "https://widgets.example")

    def preflight(origin):
        return request(PORT, "OPTIONS", "/v1/streams/%s/messages" % STREAM, headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        })
    # the widget's origin may be cached as unknown for a moment by rtw-fcgi
    r = rtwtest.wait_for(lambda: (lambda x: x if x.header("Access-Control-Allow-Origin") else None)(
        preflight("https://widgets.example")), 10, "the widget origin to be allowed")
    assert r.status in (200, 204), r
    assert r.header("Access-Control-Allow-Origin") == "https://widgets.example", r.headers
    methods = (r.header("Access-Control-Allow-Methods") or "").upper()
    assert "POST" in methods, r.headers
    hdrs = (r.header("Access-Control-Allow-Headers") or "").lower()
    for h in ("authorization", "content-type", "idempotency-key"):
        assert h in hdrs or hdrs == "*", r.headers
    # an origin nobody registered gets no permission
    r = preflight("https://evil.example")
    assert r.header("Access-Control-Allow-Origin") is None, r.headers


@test
def backend_down_is_json_503():
    S.daemons["rtw-fcgi"].stop()
    try:
        r = post(bc("nobody home"))
        assert r.status == 503, r
        assert r.json["error"]["code"] == "unavailable", r
        assert r.header("Retry-After"), r.headers
    finally:
        S.start_fcgi()


@test
def idle_streams_beyond_the_worker_count_leave_posts_answered():
    # More idle event streams than Apache has worker threads
    # (MaxRequestWorkers 256): the streams' pool is capped per child
    # (RTW_EVENTS_PER_CHILD of ThreadsPerChild, conf/apache-rtw.conf), so
    # POSTs still find a worker, and a stream over the cap is told to
    # retry (200) instead of waiting in the backlog.
    n, cap = 300, 4 * 48
    opened = []
    try:
        # 32 at a time: a stream over the cap waits up to acquire=100 ms
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            opened += pool.map(lambda _: rtwtest.SSEClient(
                PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, TOKEN), timeout=30), range(n))
        assert all(c.status == 200 for c in opened), sorted(set(c.status for c in opened))
        # rtw-sse's own answer carries X-Accel-Buffering; the retry answer does not
        streams = [c for c in opened if c.headers.get("x-accel-buffering") == "no"]
        retries = [c for c in opened if c not in streams]
        assert 0 < len(streams) <= cap, len(streams)
        assert len(retries) >= n - cap, len(retries)
        print("%d streams held, %d told to retry" % (len(streams), len(retries)))
        assert "retry: " in retries[0].body_text(), retries[0].buf
        r = post(bc("while %d streams are open" % n))
        assert r.status == 201, r
        assert streams[-1].next_event(30)["json"]["type"] == "init"
        ev = next_with_id(streams[-1], r.json["id"], timeout=30)
        assert ev["json"]["message"] == {"text": "while %d streams are open" % n}, ev
        r = request(PORT, "GET", "/v1/streams/%s/messages?widget_key=%s&limit=1" % (STREAM, S.widget_key),
                    token=TOKEN, timeout=30)
        assert r.status == 200, r
    finally:
        for c in opened:
            c.close()


if __name__ == "__main__":
    rtwtest.main()
