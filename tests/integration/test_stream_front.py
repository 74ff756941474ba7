#!/usr/bin/python3
"""test_stream_front: the events port as a TCP pass-through (nginx's
stream module with `proxy_protocol on`, conf/nginx-stream.conf.in) to
rtw-sse, which reads the PROXY header from the peers in
sse.proxy_protocol_from. Standard EventSource clients (the `eventsource`
npm package) get every broadcast through it; rtw-sse's own CORS, JSON
errors and request ids reach the client; the per-address limit counts
the client a PROXY header (v1 or v2) names, never an X-Forwarded-For the
client wrote; a header that arrives in pieces is read whole; a malformed
one is answered 400 and counted; the same front's plain HTTP (the
http-proxy path, /healthz) still passes; a peer that is not listed is
never believed."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

ORIGIN = "https://page.example"
S = rtwtest.Stack()
S.start_fcgi()
S.start_sse({"RTW_SSE_PROXY_PROTOCOL_FROM": "127.0.0.1", "RTW_SSE_MAX_PER_IP": "3",
             "RTW_HTTP_CORS_ORIGINS": ORIGIN})
# a second rtw-sse that lists no one: a PROXY header is just bytes to it
PLAIN = rtwtest.free_port()
S.start_sse(name="rtw-sse-plain", port=PLAIN)
S.start_nginx(stream=True)
EVENTS = S.events_port
TOKEN = S.token("alice")
STREAM = "pass-1"
PATH = "/v1/streams/%s/events?access_token=%s" % (STREAM, TOKEN)
FAULT = os.path.join(rtwtest.SRCDIR, "tests", "fault")


def post(text):
    r = request(S.http_port, "POST", "/v1/streams/%s/messages" % STREAM, token=TOKEN, body={
        "type": "broadcast", "widget_key": S.widget_key, "timestamp": 1.0, "message": {"text": text}})
    assert r.status == 201, r
    return r.json["id"]


def v1(src, sport=40000, dport=443):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = "2001:db8::ffff" if ":" in src else "192.0.2.1"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst=None, cmd=1, tlv=b""):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    dst = dst or ("2001:db8::ffff" if ":" in src else "192.0.2.1")
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack(
            "!HH", 40000, 443)
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", 40000, 443)
        fam = 0x11
    body = addrs + tlv
    return sig + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


class Raw:
    """One connection that writes its own bytes (a PROXY header, then a
    request head), in pieces when asked; reads the response head."""

    def __init__(self, port, prefix, path=PATH, headers=None, pieces=1):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1", "Accept: text/event-stream"]
        head += ["%s: %s" % kv for kv in (headers or {}).items()]
        data = prefix + ("\r\n".join(head) + "\r\n\r\n").encode()
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if pieces > 1:
                time.sleep(0.01)
        raw = b""
        while b"\r\n\r\n" not in raw:
            d = self.sock.recv(65536)
            if not d:
                break
            raw += d
        head, _, self.rest = raw.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else None
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}

    def body(self):
        data = self.rest
        self.sock.settimeout(5)
        while True:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            data += d
        return data.decode(errors="replace")

    def close(self):
        self.sock.close()


def metric(name, port):
    for line in request(port, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


@test
def eventsource_clients_get_every_broadcast_through_the_pass_through():
    rtwtest.need(rtwtest.shutil.which("node"), "Node.js")
    if not os.path.isdir(os.path.join(FAULT, "node_modules", "eventsource")):
        # a tree without node_modules (a release tarball): the npm ci ./dev test runs
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FAULT, check=True, stdout=subprocess.DEVNULL)
    es = subprocess.Popen(["node", os.path.join(FAULT, "es-clients.mjs"), "http://127.0.0.1:%d%s" % (EVENTS, PATH),
                           "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=FAULT)
    try:
        assert es.stdout.readline().strip() == "ready"
        ids = [post("through the pass-through %d" % i) for i in range(5)]

        def report():
            es.stdin.write("report\n")
            es.stdin.flush()
            return json.loads(es.stdout.readline())["clients"]
        rtwtest.wait_for(lambda: all(c["ids"][-1:] == ids[-1:] for c in report()), 15, "every client to get them")
        for c in report():
            assert c["ids"] == ids and c["inits"] == 1 and not c["closed"] and c["errors"] == 0, c
    finally:
        es.stdin.close()
        es.wait(10)


@test
def rtw_sse_answers_the_client_itself_cors_errors_request_id():
    c = rtwtest.SSEClient(EVENTS, PATH, headers={"Origin": ORIGIN})
    try:
        assert c.status == 200, c.status
        assert c.headers.get("access-control-allow-origin") == ORIGIN, c.headers
        assert len(c.headers.get("x-rtw-request-id", "")) >= 16, c.headers
        assert c.next_event(10)["json"]["type"] == "init"
    finally:
        c.close()
    bad = rtwtest.SSEClient(EVENTS, "/v1/streams/%s/events?access_token=nope" % STREAM, headers={"Origin": ORIGIN})
    try:
        assert bad.status == 401, bad.status
        assert bad.headers.get("content-type", "").startswith("application/json"), bad.headers
        assert bad.headers.get("access-control-allow-origin") == ORIGIN, bad.headers
        assert json.loads(bad.body_text())["error"]["code"] == "unauthorized"
    finally:
        bad.close()


@test
def the_limit_counts_the_client_the_header_names_v1_and_v2():
    for hdr in (v1, v2):
        held = []
        try:
            # the client's own X-Forwarded-For is not believed: it is no proxy
            for i in range(3):
                r = Raw(S.sse_port, hdr("203.0.113.7"), headers={"X-Forwarded-For": "198.51.100.%d" % i})
                assert r.status == 200, (hdr.__name__, i, r.status)
                held.append(r)
            over = Raw(S.sse_port, hdr("203.0.113.7"))
            assert over.status == 429, (hdr.__name__, over.status)
            assert json.loads(over.body())["error"]["code"] == "rate_limited"
            other = Raw(S.sse_port, hdr("203.0.113.8"))
            assert other.status == 200, (hdr.__name__, other.status)
            held.append(other)
        finally:
            for r in held:
                r.close()
        time.sleep(0.3)  # the closes reach rtw-sse before the next round


@test
def ipv6_clients_count_per_64_and_tlvs_are_skipped():
    held = []
    try:
        for i in range(3):
            r = Raw(S.sse_port, v2("2001:db8:1:2::%x" % (i + 1), tlv=b"\x04\x00\x02ok"))
            assert r.status == 200, (i, r.status)
            held.append(r)
        r = Raw(S.sse_port, v1("2001:db8:1:2::99"))
        assert r.status == 429, r.status
    finally:
        for r in held:
            r.close()


@test
def a_header_in_pieces_is_read_whole():
    r = Raw(S.sse_port, v1("203.0.113.20"), headers={"Origin": ORIGIN}, pieces=40)
    try:
        assert r.status == 200, r.status
        assert r.headers.get("access-control-allow-origin") == ORIGIN, r.headers
    finally:
        r.close()
    r = Raw(S.sse_port, v2("203.0.113.21"), pieces=60)
    try:
        assert r.status == 200, r.status
    finally:
        r.close()


@test
def a_malformed_header_is_answered_400_and_counted():
    before = metric("rtw_sse_proxy_header_refused_total", S.sse_port)
    for bad in (b"PROXY TCP4 203.0.113.7 nope 1 2\r\n", b"PROXY TCP4  203.0.113.7 192.0.2.1 1 2\r\n",
                b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n", b"PROXY " + b"x" * 200,
                v2("203.0.113.7")[:12] + b"\x31\x11\x00\x0c" + b"\x00" * 12,
                v2("203.0.113.7")[:14] + b"\x7f\xff"):
        r = Raw(S.sse_port, bad)
        try:
            assert r.status == 400, (bad, r.status)
            assert json.loads(r.body())["error"]["code"] == "invalid_field", bad
        finally:
            r.close()
    assert metric("rtw_sse_proxy_header_refused_total", S.sse_port) == before + 6


@test
def plain_http_from_a_listed_peer_still_passes():
    # the same front's http-proxy path and its /healthz open with a request
    assert request(S.sse_port, "GET", "/healthz").status == 200
    c = rtwtest.SSEClient(S.http_port, PATH)
    try:
        assert c.status == 200 and c.next_event(10)["json"]["type"] == "init"
        i = post("through the http proxy")
        while c.next_event(10).get("id") != i:
            pass
    finally:
        c.close()
    # LOCAL (a proxy's own health check) and UNKNOWN keep the peer
    for hdr in (v2("203.0.113.7", cmd=0), b"PROXY UNKNOWN\r\n"):
        r = Raw(S.sse_port, hdr, path="/healthz")
        try:
            assert r.status == 200, (hdr, r.status)
        finally:
            r.close()


@test
def a_peer_that_is_not_listed_is_never_believed():
    r = Raw(PLAIN, v1("203.0.113.7"))
    try:
        assert r.status == 400, r.status
    finally:
        r.close()


if __name__ == "__main__":
    rtwtest.main()
