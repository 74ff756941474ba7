#!/usr/bin/python3
"""test_moderation: redaction (DELETE /v1/streams/{s}/messages/{id}) and
bans (rtwctl user ban/unban), through real nginx and Apache, with two
rtw-sse processes: who may delete (author, admin; anyone else 403, an
unknown id 404, twice answers the first redact), the 405/preflight of the
route, the redact event live and on resume (before and after it, a
private's only to its addressee), history, request and the views without
the original; bans refuse POSTs and new streams (403 banned, JSON), end
the open streams of every rtw-sse process, hold on their stream or
everywhere, expire, and are lifted by unban. The same over HTTP for admin
tokens (PUT/DELETE /v1/streams/{s}/bans/{user} and /v1/bans/{user}, GET
the lists): who may (401/403), validation (400/415 JSON), 405 with Allow
and preflights, durations (for_s, until), idempotent PUT, 404 on a second
DELETE, paging, the cap of bans in force; and a banned POST, alone, in a
group-commit batch or under an Idempotency-Key, writes nothing."""
import os
import sys
import time

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


# ---- bans over HTTP (admin tokens) ----

def ban(port, user, stream=None, body=None, token=ADMIN, method="PUT"):
    path = ("/v1/streams/%s/bans/%s" % (stream, user)) if stream else "/v1/bans/" + user
    return request(port, method, path, body, token=token)


def bans(port, stream=None, query="", token=ADMIN):
    path = ("/v1/streams/%s/bans" % stream) if stream else "/v1/bans"
    return request(port, "GET", path + query, token=token)


def posted(port, user, stream, want):
    r = request(port, "POST", "/v1/streams/%s/messages" % stream,
                {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                token=S.token(user))
    assert r.status == want, (port, user, stream, r)
    if want == 403:
        assert r.json["error"]["code"] == "banned", r
    return r


@test
def http_ban_refusals_and_validation():
    for front, port in FRONTS:
        s = "mod-hv-" + front
        # who: admins only (no token 401; a user, a service, an admin of
        # another stream 403; an admin of some streams may not ban everywhere)
        r = ban(port, "x", s, token=None)
        assert r.status == 401 and r.json["error"]["code"] == "unauthorized", (front, r)
        for tok in (S.token("bob"), S.token("svc", service=True), S.token("root", admin=True, streams=["other"])):
            for r in (ban(port, "x", s, token=tok), ban(port, "x", s, token=tok, method="DELETE"),
                      bans(port, s, token=tok)):
                assert r.status == 403 and r.json["error"]["code"] == "forbidden", (front, r)
        scoped = S.token("root", admin=True, streams=[s])
        assert ban(port, "scoped-x", s, token=scoped).status == 200
        assert ban(port, "scoped-x", s, token=scoped, method="DELETE").status == 200
        for r in (ban(port, "x", token=scoped), bans(port, token=scoped)):
            assert r.status == 403 and r.json["error"]["code"] == "forbidden", (front, r)
        # what: a valid user id and stream id, a body of for_s or until
        for path, field in (("/v1/bans/bad%20id", "user_id"), ("/v1/bans/" + "u" * 129, "user_id"),
                            ("/v1/bans/%22q", "user_id"), ("/v1/streams/bad%20s/bans/x", "stream_id")):
            r = request(port, "PUT", path, token=ADMIN)
            assert r.status == 400 and r.json["error"]["code"] == "invalid_field", (front, path, r)
            assert r.json["error"]["field"] == field, (front, path, r)
        for body, code, field in (({"for_s": 0}, "invalid_field", "for_s"),
                                  ({"for_s": "60"}, "invalid_field", "for_s"),
                                  ({"for_s": 1.5}, "invalid_field", "for_s"),
                                  ({"for_s": 315360001}, "invalid_field", "for_s"),
                                  ({"until": "soon"}, "invalid_field", "until"),
                                  ({"until": "2001-01-01T00:00:00Z"}, "invalid_field", "until"),
                                  ({"until": "2999-01-01T00:00:00Z"}, "invalid_field", "until"),
                                  ({"until": "2030-02-30T00:00:00Z"}, "invalid_field", "until"),
                                  ({"until": "now"}, "invalid_field", "until"),
                                  ({"for_s": 60, "until": "2030-01-01T00:00:00Z"}, "invalid_field", "until"),
                                  ({"reason": "spam"}, "unexpected_field", "reason"),
                                  ([60], "invalid_json", None), ('{"for_s":1,"for_s":2}', "invalid_json", None)):
            r = ban(port, "x", s, body=body)
            assert r.status == 400 and r.json["error"]["code"] == code, (front, body, r)
            assert r.json["error"].get("field") == field, (front, body, r)
        r = request(port, "PUT", "/v1/bans/x", "for_s=60", token=ADMIN, headers={"Content-Type": "text/plain"})
        assert r.status == 415 and r.json["error"]["code"] == "unsupported_media_type", (front, r)
        for q in ("?limit=0", "?limit=1001", "?limit=x", "?after=a%20b"):
            r = bans(port, s, q)
            assert r.status == 400 and r.json["error"]["code"] == "invalid_field", (front, q, r)
        # nothing above wrote a ban
        assert S.pg.query("SELECT count(*) FROM rtw_bans WHERE user_id = 'x'")[0][0] == 0
        # methods: 405 with Allow; preflights name the methods
        for path, allow in (("/v1/bans/x", "PUT, DELETE, OPTIONS"), ("/v1/streams/%s/bans/x" % s, "PUT, DELETE, OPTIONS"),
                            ("/v1/bans", "GET, OPTIONS"), ("/v1/streams/%s/bans" % s, "GET, OPTIONS")):
            for method in ("POST", "PATCH", "GET" if "x" in path.rsplit("/", 1)[1] else "PUT"):
                r = request(port, method, path, {} if method != "GET" else None, token=ADMIN)
                assert r.status == 405 and r.json["error"]["code"] == "method_not_allowed", (front, path, method, r)
                assert r.header("Allow") == allow, (front, path, r)
            r = request(port, "OPTIONS", path, headers={"Origin": "https://w.example",
                                                        "Access-Control-Request-Method": allow.split(",")[0]})
            assert r.status == 204 and r.header("Allow") == allow, (front, path, r)
        for path in ("/v1/bansx", "/v1/streams/%s/bansx" % s, "/v1/streams/%s/bans/x/" % s[:0]):
            r = request(port, "GET", path, token=ADMIN)
            assert r.status in (404, 400), (front, path, r)


@test
def http_stream_ban_ends_streams_refuses_and_lifts():
    for front, port in FRONTS:
        s, user = "mod-hs-" + front, "mallory-" + front
        open_streams = [subscribe(p, user, s)[0] for p in (S.sse_port, SSE2_PORT, port)]
        other, _ = subscribe(SSE2_PORT, user, s + "-other")
        r = ban(port, user, s)
        assert r.status == 200, (front, r)
        assert r.json["user_id"] == user and r.json["stream_id"] == s and r.json["until"] is None, r
        assert r.json["created_at"].endswith("Z"), r
        for c in open_streams:
            wait_for(lambda: closed(c), 10, "the banned user's stream to end")
        assert not closed(other), "a stream ban ends the other streams too"
        posted(port, user, s, 403)
        posted(port, user, s + "-other", 201)
        status, text = refused(port, user, s)
        assert status == 403 and '"code":"banned"' in text.replace(" ", ""), (front, status, text)
        # a PUT again is the same ban (its end replaced), still one row
        r = ban(port, user, s, body={})
        assert r.status == 200 and r.json["until"] is None, r
        lst = bans(port, s)
        assert lst.status == 200 and lst.json["stream_id"] == s and lst.json["next_after"] is None, lst
        assert [(b["user_id"], b["stream_id"]) for b in lst.json["bans"]] == [(user, s)], lst
        # the ban is rtwctl's: it lists it, and could lift it
        assert user + "\t" + s in S.ctl("user", "bans").stdout
        # others are untouched
        posted(port, "alice", s, 201)
        # lifted: posts and streams again; a second DELETE is 404
        r = ban(port, user, s, method="DELETE")
        assert r.status == 200 and r.json["user_id"] == user and r.json["stream_id"] == s, (front, r)
        posted(port, user, s, 201)
        subscribe(port, user, s)[0].close()
        r = ban(port, user, s, method="DELETE")
        assert r.status == 404 and r.json["error"]["code"] == "not_found", (front, r)
        assert bans(port, s).json["bans"] == []
        other.close()
        # a user id may hold "/" (percent-encoded in the path) and other
        # printable characters a path would otherwise take for its own
        for odd in ("we/ird", "a?b#c%d"):
            path = "/v1/streams/%s/bans/%s" % (s, "".join(ch if ch.isalnum() else "%%%02X" % ord(ch) for ch in odd))
            r = request(port, "PUT", path, token=ADMIN)
            assert r.status == 200 and r.json["user_id"] == odd, (front, odd, r)
            posted(port, odd, s, 403)
            assert request(port, "DELETE", path, token=ADMIN).status == 200


@test
def http_global_ban_with_duration_and_until():
    for front, port in FRONTS:
        user = "eve-" + front
        c, _ = subscribe(SSE2_PORT, user, "mod-hg1")
        r = ban(port, user, body={"for_s": 2})
        assert r.status == 200 and r.json["stream_id"] is None and r.json["until"].endswith("Z"), (front, r)
        wait_for(lambda: closed(c), 10, "eve's stream to end")
        for stream in ("mod-hg1", "mod-hg2"):
            posted(port, user, stream, 403)
        listed = [b for b in bans(port).json["bans"] if b["user_id"] == user]
        assert listed == [r.json], listed

        def posts():
            return request(port, "POST", "/v1/streams/mod-hg1/messages",
                           {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                           token=S.token(user)).status == 201
        wait_for(posts, 15, "the ban to expire", interval=0.2)
        assert [b for b in bans(port).json["bans"] if b["user_id"] == user] == []
        # until: an RFC 3339 time, any offset
        end = int(time.time()) + 3600
        r = ban(port, user, body={"until": time.strftime("%Y-%m-%dT%H:%M:%S.5+01:30", time.gmtime(end + 5400))})
        assert r.status == 200, (front, r)
        assert r.json["until"] == time.strftime("%Y-%m-%dT%H:%M:%S.500000Z", time.gmtime(end)), (front, r)
        posted(port, user, "mod-hg3", 403)
        assert ban(port, user, method="DELETE").status == 200
        posted(port, user, "mod-hg3", 201)


@test
def http_ban_list_pages():
    s = "mod-hl"
    users = ["u-%02d" % i for i in range(5)]
    for u in reversed(users):
        assert ban(NGINX, u, s).status == 200
    assert ban(NGINX, "u-ended", s, body={"for_s": 1}).status == 200
    time.sleep(1.5)
    got, after = [], ""
    while True:
        r = bans(APACHE, s, "?limit=2&after=" + after)
        assert r.status == 200 and len(r.json["bans"]) <= 2, r
        got += [b["user_id"] for b in r.json["bans"]]
        if r.json["next_after"] is None:
            break
        after = r.json["next_after"]
    # in force only, each once, by user id
    assert got == users, got
    # another stream's and global bans are their own lists
    assert bans(NGINX, "mod-hl-else").json["bans"] == []
    assert not [b for b in bans(NGINX).json["bans"] if b["user_id"].startswith("u-")]
    for u in users:
        assert ban(NGINX, u, s, method="DELETE").status == 200


@test
def banned_post_writes_nothing():
    """The ban check rides in the insert: alone, in a group-commit batch
    beside others' rows, and under an Idempotency-Key, a banned author's
    POST is 403 banned and leaves no row (no message, no key)."""
    import threading
    s, user = "mod-hw", "mallory-hw"
    assert ban(NGINX, user, s).status == 200
    r = request(NGINX, "POST", "/v1/streams/%s/messages" % s,
                {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                token=S.token(user), headers={"Idempotency-Key": "k1"})
    assert r.status == 403 and r.json["error"]["code"] == "banned", r
    for type_ in ("private", "request", "webhook"):
        body = {"type": type_, "widget_key": S.widget_key, "message": {"webhook": "https://example.org/", "private": 1, "request": {}}[type_]}
        if type_ == "private":
            body.update(to_user_id="bob", timestamp=0)
        r = request(NGINX, "POST", "/v1/streams/%s/messages" % s, body, token=S.token(user))
        assert r.status == 403 and r.json["error"]["code"] == "banned", (type_, r)
    statuses = {}

    def run(who, n):
        for i in range(n):
            r = request(APACHE if i % 2 else NGINX, "POST", "/v1/streams/%s/messages" % s,
                        {"type": "broadcast", "widget_key": S.widget_key, "message": i, "timestamp": 0},
                        token=S.token(who))
            statuses.setdefault(who, []).append(r.status)
    threads = [threading.Thread(target=run, args=(who, 20)) for who in (user, "alice", "bob", user)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses[user]) == {403} and len(statuses[user]) == 40, statuses
    assert statuses["alice"] == [201] * 20 and statuses["bob"] == [201] * 20, statuses
    assert S.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id = %s AND author_id = %s", (s, user)) == [(0,)]
    assert S.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id = %s", (s,)) == [(40,)]
    assert S.pg.query("SELECT count(*) FROM rtw_idempotency WHERE author_id = %s", (user,)) == [(0,)]
    assert S.pg.query("SELECT count(*) FROM rtw_webhook_jobs WHERE author_id = %s", (user,)) == [(0,)]
    assert ban(NGINX, user, s, method="DELETE").status == 200
    r = request(NGINX, "POST", "/v1/streams/%s/messages" % s,
                {"type": "broadcast", "widget_key": S.widget_key, "message": 1, "timestamp": 0},
                token=S.token(user), headers={"Idempotency-Key": "k1"})
    assert r.status == 201, r


@test
def http_bans_are_bounded():
    """At most 100,000 bans in force (what rtw-sse holds): a new one beyond
    is 403, replacing one that exists is not, and ended bans are pruned."""
    S.pg.query("INSERT INTO rtw_bans (user_id, stream_id) SELECT 'bulk-' || g, 'mod-cap' "
               "FROM generate_series(1, 99999) g")
    S.pg.query("INSERT INTO rtw_bans (user_id, stream_id, until) VALUES ('old', 'mod-cap', now() - interval '1 s')")
    try:
        r = ban(NGINX, "one-more", "mod-cap")
        assert r.status == 200, r
        r = ban(NGINX, "two-more", "mod-cap")
        assert r.status == 403 and r.json["error"]["code"] == "forbidden", r
        r = ban(APACHE, "one-more", "mod-cap", body={"for_s": 60})
        assert r.status == 200 and r.json["until"], r
        assert S.pg.query("SELECT count(*) FROM rtw_bans WHERE user_id = 'old'") == [(0,)]
    finally:
        S.pg.query("DELETE FROM rtw_bans WHERE stream_id = 'mod-cap'")


if __name__ == "__main__":
    rtwtest.main()
