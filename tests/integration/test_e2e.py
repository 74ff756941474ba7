"""test_e2e: the whole product end to end.

Real nginx in front of rtw-fcgi and rtw-sse, a real PostgreSQL, a real
rtw-webhookd calling a real local HTTP target (http.server in a thread on a
free loopback port; the worker runs with RTW_WEBHOOK_ALLOW_HOSTS=127.0.0.1
so that loopback is allowed here). Every request and every event stream
goes through nginx; SQL is used only to read the truth back.

Covers: a webhook's round trip (signed delivery, the result event to its
requester only, job status for requester / stranger / admin), a failing
webhook, a refused target (a second stack without the allow), broadcasts,
privates and history (GET and `request`, paged) seen identically by two
users and an anonymous viewer who posts with its minted token, and resume
with Last-Event-ID while writers post through nginx.

Run: RTW_BUILDDIR=$PWD /usr/bin/python3 tests/integration/test_e2e.py
"""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

ALLOW = {"RTW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "RTW_WEBHOOK_POLL_INTERVAL_MS": "100",
         "RTW_WEBHOOK_BACKOFF_BASE_MS": "100", "RTW_WEBHOOK_BACKOFF_MAX_MS": "400"}
STRICT = {"RTW_WEBHOOK_POLL_INTERVAL_MS": "100"}
WAIT = 30.0  # generous: only ever a bound on waiting, never an assertion
_n = [0]


class Target:
    """The third party: records every hit; /ok/... answers 200 with JSON,
    /missing/... 404 with JSON, anything else 418."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []  # (path, method, headers dict, body bytes)
        target = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                target.handle(self)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def hits_for(self, path):
        with self.lock:
            return [h for h in self.hits if h[0] == path]

    def handle(self, req):
        n = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(n) if n else b""
        with self.lock:
            self.hits.append((req.path, req.command, dict(req.headers), body))
        if req.path.startswith("/ok/"):
            status, out = 200, json.dumps({"received": True, "path": req.path, "len": len(body)}).encode()
        elif req.path.startswith("/missing/"):
            status, out = 404, b'{"error":"no such thing"}'
        else:
            status, out = 418, b"{}"
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(out)))
        req.end_headers()
        req.wfile.write(out)


def full_stack(webhook_env):
    st = rtwtest.Stack()
    st.start_fcgi()
    st.start_sse()
    st.start_webhookd(env=webhook_env)
    st.start_nginx()
    # rtw-sse accepts subscribers before its database connection is ready;
    # see sse_accepted_before_ready_misses_nothing for why the tests wait
    wait_for(lambda: request(st.http_port, "GET", "/healthz", timeout=2).status == 200, WAIT, "rtw-sse ready")
    return st


ST = full_stack(ALLOW)
TARGET = Target()
_strict = []


def strict_stack():
    """A second, whole stack whose worker has no allow list (created once)."""
    if not _strict:
        _strict.append(full_stack(STRICT))
    return _strict[0]


def stream_name(prefix="e2e"):
    _n[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _n[0])


def user(name):
    _n[0] += 1
    return "%s-%d" % (name, _n[0])


def subscribe(st, stream, token=None, last_id=None, query=None):
    """An SSE subscriber through nginx; the token goes in access_token."""
    q = {}
    if token:
        q["access_token"] = token
    q.update(query or {})
    path = "/v1/streams/%s/events" % stream + ("?" + urllib.parse.urlencode(q) if q else "")
    c = SSEClient(st.http_port, path, headers={"Last-Event-ID": last_id} if last_id else None)
    assert c.status == 200, (c.status, c.body_text())
    assert c.headers.get("content-type") == "text/event-stream", c.headers
    init = c.next_event(WAIT)
    assert init["json"]["type"] == "init" and "id" not in init, init
    assert init["json"]["stream_id"] == stream, init
    c.init = init["json"]
    return c


def post(st, stream, body, token):
    """POSTs a message; on 429 (rtw-fcgi's per-author rate limit) waits
    Retry-After and tries again, as a well-behaved widget does."""
    deadline = time.time() + WAIT
    while True:
        r = request(st.http_port, "POST", "/v1/streams/%s/messages" % stream, body, token=token, timeout=WAIT)
        if r.status != 429 or time.time() > deadline:
            return r
        assert r.json["error"]["code"] == "rate_limited", r
        retry = r.header("Retry-After")
        assert retry and retry.isdigit(), r.headers
        time.sleep(int(retry))


def bcast(st, stream, token, payload, ts=1.0, widget_key=None, **kw):
    m = {"type": "broadcast", "widget_key": widget_key or st.widget_key, "timestamp": ts, "message": payload}
    m.update(kw)
    r = post(st, stream, m, token)
    assert r.status == 201, r
    return r.json


def private(st, stream, token, to, payload, ts=2.0):
    r = post(st, stream, {"type": "private", "widget_key": st.widget_key, "timestamp": ts, "to_user_id": to,
                          "message": payload}, token)
    assert r.status == 201, r
    assert r.json["to_user_id"] == to and r.json["type"] == "private", r
    return r.json


def webhook(st, stream, token, url, body, ts=12.5):
    r = post(st, stream, {"type": "webhook", "widget_key": st.widget_key, "timestamp": ts,
                          "message": {"url": url, "method": "POST", "body": body}}, token)
    return r


def accepted_job(r, url):
    assert r.status == 202, r
    j = r.json
    assert j["type"] == "webhook", j
    m = j["message"]
    assert m["status"] == "queued" and m["url"] == url, j
    assert isinstance(m["job_id"], str) and m["job_id"].isdigit(), j
    return m["job_id"]


def job_status(st, job_id, token):
    return request(st.http_port, "GET", "/v1/webhooks/%s" % job_id, token=token, timeout=WAIT)


def assert_not_found(r):
    assert r.status == 404, r
    assert r.json["error"]["code"] == "not_found", r


def verify_signature(secret, headers, body):
    sig = headers.get("X-RTW-Signature")
    assert sig, headers
    parts = dict(p.split("=", 1) for p in sig.split(","))
    assert set(parts) == {"t", "v1"}, sig
    assert parts["t"].isdigit(), sig
    want = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(want, parts["v1"]), (sig, want)
    # and a signature with another secret would not have matched
    other = hmac.new(b"not-the-secret", parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(other, parts["v1"])


def barrier(st, stream, token, clients, tag):
    """Posts one broadcast and requires it as the very next event on every
    client: proves each stream advanced past anything posted before with
    nothing unexpected in between. Returns the barrier message."""
    m = bcast(st, stream, token, {"barrier": tag})
    for c in clients:
        ev = c.next_event(WAIT)
        assert ev.get("id") == m["id"], ("expected the barrier %s, got %r" % (m["id"], ev))
        assert ev["json"] == m, (ev["json"], m)
    return m


def stored_broadcasts(st, stream):
    """The stream's broadcast ids in stream order. (Not "SELECT id::text ...
    ORDER BY xid, id": ORDER BY would then sort by the text output column.)"""
    rows = st.pg.query("SELECT id FROM rtw_messages WHERE stream_id = %s AND type = 'broadcast'"
                       " ORDER BY xid, id", (stream,))
    return [str(r[0]) for r in rows]


# ---- webhooks ------------------------------------------------------------------

def _webhook_result_event(c, job_id):
    ev = c.next_event(WAIT)
    j = ev["json"]
    assert j["type"] == "webhook", ev
    assert j["message"]["job_id"] == job_id, ev
    assert ev["id"] == j["id"], ev
    return ev


@test
def webhook_round_trip_signed_and_routed_to_requester_only():
    s = stream_name()
    a, b = user("alice"), user("bob")
    ta, tb = ST.token(a), ST.token(b)
    ca, cb = subscribe(ST, s, ta), subscribe(ST, s, tb)
    assert ca.init["author_id"] == a and cb.init["author_id"] == b
    assert "token" not in ca.init["message"], ca.init
    path = "/ok/%s" % s
    url = TARGET.url(path)
    r = webhook(ST, s, ta, url, {"answer": 42, "text": "é\n\"q\""})
    job = accepted_job(r, url)
    assert r.json["author_id"] == a and r.json["stream_id"] == s and r.json["timestamp"] == 0, r.json
    assert r.json["widget_key"] == ST.widget_key, r.json

    # the third party got exactly one signed call
    hits = wait_for(lambda: TARGET.hits_for(path), WAIT, "the webhook call")
    ev = _webhook_result_event(ca, job)  # the call is over once A has its result
    hits = TARGET.hits_for(path)
    assert len(hits) == 1, hits
    _, method, headers, body = hits[0]
    assert method == "POST", method
    assert headers.get("Content-Type") == "application/json", headers
    assert headers.get("X-RTW-Delivery") == job, headers
    assert headers.get("User-Agent", "").startswith("rtw-webhookd/"), headers
    verify_signature(ST.webhook_secret, headers, body)
    doc = json.loads(body)
    assert doc == {"job_id": job, "stream_id": s, "author_id": a, "widget_key": ST.widget_key,
                   "timestamp": 12.5, "body": {"answer": 42, "text": "é\n\"q\""}}, doc
    assert list(doc) == ["job_id", "stream_id", "author_id", "widget_key", "timestamp", "body"], doc

    # A's stream: the result, addressed to A, with the target's parsed JSON answer
    j = ev["json"]
    assert j["to_user_id"] == a and j["author_id"] == a and j["stream_id"] == s, j
    assert j["widget_key"] == ST.widget_key, j
    assert j["message"] == {"job_id": job, "url": url, "status": "succeeded", "http_status": 200, "attempts": 1,
                            "body": {"received": True, "path": path, "len": len(body)}, "error": None}, j
    stored = ST.pg.query("SELECT result_message_id::text FROM rtw_webhook_jobs WHERE id = %s", (int(job),))
    assert stored == [(ev["id"],)], (stored, ev["id"])

    # B never sees it: B's next event is a later broadcast, and so is A's
    barrier(ST, s, tb, [cb, ca], "after-webhook")

    # job status: the requester and an admin see it, anyone else gets 404
    mine = job_status(ST, job, ta)
    assert mine.status == 200, mine
    st = mine.json
    assert st["job_id"] == job and st["status"] == "succeeded" and st["attempts"] == 1, st
    assert st["http_status"] == 200 and st["error"] is None, st
    assert_not_found(job_status(ST, job, tb))
    adm = job_status(ST, job, ST.token(user("root"), admin=True))
    assert adm.status == 200, adm
    assert adm.json["job_id"] == job and adm.json["status"] == "succeeded", adm
    assert_not_found(job_status(ST, job, ST.token(user("root"), admin=False)))
    ca.close()
    cb.close()


@test
def failing_webhook_reports_failed():
    s = stream_name()
    a, b = user("alice"), user("bob")
    ta, tb = ST.token(a), ST.token(b)
    ca, cb = subscribe(ST, s, ta), subscribe(ST, s, tb)
    path = "/missing/%s" % s
    url = TARGET.url(path)
    job = accepted_job(webhook(ST, s, ta, url, None), url)
    ev = _webhook_result_event(ca, job)
    j = ev["json"]
    assert j["to_user_id"] == a and j["author_id"] == a, j
    m = j["message"]
    assert m["status"] == "failed" and m["http_status"] == 404 and m["attempts"] == 1, m
    assert m["url"] == url and m["body"] == {"error": "no such thing"}, m
    assert isinstance(m["error"], str) and "404" in m["error"], m
    hits = TARGET.hits_for(path)
    assert len(hits) == 1, hits  # a 404 is final: no retry
    assert json.loads(hits[0][3])["body"] is None, hits[0]
    barrier(ST, s, tb, [cb, ca], "after-failure")
    r = job_status(ST, job, ta)
    assert r.status == 200, r
    assert r.json["status"] == "failed" and r.json["http_status"] == 404 and r.json["attempts"] == 1, r.json
    assert_not_found(job_status(ST, job, tb))
    ca.close()
    cb.close()


@test
def loopback_target_refused_without_allow():
    # rtw-fcgi checks scheme and widget host lists only (doc/fcgi.md); the
    # address check is rtw-webhookd's, which refuses a literal internal
    # address before connecting and fails the job with "target refused: ..."
    # (doc/webhooks.md). So: 202, then a failed result, and no call.
    st = strict_stack()
    s = stream_name()
    a = user("alice")
    ta = st.token(a)
    c = subscribe(st, s, ta)
    path = "/ok/refused-%s" % s
    url = TARGET.url(path)
    job = accepted_job(webhook(st, s, ta, url, {"x": 1}), url)
    ev = _webhook_result_event(c, job)
    j = ev["json"]
    assert j["to_user_id"] == a and j["author_id"] == a, j
    m = j["message"]
    assert m["status"] == "failed" and m["http_status"] is None and m["attempts"] == 1, m
    assert m["error"].startswith("target refused"), m
    assert m["body"] is None and m["url"] == url, m
    r = job_status(st, job, ta)
    assert r.status == 200 and r.json["status"] == "failed", r
    assert r.json["error"].startswith("target refused"), r.json
    # the same URL on the allowing stack is called, so the zero below means something
    ok = user("carol")
    job2 = accepted_job(webhook(ST, s, ST.token(ok), url, {"x": 2}), url)
    wait_for(lambda: job_status(ST, job2, ST.token(ok)).json["status"] == "succeeded", WAIT, "allowed job")
    hits = TARGET.hits_for(path)
    assert len(hits) == 1 and hits[0][2].get("X-RTW-Delivery") == job2, hits
    c.close()


# ---- broadcasts, privates, history ---------------------------------------------

def _history_get(st, stream, token, widget_key, limit):
    msgs, since, pages = [], None, 0
    while True:
        q = {"widget_key": widget_key, "limit": str(limit)}
        if since:
            q["since_id"] = since
        r = request(st.http_port, "GET", "/v1/streams/%s/messages?%s" % (stream, urllib.parse.urlencode(q)),
                    token=token, timeout=WAIT)
        assert r.status == 200, r
        env = r.json
        assert env["type"] == "request" and env["stream_id"] == stream and env["timestamp"] == 0, env
        page = env["message"]["messages"]
        assert len(page) <= limit, env
        msgs += page
        pages += 1
        nxt = env["message"]["next_since_id"]
        if nxt is None:
            return msgs, pages
        assert page and nxt == page[-1]["id"], env
        since = nxt
        assert pages < 1000, "paging does not end"


def _history_request(st, stream, token, widget_key, limit):
    msgs, since, pages = [], None, 0
    while True:
        f = {"limit": limit}
        if since:
            f["since_id"] = since
        r = post(st, stream, {"type": "request", "widget_key": widget_key, "message": f}, token)
        assert r.status == 200, r
        env = r.json
        assert env["type"] == "request" and env["widget_key"] == widget_key, env
        page = env["message"]["messages"]
        assert len(page) <= limit, env
        msgs += page
        pages += 1
        nxt = env["message"]["next_since_id"]
        if nxt is None:
            return msgs, pages
        assert page and nxt == page[-1]["id"], env
        since = nxt
        assert pages < 1000, "paging does not end"


@test
def broadcast_private_history_three_subscribers():
    s = stream_name()
    a, b = user("alice"), user("bob")
    ta, tb = ST.token(a), ST.token(b, streams=[s])
    ca, cb = subscribe(ST, s, ta), subscribe(ST, s, tb)
    cn = subscribe(ST, s)  # anonymous: gets an identity and a token in init
    n = cn.init["author_id"]
    tn = cn.init["message"].get("token")
    assert n.startswith("anon-") and tn, cn.init
    assert n not in (a, b)
    posters = {a: ta, b: tb, n: tn}
    others = {a: [b, n], b: [n, a], n: [a, b]}
    sent = {a: [], b: [], n: []}  # what each may see, from the 201 answers
    errors = []
    lock = threading.Lock()
    wk2_count = [0]

    def writer(me):
        try:
            tok = posters[me]
            for i in range(12):
                if i % 3 == 2:
                    to = others[me][i % 2]
                    m = private(ST, s, tok, to, {"from": me, "i": i})
                    with lock:
                        sent[to].append(m)
                else:
                    wk = ST.widget_key2 if i % 4 == 0 else ST.widget_key
                    m = bcast(ST, s, tok, {"from": me, "i": i}, ts=float(i), widget_key=wk)
                    assert m["author_id"] == me, m
                    with lock:
                        for u in sent:
                            sent[u].append(m)
                        wk2_count[0] += wk == ST.widget_key2
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(u,)) for u in posters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert wk2_count[0] > 0
    got = {}
    for u, c in ((a, ca), (b, cb), (n, cn)):
        evs = c.events(len(sent[u]), WAIT)
        for e in evs:
            assert e["id"] == e["json"]["id"], e
        got[u] = [e["json"] for e in evs]
    # nothing else arrives: the next event on every stream is a new broadcast
    last = barrier(ST, s, ta, [ca, cb, cn], "end")

    def key(m):
        return m["id"]

    for u in got:
        # exactly what u may see (same full messages as the 201 answers), once each
        assert sorted(got[u], key=key) == sorted(sent[u], key=key), u
        for m in got[u]:
            assert m["type"] == "broadcast" or m["to_user_id"] == u, (u, m)
    order = [[m["id"] for m in got[u] if m["type"] == "broadcast"] for u in (a, b, n)]
    assert order[0] == order[1] == order[2], order
    table = stored_broadcasts(ST, s)
    assert table == order[0] + [last["id"]], (table, order[0])

    # history of each widget: exactly the SSE broadcasts of that widget, in the SSE order, paged
    seen = [m for m in got[a] if m["type"] == "broadcast"] + [last]
    for wk, limit in ((ST.widget_key, 4), (ST.widget_key2, 3)):
        want = [m for m in seen if m["widget_key"] == wk]
        assert len(want) > limit, (len(want), limit)  # so paging is exercised
        for fn, tok in ((_history_get, tn), (_history_request, tb)):
            msgs, pages = fn(ST, s, tok, wk, limit)
            assert [m["id"] for m in msgs] == [m["id"] for m in want], (fn.__name__, wk)
            assert msgs == want, fn.__name__
            assert pages == (len(want) + limit - 1) // limit, (fn.__name__, pages, len(want), limit)
            assert all("to_user_id" not in m for m in msgs)
    for c in (ca, cb, cn):
        c.close()


def read_ids(c, n):
    """Up to n event ids; fewer when the stream stays quiet for WAIT seconds
    (the caller's comparison then says what is missing)."""
    out = []
    try:
        while len(out) < n:
            out.append(c.next_event(WAIT)["id"])
    except TimeoutError:
        pass
    return out


def _diff(got, want, resumed_after, st, stream):
    """A short description of where two id sequences part, with xids."""
    i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
    near = set(got[max(0, i - 3):i + 5] + want[max(0, i - 3):i + 5])
    xids = dict(st.pg.query("SELECT id::text, xid::text FROM rtw_messages WHERE stream_id = %s", (stream,)))
    return ("got %d, stored %d; first difference at %d (resumed after %s at %d): got %s, stored %s; missing %s; "
            "extra %s; xids %s"
            % (len(got), len(want), i, resumed_after, got.index(resumed_after) if resumed_after in got else -1,
               got[max(0, i - 3):i + 5], want[max(0, i - 3):i + 5], sorted(set(want) - set(got), key=int),
               sorted(set(got) - set(want), key=int), {k: xids.get(k) for k in sorted(near, key=int)}))


# ---- resume ----------------------------------------------------------------------

@test
def resume_through_nginx_while_writers_post():
    s = stream_name()
    reader = user("reader")
    tr = ST.token(reader)
    c = subscribe(ST, s, tr)
    stop = threading.Event()
    posted, errors, lock = [], [], threading.Lock()

    def writer(w):
        tok = ST.token(user("writer"))
        try:
            i = 0
            while not stop.is_set() or i < 40:
                m = bcast(ST, s, tok, {"w": w, "i": i}, ts=float(i))
                with lock:
                    posted.append(m["id"])
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    k = 25
    first = [e["id"] for e in c.events(k, WAIT)]
    c.close()
    # written while nobody listens (at least a few, whatever the timing)
    with lock:
        mark = len(posted)
    wait_for(lambda: len(posted) >= mark + 10 or errors, WAIT, "more posts while disconnected")
    resumed = subscribe(ST, s, tr, last_id=first[-1])
    assert resumed.init["message"]["resumed"] is True, resumed.init
    assert resumed.init["message"]["last_event_id"] == first[-1], resumed.init
    time.sleep(0.3)  # let some posts land live, after the catch-up
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    total = len(posted)
    rest = read_ids(resumed, total - k)
    table = stored_broadcasts(ST, s)
    assert first + rest == table, ("resumed stream differs from the stored stream order: %s"
                                   % _diff(first + rest, table, first[-1], ST, s))
    last = barrier(ST, s, tr, [resumed], "end")
    got = first + rest + [last["id"]]
    assert len(got) == len(set(got)), "duplicate event"
    table = stored_broadcasts(ST, s)
    assert sorted(table, key=int) == sorted(posted + [last["id"]], key=int)
    assert got == table, "resumed sequence differs from the stored stream order: %s" % _diff(got, table, first[-1],
                                                                                             ST, s)
    # the same with the last_event_id query parameter instead of the header
    mid = got[len(got) // 2]
    again = subscribe(ST, s, tr, query={"last_event_id": mid})
    assert again.init["message"]["resumed"] is True, again.init
    tail = got[got.index(mid) + 1:]
    assert [e["id"] for e in again.events(len(tail), WAIT)] == tail
    barrier(ST, s, tr, [again], "end2")
    again.close()
    resumed.close()


# ---- startup ---------------------------------------------------------------------

@test
def sse_never_streams_before_it_knows_its_position():
    """rtw-sse must not accept a live subscriber before its first tail
    position is known (at start, or while PostgreSQL is down at start):
    rows committed in that window would be lost to it, with no id to resume
    from. Nor may a standard EventSource be given a non-200 (it would give
    up for good): through the front, the client is told only to retry (200,
    a `retry:` line, no event), then streams once rtw-sse is ready, and a
    message committed after the subscriber's init reaches it.
    On a stack of its own (it restarts rtw-sse and PostgreSQL)."""
    st = rtwtest.Stack()
    st.start_fcgi()
    st.start_sse()
    st.start_nginx()
    sse = st.daemons["rtw-sse"]
    s = stream_name()
    tok = st.token(user("early"))
    sse.stop()
    st.pg.stop()
    sse.start()  # listens at once; its connects fail and back off
    c = rtwtest.SSEClient(st.http_port, "/v1/streams/%s/events?access_token=%s" % (s, tok))
    assert c.status == 200, (c.status, c.body_text())
    assert c.headers["content-type"].startswith("text/event-stream"), c.headers
    body = c.body_text()
    assert body.startswith("retry: ") and "data:" not in body, body
    c.close()
    st.pg.start()
    wait_for(lambda: request(st.http_port, "GET", "/healthz", timeout=2).status == 200, WAIT, "rtw-sse ready")
    c = subscribe(st, s, tok)
    assert c.init["message"]["resumed"] is False, c.init
    conn = st.pg.connect()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                    " VALUES (%s, 'broadcast', %s, 'w', '{\"early\": true}', 1) RETURNING id", (s, st.widget_key))
        early = str(cur.fetchone()[0])
    conn.close()
    r = None
    for _ in range(int(WAIT / 0.5)):  # rtw-fcgi reconnects on a later request
        r = post(st, s, {"type": "broadcast", "widget_key": st.widget_key, "timestamp": 1, "message": {"late": 1}},
                 tok)
        if r.status == 201:
            break
        time.sleep(0.5)
    assert r.status == 201, r
    late = r.json["id"]
    got = []
    while late not in got:  # the later message is the barrier: all before it has arrived by then
        got.append(c.next_event(WAIT)["id"])
    c.close()
    assert got == [early, late], got



if __name__ == "__main__":
    rtwtest.main()
