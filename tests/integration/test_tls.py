#!/usr/bin/python3
"""test_tls: rtw-sse's own TLS port (sse.tls_listen), the hop-free events
path for https pages. A throwaway CA and two server certificates are made
with the `openssl` command. Standard EventSource clients (the `eventsource`
npm package, the CA trusted through NODE_EXTRA_CA_CERTS) get init and
every broadcast over TLS and resume with Last-Event-ID after rtw-sse is
SIGKILLed and restarted; curl --cacert reads /healthz and an event stream;
ALPN picks http/1.1 and TLS 1.2 still works; plain HTTP sent to the TLS
port is closed and counted, and nothing crashes; a handshake that never
completes is closed at sse.header_timeout_ms; sse.tls_max_handshakes bounds
the handshakes in progress (beyond: closed at accept, counted) and frees
its slots as they end; SIGHUP loads a renewed certificate (new connections
see it, a stream opened before keeps flowing) and a broken one is refused
with the old one kept. The daemon log is checked for sanitizer reports."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

rtwtest.need(shutil.which("openssl"), "the openssl command")
S = rtwtest.Stack()
PKI = os.path.join(S.tmp, "pki")
os.makedirs(PKI)
HANDSHAKES = 4
HEAD_TIMEOUT_MS = 5000
FAULT = os.path.join(rtwtest.SRCDIR, "tests", "fault")


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, cwd=PKI, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_cert(name):
    """A P-256 key and a certificate for localhost/127.0.0.1 signed by the
    test CA, CN=name: (cert path, key path)."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
    with open(os.path.join(PKI, name + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")
    return os.path.join(PKI, name + ".pem"), os.path.join(PKI, name + ".key")


openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=rtw test CA")
CA = os.path.join(PKI, "ca.pem")
FIRST = make_cert("first")
SECOND = make_cert("second")
# the files the daemon is pointed at; renewals replace them
CERT = os.path.join(PKI, "live.pem")
KEY = os.path.join(PKI, "live.key")


def install(pair):
    for src, dst in zip(pair, (CERT, KEY)):
        shutil.copy(src, dst + ".new")
        os.rename(dst + ".new", dst)


install(FIRST)
TLS_PORT = rtwtest.free_port()
SSE_ENV = {"RTW_SSE_TLS_LISTEN": "127.0.0.1:%d" % TLS_PORT, "RTW_SSE_TLS_CERT": CERT, "RTW_SSE_TLS_KEY": KEY,
           "RTW_SSE_TLS_MAX_HANDSHAKES": str(HANDSHAKES), "RTW_SSE_HEADER_TIMEOUT_MS": str(HEAD_TIMEOUT_MS),
           "RTW_SSE_OUTBUF_MAX": "16384"}
S.start_sse(SSE_ENV)
rtwtest.wait_streams(S.sse_port)
TOKEN = S.token("alice")
_n = [0]


def stream_name():
    _n[0] += 1
    return "tls%d-%d" % (os.getpid(), _n[0])


def insert(stream, text):
    rows = S.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                      " VALUES (%s, 'broadcast', %s, 'writer', %s, 1.0) RETURNING id::text",
                      (stream, S.widget_key, json.dumps({"text": text})))
    return rows[0][0]


def client_ctx(**kw):
    ctx = ssl.create_default_context(cafile=CA)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(ctx=None):
    return (ctx or client_ctx()).wrap_socket(socket.create_connection(("127.0.0.1", TLS_PORT), timeout=10),
                                             server_hostname="localhost")


def peer_cn(sock):
    subject = dict(x[0] for x in sock.getpeercert()["subject"])
    return subject["commonName"]


def metric(name):
    for line in request(S.sse_port, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def subscribe(stream):
    c = SSEClient(TLS_PORT, "/v1/streams/%s/events?access_token=%s" % (stream, TOKEN), tls=client_ctx(),
                  host="localhost")
    assert c.status == 200, (c.status, c.body_text())
    assert c.next_event()["json"]["type"] == "init"
    return c


def closed_by_server(sock, timeout=15.0):
    """True when the server closes sock (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


@test
def an_eventsource_gets_init_and_broadcasts_and_resumes_after_a_sigkill():
    rtwtest.need(shutil.which("node"), "Node.js")
    if not os.path.isdir(os.path.join(FAULT, "node_modules", "eventsource")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FAULT, check=True, stdout=subprocess.DEVNULL)
    stream = stream_name()
    url = "https://localhost:%d/v1/streams/%s/events?access_token=%s" % (TLS_PORT, stream, TOKEN)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=CA)
    es = subprocess.Popen(["node", os.path.join(FAULT, "es-clients.mjs"), url, "3"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, cwd=FAULT, env=env)

    def report():
        es.stdin.write("report\n")
        es.stdin.flush()
        return json.loads(es.stdout.readline())["clients"]
    try:
        assert es.stdout.readline().strip() == "ready"
        ids = [insert(stream, "before %d" % i) for i in range(3)]
        wait_for(lambda: all(c["ids"] == ids for c in report()), 15, "every client to get them")
        assert all(c["inits"] == 1 and c["errors"] == 0 for c in report()), report()
        S.daemons["rtw-sse"].kill()
        ids += [insert(stream, "while down %d" % i) for i in range(2)]
        S.start_sse(SSE_ENV)
        ids += [insert(stream, "after %d" % i) for i in range(2)]
        wait_for(lambda: all(c["ids"][-1:] == ids[-1:] for c in report()), 30, "every client to resume")
        for c in report():
            # every message exactly once, in order, across the restart
            assert c["ids"] == ids and c["errors"] >= 1 and not c["closed"], c
    finally:
        es.stdin.close()
        es.wait(10)


@test
def a_reader_that_stalls_over_tls_is_caught_up_exactly_once():
    # sse.outbuf_max is 16 KiB here: a stalled reader overflows while TLS
    # records wait to be written again, and is caught up from PostgreSQL
    stream = stream_name()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(20)
    raw.connect(("127.0.0.1", TLS_PORT))
    c = SSEClient.__new__(SSEClient)
    c.sock = client_ctx().wrap_socket(raw, server_hostname="localhost")
    c.buf, c._raw, c.status, c.headers, c.comments, c.retry, c.closed, c.chunked = b"", b"", None, {}, 0, None, \
        False, False
    c.sock.sendall(("GET /v1/streams/%s/events?access_token=%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                    % (stream, TOKEN)).encode())
    c._read_head()
    try:
        assert c.status == 200 and c.next_event()["json"]["type"] == "init"
        # 400 KB a transaction until the socket buffers are full and the
        # output overflows, and one more
        cutoffs = metric("rtw_sse_slow_consumer_cutoffs_total")
        for i in range(100):
            S.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
                       " SELECT %s, 'broadcast', %s, 'writer', json_build_object('n', n, 'pad', repeat('x', 4000)),"
                       " 1.0 FROM generate_series(1, 100) n RETURNING id", (stream, S.widget_key))
            if i > 0 and metric("rtw_sse_slow_consumer_cutoffs_total") > cutoffs:
                break
            time.sleep(0.05)
        assert metric("rtw_sse_slow_consumer_cutoffs_total") > cutoffs, "the stalled reader never overflowed"
        ids = [r[0] for r in S.pg.query("SELECT m.id::text FROM rtw_messages m WHERE m.stream_id = %s"
                                        " ORDER BY m.xid, m.id", (stream,))]
        got = [c.next_event(20)["id"] for _ in ids]
        bad = [i for i in range(len(ids)) if got[i] != ids[i]]
        assert got == ids, (len(got), len(ids), bad[:3], [got[i] for i in bad[:3]], [ids[i] for i in bad[:3]])
    finally:
        c.close()


@test
def curl_with_the_ca_reads_healthz_and_a_stream():
    rtwtest.need(shutil.which("curl"), "curl")
    base = "https://localhost:%d" % TLS_PORT
    resolve = "localhost:%d:127.0.0.1" % TLS_PORT
    r = subprocess.run(["curl", "-sS", "--cacert", CA, "--resolve", resolve, "-o", "/dev/null", "-w",
                        "%{http_code} %{http_version}", base + "/healthz"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "200 1.1", (r.returncode, r.stdout, r.stderr)
    stream = stream_name()
    r = subprocess.run(["curl", "-sS", "-N", "--max-time", "3", "--cacert", CA, "--resolve", resolve,
                        base + "/v1/streams/%s/events?access_token=%s" % (stream, TOKEN)],
                       capture_output=True, text=True)
    assert r.returncode == 28, (r.returncode, r.stderr)  # cut by --max-time, not by an error
    assert '"type":"init"' in r.stdout, r.stdout


@test
def alpn_is_http11_and_tls12_still_works():
    ctx = client_ctx()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1", s.selected_alpn_protocol()
        assert s.version() == "TLSv1.3", s.version()
    with tls_connect(client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)) as s:
        assert s.version() == "TLSv1.2", s.version()
    # a stream over TLS 1.2 too
    stream = stream_name()
    c = SSEClient(TLS_PORT, "/v1/streams/%s/events?access_token=%s" % (stream, TOKEN),
                  tls=client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2), host="localhost")
    try:
        assert c.status == 200 and c.next_event()["json"]["type"] == "init"
        mid = insert(stream, "over 1.2")
        assert c.next_event()["id"] == mid
    finally:
        c.close()


@test
def plain_http_to_the_tls_port_is_closed():
    before = metric("rtw_sse_tls_failed_total")
    s = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_server(s), "plain HTTP was not closed"
    finally:
        s.close()
    wait_for(lambda: metric("rtw_sse_tls_failed_total") == before + 1, 10, "the failure to be counted")
    assert request(S.sse_port, "GET", "/healthz").status == 200
    with tls_connect() as t:
        assert peer_cn(t) in ("first", "second")


@test
def a_handshake_that_never_completes_is_closed_at_the_timeout():
    before = metric("rtw_sse_tls_timeouts_total")
    s = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=10)
    try:
        s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, never finished
        assert closed_by_server(s, HEAD_TIMEOUT_MS / 1000.0 + 15), "the stalled handshake was not closed"
    finally:
        s.close()
    assert metric("rtw_sse_tls_timeouts_total") == before + 1
    assert metric("rtw_sse_tls_handshaking") == 0


@test
def handshakes_in_progress_are_capped():
    refused = metric("rtw_sse_tls_refused_total")
    stalled = [socket.create_connection(("127.0.0.1", TLS_PORT), timeout=10) for _ in range(HANDSHAKES)]
    try:
        wait_for(lambda: metric("rtw_sse_tls_handshaking") == HANDSHAKES, 10, "the stalled handshakes")
        extra = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=10)
        try:
            assert closed_by_server(extra, 10), "a handshake over the cap was not closed"
        finally:
            extra.close()
        assert metric("rtw_sse_tls_refused_total") == refused + 1
        # streams already up are not handshakes: the plain port and /healthz are unaffected
        assert request(S.sse_port, "GET", "/healthz").status == 200
    finally:
        for s in stalled:
            s.close()
    wait_for(lambda: metric("rtw_sse_tls_handshaking") == 0, 10, "the slots to be given back")
    with tls_connect() as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert t.recv(4096).startswith(b"HTTP/1.1 200")


@test
def sighup_loads_a_renewed_certificate_and_streams_keep_flowing():
    stream = stream_name()
    old = subscribe(stream)
    try:
        with tls_connect() as t:
            assert peer_cn(t) == "first"
        reloads = metric("rtw_sse_tls_reloads_total")
        install(SECOND)
        S.daemons["rtw-sse"].send_signal(signal.SIGHUP)
        wait_for(lambda: metric("rtw_sse_tls_reloads_total") == reloads + 1, 10, "the reload")
        with tls_connect() as t:
            assert peer_cn(t) == "second"
        mid = insert(stream, "after the renewal")
        assert old.next_event()["id"] == mid
        assert peer_cn(old.sock) == "first"
    finally:
        old.close()


@test
def a_broken_certificate_at_reload_keeps_the_old_one():
    stream = stream_name()
    old = subscribe(stream)
    try:
        failures = metric("rtw_sse_tls_reload_failures_total")
        with tls_connect() as t:
            current = peer_cn(t)
        # a renewal gone wrong: a certificate that is not PEM, then a key of another certificate
        with open(CERT, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        S.daemons["rtw-sse"].send_signal(signal.SIGHUP)
        wait_for(lambda: metric("rtw_sse_tls_reload_failures_total") == failures + 1, 10, "the failed reload")
        shutil.copy(FIRST[0], CERT)
        shutil.copy(SECOND[1], KEY)
        S.daemons["rtw-sse"].send_signal(signal.SIGHUP)
        wait_for(lambda: metric("rtw_sse_tls_reload_failures_total") == failures + 2, 10, "the mismatch")
        assert "could not load sse.tls_key" in S.daemons["rtw-sse"].log_text()  # key values mismatch
        assert "keeping the certificate loaded before" in S.daemons["rtw-sse"].log_text()
        with tls_connect() as t:
            assert peer_cn(t) == current
        mid = insert(stream, "after the failed reload")
        assert old.next_event()["id"] == mid
    finally:
        old.close()
        install(SECOND)


if __name__ == "__main__":
    rtwtest.main()
