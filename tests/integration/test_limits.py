"""test_limits: per client address limits through nginx, the real path.

Every test client speaks from its own loopback address (127.0.0.N: Linux
routes the whole 127/8 to lo), so nginx reports a different client to
rtw-sse and rtw-fcgi in X-Forwarded-For, and the daemons, which trust
loopback as their proxy, count each address on its own. Covers: one
address cannot hold more than sse.max_per_ip streams (another address
can); anonymous identities minted per address are limited; after the
per-author 429, fresh anonymous identities do not get around the
per-address POST limit (issue 10's attack); one identity spreading its
POSTs over many streams and addresses meets the per-author limit over all
streams; X-Forwarded-For from a peer
that is not a trusted proxy is ignored (rtw-sse directly), and a client's
own X-Forwarded-For never crosses nginx; nginx's own limit_req refusal is
the contract's JSON 429.
"""
import http.client
import json
import math
import os
import socket
import time

import rtwtest
from rtwtest import request, test, wait_for

MAX_PER_IP = 3
ANON_PER_MIN = 4
AUTHOR_BURST = 3
ADDR_BURST = 8
USER_BURST = 6
S = rtwtest.Stack()
S.nginx_req_rate = "100000r/s"
S.start_fcgi(env={"RTW_FCGI_RATE_LIMIT_PER_S": "1", "RTW_FCGI_RATE_LIMIT_BURST": str(AUTHOR_BURST),
                  "RTW_FCGI_RATE_LIMIT_PER_IP_PER_S": "1", "RTW_FCGI_RATE_LIMIT_PER_IP_BURST": str(ADDR_BURST),
                  "RTW_FCGI_RATE_LIMIT_PER_USER_PER_S": "1", "RTW_FCGI_RATE_LIMIT_PER_USER_BURST": str(USER_BURST)})
S.start_sse(env={"RTW_SSE_MAX_PER_IP": str(MAX_PER_IP), "RTW_SSE_ANON_PER_IP_PER_MIN": str(ANON_PER_MIN)})
HTTP = S.start_nginx()
wait_for(lambda: request(S.sse_port, "GET", "/healthz").status == 200, 20, "rtw-sse healthy")
_n = [0]


def stream():
    _n[0] += 1
    return "lim%d-%d" % (os.getpid(), _n[0])


def address():
    """A loopback address no other test of this file uses."""
    _n[0] += 1
    return "127.0.%d.%d" % (os.getpid() % 200 + 1, _n[0] % 250 + 2)


class Stream:
    """An event-stream request from a given source address; reads the head
    and, for a 200, the init event (through nginx: chunked)."""

    def __init__(self, src, st, port=HTTP, headers=None, query="", at_accept=False):
        """at_accept: the answer is expected at accept, before any request
        (a refusal there closes with the request unread, which would reset
        the connection under the answer): nothing is sent."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(src, 0))
        lines = ["GET /v1/streams/%s/events%s HTTP/1.1" % (st, ("?" + query) if query else ""), "Host: x",
                 "Connection: close"]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        if not at_accept:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.data = b""
        while b"\r\n\r\n" not in self.data:
            d = self.sock.recv(65536)
            if not d:
                break
            self.data += d
        head = self.data.split(b"\r\n\r\n", 1)[0].decode()
        self.status = int(head.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in
                        (l.split(":", 1) for l in head.split("\r\n")[1:])}
        if self.status == 200:
            while b"\ndata: " not in self.body() or not self.body().endswith(b"\n\n"):
                self.data += self.sock.recv(65536)
            line = [l for l in self.body().decode().split("\n") if l.startswith("data: ")][0]
            self.init = json.loads(line[6:])
        else:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                self.data += d
            self.sock.close()

    def body(self):
        """The body read so far, without chunk framing."""
        raw = self.data.split(b"\r\n\r\n", 1)[1]
        if self.headers.get("transfer-encoding") != "chunked":
            return raw
        out = b""
        while True:
            i = raw.find(b"\r\n")
            if i < 0:
                return out
            size = int(raw[:i].split(b";")[0], 16)
            if size == 0 or len(raw) < i + 2 + size:
                return out + raw[i + 2:i + 2 + size]
            out += raw[i + 2:i + 2 + size]
            raw = raw[i + 2 + size + 2:]

    def error(self):
        """(code, Retry-After) of a refusal, whose body is JSON."""
        return json.loads(self.body())["error"]["code"], self.headers.get("retry-after")

    def close(self):
        self.sock.close()


def post(src, st, token, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=15, source_address=(src, 0))
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    h.update(headers or {})
    body = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": {"k": 1}}
    try:
        conn.request("POST", "/v1/streams/%s/messages" % st, json.dumps(body), h)
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), json.loads(r.read())
    finally:
        conn.close()


def held_by_rtw_sse():
    rows = [l for l in request(S.sse_port, "GET", "/metrics").body.decode().split("\n")
            if l.startswith("rtw_sse_subscribers ")]
    return int(float(rows[0].split()[1]))


@test
def one_address_holds_at_most_max_per_ip_streams():
    st, src, other = stream(), address(), address()
    tok = S.token("viewer")
    held = [Stream(src, st, query="access_token=" + tok) for _ in range(MAX_PER_IP)]
    assert all(h.status == 200 for h in held), [h.status for h in held]
    over = Stream(src, st, query="access_token=" + tok)
    assert over.status == 429, over.data
    code, retry = over.error()
    assert code == "rate_limited" and retry and int(retry) >= 1, over.data
    # another address is not affected
    fine = Stream(other, st, query="access_token=" + tok)
    assert fine.status == 200, fine.data
    fine.close()
    # once one closes, the address may open one again
    base = held_by_rtw_sse()
    held.pop().close()
    wait_for(lambda: held_by_rtw_sse() < base, 20, "rtw-sse to see the close")
    again = Stream(src, st, query="access_token=" + tok)
    assert again.status == 200, again.data
    for h in held + [again]:
        h.close()


@test
def anonymous_identities_per_address_are_limited():
    st, src, other = stream(), address(), address()
    ids = set()
    for _ in range(ANON_PER_MIN):
        s = Stream(src, st)
        assert s.status == 200, s.data
        ids.add(s.init["author_id"])
        s.close()
    assert len(ids) == ANON_PER_MIN and all(i.startswith("anon-") for i in ids), ids
    over = Stream(src, st)
    assert over.status == 429, over.data
    code, retry = over.error()
    assert code == "rate_limited" and retry and int(retry) >= 1, over.data
    # a token-bearing subscriber from that address is not minting: fine
    s = Stream(src, st, query="access_token=" + S.token("known"))
    assert s.status == 200 and s.init["author_id"] == "known", s.data
    s.close()
    # nor is another address affected
    s = Stream(other, st)
    assert s.status == 200 and s.init["author_id"].startswith("anon-"), s.data
    s.close()


@test
def fresh_identities_do_not_get_around_the_address_limit():
    """Issue 10: after its first 429, one client posted 210 more with two
    free tokens. Now the address's own bucket stops it."""
    st, src = stream(), address()
    t0 = time.time()
    accepted, by_author, by_address, identities = 0, 0, 0, 0
    while identities < 8 and by_address == 0:
        s = Stream(src, st)
        assert s.status == 200, s.data
        tok = s.init["message"]["token"]
        s.close()
        identities += 1
        for _ in range(AUTHOR_BURST + 2):
            status, retry, body = post(src, st, tok)
            if status == 201:
                accepted += 1
                continue
            assert status == 429 and body["error"]["code"] == "rate_limited" and int(retry) >= 1, body
            if "address" in body["error"]["message"]:
                by_address += 1
            else:
                by_author += 1
            break
    elapsed = time.time() - t0
    assert by_author >= 1, "the per-author limit never answered"
    assert by_address >= 1, "fresh identities got around the address limit (%d accepted)" % accepted
    # the address's burst, plus what its rate (1/s) refilled meanwhile
    assert accepted <= ADDR_BURST + math.ceil(elapsed) + 1, (accepted, elapsed)
    # another address posts at once
    s = Stream(address(), st)
    status, _, body = post(address(), st, s.init["message"]["token"])
    s.close()
    assert status == 201, body


@test
def one_identity_over_many_streams_is_limited():
    """Under the per-stream limit on every stream and the per-address limit
    on every address, one token still has its own bucket over all streams."""
    tok = S.token("spreader-%d" % os.getpid())
    t0 = time.time()
    accepted, refusal = 0, None
    for _ in range(USER_BURST + 10):
        status, retry, body = post(address(), stream(), tok)
        if status == 201:
            accepted += 1
            continue
        assert status == 429 and body["error"]["code"] == "rate_limited" and int(retry) >= 1, body
        refusal = body["error"]["message"]
        break
    elapsed = time.time() - t0
    assert refusal is not None, "one identity wrote %d messages over as many streams" % accepted
    assert "this author;" in refusal, refusal  # not the per-stream or the per-address bucket
    assert USER_BURST <= accepted <= USER_BURST + math.ceil(elapsed) + 1, (accepted, elapsed)
    # another identity, same streams and addresses aside, is not affected
    assert post(address(), stream(), S.token("bystander-%d" % os.getpid()))[0] == 201


@test
def forwarded_for_from_an_untrusted_peer_is_ignored():
    """rtw-sse directly, trusting only 127.0.0.1 as a proxy: a client at
    another address claims a different X-Forwarded-For on each connection
    and is still counted as itself."""
    port = rtwtest.free_port()
    d = S.start_sse(name="rtw-sse-xff", port=port,
                    env={"RTW_SSE_MAX_PER_IP": "2", "RTW_HTTP_TRUSTED_PROXIES": "127.0.0.1"})
    held = []
    try:
        wait_for(lambda: request(port, "GET", "/healthz").status == 200, 20, "rtw-sse-xff healthy")
        st, src, tok = stream(), address(), S.token("x")
        for i in range(2):
            held.append(Stream(src, st, port=port, query="access_token=" + tok,
                               headers={"X-Forwarded-For": "203.0.113.%d" % (i + 1)}))
            assert held[-1].status == 200, held[-1].data
        # refused at accept: the peer is the client, whatever it would claim
        over = Stream(src, st, port=port, at_accept=True)
        assert over.status == 429 and over.error()[0] == "rate_limited", over.data
        # the trusted proxy's X-Forwarded-For is what counts: distinct
        # clients pass, one client is held to its 2
        for i in range(3):
            held.append(Stream("127.0.0.1", st, port=port, query="access_token=" + tok,
                               headers={"X-Forwarded-For": "198.51.100.%d" % (i + 1)}))
            assert held[-1].status == 200, held[-1].data
        held.append(Stream("127.0.0.1", st, port=port, query="access_token=" + tok,
                           headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}))
        assert held[-1].status == 200, held[-1].data
        over = Stream("127.0.0.1", st, port=port, query="access_token=" + tok,
                      headers={"X-Forwarded-For": "198.51.100.1"})
        assert over.status == 429 and over.error()[0] == "rate_limited", over.data
    finally:
        for h in held:
            h.close()
        d.stop()


@test
def client_forwarded_for_does_not_cross_nginx():
    """nginx replaces a client's X-Forwarded-For with the address it saw,
    so claiming many addresses does not split one's POST budget."""
    st, src = stream(), address()
    t0, accepted, refused = time.time(), 0, None
    for i in range(200):
        # each POST a new author and a new claimed address
        status, _, body = post(src, st, S.token("spoof%d" % i), headers={"X-Forwarded-For": "203.0.113.%d" % i})
        if status != 201:
            refused = body
            break
        accepted += 1
    assert refused is not None and "address" in refused["error"]["message"], refused
    assert accepted <= ADDR_BURST + math.ceil(time.time() - t0) + 1, accepted


@test
def apache_appended_forwarded_for_counts_the_real_client():
    """Apache's mod_proxy_http appends the address it saw to the client's
    own X-Forwarded-For: rtw-sse reads the rightmost untrusted hop, so
    claiming a new address on each request does not get past
    sse.max_per_ip. Only Apache (127.0.0.1) is trusted here: the test's
    clients speak from other loopback addresses, which the default list
    would trust as proxies too."""
    a = rtwtest.Stack(extra_env={"RTW_HTTP_TRUSTED_PROXIES": "127.0.0.1", "RTW_SSE_MAX_PER_IP": str(MAX_PER_IP)})
    a.start_fcgi()
    a.start_sse()
    port = a.start_apache()
    wait_for(lambda: request(port, "GET", "/healthz").status == 200, 20, "apache up")
    st, src, tok = stream(), address(), a.token("apache-viewer")
    held = []
    try:
        for i in range(MAX_PER_IP):
            held.append(Stream(src, st, port=port, query="access_token=" + tok,
                               headers={"X-Forwarded-For": "203.0.113.%d" % (i + 1)}))
            assert held[-1].status == 200, held[-1].data
        over = Stream(src, st, port=port, query="access_token=" + tok, headers={"X-Forwarded-For": "203.0.113.99"})
        assert over.status == 429 and over.error()[0] == "rate_limited", over.data
    finally:
        for h in held:
            h.close()
        a.stop_all()


@test
def nginx_limit_req_answers_json_429():
    """nginx's own per-address limit (conf/nginx-rtw.conf, zone rate from
    nginx.conf.in): over its burst, the contract's JSON 429."""
    st = rtwtest.Stack()
    st.nginx_req_rate = "1r/m"
    st.start_fcgi()
    st.start_sse()
    port = st.start_nginx()
    src = address()
    codes = []
    for _ in range(420):  # burst=400 in conf/nginx-rtw.conf
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(src, 0))
        conn.request("GET", "/v1/webhooks/1")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status == 429:
            assert json.loads(body)["error"]["code"] == "rate_limited", body
            assert r.getheader("Retry-After"), r.getheaders()
            codes.append(429)
            break
        assert r.status == 401, (r.status, body)  # rtw-fcgi's own answer: no token
    assert codes == [429]
    st.stop_all()


if __name__ == "__main__":
    rtwtest.main()
