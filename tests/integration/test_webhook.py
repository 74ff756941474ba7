"""test_webhook: rtw-webhookd against a real PostgreSQL and a scripted
local HTTP target: delivery shape and signature (v2, not replayable),
retries and backoff, timeouts, refusals (SSRF, the host:port allow-list,
credentials in the URL, anonymous requesters, widgets without hosts),
widget host lists, fair share between widgets (a tarpit target), result
routing into rtw_messages, several workers on one queue, a crashed
worker's lease, SIGTERM release, /healthz and /metrics. Jobs are inserted
with SQL, except where rtw-fcgi's checks at POST are the subject (then
through nginx and rtw-fcgi)."""
import hashlib
import hmac
import http.server
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import test  # noqa: E402

# Filled by setup(): the target's own port, by address and by name; the
# test widget has no host list, so workers here do not require one.
ALLOW = {"RTW_WEBHOOK_REQUIRE_WIDGET_HOSTS": "false"}
FAST = {"RTW_WEBHOOK_BACKOFF_BASE_MS": "100", "RTW_WEBHOOK_BACKOFF_MAX_MS": "400",
        "RTW_WEBHOOK_POLL_INTERVAL_MS": "100"}


class Target:
    """A local HTTP server with behaviours chosen by path."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []          # (path, method, headers dict, body bytes, time)
        self.counts = {}        # path -> hits
        self.active = {}        # delivery id -> concurrent
        self.max_active = {}    # delivery id -> max concurrent
        target = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                target.handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def hits_for(self, prefix):
        with self.lock:
            return [h for h in self.hits if h[0].startswith(prefix)]

    def handle(self, req):
        n = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(n) if n else b""
        path = req.path
        delivery = req.headers.get("X-RTW-Delivery")
        with self.lock:
            self.hits.append((path, req.command, dict(req.headers), body, time.time()))
            cnt = self.counts[path] = self.counts.get(path, 0) + 1
            self.active[delivery] = self.active.get(delivery, 0) + 1
            self.max_active[delivery] = max(self.max_active.get(delivery, 0), self.active[delivery])
        try:
            self.behave(req, path, cnt)
        finally:
            with self.lock:
                self.active[delivery] -= 1

    def reply(self, req, status, body=b"", headers=None, ctype="application/json"):
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        try:
            req.wfile.write(body)
        except OSError:
            pass  # the worker gave up (timeout, size cap, shutdown)

    def behave(self, req, path, cnt):
        p = path.split("?")[0]
        if p.startswith("/ok"):
            self.reply(req, 200, b'{"ok":true,"n":1}')
        elif p.startswith("/text"):
            self.reply(req, 200, b"plain " * 100, ctype="text/plain")
        elif p.startswith("/fail-once"):
            self.reply(req, 500 if cnt == 1 else 200, b'{"ok":%s}' % (b"false" if cnt == 1 else b"true"))
        elif p.startswith("/limited"):
            if cnt == 1:
                self.reply(req, 429, b"{}", {"Retry-After": "1"})
            else:
                self.reply(req, 200, b"{}")
        elif p.startswith("/always500"):
            self.reply(req, 503, b"down")
        elif p.startswith("/sleep"):
            time.sleep(float(p.split("/")[2]))
            self.reply(req, 200, b"{}")
        elif p.startswith("/first-hangs"):
            if cnt == 1:
                time.sleep(20)
            self.reply(req, 200, b'{"second":true}')
        elif p.startswith("/missing"):
            self.reply(req, 404, b'{"error":"nope"}')
        elif p.startswith("/redirect-internal"):
            self.reply(req, 302, b"", {"Location": "http://10.0.0.1/"})
        elif p.startswith("/redirect"):
            self.reply(req, 302, b"", {"Location": self.url("/ok")})
        elif p.startswith("/big"):
            self.reply(req, 200, b"x" * 200000, ctype="text/plain")
        elif p.startswith("/tarpit"):
            time.sleep(30)  # never answers before the worker's timeout
            self.reply(req, 200, b"{}")
        elif p.startswith("/concurrent"):
            time.sleep(0.2)
            self.reply(req, 200, b"{}")
        else:
            self.reply(req, 418, b"{}")


STACK = None
TARGET = None


def setup():
    global STACK, TARGET
    if STACK is None:
        STACK = rtwtest.Stack()
        TARGET = Target()
        ALLOW["RTW_WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1:%d,localhost:%d" % (TARGET.port, TARGET.port)
    return STACK, TARGET


def insert_job(st, url, method="POST", headers=None, body=None, author="user-7", widget_key=None, ts=12.5,
               stream="s1"):
    rows = st.pg.query(
        "INSERT INTO rtw_webhook_jobs (stream_id, widget_key, author_id, url, method, headers, body, ts)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s) RETURNING id",
        (stream, widget_key or st.widget_key, author, url, method, json.dumps(headers or {}),
         None if body is None else json.dumps(body), ts))
    return rows[0][0]


COLS = ("status", "attempts", "last_http_status", "last_error", "response_excerpt", "result_message_id",
        "lease_until", "leased_by", "finished_at", "last_duration_ms")


def job(st, jid):
    r = st.pg.query("SELECT %s FROM rtw_webhook_jobs WHERE id = %%s" % ", ".join(COLS), (jid,))
    return dict(zip(COLS, r[0]))


def wait_final(st, jid, timeout=20):
    return rtwtest.wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(job(st, jid)),
                            timeout, "job %s to finish" % jid, interval=0.05)


def result_message(st, jid):
    rows = st.pg.query("SELECT m.id, m.type, m.stream_id, m.widget_key::text, m.author_id, m.to_user_id,"
                       " m.message::text, m.ts FROM rtw_messages m JOIN rtw_webhook_jobs j"
                       " ON j.result_message_id = m.id WHERE j.id = %s", (jid,))
    assert len(rows) == 1, rows
    r = rows[0]
    return {"id": r[0], "type": r[1], "stream_id": r[2], "widget_key": r[3], "author_id": r[4],
            "to_user_id": r[5], "message": json.loads(r[6]), "ts": r[7]}


class Worker:
    """Starts rtw-webhookd with env, stops it when the block ends."""

    def __init__(self, st, env=None, name="rtw-webhookd"):
        self.st = st
        e = {"RTW_LOG_LEVEL": "debug"}
        e.update(env or {})
        self.d = st.start_webhookd(env=e, name=name)

    def __enter__(self):
        return self.d

    def __exit__(self, *a):
        rc = self.d.stop()
        assert rc == 0, "worker exited with %r; log:\n%s" % (rc, self.d.log_text()[-2000:])


def signature_ok(secret, sig, delivery, method, url, body):
    """Checks an X-RTW-Signature v2 as a receiver does (contract 1.1)."""
    parts = dict(p.split("=", 1) for p in sig.split(","))
    if "v2" not in parts:
        return False
    msg = b".".join([parts["t"].encode(), delivery.encode(), method.encode(), url.encode(), body])
    want = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v2"])


def verify_signature(secret, headers, body, method, url):
    sig = headers.get("X-RTW-Signature")
    assert sig, headers
    parts = dict(p.split("=", 1) for p in sig.split(","))
    assert abs(int(parts["t"]) - time.time()) < 300
    assert signature_ok(secret, sig, headers["X-RTW-Delivery"], method, url, body), (sig, method, url)


# ---- delivery ----------------------------------------------------------------

@test
def success_signed_body_and_result_routed():
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        jid = insert_job(st, tg.url("/ok/1"), headers={"X-Custom": "yes", "Cookie": "a=b", "Authorization": "x",
                                                       "Host": "evil", "X-RTW-Delivery": "999",
                                                       "Accept": "application/json"},
                         body={"answer": 42, "t": "é"})
        j = wait_final(st, jid)
    assert j["status"] == "succeeded", j
    assert j["attempts"] == 1 and j["last_http_status"] == 200 and j["last_error"] is None, j
    assert j["lease_until"] is None and j["leased_by"] is None and j["finished_at"] is not None, j
    assert j["last_duration_ms"] is not None and j["last_duration_ms"] >= 0, j
    hits = tg.hits_for("/ok/1")
    assert len(hits) == 1
    path, method, headers, body, _ = hits[0]
    assert method == "POST"
    verify_signature(st.webhook_secret, headers, body, "POST", tg.url("/ok/1"))
    assert headers["X-RTW-Delivery"] == str(jid), headers
    assert headers["User-Agent"].startswith("rtw-webhookd/"), headers
    assert headers["Content-Type"] == "application/json"
    assert headers.get("X-Custom") == "yes" and headers.get("Accept") == "application/json"
    for dropped in ("Cookie", "Authorization"):
        assert dropped not in headers, headers
    assert headers["Host"] == "127.0.0.1:%d" % tg.port, headers
    doc = json.loads(body)
    assert doc == {"job_id": str(jid), "stream_id": "s1", "author_id": "user-7", "widget_key": st.widget_key,
                   "timestamp": 12.5, "body": {"answer": 42, "t": "é"}}, doc
    assert list(doc) == ["job_id", "stream_id", "author_id", "widget_key", "timestamp", "body"]
    m = result_message(st, jid)
    assert m["type"] == "webhook" and m["to_user_id"] == "user-7" and m["author_id"] == "user-7", m
    assert m["stream_id"] == "s1" and m["widget_key"] == st.widget_key and m["ts"] == 12.5, m
    assert m["message"] == {"job_id": str(jid), "url": tg.url("/ok/1"), "status": "succeeded", "http_status": 200,
                            "attempts": 1, "body": {"ok": True, "n": 1}, "error": None}, m


@test
def get_sends_no_body_and_text_result_is_cut():
    st, tg = setup()
    with Worker(st, dict(ALLOW, RTW_WEBHOOK_RESULT_BODY_MAX="50", **FAST)):
        jid = insert_job(st, tg.url("/text/get"), method="GET", body={"ignored": True})
        j = wait_final(st, jid)
    assert j["status"] == "succeeded", j
    _, method, headers, body, _ = tg.hits_for("/text/get")[0]
    assert method == "GET" and body == b"" and "Content-Type" not in headers, headers
    verify_signature(st.webhook_secret, headers, b"", "GET", tg.url("/text/get"))
    m = result_message(st, jid)["message"]
    assert m["body"] == ("plain " * 100)[:50], m
    assert j["response_excerpt"] == ("plain " * 100)[:50], j


@test
def server_error_then_success_retries():
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        jid = insert_job(st, tg.url("/fail-once/a"))
        j = wait_final(st, jid)
    assert j["status"] == "succeeded" and j["attempts"] == 2 and j["last_http_status"] == 200, j
    assert len(tg.hits_for("/fail-once/a")) == 2
    m = result_message(st, jid)["message"]
    assert m["attempts"] == 2 and m["status"] == "succeeded" and m["error"] is None, m
    # exactly one result message for the job, none for the failed attempt
    assert st.pg.query("SELECT count(*) FROM rtw_messages WHERE type = 'webhook' AND message->>'job_id' = %s",
                       (str(jid),))[0][0] == 1


@test
def retry_after_on_429_is_honoured():
    st, tg = setup()
    env = dict(ALLOW, **FAST)
    env["RTW_WEBHOOK_BACKOFF_MAX_MS"] = "5000"  # Retry-After is capped by it
    with Worker(st, env):
        jid = insert_job(st, tg.url("/limited/a"))
        j = wait_final(st, jid)
    assert j["status"] == "succeeded" and j["attempts"] == 2, j
    hits = tg.hits_for("/limited/a")
    assert len(hits) == 2
    # backoff alone (base 100 ms) would retry within 100 ms; Retry-After: 1 holds it off
    assert hits[1][4] - hits[0][4] >= 0.9, hits[1][4] - hits[0][4]


@test
def retries_stop_at_max_attempts():
    st, tg = setup()
    with Worker(st, dict(ALLOW, RTW_WEBHOOK_MAX_ATTEMPTS="3", **FAST)):
        jid = insert_job(st, tg.url("/always500/a"))
        j = wait_final(st, jid)
    assert j["status"] == "failed" and j["attempts"] == 3 and j["last_http_status"] == 503, j
    assert j["last_error"] == "HTTP 503" and j["response_excerpt"] == "down", j
    assert len(tg.hits_for("/always500/a")) == 3
    m = result_message(st, jid)["message"]
    assert m["status"] == "failed" and m["http_status"] == 503 and m["body"] == "down", m


@test
def timeout_is_retried_then_fails():
    st, tg = setup()
    with Worker(st, dict(ALLOW, RTW_WEBHOOK_TIMEOUT_MS="300", RTW_WEBHOOK_MAX_ATTEMPTS="2", **FAST)):
        jid = insert_job(st, tg.url("/sleep/2/a"))
        j = wait_final(st, jid)
    assert j["status"] == "failed" and j["attempts"] == 2 and j["last_http_status"] is None, j
    assert "timed out" in j["last_error"], j
    m = result_message(st, jid)["message"]
    assert m["http_status"] is None and "timed out" in m["error"], m


@test
def not_found_fails_at_once():
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        jid = insert_job(st, tg.url("/missing/a"))
        j = wait_final(st, jid)
    assert j["status"] == "failed" and j["attempts"] == 1 and j["last_http_status"] == 404, j
    assert j["last_error"] == "HTTP 404", j
    assert result_message(st, jid)["message"]["body"] == {"error": "nope"}


@test
def redirects_are_refused_not_followed():
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        a = insert_job(st, tg.url("/redirect/a"))
        b = insert_job(st, tg.url("/redirect-internal/a"))
        ja, jb = wait_final(st, a), wait_final(st, b)
    for j in (ja, jb):
        assert j["status"] == "failed" and j["attempts"] == 1 and j["last_http_status"] == 302, j
        assert "redirect refused" in j["last_error"], j
    assert len(tg.hits_for("/ok")) == 1  # only the first test's delivery: the redirect was not followed


@test
def response_over_the_cap_fails():
    st, tg = setup()
    with Worker(st, dict(ALLOW, RTW_WEBHOOK_MAX_RESPONSE="10000", **FAST)):
        jid = insert_job(st, tg.url("/big/a"))
        j = wait_final(st, jid)
    assert j["status"] == "failed" and j["attempts"] == 1, j
    assert "response too large" in j["last_error"], j


# ---- refusals ----------------------------------------------------------------

@test
def internal_targets_refused_without_allow():
    st, tg = setup()
    p = tg.port
    urls = [
        "http://127.0.0.1:%d/ref/1" % p,
        "file:///etc/passwd",
        "gopher://127.0.0.1:%d/ref/2" % p,
        "http://localhost:%d/ref/3" % p,
        "http://[::ffff:127.0.0.1]:%d/ref/4" % p,
        "http://2130706433:%d/ref/5" % p,
        "http://0177.0.0.1:%d/ref/6" % p,
        "http://0x7f000001:%d/ref/7" % p,
        "http://127.1:%d/ref/8" % p,
        "http://[::1]:%d/ref/9" % p,
        "http://10.1.2.3/ref/10",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/ref/11",
        "http://0.0.0.0:%d/ref/12" % p,
        "not a url",
    ]
    with Worker(st, dict(FAST, RTW_WEBHOOK_REQUIRE_WIDGET_HOSTS="false")):
        ids = [insert_job(st, u) for u in urls]
        jobs = [wait_final(st, i) for i in ids]
        want = 'rtw_webhookd_jobs_total{outcome="refused"} %d\n' % len(urls)
        rtwtest.wait_for(lambda: want in rtwtest.request(st.webhookd_port, "GET", "/metrics").body.decode(), 5,
                         "refused counter")
    for u, j in zip(urls, jobs):
        assert j["status"] == "failed" and j["attempts"] == 1, (u, j)
        assert j["last_error"].startswith("target refused"), (u, j)
        assert j["last_http_status"] is None, (u, j)
    assert tg.hits_for("/ref") == []
    for i in ids:
        m = result_message(st, i)["message"]
        assert m["status"] == "failed" and m["error"].startswith("target refused"), m


@test
def widget_host_list_restricts_targets():
    st, tg = setup()
    only_example = st.add_widget("restricted", "--webhook-hosts", "example.org,*.example.net")
    only_local = st.add_widget("local", "--webhook-hosts", "127.0.0.1")
    with Worker(st, dict(ALLOW, **FAST)):
        a = insert_job(st, tg.url("/ok/wl-a"), widget_key=only_example)
        b = insert_job(st, tg.url("/ok/wl-b"), widget_key=only_local)
        ja, jb = wait_final(st, a), wait_final(st, b)
    assert ja["status"] == "failed" and "widget" in ja["last_error"], ja
    assert ja["last_error"].startswith("target refused"), ja
    assert tg.hits_for("/ok/wl-a") == []
    assert jb["status"] == "succeeded", jb


class Other:
    """A second loopback listener standing for an internal service: it
    counts the connections it accepts (an HTTP request or anything else)."""

    def __init__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()


@test
def allow_list_opens_one_port_only():
    # Issue 10, finding 1: an allowed host used to skip the address check
    # for every port, and curl's numeric spellings of 127.0.0.1 reached
    # it. Now 127.0.0.1:P opens that port only, judged on the address and
    # port curl connects to: every spelling reaches P, none any other port
    # (a stand-in listener, rtw-fcgi's health port, rtw-sse, PostgreSQL).
    st, tg = setup()
    front(st)
    other = Other()
    spellings = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "localhost", "[::ffff:127.0.0.1]"]
    ports = {"stand-in": other.port, "fcgi health": st.fcgi_health_port, "sse": st.sse_port, "postgres": st.pg.port}
    env = dict(FAST, RTW_WEBHOOK_ALLOW_HOSTS="127.0.0.1:%d" % tg.port, RTW_WEBHOOK_REQUIRE_WIDGET_HOSTS="false")
    with Worker(st, env):
        good = [insert_job(st, "http://%s:%d/ok/port-%d" % (h, tg.port, i)) for i, h in enumerate(spellings)]
        bad = [(h, name, insert_job(st, "http://%s:%d/metrics" % (h, port), method="GET"))
               for h in spellings for name, port in ports.items()]
        good_jobs = [wait_final(st, j) for j in good]
        bad_jobs = [(h, name, wait_final(st, j)) for h, name, j in bad]
    # the IPv4 spellings reach the allowed port (localhost and the mapped
    # form depend on the host's IPv6: refused or reached, never elsewhere)
    for h, j in zip(spellings[:5], good_jobs):
        assert j["status"] == "succeeded", (h, j)
    for h, name, j in bad_jobs:
        assert j["status"] == "failed" and j["last_error"].startswith("target refused"), (h, name, j)
        assert j["last_http_status"] is None and j["attempts"] == 1, (h, name, j)
    assert other.accepted == 0


@test
def credentials_in_the_url_are_refused():
    # Issue 10, finding 9: user:pw@ in a webhook URL was sent as Basic
    # auth, around the header allow-list. rtw-webhookd refuses it (the
    # URL may come from elsewhere than rtw-fcgi, which answers 400).
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        jid = insert_job(st, "http://user:pw@127.0.0.1:%d/ok/userinfo" % tg.port)
        j = wait_final(st, jid)
    assert j["status"] == "failed" and j["last_error"] == "target refused: url carries credentials", j
    assert tg.hits_for("/ok/userinfo") == []


@test
def signature_v2_cannot_be_replayed():
    # Issue 10, finding 5: a GET/DELETE delivery signed only "t.", so a
    # signature captured on one's own server was valid for any receiver.
    # v2 covers delivery id, method and URL too.
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)):
        a = insert_job(st, tg.url("/ok/sig-a"), method="GET")
        b = insert_job(st, tg.url("/ok/sig-b"), method="DELETE")
        c = insert_job(st, tg.url("/ok/sig-a"), method="GET")
        for jid in (a, b, c):
            assert wait_final(st, jid)["status"] == "succeeded"
    by_delivery = {h[2]["X-RTW-Delivery"]: h[2] for h in tg.hits_for("/ok/sig-")}
    ha, hb, hc = by_delivery[str(a)], by_delivery[str(b)], by_delivery[str(c)]
    secret = st.webhook_secret
    sa = ha["X-RTW-Signature"]
    assert "v1=" not in sa and signature_ok(secret, sa, str(a), "GET", tg.url("/ok/sig-a"), b"")
    assert signature_ok(secret, hb["X-RTW-Signature"], str(b), "DELETE", tg.url("/ok/sig-b"), b"")
    # a's signature, replayed: for another URL, method or delivery it fails
    assert not signature_ok(secret, sa, str(a), "GET", tg.url("/ok/sig-b"), b"")
    assert not signature_ok(secret, sa, str(a), "DELETE", tg.url("/ok/sig-a"), b"")
    assert not signature_ok(secret, sa, str(c), "GET", tg.url("/ok/sig-a"), b"")
    assert not signature_ok(secret, sa, str(b), "DELETE", tg.url("/ok/sig-b"), b"")
    assert signature_ok(secret, hc["X-RTW-Signature"], str(c), "GET", tg.url("/ok/sig-a"), b"")


@test
def webhookd_refuses_anonymous_and_widgets_without_hosts():
    # Issue 10, finding 5, in rtw-webhookd (defaults on): a job of an
    # anonymous identity, or of a widget without a host list, is refused
    # without a call, whoever wrote the row.
    st, tg = setup()
    listed = st.add_widget("listed-whk", "--webhook-hosts", "127.0.0.1")
    env = dict(FAST, RTW_WEBHOOK_ALLOW_HOSTS=ALLOW["RTW_WEBHOOK_ALLOW_HOSTS"])
    with Worker(st, env):
        anon = insert_job(st, tg.url("/ok/anon-job"), author="anon-0123456789abcdef", widget_key=listed)
        bare = insert_job(st, tg.url("/ok/bare-widget"))
        fine = insert_job(st, tg.url("/ok/listed-widget"), widget_key=listed)
        ja, jb, jf = wait_final(st, anon), wait_final(st, bare), wait_final(st, fine)
    assert ja["status"] == "failed" and ja["last_error"] == "target refused: anonymous requester", ja
    assert jb["status"] == "failed" and jb["last_error"] == "target refused: the widget has no webhook hosts", jb
    assert jf["status"] == "succeeded", jf
    assert tg.hits_for("/ok/anon-job") == [] and tg.hits_for("/ok/bare-widget") == []


# ---- at POST (nginx, rtw-fcgi) ---------------------------------------------------

FRONT = {}
QUEUED_CAP = 3


def front(st):
    """rtw-fcgi, rtw-sse and nginx on the shared stack, started once, with
    the deployment defaults but a small per-author queued cap."""
    if not FRONT:
        st.start_fcgi(env={"RTW_WEBHOOK_AUTHOR_MAX_QUEUED": str(QUEUED_CAP)})
        st.start_sse()
        st.start_nginx()
        FRONT["listed"] = st.add_widget("listed-post", "--webhook-hosts", "127.0.0.1,*.hooks.test")
    return FRONT


def post_webhook(st, message, token, widget_key):
    return rtwtest.request(st.http_port, "POST", "/v1/streams/s1/messages",
                           {"type": "webhook", "widget_key": widget_key, "message": message}, token=token)


@test
def post_refuses_hostless_and_credential_urls():
    # Issue 10, findings 1 and 9: a URL without a host, or with user:pw@,
    # is 400 invalid_field at POST and nothing is queued.
    st, tg = setup()
    f = front(st)
    tok = st.token("user-post")
    before = st.pg.query("SELECT count(*) FROM rtw_webhook_jobs")[0][0]
    for url in ("http:///x", "http://:80/x", "http://[]/x", "http://user:pw@127.0.0.1/x", "http://u@127.0.0.1/x",
                "https://a:b@hooks.test@127.0.0.1/"):
        for message in (url, {"url": url}):
            r = post_webhook(st, message, tok, f["listed"])
            assert r.status == 400 and r.json["error"]["code"] == "invalid_field", (url, r)
    assert st.pg.query("SELECT count(*) FROM rtw_webhook_jobs")[0][0] == before


@test
def post_refuses_anonymous_and_widgets_without_hosts():
    # Issue 10, finding 5: by default an anonymous viewer (the identity
    # rtw-sse mints) gets 403 forbidden, and a widget without a host list
    # 403 webhook_target_refused; a named user on a listed widget is queued.
    st, tg = setup()
    f = front(st)
    c = rtwtest.SSEClient(st.sse_port, "/v1/streams/s1/events")
    init = c.next_event(10)["json"]
    c.close()
    anon = init["message"]["token"]
    assert init["author_id"].startswith("anon-"), init
    url = tg.url("/ok/never")
    r = post_webhook(st, url, anon, f["listed"])
    assert r.status == 403 and r.json["error"]["code"] == "forbidden", r
    r = post_webhook(st, url, st.token("user-bare"), st.widget_key)
    assert r.status == 403 and r.json["error"]["code"] == "webhook_target_refused", r
    r = post_webhook(st, "http://a.hooks.test/x", st.token("user-listed"), f["listed"])
    assert r.status == 202, r
    st.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = %s", (r.json["message"]["job_id"],))


@test
def post_over_the_queued_cap_is_429():
    # Issue 10, finding 6: an author's queued jobs are capped at POST
    # (webhook.author_max_queued): over it, 429 rate_limited with
    # Retry-After; another author is not affected.
    st, tg = setup()
    f = front(st)
    tok = st.token("user-flood")
    ids = []
    for i in range(QUEUED_CAP):
        r = post_webhook(st, "http://a.hooks.test/q%d" % i, tok, f["listed"])
        assert r.status == 202, r
        ids.append(r.json["message"]["job_id"])
    r = post_webhook(st, "http://a.hooks.test/over", tok, f["listed"])
    assert r.status == 429 and r.json["error"]["code"] == "rate_limited", r
    assert int(r.header("Retry-After")) >= 1, r
    r = post_webhook(st, "http://a.hooks.test/other", st.token("user-calm"), f["listed"])
    assert r.status == 202, r
    ids.append(r.json["message"]["job_id"])
    st.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = ANY(%s::bigint[])", ([int(i) for i in ids],))


# ---- fair share ------------------------------------------------------------------

@test
def tarpit_widget_does_not_starve_another():
    # Issue 10, finding 6: one FIFO let a tarpit target fed by one widget
    # hold every slot, so another widget's webhook waited for the tarpit's
    # timeouts. With a per-widget running cap below the worker's slots,
    # the other widget's job is claimed while the tarpit's first calls
    # still run: it starts before any tarpit call has ended, that is
    # within one call timeout (an order of events, not a time measured).
    st, tg = setup()
    tarpit = st.add_widget("tarpit", "--webhook-hosts", "127.0.0.1")
    calm = st.add_widget("calm", "--webhook-hosts", "127.0.0.1")
    env = dict(ALLOW, RTW_WEBHOOK_CONCURRENCY="4", RTW_WEBHOOK_WIDGET_MAX_RUNNING="2",
               RTW_WEBHOOK_AUTHOR_MAX_RUNNING="0", RTW_WEBHOOK_TIMEOUT_MS="4000", RTW_WEBHOOK_MAX_ATTEMPTS="1",
               **FAST)
    with Worker(st, env):
        slow = [insert_job(st, tg.url("/tarpit/%d" % i), widget_key=tarpit, author="user-tar%d" % i)
                for i in range(8)]
        rtwtest.wait_for(lambda: len(tg.hits_for("/tarpit/")) >= 2, 10, "the tarpit's first calls")
        fast = insert_job(st, tg.url("/ok/calm"), widget_key=calm, author="user-calm")
        jf = wait_final(st, fast)
        began = st.pg.query("SELECT started_at FROM rtw_webhook_jobs WHERE id = %s", (fast,))[0][0]
        first_end = st.pg.query("SELECT min(finished_at) FROM rtw_webhook_jobs WHERE id = ANY(%s)", (slow,))[0][0]
        st.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = ANY(%s) AND status = 'queued'", (slow,))
    assert jf["status"] == "succeeded", jf
    # no tarpit call had ended (timed out) when the calm widget's call began
    assert first_end is None or began < first_end, (began, first_end)
    st.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = ANY(%s)", (slow,))


# ---- workers, leases, shutdown -------------------------------------------------

@test
def two_workers_never_run_a_job_twice():
    st, tg = setup()
    env = dict(ALLOW, RTW_WEBHOOK_CONCURRENCY="4", **FAST)
    with Worker(st, env, name="whk-a"), Worker(st, env, name="whk-b"):
        ids = [insert_job(st, tg.url("/concurrent/%d/" % i)) for i in range(24)]
        jobs = [wait_final(st, i, timeout=30) for i in ids]
    for i, j in zip(ids, jobs):
        assert j["status"] == "succeeded" and j["attempts"] == 1, (i, j)
        assert tg.max_active[str(i)] == 1
        assert len(tg.hits_for("/concurrent/%d/" % ids.index(i))) == 1
    logs = st.daemons["whk-a"].log_text() + st.daemons["whk-b"].log_text()
    assert logs.count("succeeded (HTTP 200") >= 24


@test
def crashed_worker_job_is_retried_after_lease():
    st, tg = setup()
    env = dict(ALLOW, RTW_WEBHOOK_LEASE_S="2", RTW_WEBHOOK_TIMEOUT_MS="30000", **FAST)
    a = st.start_webhookd(env=env, name="whk-crash")
    jid = insert_job(st, tg.url("/first-hangs/a"))
    rtwtest.wait_for(lambda: tg.hits_for("/first-hangs/a"), 10, "first hit")
    a.kill()
    assert job(st, jid)["status"] == "running"
    with Worker(st, env, name="whk-rescue"):
        j = wait_final(st, jid, timeout=30)
    assert j["status"] == "succeeded" and j["attempts"] == 2, j
    assert len(tg.hits_for("/first-hangs/a")) == 2
    m = result_message(st, jid)
    assert m["to_user_id"] == "user-7" and m["message"]["body"] == {"second": True}, m


@test
def sigterm_releases_calls_in_flight():
    st, tg = setup()
    env = dict(ALLOW, RTW_WEBHOOK_TIMEOUT_MS="60000", **FAST)
    d = st.start_webhookd(env=env, name="whk-term")
    jid = insert_job(st, tg.url("/sleep/30/term"))
    rtwtest.wait_for(lambda: tg.hits_for("/sleep/30/term"), 10, "hit")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0
    j = job(st, jid)
    assert j["status"] == "queued" and j["attempts"] == 0 and j["lease_until"] is None, j
    assert "released at shutdown" in d.log_text()
    st.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = %s", (jid,))


@test
def healthz_and_metrics():
    st, tg = setup()
    with Worker(st, dict(ALLOW, **FAST)) as d:
        jid = insert_job(st, tg.url("/ok/metrics"))
        wait_final(st, jid)
        time.sleep(0.2)  # the counter moves when the worker reads its commit's answer
        r = rtwtest.request(st.webhookd_port, "GET", "/healthz")
        assert r.status == 200 and r.json == {"status": "ok", "service": "rtw-webhookd"}, r
        r = rtwtest.request(st.webhookd_port, "HEAD", "/metrics")
        assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) > 0, r
        r = rtwtest.request(st.webhookd_port, "GET", "/metrics")
        assert r.status == 200, r
        text = r.body.decode()
        assert 'rtw_webhookd_jobs_total{outcome="succeeded"} 1' in text, text
        # the one call, in the call-duration histogram
        assert "rtw_webhookd_call_duration_seconds_count 1\n" in text, text
        assert 'rtw_webhookd_call_duration_seconds_bucket{le="+Inf"} 1\n' in text, text
        for name in ('outcome="failed"', 'outcome="retried"', 'outcome="refused"', "rtw_webhookd_in_flight",
                     "rtw_webhookd_claim_lag_seconds"):
            assert name in text, text
        assert rtwtest.request(st.webhookd_port, "GET", "/nope").status == 404
        assert rtwtest.request(st.webhookd_port, "POST", "/healthz", body="x").status == 405
        # PostgreSQL down: 503, then back to 200 after it returns
        st.pg.stop()
        rtwtest.wait_for(lambda: rtwtest.request(st.webhookd_port, "GET", "/healthz").status == 503, 15, "503")
        st.pg.start()
        rtwtest.wait_for(lambda: rtwtest.request(st.webhookd_port, "GET", "/healthz").status == 200, 15, "200")
        jid = insert_job(st, tg.url("/ok/after-restart"))
        assert wait_final(st, jid)["status"] == "succeeded"
    assert "secret" not in d.log_text().lower() or st.webhook_secret not in d.log_text()


@test
def expired_leases_are_recovered_or_failed():
    st, tg = setup()
    # a job a dead worker held, attempts left: queued again and delivered
    a = insert_job(st, tg.url("/ok/lease-a"))
    b = insert_job(st, tg.url("/ok/lease-b"))
    st.pg.query("UPDATE rtw_webhook_jobs SET status = 'running', leased_by = 'dead:1:x', attempts = 1,"
                " lease_until = now() - interval '1 second' WHERE id = %s", (a,))
    # attempts used up: failed with a result message, never called
    st.pg.query("UPDATE rtw_webhook_jobs SET status = 'running', leased_by = 'dead:1:x', attempts = 2,"
                " lease_until = now() - interval '1 second' WHERE id = %s", (b,))
    with Worker(st, dict(ALLOW, RTW_WEBHOOK_MAX_ATTEMPTS="2", **FAST)):
        ja, jb = wait_final(st, a), wait_final(st, b)
    assert ja["status"] == "succeeded" and ja["attempts"] == 2, ja
    assert jb["status"] == "failed" and jb["last_error"] == "lease expired" and jb["attempts"] == 2, jb
    assert tg.hits_for("/ok/lease-b") == []
    m = result_message(st, b)
    assert m["to_user_id"] == "user-7" and m["message"]["status"] == "failed", m
    assert m["message"]["error"] == "lease expired" and m["message"]["job_id"] == str(b), m


@test
def retention_deletes_old_rows_only():
    st, tg = setup()
    old = insert_job(st, tg.url("/ok/old"))
    new = insert_job(st, tg.url("/ok/new"))
    st.pg.query("UPDATE rtw_webhook_jobs SET status = 'succeeded', finished_at = now() - interval '3 days'"
                " WHERE id = %s", (old,))
    st.pg.query("UPDATE rtw_webhook_jobs SET status = 'failed', finished_at = now() - interval '1 hour'"
                " WHERE id = %s", (new,))
    old_msg = st.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, created_at)"
                          " VALUES ('s1', 'broadcast', %s, 'a', '{}', now() - interval '10 days') RETURNING id",
                          (st.widget_key,))[0][0]
    new_msg = st.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)"
                          " VALUES ('s1', 'broadcast', %s, 'a', '{}') RETURNING id", (st.widget_key,))[0][0]
    # Idempotency-Key records are kept for retention.idempotency_hours
    # (issue: the table had no retention and grew with every keyed POST)
    for key, age in (("old-key", "3 hours"), ("new-key", "10 minutes")):
        st.pg.query("INSERT INTO rtw_idempotency (stream_id, author_id, key, request_hash, status, response,"
                    " created_at) VALUES ('s1', 'a', %s, '\\x00', 201, '{}', now() - %s::interval)", (key, age))
    with Worker(st, dict(ALLOW, RTW_RETENTION_JOBS_DAYS="2", RTW_RETENTION_MESSAGES_DAYS="5",
                         RTW_RETENTION_IDEMPOTENCY_HOURS="2", **FAST)):
        rtwtest.wait_for(lambda: not st.pg.query("SELECT 1 FROM rtw_webhook_jobs WHERE id = %s", (old,)), 10,
                         "old job deleted")
        rtwtest.wait_for(lambda: not st.pg.query("SELECT 1 FROM rtw_messages WHERE id = %s", (old_msg,)), 10,
                         "old message deleted")
        rtwtest.wait_for(lambda: not st.pg.query("SELECT 1 FROM rtw_idempotency WHERE key = 'old-key'"), 10,
                         "old idempotency record deleted")
    assert st.pg.query("SELECT 1 FROM rtw_webhook_jobs WHERE id = %s", (new,))
    assert st.pg.query("SELECT 1 FROM rtw_messages WHERE id = %s", (new_msg,))
    assert st.pg.query("SELECT 1 FROM rtw_idempotency WHERE key = 'new-key'")


if __name__ == "__main__":
    rtwtest.main()
