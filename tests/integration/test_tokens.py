"""test_tokens: the token rules of contract 1.1 through nginx, the real path.

A token without exp is refused (401) by rtw-fcgi and rtw-sse; an
Authorization header that is not "Bearer <token>" on /events is 401, never
an anonymous identity; an open stream ends at its token's exp, so the client
reconnects with a fresh token; during a key rotation a token signed with
auth.secret_previous is still accepted while rtw-sse mints with the current
key only; rtwctl token always sets exp; a token valid further out than
auth.max_token_ttl_s (30 days by default) is refused by both daemons and
rtwctl will not mint one; and a subscription with
?access_token= leaves no token in nginx's or Apache's access log.
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import stat
import time

import rtwtest
from rtwtest import SSEClient, request, test, wait_for

OLD_SECRET = "old-secret-for-rotation"
S = rtwtest.Stack(extra_env={"RTW_AUTH_SECRET_PREVIOUS": OLD_SECRET})
S.start_fcgi()
S.start_sse()
HTTP = S.start_nginx()
wait_for(lambda: request(S.sse_port, "GET", "/healthz").status == 200, 20, "rtw-sse healthy")
_n = [0]


def stream():
    _n[0] += 1
    return "tok%d-%d" % (os.getpid(), _n[0])


def post(st, token, port=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    body = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": {"k": 1}}
    return request(port or HTTP, "POST", "/v1/streams/%s/messages" % st, body, headers=h)


def events(st, headers=None, query="", port=None):
    """Opens /events (through nginx by default); returns the SSEClient."""
    path = "/v1/streams/%s/events%s" % (st, ("?" + query) if query else "")
    h = {"Connection": "close"}  # a refusal's body then ends with the connection
    h.update(headers or {})
    return SSEClient(port or HTTP, path, headers=h)


def refused(c, status, code):
    assert c.status == status, (c.status, c.body_text())
    body = json.loads(c.body_text())
    assert body["error"]["code"] == code, body
    c.close()


def claims(tok):
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def signed_with(tok, secret):
    head, body, sig = tok.split(".")
    mac = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return rtwtest.b64url(mac) == sig


@test
def token_without_exp_is_refused():
    st = stream()
    forever = S.token("alice", no_exp=True)
    assert "exp" not in claims(forever)
    r = post(st, forever)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    assert "exp" in r.json["error"]["message"], r
    refused(events(st, {"Authorization": "Bearer " + forever}), 401, "unauthorized")
    refused(events(st, query="access_token=" + forever), 401, "unauthorized")
    # the same subject with an exp is fine on both
    ok = S.token("alice")
    assert post(st, ok).status == 201
    c = events(st, query="access_token=" + ok)
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "alice"
    c.close()


@test
def other_authorization_schemes_are_401_not_anonymous():
    st = stream()
    good = S.token("bob")
    for value in ("Basic Ym9iOnB3", "Token " + good, "Bearer", "Bearer ", "bearer-" + good):
        refused(events(st, {"Authorization": value}), 401, "unauthorized")
        # not even with a valid token in the query next to it
        refused(events(st, {"Authorization": value}, query="access_token=" + good), 401, "unauthorized")
    # a lowercase scheme is still Bearer (schemes are case-insensitive)
    c = events(st, {"Authorization": "bearer " + good})
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "bob"
    c.close()
    # and without any Authorization: an anonymous identity, as before
    c = events(st)
    assert c.status == 200
    init = c.next_event()["json"]
    assert init["author_id"].startswith("anon-") and init["message"]["token"], init
    c.close()


@test
def stream_ends_at_exp():
    st = stream()
    exp = int(time.time()) + 3
    c = events(st, query="access_token=" + S.token("carol", exp=exp))
    assert c.status == 200 and c.next_event()["json"]["type"] == "init"
    longer = events(st, query="access_token=" + S.token("dave", ttl=3600))
    assert longer.status == 200 and longer.next_event()["json"]["type"] == "init"
    # the short one's stream is closed by the server (cleanly: the chunked
    # answer through nginx ends); nothing but heartbeats came before
    try:
        while True:
            ev = c.next_event(30)
            assert False, "an event on a quiet stream: %r" % ev
    except ConnectionError:
        pass
    assert c.closed and time.time() >= exp
    c.close()
    # the one with a later exp still streams
    mid = post(st, S.token("writer")).json["id"]
    assert longer.next_event(20)["id"] == mid
    longer.close()
    # reconnecting with the expired token is refused; a fresh one streams
    refused(events(st, query="access_token=" + S.token("carol", exp=exp)), 401, "unauthorized")
    c = events(st, query="access_token=" + S.token("carol"))
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "carol"
    c.close()


@test
def previous_secret_verifies_during_rotation():
    st = stream()
    old = rtwtest.mint(OLD_SECRET, "erin")
    other = rtwtest.mint("some-other-secret", "erin")
    assert post(st, old).status == 201
    r = post(st, other)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    c = events(st, query="access_token=" + old)
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "erin"
    c.close()
    refused(events(st, query="access_token=" + other), 401, "unauthorized")
    # an expired token under the old key stays refused
    r = post(st, rtwtest.mint(OLD_SECRET, "erin", exp=int(time.time()) - 5))
    assert r.status == 401, r
    # minting uses the current key only
    c = events(st)
    tok = c.next_event()["json"]["message"]["token"]
    c.close()
    assert signed_with(tok, S.secret) and not signed_with(tok, OLD_SECRET)
    assert claims(tok)["exp"] > time.time()


@test
def rtwctl_token_always_expires():
    tok = S.ctl("token", "--user", "frank").stdout.strip()
    assert 3590 <= claims(tok)["exp"] - time.time() <= 3610, claims(tok)
    for bad in ("0", "-5", "abc", "10x"):
        r = S.ctl("token", "--user", "frank", "--ttl", bad, check=False)
        assert r.returncode != 0 and "ttl" in r.stderr, (bad, r.stderr)
    # and what it mints is accepted
    assert post(stream(), tok).status == 201


@test
def a_token_valid_for_years_is_refused():
    st = stream()
    month = 30 * 86400
    far = rtwtest.mint(S.secret, "hank", exp=int(time.time()) + 10 * 365 * 86400)
    r = post(st, far)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    assert "max_token_ttl_s" in r.json["error"]["message"], r.json
    refused(events(st, query="access_token=" + far), 401, "unauthorized")
    refused(events(st, query="access_token=" + far, port=S.sse_port), 401, "unauthorized")
    # under the default cap it passes, on both daemons
    ok = rtwtest.mint(S.secret, "hank", ttl=month - 60)
    assert post(st, ok).status == 201
    c = events(st, query="widget_key=%s&access_token=%s" % (S.widget_key, ok))
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "hank"
    c.close()
    # rtwctl refuses to mint what the daemons would refuse, and says why
    r = S.ctl("token", "--user", "hank", "--ttl", str(month + 1), check=False)
    assert r.returncode != 0 and "max_token_ttl_s" in r.stderr, r.stderr
    assert S.ctl("token", "--user", "hank", "--ttl", str(month)).returncode == 0


def _logs_hold_no_token(front, port, log):
    st = stream()
    tok = S.token("gina")
    c = events(st, query="widget_key=%s&access_token=%s" % (S.widget_key, tok), port=port)
    assert c.status == 200 and c.next_event()["json"]["author_id"] == "gina"
    c.close()
    # a refused one too (the log line of an error must not carry it either)
    bad = S.token("gina", no_exp=True)
    refused(events(st, query="access_token=" + bad, port=port), 401, "unauthorized")
    path = os.path.join(S.tmp, front, log)
    wait_for(lambda: ("/v1/streams/%s/events" % st) in open(path).read(), 10, "the %s access log lines" % front)
    text = open(path).read()
    assert tok not in text and bad not in text and "access_token" not in text, text[-2000:]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, oct(os.stat(path).st_mode)


@test
def nginx_access_log_has_no_token():
    _logs_hold_no_token("nginx", HTTP, "nginx-access.log")


@test
def apache_access_log_has_no_token():
    port = S.start_apache()
    wait_for(lambda: request(port, "GET", "/healthz").status == 200, 20, "apache up")
    _logs_hold_no_token("apache", port, "apache-access.log")


if __name__ == "__main__":
    rtwtest.main()
