#!/usr/bin/python3
"""test_presence: presence (sql/009_presence.sql, sse/presence.c,
GET /v1/streams/{s}/presence) with two rtw-sse processes sharing one port
behind nginx and Apache: the counts are summed over both processes
(viewers distinct), admins also see the viewer ids and others do not, the
token rules of history apply, the counts drop after disconnects and after
one process is SIGKILLed (its rows stay but are ignored), presence frames
reach presence=1 streams only, the top streams are on /metrics, and a clean
shutdown removes a process's rows."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test, wait_for  # noqa: E402

INTERVAL_MS = 300
S = rtwtest.Stack()
S.start_fcgi()
ENV = {"RTW_SSE_PRESENCE_INTERVAL_MS": str(INTERVAL_MS)}
SSE1 = S.start_sse(env=ENV)
rtwtest.wait_streams(S.sse_port)
SSE2 = S.start_sse(env=ENV, name="rtw-sse-2", port=S.sse_port)
NGINX = S.start_nginx()
APACHE = S.start_apache()
wait_for(lambda: "database connection ready" in SSE2.log_text(), 30, "the second rtw-sse")
STREAM = "show-1"
USERS = ["ann", "ben", "cat", "dan"]
clients = []   # [(user, SSEClient)] on STREAM
others = []    # SSEClients on other streams


def open_client(user, port=NGINX, stream=STREAM, presence=False):
    path = "/v1/streams/%s/events?access_token=%s" % (stream, S.token(user))
    if presence:
        path += "&presence=1"
    for _ in range(20):
        # a process that has just started answers the front's "retry"
        # page until it knows its stream position: try again, as
        # EventSource would
        c = SSEClient(port, path)
        assert c.status == 200, c.body_text()
        try:
            init = c.next_event(3)
        except (TimeoutError, ConnectionError):
            c.close()
            continue
        assert init["json"]["type"] == "init" and init["json"]["author_id"] == user, init
        return c
    raise AssertionError("no init from rtw-sse")


def presence(port=NGINX, token=None, stream=STREAM):
    r = request(port, "GET", "/v1/streams/%s/presence" % stream, token=token or S.token("ann"))
    assert r.status == 200, r
    return r.json


def expected():
    live = [u for u, c in clients if not c.closed]
    return len(live), len(set(live))


def wait_counts(port=NGINX):
    want = expected()
    seen = {}

    def match():
        seen["p"] = presence(port)
        return (seen["p"]["connections"], seen["p"]["viewers"]) == want
    wait_for(match, 15, "presence %r (last answer %r)" % (want, seen))
    return seen["p"]


def instances():
    return S.pg.query("SELECT count(DISTINCT p.instance) FROM rtw_presence p JOIN rtw_presence_procs i "
                      "USING (instance) WHERE p.stream_id = %s AND i.expires_at > now()", (STREAM,))[0][0]


def own_row(daemon):
    """(connections, viewers) of the stream's row of one process (its
    instance id is host:pid:random)."""
    r = S.pg.query("SELECT connections, viewers FROM rtw_presence WHERE stream_id = %s AND instance LIKE %s",
                   (STREAM, "%%:%d:%%" % daemon.proc.pid))
    return tuple(r[0]) if r else (0, 0)


def reach_both():
    """More connections until both processes hold some of the stream's
    (SO_REUSEPORT spreads them)."""
    for i in range(40):
        try:
            wait_for(lambda: own_row(SSE1)[0] > 0 and own_row(SSE2)[0] > 0, 2, "rows of both processes")
            return
        except Exception:  # noqa: BLE001 - not yet: one more connection
            clients.append((USERS[i % len(USERS)], open_client(USERS[i % len(USERS)])))
    raise AssertionError("the connections never reached both processes")


@test
def counts_are_summed_over_both_processes():
    # some users twice, on both processes
    for user in ["ann", "ann", "ben", "ben", "cat", "dan"]:
        clients.append((user, open_client(user)))
    reach_both()
    p = wait_counts()
    assert p["stream_id"] == STREAM and p["updated_at"].endswith("Z"), p
    assert "users" not in p, "a non-admin token must not see the viewer ids: %r" % p
    assert instances() == 2


@test
def admin_sees_the_users_through_nginx_and_apache():
    for port in (NGINX, APACHE):
        p = presence(port, token=S.token("boss", admin=True))
        assert sorted(p["users"]) == sorted(set(u for u, c in clients if not c.closed)), p
        assert (p["connections"], p["viewers"]) == expected(), p
        assert "users" not in presence(port), "a non-admin token sees users"


@test
def token_rules_are_history_s():
    r = request(NGINX, "GET", "/v1/streams/%s/presence" % STREAM)
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    r = request(APACHE, "GET", "/v1/streams/%s/presence" % STREAM, token=S.token("ann", streams=["elsewhere"]))
    assert r.status == 403 and r.json["error"]["code"] == "forbidden", r
    r = request(NGINX, "POST", "/v1/streams/%s/presence" % STREAM, body={}, token=S.token("ann"))
    assert r.status == 405, r
    p = presence(APACHE, stream="nobody-watches")
    assert (p["connections"], p["viewers"]) == (0, 0) and p["stream_id"] == "nobody-watches", p


@test
def counts_drop_after_disconnects():
    # close one of each twice-connected user's connections, and a lone one
    seen = set()
    for user, c in clients:
        if user not in seen or user == USERS[-1]:
            seen.add(user)
            c.close()
            c.closed = True
    wait_counts(APACHE)


@test
def presence_frames_only_on_presence_streams():
    watcher = open_client("eve", presence=True)
    plain = open_client("fay")
    clients.append(("eve", watcher))
    clients.append(("fay", plain))
    # the first frame: the counts as they are, then one after a change
    ev = watcher.next_event(15)
    assert "id" not in ev, ev
    j = ev["json"]
    assert j["type"] == "presence" and j["stream_id"] == STREAM and j["timestamp"] == 0, j
    assert j["widget_key"] is None and set(j["message"]) == {"connections", "viewers"}, j
    late = open_client("gus")
    clients.append(("gus", late))
    want = expected()
    while (j["message"]["connections"], j["message"]["viewers"]) != want:
        ev = watcher.next_event(15)
        j = ev["json"]
        assert j["type"] == "presence" and "id" not in ev, ev
    # a broadcast now: the plain subscriber's next event is it, after
    # every presence frame above went out, and no presence frame
    r = request(NGINX, "POST", "/v1/streams/%s/messages" % STREAM, token=S.token("fay"),
                body={"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1, "message": "hi"})
    assert r.status == 201, r
    ev = plain.next_event(10)
    assert ev["json"]["type"] == "broadcast" and ev["id"] == r.json["id"], ev
    ev = watcher.next_event(10)
    while ev["json"]["type"] == "presence":
        ev = watcher.next_event(10)
    assert ev["id"] == r.json["id"], ev


@test
def presence_frames_through_apache():
    c = open_client("hal", port=APACHE, presence=True)
    clients.append(("hal", c))
    ev = c.next_event(15)
    assert ev["json"]["type"] == "presence" and "id" not in ev, ev
    assert ev["json"]["message"]["connections"] >= 1, ev


@test
def top_streams_on_metrics():
    others.append(open_client("ivy", stream="show-2", port=NGINX))
    seen = {}

    def listed():
        # either process answers (SO_REUSEPORT); at least one has viewers
        r = request(S.sse_port, "GET", "/metrics")
        assert r.status == 200, r
        text = seen["text"] = r.body.decode()
        assert "# TYPE rtw_sse_stream_viewers gauge" in text and "rtw_sse_presence_puts_total" in text, text
        lines = [ln for ln in text.splitlines() if ln.startswith("rtw_sse_stream_viewers{")]
        assert all(int(ln.split()[-1]) >= 1 for ln in lines), lines
        return any(ln.startswith('rtw_sse_stream_viewers{stream="%s"} ' % STREAM) for ln in lines)
    wait_for(listed, 10, "the stream on some process's /metrics")


@test
def a_killed_process_drops_out():
    # which of our streams the front ends when its upstream dies is the
    # front's business: the surviving process's own row is the answer
    reach_both()
    wait_counts()
    SSE2.kill()
    seen = {}

    def dropped():
        p = presence()
        seen["p"], seen["own"] = p, own_row(SSE1)
        return (p["connections"], p["viewers"]) == seen["own"]
    wait_for(dropped, 15, "the counts of the surviving process only (%r)" % seen)
    assert seen["own"][0] > 0
    # its rows are still there, just ignored (deleted a minute later)
    stale = S.pg.query("SELECT count(*) FROM rtw_presence p JOIN rtw_presence_procs i USING (instance) "
                       "WHERE i.expires_at <= now()")[0][0]
    assert stale >= 1, "the killed process's rows should remain until cleaned up"
    assert instances() == 1


@test
def clean_shutdown_removes_the_rows():
    assert SSE1.stop(signal.SIGTERM) == 0
    live = S.pg.query("SELECT count(*) FROM rtw_presence_procs WHERE expires_at > now()")[0][0]
    assert live == 0, live
    p = presence()
    assert (p["connections"], p["viewers"]) == (0, 0), p


if __name__ == "__main__":
    rtwtest.main()
