#!/usr/bin/python3
"""test_abuse: what an outsider gets for the refusals nobody reads, through
the real stack. nginx's and Apache's own refusals of a malformed request
(a request line that does not parse, a NUL in the path, Content-Length
twice, a request line over the limit, TRACE, a Transfer-Encoding nginx
does not know) are the contract's JSON with an X-RTW-Request-Id, not the
servers' HTML pages. rtw-sse's refusals at accept (over sse.max_per_ip,
from a peer that is not a trusted proxy) carry a request id of their own,
which the log line names, and a crowd of refusals is logged one line a
second at most. /healthz and /metrics leave no stream-end line. One
identity holds at most sse.max_per_user streams whatever addresses it
comes from (through nginx). A token's sub follows the user id rule. A
history page with timestamp filters walks at most history.max_scan rows.
Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_abuse.py
"""
import json
import math
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test, wait_for  # noqa: E402

MAX_PER_USER = 3
HISTORY_MAX_SCAN = 20
DIRECT_MAX_PER_IP = 2
S = rtwtest.Stack(extra_env={"RTW_LOG_FORMAT": "json"})
S.start_fcgi(env={"RTW_HISTORY_MAX_SCAN": str(HISTORY_MAX_SCAN)})
S.start_sse(env={"RTW_SSE_MAX_PER_USER": str(MAX_PER_USER)})
NGINX = S.start_nginx()
APACHE = S.start_apache()
# rtw-sse exposed directly: no peer is a trusted proxy (192.0.2.1 is a
# documentation address), so 127.0.0.1 is counted at accept
DIRECT = rtwtest.free_port()
S.start_sse(name="rtw-sse-direct", port=DIRECT,
            env={"RTW_SSE_MAX_PER_IP": str(DIRECT_MAX_PER_IP), "RTW_HTTP_TRUSTED_PROXIES": "192.0.2.1"})
TOKEN = S.token("alice")
RID = re.compile(r"^[0-9a-f]{32}$")
_n = [0]


def stream():
    _n[0] += 1
    return "abuse%d-%d" % (os.getpid(), _n[0])


def address():
    """A loopback address no other test of this file uses."""
    _n[0] += 1
    return "127.0.%d.%d" % (os.getpid() % 200 + 1, _n[0] % 250 + 2)


def exchange(port, data, src="127.0.0.1"):
    """Sends data (None: nothing) and reads one answer (a server may keep
    the connection); returns (status, headers with lowercase names, body
    without chunk framing)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(src, 0))
    out = b""

    def done():
        head, sep, body = out.partition(b"\r\n\r\n")
        if not sep:
            return False
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m:
            return len(body) >= int(m.group(1))
        if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
            return body.endswith(b"0\r\n\r\n")
        return False
    try:
        if data is not None:
            s.sendall(data)
        while not done():
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    if headers.get("transfer-encoding") == "chunked":
        plain = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            plain += rest[:n]
            body = rest[n + 2:]
        body = plain
    return int(lines[0].split()[1]), headers, body


def log_lines(daemon):
    out = []
    for ln in S.daemons[daemon].log_text().splitlines():
        if ln.startswith("{"):
            out.append(json.loads(ln))
    return out


# (what, raw request, fronts it is sent to, status)
FRONT_ROWS = [
    ("request line that does not parse", b"GARBAGE\r\n\r\n", ("nginx", "apache"), 400),
    ("NUL in the path", b"GET /v1/streams/a%00b/events HTTP/1.1\r\nHost: x\r\n\r\n", ("nginx",), 400),
    ("NUL in the path", b"GET /v1/streams/a%00b/events HTTP/1.1\r\nHost: x\r\n\r\n", ("apache",), 404),
    ("Content-Length twice",
     b"POST /v1/streams/a/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}xyz",
     ("nginx", "apache"), 400),
    ("request line over the limit", b"GET /v1/streams/a/events?x=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     ("nginx",), 431),
    ("request line over the limit", b"GET /v1/streams/a/events?x=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     ("apache",), 414),
    ("TRACE", b"TRACE /v1/streams/a/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", ("nginx",), 405),
    ("unknown Transfer-Encoding",
     b"POST /v1/streams/a/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     ("nginx",), 400),
]


@test
def fronts_answer_their_own_refusals_in_json():
    ports = {"nginx": NGINX, "apache": APACHE}
    for what, data, fronts, want in FRONT_ROWS:
        for front in fronts:
            status, headers, body = exchange(ports[front], data)
            where = "%s, %s: %d %r %r" % (front, what, status, headers, body[:200])
            assert status == want, where
            assert headers.get("content-type", "").startswith("application/json"), where
            err = json.loads(body)["error"]
            assert err["code"] in ("invalid_field", "not_found", "method_not_allowed"), where
            assert headers.get("x-rtw-request-id"), where


@test
def refusals_at_accept_carry_a_request_id_and_are_logged_sparingly():
    st = stream()
    held = [rtwtest.SSEClient(DIRECT, "/v1/streams/%s/events" % st) for _ in range(DIRECT_MAX_PER_IP)]
    for h in held:
        assert h.status == 200, h.status
    ids = []
    t0 = time.time()
    for _ in range(40):
        # nothing sent: the refusal comes at accept, before the request
        status, headers, body = exchange(DIRECT, None)
        assert status == 429 and json.loads(body)["error"]["code"] == "rate_limited", (status, body)
        assert headers.get("retry-after"), headers
        assert RID.match(headers.get("x-rtw-request-id", "")), headers
        ids.append(headers["x-rtw-request-id"])
    elapsed = time.time() - t0
    assert len(set(ids)) == len(ids), ids

    def refused():
        return [j for j in log_lines("rtw-sse-direct") if j["msg"] == "connection refused"]
    # the first refusal is always logged, with the id its answer carried
    wait_for(lambda: any(j.get("request_id") == ids[0] for j in refused()), 10, "the first refusal's line")
    lines = refused()
    for j in lines:
        assert j["status"] == 429 and j["end"] == "max_per_ip" and j["request_id"] in ids, j
    # one line a second at most, the others counted in the next line
    assert len(lines) <= math.ceil(elapsed) + 1, (len(lines), elapsed)
    assert len(lines) + sum(j["unlogged_before"] for j in lines) <= len(ids), lines
    for h in held:
        h.close()
    # the address's slots are given back once rtw-sse sees the closes
    wait_for(lambda: request(DIRECT, "GET", "/healthz").status == 200, 20, "the held streams to close")


@test
def probes_leave_no_stream_end_line():
    probe_ids = []
    for path in ("/healthz", "/metrics", "/healthz"):
        r = request(DIRECT, "GET", path)
        assert r.status == 200, r
        probe_ids.append(r.header("X-RTW-Request-Id"))
    r = request(DIRECT, "GET", "/nope")
    assert r.status == 404, r
    other = r.header("X-RTW-Request-Id")
    # the 404 is logged, so the probes before it were written if at all
    wait_for(lambda: any(j.get("request_id") == other for j in log_lines("rtw-sse-direct")), 10, "the 404's line")
    logged = [j for j in log_lines("rtw-sse-direct") if j.get("request_id") in probe_ids]
    assert logged == [], logged


@test
def one_identity_holds_at_most_max_per_user_streams():
    st = stream()
    tok = S.token("shared-%d" % _n[0])
    held = []
    for _ in range(MAX_PER_USER):
        c = rtwtest.SSEClient(NGINX, "/v1/streams/%s/events?access_token=%s" % (st, tok))
        assert c.status == 200, c.status
        held.append(c)
    # from another address: the limit is the identity's, not the address's
    status, headers, body = exchange(
        NGINX, ("GET /v1/streams/%s/events?access_token=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" %
                (st, tok)).encode(), src=address())
    assert status == 429, (status, body)
    err = json.loads(body)["error"]
    assert err["code"] == "rate_limited" and "identity" in err["message"], err
    assert headers.get("retry-after"), headers
    # another identity is not affected, on another stream neither
    other = rtwtest.SSEClient(NGINX, "/v1/streams/%s/events?access_token=%s" % (st, S.token("someone-else")))
    assert other.status == 200, other.status
    other.close()
    # a slot given back is usable again
    held.pop().close()

    def again():
        c = rtwtest.SSEClient(NGINX, "/v1/streams/%s/events?access_token=%s" % (stream(), tok))
        if c.status == 200:
            held.append(c)
            return True
        c.close()
        return False
    wait_for(again, 20, "a stream for the identity again")
    for c in held:
        c.close()


@test
def token_sub_follows_the_user_id_rule():
    """A token is signed, but its sub becomes the author_id: it may not be
    one a message's author_id could not be (a newline, a space, a quote)."""
    st = stream()
    for sub in ("eve\nadmin", "eve admin", 'eve"', "\u00e9ve"):
        tok = S.token(sub)
        r = request(NGINX, "POST", "/v1/streams/%s/messages" % st,
                    {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "x"}, token=tok)
        assert r.status == 401 and r.json["error"]["code"] == "unauthorized", (sub, r)
        c = rtwtest.SSEClient(NGINX, "/v1/streams/%s/events?access_token=%s" % (st, tok))
        assert c.status == 401, (sub, c.status)
        c.close()
    assert S.pg.query("SELECT count(*) FROM rtw_messages WHERE stream_id = %s", (st,))[0][0] == 0
    # the same identity, well formed, is fine
    r = request(NGINX, "POST", "/v1/streams/%s/messages" % st,
                {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "x"},
                token=S.token("eve.admin"))
    assert r.status == 201, r


def history_pages(st, query):
    """Every page of a history walk through nginx, following the next ids:
    (the messages' timestamps, the number of pages)."""
    desc = "order=desc" in query
    got, pages, cursor = [], 0, None
    while True:
        q = query + ("&%s=%s" % ("before_id" if desc else "since_id", cursor) if cursor else "")
        r = request(NGINX, "GET", "/v1/streams/%s/messages?widget_key=%s&%s" % (st, S.widget_key, q),
                    token=TOKEN)
        assert r.status == 200, r
        pages += 1
        page = r.json["message"]
        got += [m["timestamp"] for m in page["messages"]]
        cursor = page["next_before_id" if desc else "next_since_id"]
        if cursor is None:
            return got, pages
        assert pages < 100, pages


@test
def history_timestamp_filters_walk_at_most_max_scan_rows():
    """A timestamp range that matches little made a page walk the widget's
    whole history (seconds of PostgreSQL per request on a long stream):
    each page now walks at most history.max_scan broadcasts, and is cut
    there with its next id, so following the ids still finds exactly the
    matching messages, in order, both ways."""
    st = stream()
    batch = [{"type": "broadcast", "stream_id": st, "widget_key": S.widget_key, "timestamp": i, "message": i}
             for i in range(5 * HISTORY_MAX_SCAN // 2)]
    r = request(NGINX, "POST", "/v1/messages", batch, token=rtwtest.mint(S.secret, "backend", service=True))
    assert r.status == 201, r
    wait_for(lambda: history_pages(st, "limit=1000")[0] == list(range(len(batch))), 20, "the batch below the horizon")
    # nothing matches: empty pages, each cut at the cap with its next id
    got, pages = history_pages(st, "from_timestamp=100000")
    assert got == [] and pages == 3, (got, pages)
    # the last few match
    got, pages = history_pages(st, "from_timestamp=%d" % (len(batch) - 5))
    assert got == list(range(len(batch) - 5, len(batch))) and pages == 3, (got, pages)
    # backwards, the first few
    got, pages = history_pages(st, "order=desc&to_timestamp=4")
    assert got == [4, 3, 2, 1, 0] and pages == 3, (got, pages)
    # the walk goes on past the matches: later rows could match as far as
    # a page can tell
    got, pages = history_pages(st, "from_timestamp=1&to_timestamp=3")
    assert got == [1, 2, 3] and pages == 3, (got, pages)


if __name__ == "__main__":
    rtwtest.main()
