#!/usr/bin/python3
"""test_unix_front: rtw-sse listening on a unix socket (sse.listen =
unix:/path) behind nginx (`server unix:/path` in the rtw_sse upstream), the
front on the same host without the loopback TCP hop: streams and live
broadcasts pass, a socket file left by a killed process is replaced on
restart, and a path that is not a socket is never removed."""
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
SOCK = os.path.join(S.tmp, "rtw-sse.sock")
S.sse_addr = "unix:" + SOCK
TOKEN = S.token("alice")
STREAM = "unix-1"


def sse_listening():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(SOCK)
            return True
        except OSError:
            return False


def start_sse():
    S._daemon("rtw-sse", [rtwtest.prog("rtw-sse")], None, {"RTW_SSE_LISTEN": "unix:" + SOCK,
                                                            "RTW_SSE_HEARTBEAT_S": "15"})
    rtwtest.wait_for(sse_listening, 10, "rtw-sse to listen on " + SOCK)


start_sse()
PORT = S.start_nginx()


def broadcast_arrives(text):
    c = rtwtest.SSEClient(PORT, "/v1/streams/%s/events?access_token=%s" % (STREAM, TOKEN))
    try:
        assert c.status == 200, c.status
        # rtw-sse's own answer: nginx's "retry" answer (no upstream) has no init
        init = c.next_event(10)["json"]
        assert init["type"] == "init" and init["author_id"] == "alice", init
        r = request(PORT, "POST", "/v1/streams/%s/messages" % STREAM, token=TOKEN, body={
            "type": "broadcast", "widget_key": S.widget_key, "timestamp": 1.5, "message": {"text": text}})
        assert r.status == 201, r
        while True:
            ev = c.next_event(10)
            if ev.get("id") == r.json["id"]:
                assert ev["json"]["message"] == {"text": text}, ev
                return
    finally:
        c.close()


@test
def stream_through_nginx_over_the_unix_socket():
    assert os.stat(SOCK).st_mode & 0o777 == 0o666, oct(os.stat(SOCK).st_mode)
    broadcast_arrives("over a unix socket")
    r = request(PORT, "GET", "/healthz")
    assert r.status == 200, r


@test
def socket_left_by_a_killed_process_is_replaced():
    S.daemons["rtw-sse"].stop(signal.SIGKILL)
    assert os.path.exists(SOCK) and not sse_listening()
    start_sse()
    broadcast_arrives("after a restart")


@test
def a_path_that_is_not_a_socket_is_left_alone():
    path = os.path.join(S.tmp, "not-a-socket")
    with open(path, "w") as f:
        f.write("keep me")
    e = dict(S.env, RTW_SSE_LISTEN="unix:" + path)
    r = subprocess.run([rtwtest.prog("rtw-sse")], env=e, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r
    assert "could not listen on sse.listen" in r.stdout + r.stderr, r
    with open(path) as f:
        assert f.read() == "keep me"


if __name__ == "__main__":
    rtwtest.main()
