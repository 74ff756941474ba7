#!/usr/bin/python3
"""test_moderation: redaction (DELETE /v1/streams/{s}/messages/{id}) and
bans (rtwctl user ban/unban), through real nginx and Apache, with two
rtw-sse processes: who may delete (author, admin; anyone else 403, an
unknown id 404, twice answers the first redact), the 405/preflight of the
route, the redact event live and on resume (before and after it, a
private's only to its addressee), history, request and the views without
the original; bans refuse POSTs and new streams (403 banned, JSON), end
the open streams of every rtw-sse process, hold on their stream or
everywhere, expire, and are lifted by unban."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
SSE1 = S.start_sse()
SSE2_PORT = rtwtest.free_port()
SSE2 = S.start_sse(name="rtw-sse-2", port=SSE2_PORT)
NGINX = S.start_nginx()
APACHE = S.start_apache()
FRONTS = [("nginx", NGINX), ("apache", APACHE)]
rtwtest.wait_streams(S.sse_port)
rtwtest.wait_streams(SSE2_PORT)
ADMIN = S.token("root", admin=True)


def post(port, user, stream, text, type_="broadcast", to=None, want=201):
    body = {"type": type_, "widget_key": S.widget_key, "message": {"text": text}, "timestamp": 1.5}
    if to:
        body["to_user_id"] = to
    r = request(port, "POST", "/v1/streams/%s/messages" % stream, body, token=S.token(user))
    assert r.status == want, r
    return r.json


def delete(port, stream, mid, token):
    return request(port, "DELETE", "/v1/streams/%s/messages/%s" % (stream, mid), token=token)


def subscribe(port, user, stream, last_id=None):
    headers = {"Last-Event-ID": last_id} if last_id else None
    c = SSEClient(port, "/v1/streams/%s/events?access_token=%s" % (stream, S.token(user)), headers=headers)
    assert c.status == 200, c.body_text()
    init = c.next_event()
    assert init["json"]["type"] == "init", init
    return c, init["json"]


def history(port, stream, order="asc"):
    r = request(port, "GET", "/v1/streams/%s/messages?widget_key=%s&order=%s" % (stream, S.widget_key, order),
                token=S.token("reader"))
    assert r.status == 200, r
    return [m["id"] for m in r.json["message"]["messages"]]


@test
def delete_answers():
    for front, port in FRONTS:
        s = "mod-del-" + front
        m = post(port, "alice", s, "hello")
        r = delete(port, s, m["id"], S.token("bob"))
        assert r.status == 403 and r.json["error"]["code"] == "forbidden", r
        r = delete(port, s, m["id"], None)
        assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
        r = delete(port, "elsewhere", m["id"], ADMIN)
        assert r.status == 404 and r.json["error"]["code"] == "not_found", r
        r = delete(port, s, "999999999", ADMIN)
        assert r.status == 404 and r.json["error"]["code"] == "not_found", r
        r = delete(port, s, "abc", ADMIN)
        assert r.status == 404 and r.json["error"]["code"] == "not_found", r
        r = delete(port, s, m["id"], S.token("alice"))
        assert r.status == 200, r
        red = r.json
        assert red["type"] == "redact" and red["stream_id"] == s and red["author_id"] == "alice", red
        assert red["widget_key"] == S.widget_key and red["timestamp"] == 0, red
        assert red["message"] == {"id": m["id"]} and red["id"] != m["id"], red
        # twice (an admin this time): the first redact again, nothing new
        r = delete(port, s, m["id"], ADMIN)
        assert r.status == 200 and r.json["id"] == red["id"], r
        assert S.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id = %s AND type = 'redact'",
                          (s,))[0][0] == 1
        # an admin deletes anyone's message
        m2 = post(port, "carol", s, "second")
        r = delete(port, s, m2["id"], ADMIN)
        assert r.status == 200 and r.json["author_id"] == "root" and r.json["message"]["id"] == m2["id"], r
        # a redact row itself is no message to delete
        r = delete(port, s, red["id"], ADMIN)
        assert r.status == 404, r


@test
def route_methods_and_preflight():
    for front, port in FRONTS:
        path = "/v1/streams/mod-m/messages/1"
        for method in ("GET", "POST", "PUT"):
            r = request(port, method, path, token=ADMIN)
            assert r.status == 405 and r.json["error"]["code"] == "method_not_allowed", (front, method, r)
            assert r.header("Allow") == "DELETE, OPTIONS", (front, r)
        # the path's message id: a positive decimal, percent-decoded like
        # the rest of the path; a bad stream id is 400 as on every route
        for bad, status in (("/v1/streams/mod-m/messages/0", 404), ("/v1/streams/mod-m/messages/-1", 404),
                            ("/v1/streams/mod-m/messages/1/x", 404),
                            ("/v1/streams/mod-m/messages/99999999999999999999", 404),
                            ("/v1/streams/bad%20id/messages/1", 400)):
            r = request(port, "DELETE", bad, token=ADMIN)
            assert r.status == status, (front, bad, r)
        m = post(port, "alice", "mod-m", "escaped")
        r = request(port, "DELETE", "/v1/streams/mod-m/messages/%s/" % "".join("%%%02X" % ord(ch) for ch in m["id"]),
                    token=S.token("alice"))
        assert r.status == 200 and r.json["message"]["id"] == m["id"], (front, r)
        r = request(port, "OPTIONS", path, headers={"Origin": "https://w.example",
                                                    "Access-Control-Request-Method": "DELETE"})
        assert r.status == 204, (front, r)
        assert "DELETE" in (r.header("Allow") or ""), (front, r)


@test
def redact_live_and_on_resume():
    for front, port in FRONTS:
        s = "mod-live-" + front
        viewer, _ = subscribe(port, "viewer", s)
        m0 = post(port, "alice", s, "zero")
        m1 = post(port, "alice", s, "one")
        m2 = post(port, "alice", s, "two")
        got = [viewer.next_event()["json"]["id"] for _ in range(3)]
        assert got == [m0["id"], m1["id"], m2["id"]], got
        red = delete(port, s, m1["id"], S.token("alice")).json
        ev = viewer.next_event()
        assert ev["id"] == red["id"] and ev["json"]["type"] == "redact", ev
        assert ev["json"]["message"] == {"id": m1["id"]}, ev
        viewer.close()
        # resuming before the original: the rest without it, then its redact
        c, init = subscribe(port, "viewer", s, last_id=m0["id"])
        assert init["message"]["resumed"] is True, init
        evs = c.events(2)
        assert [e["id"] for e in evs] == [m2["id"], red["id"]], evs
        c.close()
        # resuming after the original, before the redact: the redact
        c, init = subscribe(port, "viewer", s, last_id=m2["id"])
        assert c.next_event()["id"] == red["id"]
        c.close()
        # resuming after the redact: nothing old, the next message live
        c, init = subscribe(port, "viewer", s, last_id=red["id"])
        assert init["message"]["resumed"] is True, init
        m3 = post(port, "alice", s, "three")
        assert c.next_event()["id"] == m3["id"]
        c.close()
        # history never returns the original, in either order
        assert history(port, s) == [m0["id"], m2["id"], m3["id"]]
        assert history(port, s, "desc") == [m3["id"], m2["id"], m0["id"]]
        r = request(port, "POST", "/v1/streams/%s/messages" % s,
                    {"type": "request", "widget_key": S.widget_key, "message": {"limit": 10}},
                    token=S.token("reader"))
        assert [m["id"] for m in r.json["message"]["messages"]] == [m0["id"], m2["id"], m3["id"]], r
        # the original stays a valid resume and paging position
        r = request(port, "GET", "/v1/streams/%s/messages?widget_key=%s&since_id=%s" % (s, S.widget_key, m1["id"]),
                    token=S.token("reader"))
        assert [m["id"] for m in r.json["message"]["messages"]] == [m2["id"], m3["id"]], r


@test
def views_leave_redacted_out():
    s = "mod-views"
    m1 = post(NGINX, "alice", s, "one")
    m2 = post(NGINX, "alice", s, "two")
    assert delete(NGINX, s, m1["id"], ADMIN).status == 200

    def settled():
        return S.pg.query("SELECT count(*) FROM rtw_broadcasts WHERE stream_id = %s", (s,))[0][0] == 1
    wait_for(settled, 10, "the settled broadcasts")
    assert S.pg.query("SELECT id::text FROM rtw_broadcasts WHERE stream_id = %s", (s,)) == [(m2["id"],)]
    assert S.pg.query("SELECT broadcasts, redactions FROM rtw_stream_stats WHERE stream_id = %s", (s,)) == [(1, 1)]


@test
def private_redact_reaches_its_addressee_only():
    for front, port in FRONTS:
        s = "mod-priv-" + front
        bob, _ = subscribe(port, "bob", s)
        carol, _ = subscribe(port, "carol", s)
        p = post(port, "alice", s, "psst", type_="private", to="bob")
        assert bob.next_event()["id"] == p["id"]
        red = delete(port, s, p["id"], ADMIN)
        assert red.status == 200, red
        assert bob.next_event()["id"] == red.json["id"]
        marker = post(port, "alice", s, "everyone")
        assert bob.next_event()["id"] == marker["id"]
        # carol saw neither the private nor its redact: the marker is next
        assert carol.next_event()["id"] == marker["id"]
        bob.close()
        carol.close()


def closed(c):
    try:
        c.next_event(0.5)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


def refused(port, user, stream):
    c = SSEClient(port, "/v1/streams/%s/events?access_token=%s" % (stream, S.token(user)))
    text = c.body_text()
    c.close()
    return c.status, text


@test
def stream_ban_refuses_and_ends_streams_on_every_process():
    s = "mod-ban"
    open_streams = [subscribe(port, "mallory", s)[0] for port in (S.sse_port, SSE2_PORT, NGINX, APACHE)]
    other, _ = subscribe(SSE2_PORT, "mallory", "mod-ban-other")
    r = S.ctl("user", "ban", "mallory", "--stream", s)
    assert "banned mallory on " + s in r.stdout, r.stdout
    for c in open_streams:
        wait_for(lambda: closed(c), 10, "the banned user's stream to end")
    assert not closed(other), "a stream ban ends the other streams too"
    for front, port in FRONTS:
        r = request(port, "POST", "/v1/streams/%s/messages" % s,
                    {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                    token=S.token("mallory"))
        assert r.status == 403 and r.json["error"]["code"] == "banned", (front, r)
        post(port, "mallory", "mod-ban-other", "elsewhere is fine")
        status, text = refused(port, "mallory", s)
        assert status == 403 and '"code":"banned"' in text.replace(" ", ""), (front, status, text)
    for port in (S.sse_port, SSE2_PORT):
        status, text = refused(port, "mallory", s)
        assert status == 403 and '"banned"' in text, (status, text)
    # others are untouched
    post(NGINX, "alice", s, "still here")
    assert "mallory\t" + s in S.ctl("user", "bans").stdout
    S.ctl("user", "unban", "mallory", "--stream", s)
    post(NGINX, "mallory", s, "back")
    subscribe(NGINX, "mallory", s)[0].close()
    other.close()
    r = S.ctl("user", "unban", "mallory", "--stream", s, check=False)
    assert r.returncode == 1 and "no such ban" in r.stderr, r


@test
def global_ban_and_expiry():
    c, _ = subscribe(SSE2_PORT, "eve", "mod-g1")
    S.ctl("user", "ban", "eve")
    wait_for(lambda: closed(c), 10, "eve's stream to end")
    for stream in ("mod-g1", "mod-g2"):
        post(APACHE, "eve", stream, "no", want=403)
    S.ctl("user", "unban", "eve")
    post(APACHE, "eve", "mod-g2", "yes")
    # a ban with an end stops holding by itself
    r = S.ctl("user", "ban", "eve", "--for", "1s")
    assert "until 20" in r.stdout, r.stdout
    post(NGINX, "eve", "mod-g1", "no", want=403)

    def posts():
        r = request(NGINX, "POST", "/v1/streams/mod-g1/messages",
                    {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                    token=S.token("eve"))
        return r.status == 201
    wait_for(posts, 15, "the ban to expire", interval=0.2)
    wait_for(lambda: refused(SSE2_PORT, "eve", "mod-g1")[0] == 200, 15, "rtw-sse to admit eve again")
    for bad in (["--for", "0s"], ["--for", "soon"], ["--stream", "bad stream"]):
        r = S.ctl("user", "ban", "eve", *bad, check=False)
        assert r.returncode == 1, (bad, r)


if __name__ == "__main__":
    rtwtest.main()
