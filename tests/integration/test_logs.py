"""test_logs: what the daemons log with log_format = json, through nginx and
Apache. Every line of rtw-fcgi's and rtw-sse's logs is one JSON object with
ts (RFC 3339, ms, UTC), level, daemon, pid and msg; a POST, a history GET
and an error each leave one "request" line with the right fields; an event
stream leaves one "stream end" line per way it can end (the client closed,
its token's exp, an error answer, the daemon's shutdown); the id in an
answer's X-RTW-Request-Id is the one in the daemon's line and in the
front's access log; an id a front did not send is rtw's own; no token or
secret is in any log; log_format = text keeps its shape with the fields as
key=value, and log_requests = false drops the request lines. Also: /v1
itself answers the contract's JSON 404 through both fronts.

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_logs.py
"""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

S = rtwtest.Stack(extra_env={"RTW_LOG_FORMAT": "json"})
S.start_fcgi()
S.start_sse()
NGINX = S.start_nginx()
APACHE = S.start_apache()
TOKEN = S.token("alice")
TOKENS = [TOKEN]
RTW_ID = re.compile(r"^[0-9a-f]{32}$")


def lines(daemon):
    """Every line of the daemon's log, each parsed as JSON (one that is not
    JSON fails the test)."""
    out = []
    for ln in S.daemons[daemon].log_text().splitlines():
        if not ln.strip():
            continue
        if ln.startswith("=") or "Sanitizer" in ln:
            continue  # a sanitizer report, judged by the harness
        j = json.loads(ln)
        assert isinstance(j, dict), ln
        out.append(j)
    return out


def line_with(daemon, rid, msg, timeout=10.0):
    """The daemon's line with msg and request_id rid (waits for it)."""
    found = []

    def there():
        found[:] = [j for j in lines(daemon) if j.get("request_id") == rid and j["msg"] == msg]
        return found
    rtwtest.wait_for(there, timeout, "%s line %s %s" % (daemon, msg, rid))
    assert len(found) == 1, found
    return found[0]


def access_log_has(front, rid):
    path = os.path.join(S.tmp, front, "%s-access.log" % front)

    def there():
        with open(path) as f:
            return rid in f.read()
    rtwtest.wait_for(there, 10, "%s access log to name %s" % (front, rid))


def bc(text):
    return {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1.5, "message": {"text": text}}


def check_common(j, daemon):
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", j["ts"]), j
    assert j["level"] == "info" and j["daemon"] == daemon and isinstance(j["pid"], int), j


@test
def every_line_is_json_with_the_fixed_keys():
    request(NGINX, "GET", "/v1/streams/logs-0/messages", token=TOKEN)
    for d in ("rtw-fcgi", "rtw-sse"):
        ls = lines(d)
        assert ls, d
        for j in ls:
            for k in ("ts", "level", "daemon", "pid", "msg"):
                assert k in j, (d, j)
            assert j["daemon"] == d and j["level"] in ("debug", "info", "warn", "error"), j


@test
def post_history_and_error_lines_share_the_id_with_nginx():
    for front in ("nginx", "apache"):
        port = NGINX if front == "nginx" else APACHE
        stream = "logs-" + front
        r = request(port, "POST", "/v1/streams/%s/messages?note=QUERYMARK" % stream, bc("hi"), token=TOKEN)
        assert r.status == 201, r
        rid = r.header("X-RTW-Request-Id")
        assert rid, r
        j = line_with("rtw-fcgi", rid, "request")
        check_common(j, "rtw-fcgi")
        assert j["method"] == "POST" and j["route"] == "/v1/streams/{id}/messages", j
        assert j["status"] == 201 and j["error"] is None and j["stream"] == stream, j
        assert j["bytes"] == len(r.body) and j["duration_ms"] >= 0 and j["client"] == "127.0.0.1", j
        assert "QUERYMARK" not in S.daemons["rtw-fcgi"].log_text()
        access_log_has(front, rid)

        r = request(port, "GET", "/v1/streams/%s/messages?widget_key=%s" % (stream, S.widget_key), token=TOKEN)
        assert r.status == 200, r
        j = line_with("rtw-fcgi", r.header("X-RTW-Request-Id"), "request")
        assert j["method"] == "GET" and j["status"] == 200 and j["stream"] == stream, j
        assert j["bytes"] == len(r.body) > 0, j
        access_log_has(front, r.header("X-RTW-Request-Id"))

        r = request(port, "POST", "/v1/streams/%s/messages" % stream, bc("no token"))
        assert r.status == 401, r
        j = line_with("rtw-fcgi", r.header("X-RTW-Request-Id"), "request")
        assert j["status"] == 401 and j["error"] == "unauthorized", j


@test
def direct_requests_get_an_id_of_their_own():
    # rtw-fcgi's FastCGI side only hears its front; straight to rtw-sse:
    r = request(S.sse_port, "GET", "/v1/streams/logs-d/events?access_token=x")
    assert r.status == 401 and RTW_ID.match(r.header("X-RTW-Request-Id")), r
    # a valid id from a trusted peer (loopback) is kept, an invalid one is not
    r = request(S.sse_port, "GET", "/v1/streams/logs-d/events?access_token=x", headers={"X-Request-Id": "front-1"})
    assert r.header("X-RTW-Request-Id") == "front-1", r
    j = line_with("rtw-sse", "front-1", "stream end")
    assert j["status"] == 401 and j["end"] == "answered" and j["stream"] == "logs-d", j
    r = request(S.sse_port, "GET", "/v1/streams/logs-d/events?access_token=x", headers={"X-Request-Id": "a\"b"})
    assert RTW_ID.match(r.header("X-RTW-Request-Id")), r


@test
def stream_ends_are_logged_with_their_reason():
    # the client closes (through nginx)
    c = rtwtest.SSEClient(NGINX, "/v1/streams/logs-s/events", headers={"Authorization": "Bearer " + TOKEN})
    assert c.status == 200
    rid = c.headers["x-rtw-request-id"]
    c.next_event()  # init
    r = request(NGINX, "POST", "/v1/streams/logs-s/messages", bc("one"), token=TOKEN)
    assert r.status == 201
    c.next_event()
    c.close()
    j = line_with("rtw-sse", rid, "stream end")
    check_common(j, "rtw-sse")
    assert j["end"] == "client_closed" and j["status"] == 200 and j["user_kind"] == "token", j
    assert j["stream"] == "logs-s" and j["frames"] >= 1 and j["bytes"] > 0 and j["duration_ms"] >= 0, j
    assert j["client"] == "127.0.0.1", j
    access_log_has("nginx", rid)

    # the token's exp (through Apache): the stream ends by itself
    tok = S.token("bob", ttl=2)
    TOKENS.append(tok)
    c = rtwtest.SSEClient(APACHE, "/v1/streams/logs-e/events?access_token=" + tok)
    assert c.status == 200
    rid = c.headers["x-rtw-request-id"]
    j = line_with("rtw-sse", rid, "stream end", timeout=20)
    assert j["end"] == "exp" and j["user_kind"] == "token", j
    c.close()
    access_log_has("apache", rid)

    # an anonymous viewer, then the daemon's shutdown
    c = rtwtest.SSEClient(NGINX, "/v1/streams/logs-z/events")
    assert c.status == 200
    rid = c.headers["x-rtw-request-id"]
    init = c.next_event()
    TOKENS.append(init["json"]["message"]["token"])
    S.daemons["rtw-sse"].stop()
    j = line_with("rtw-sse", rid, "stream end")
    assert j["end"] == "shutdown" and j["user_kind"] == "anonymous", j
    c.close()
    S.start_sse()


@test
def v1_itself_is_a_json_404():
    for port in (NGINX, APACHE):
        for method in ("GET", "POST"):
            r = request(port, method, "/v1", body={} if method == "POST" else None)
            assert r.status == 404, r
            assert r.header("Content-Type").startswith("application/json"), r
            assert r.json["error"]["code"] == "not_found", r
            assert r.header("X-RTW-Request-Id"), r


@test
def text_format_and_requests_off():
    # last but one: the log holds text lines from here on
    for requests in ("false", "true"):
        S.daemons["rtw-fcgi"].stop()
        start = len(S.daemons["rtw-fcgi"].log_text())
        fcgi = S.start_fcgi({"RTW_LOG_FORMAT": "text", "RTW_LOG_REQUESTS": requests})
        r = request(NGINX, "POST", "/v1/streams/logs-t/messages", bc("text"), token=TOKEN)
        assert r.status == 201, r
        rid = r.header("X-RTW-Request-Id")
        if requests == "false":
            fcgi.stop()  # every line it would write is written
            assert rid not in fcgi.log_text()[start:], fcgi.log_text()[start:]
            continue
        line = rtwtest.wait_for(lambda: [ln for ln in fcgi.log_text()[start:].splitlines() if rid in ln], 10, rid)[0]
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC rtw-fcgi\[\d+\] INFO: request ", line), line
        for kv in ("method=POST", "route=/v1/streams/{id}/messages", "status=201", "stream=logs-t",
                   "client=127.0.0.1", "request_id=" + rid):
            assert " " + kv in line, (kv, line)
        assert "error=" not in line, line  # null fields are left out of text lines


@test
def no_secret_in_any_log():
    time.sleep(0.5)  # the fronts' last lines
    texts = [d.log_text() for d in S.daemons.values()]
    for front in ("nginx", "apache"):
        for kind in ("access", "error"):
            p = os.path.join(S.tmp, front, "%s-%s.log" % (front, kind))
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    texts.append(f.read())
    for secret in TOKENS + [S.secret, S.webhook_secret]:
        for t in texts:
            assert secret not in t, secret
    # the signature part alone (a cut token) is not there either
    for tok in TOKENS:
        sig = tok.rsplit(".", 1)[1]
        for t in texts:
            assert sig not in t


if __name__ == "__main__":
    rtwtest.main()
