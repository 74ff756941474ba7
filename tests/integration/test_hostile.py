#!/usr/bin/python3
"""test_hostile: a table of hostile inputs sent through the real stack, behind
nginx and behind Apache: oversized, truncated, deeply nested, invalid UTF-8,
NUL bytes, huge numbers, duplicate keys, control characters in every id, SQL
metacharacters in every string field, path traversal and encoded slashes in
stream ids, oversized heads. Each row has its expected status and error
code, the answer must be JSON whichever server made it, and afterwards
PostgreSQL holds exactly the messages that were answered 201, byte for
byte, and nothing else."""
import http.client
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
S.start_sse()
FRONTS = {"nginx": S.start_nginx(), "apache": S.start_apache()}
TOKEN = S.token("alice")
K = S.widget_key
SQLI = "'; DROP TABLE rtw_messages; --"


def bc(**kw):
    m = {"type": "broadcast", "widget_key": K, "timestamp": 1.0, "message": "x"}
    m.update(kw)
    return m


def raw(s):
    """A body given as raw bytes (not re-encoded by json.dumps)."""
    return s.encode() if isinstance(s, str) else s


# (name, path suffix after /v1/streams/, body, extra headers, status, error code or None)
ROWS = [
    ("truncated json", "h1/messages", raw('{"type":"broadcast","widget_key":"%s",' % K), {}, 400, "invalid_json"),
    ("empty body", "h1/messages", raw(""), {}, 400, "invalid_json"),
    ("array body", "h1/messages", raw("[]"), {}, 400, "invalid_json"),
    ("deeply nested", "h1/messages",
     raw('{"type":"broadcast","widget_key":"%s","timestamp":1,"message":%s%s}' % (K, "[" * 5000, "]" * 5000)),
     {}, 400, "invalid_json"),
    ("nested within limits", "h1/messages",
     raw('{"type":"broadcast","widget_key":"%s","timestamp":1,"message":%s1%s}' % (K, "[" * 100, "]" * 100)),
     {}, 201, None),
    ("invalid utf-8", "h1/messages", b'{"type":"broadcast","widget_key":"' + K.encode() +
     b'","timestamp":1,"message":"\xff\xfe"}', {}, 400, "invalid_json"),
    ("overlong utf-8 slash", "h1/messages", b'{"type":"broadcast","widget_key":"' + K.encode() +
     b'","timestamp":1,"message":"\xc0\xaf"}', {}, 400, "invalid_json"),
    ("raw NUL", "h1/messages", b'{"type":"broadcast","widget_key":"' + K.encode() +
     b'","timestamp":1,"message":"a\x00b"}', {}, 400, "invalid_json"),
    # valid JSON, refused as a value
    ("escaped NUL", "h1/messages", raw('{"type":"broadcast","widget_key":"%s","timestamp":1,"message":"a\\u0000b"}' % K),
     {}, 400, "invalid_field"),
    ("lone surrogate", "h1/messages",
     raw('{"type":"broadcast","widget_key":"%s","timestamp":1,"message":"\\ud800"}' % K), {}, 400, "invalid_json"),
    ("huge timestamp", "h1/messages", raw('{"type":"broadcast","widget_key":"%s","timestamp":1e400,"message":1}' % K),
     {}, 400, "invalid_field"),
    ("negative timestamp", "h1/messages", bc(timestamp=-1), {}, 400, "invalid_field"),
    ("huge integer payload", "h1/messages",
     raw('{"type":"broadcast","widget_key":"%s","timestamp":1,"message":%s}' % (K, "9" * 400)), {}, 400, None),
    ("duplicate keys", "h1/messages",
     raw('{"type":"broadcast","type":"private","widget_key":"%s","timestamp":1,"message":1}' % K), {}, 400,
     "invalid_json"),
    ("control char in author_id", "h1/messages", bc(author_id="al\u0001ice"), {}, 400, "invalid_field"),
    ("newline in author_id", "h1/messages", bc(author_id="alice\nadmin"), {}, 400, "invalid_field"),
    ("control char in to_user_id", "h1/messages",
     bc(type="private", to_user_id="b\u0007ob"), {}, 400, "invalid_field"),
    ("control char in stream_id field", "h1/messages", bc(stream_id="h1\u0000"), {}, 400, "invalid_field"),
    ("control char in widget_key", "h1/messages", bc(widget_key=K[:-1] + "\u0001"), {}, 400, "invalid_field"),
    ("control char in stream path", "h%01x/messages", bc(), {}, 400, "invalid_field"),
    ("quote in stream path", "h%27x/messages", bc(), {}, 400, "invalid_field"),
    ("SQL in message", "h1/messages", bc(message=SQLI), {}, 201, None),
    ("SQL in message object", "h1/messages", bc(message={SQLI: SQLI}), {}, 201, None),
    # ids are 1-128 printable ASCII without spaces, quotes or backslashes
    ("SQL in to_user_id", "h1/messages", bc(type="private", to_user_id="bob' OR '1'='1"), {}, 400,
     "invalid_field"),
    ("SQL punctuation in to_user_id", "h1/messages", bc(type="private", to_user_id="bob;--/*"), {}, 201, None),
    ("SQL in author_id", "h1/messages", bc(author_id="alice' --"), {}, 400, "invalid_field"),
    ("SQL punctuation in author_id", "h1/messages", bc(author_id="alice;--"), {}, 403, "author_mismatch"),
    ("SQL in widget_key", "h1/messages", bc(widget_key=SQLI), {}, 400, "invalid_field"),
    ("SQL in type", "h1/messages", bc(type=SQLI), {}, 400, "unknown_type"),
    ("SQL in Idempotency-Key", "h1/messages", bc(message="idem"), {"Idempotency-Key": SQLI}, 201, None),
    ("non-UTF-8 Idempotency-Key", "h1/messages", bc(message="idem2"), {"Idempotency-Key": b"k\xff\xfe"}, 400,
     "invalid_field"),
    ("control char Idempotency-Key", "h1/messages", bc(message="idem3"), {"Idempotency-Key": "k\x01"}, 400,
     "invalid_field"),
    ("over-long Idempotency-Key", "h1/messages", bc(message="idem4"), {"Idempotency-Key": "k" * 129}, 400,
     "invalid_field"),
    ("SQL in history since_id", "h1/messages?widget_key=%s&since_id=1%%27%%20OR%%201=1" % K, None, {}, 400,
     "invalid_field"),
    ("SQL in history limit", "h1/messages?widget_key=%s&limit=1;DROP" % K, None, {}, 400, "invalid_field"),
    ("malformed escape in query", "h1/messages?widget_key=%s&limit=%%zz" % K, None, {}, 400, "invalid_field"),
    # nginx decodes %2F and routes the path it makes; Apache passes it on
    # undecoded (AllowEncodedSlashes NoDecode): either way a JSON refusal.
    # nginx makes /v1/messages of the dot-dot one: backend publishing, which
    # refuses this (not a service) token with 403
    ("encoded slash stream", "bad%2Fid/messages", bc(), {}, (400, 404), None),
    ("dot-dot stream", "..%2F..%2Fv1/messages", bc(), {}, (400, 403, 404), None),
    ("over-long stream id", "%s/messages" % ("s" * 129), bc(), {}, 400, "invalid_field"),
    ("oversized body", "h1/messages", bc(message="x" * (70 * 1024)), {}, 413, "payload_too_large"),
    ("wrong content type", "h1/messages", bc(), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
]


def send(port, method, path, body, headers):
    """One request on a raw socket, so that header bytes are sent as given."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    h = {"Host": "127.0.0.1", "Authorization": "Bearer " + TOKEN, "Connection": "close"}
    if body is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers)
    head = ("%s %s HTTP/1.1\r\n" % (method, path)).encode()
    for k, v in h.items():
        head += k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        s.sendall(head + b"\r\n" + (body or b""))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    r = http.client.HTTPResponse.__new__(http.client.HTTPResponse)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            size = int(n.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        rest = out
    del r
    return status, hdrs, rest


STORED = []  # (front, row name, stored message) of every 201


@test
def hostile_table_through_nginx_and_apache():
    problems = []
    for front, port in FRONTS.items():
        for name, suffix, body, headers, want_status, want_code in ROWS:
            method = "POST" if body is not None else "GET"
            if "Idempotency-Key" in headers:  # one key per front: the same key with another body is a 409
                v = headers["Idempotency-Key"]
                headers = dict(headers, **{"Idempotency-Key": v + front.encode() if isinstance(v, bytes)
                                           else v + front})
            try:
                status, hdrs, rbody = send(port, method, "/v1/streams/" + suffix, body, headers)
            except (OSError, ValueError, IndexError) as e:
                problems.append("%s / %s: no answer (%s)" % (front, name, e))
                continue
            ctype = hdrs.get("content-type", "")
            if status == 201 and ctype.startswith("application/json"):
                STORED.append((front, name, json.loads(rbody)))
            if status not in (want_status if isinstance(want_status, tuple) else (want_status,)):
                problems.append("%s / %s: status %d, expected %s: %r" % (front, name, status, want_status,
                                                                          rbody[:160]))
                continue
            if not ctype.startswith("application/json"):
                problems.append("%s / %s: %d answered as %r, not JSON: %r" % (front, name, status, ctype,
                                                                               rbody[:160]))
                continue
            try:
                doc = json.loads(rbody)
            except ValueError:
                problems.append("%s / %s: body is not JSON: %r" % (front, name, rbody[:160]))
                continue
            if status >= 400:
                err = doc.get("error", {})
                if want_code and err.get("code") != want_code:
                    problems.append("%s / %s: code %r, expected %r" % (front, name, err.get("code"), want_code))
                if not err.get("message"):
                    problems.append("%s / %s: error without message" % (front, name))
    assert not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems))


@test
def oversized_head_is_refused_with_json():
    for front, port in FRONTS.items():
        status, hdrs, rbody = send(port, "GET", "/v1/streams/h1/messages?widget_key=" + K, None,
                                   {"X-Padding": "p" * 20000})
        assert status in (400, 431), (front, status, rbody[:200])
        assert hdrs.get("content-type", "").startswith("application/json"), (front, hdrs, rbody[:200])
        json.loads(rbody)


@test
def postgres_holds_exactly_the_acknowledged_messages():
    rows = S.pg.query("SELECT id::text, stream_id, author_id, to_user_id, message::text, type FROM rtw_messages")
    by_id = {r[0]: r for r in rows}
    want = {doc["id"]: doc for _, _, doc in STORED}
    assert set(by_id) == set(want), ("stored ids differ", sorted(by_id), sorted(want))
    for mid, doc in want.items():
        _, stream, author, to_user, message, typ = by_id[mid]
        assert (stream, author, to_user, typ) == (doc["stream_id"], doc["author_id"], doc.get("to_user_id"),
                                                  doc["type"]), (by_id[mid], doc)
        assert json.loads(message) == doc["message"], (message, doc["message"])
    # the SQL text arrived as data, and every table is still there
    assert any(json.loads(r[4]) == SQLI for r in rows)
    for t in ("rtw_messages", "rtw_idempotency", "rtw_webhook_jobs", "rtw_widgets"):
        S.pg.query("SELECT 1 FROM %s LIMIT 1" % t)


if __name__ == "__main__":
    rtwtest.main()
