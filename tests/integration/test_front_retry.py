#!/usr/bin/python3
"""test_front_retry: the web servers in front (conf/nginx-rtw.conf,
conf/apache-rtw.conf) keep a standard EventSource alive through transient
trouble: while rtw-sse is down, or answers 503 because it does not know its
position yet, the events path answers 200 text/event-stream with a short
`retry:` and no event (the client reconnects with its Last-Event-ID), while
refusals a retry would not fix (401) pass through as JSON; other paths keep
their JSON errors."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
S.start_sse()
NGINX = S.start_nginx()
APACHE = S.start_apache()
FRONTS = {"nginx": NGINX, "apache": APACHE}
EVENTS = "/v1/streams/front-1/events"


def retry_answer(port, headers=None):
    c = SSEClient(port, EVENTS, headers=headers, timeout=10)
    try:
        body = c.body_text()
        return c.status, c.headers, body
    finally:
        c.close()


@test
def events_answer_200_retry_while_sse_is_down():
    S.daemons["rtw-sse"].stop(signal.SIGKILL)
    try:
        for name, port in FRONTS.items():
            status, headers, body = retry_answer(port, {"Last-Event-ID": "42"})
            assert status == 200, (name, status, body)
            assert headers["content-type"].startswith("text/event-stream"), (name, headers)
            assert headers.get("cache-control") == "no-store", (name, headers)
            lines = body.split("\n")
            assert lines[0].startswith("retry: ") and 100 <= int(lines[0][7:]) <= 5000, (name, body)
            assert "data:" not in body and "id:" not in body, (name, body)
    finally:
        S.daemons["rtw-sse"].start()


@test
def events_answer_200_retry_while_sse_does_not_know_its_position():
    # rtw-sse up but PostgreSQL down: rtw-sse cannot learn its position
    S.pg.stop("fast")
    S.daemons["rtw-sse"].stop(signal.SIGKILL)
    S.daemons["rtw-sse"].start()
    try:
        for name, port in FRONTS.items():
            status, headers, body = retry_answer(port)
            assert status == 200, (name, status, body)
            assert headers["content-type"].startswith("text/event-stream"), (name, headers)
            assert "data:" not in body, (name, body)
    finally:
        S.pg.start()


@test
def unauthorized_passes_through_as_json():
    for name, port in FRONTS.items():
        c = SSEClient(port, EVENTS + "?access_token=not.a.token", timeout=10)
        try:
            assert c.status == 401, (name, c.status)
            assert c.headers["content-type"].startswith("application/json"), (name, c.headers)
            assert '"unauthorized"' in c.body_text(), name
        finally:
            c.close()


@test
def posts_stay_json_503_while_fcgi_is_down():
    S.daemons["rtw-fcgi"].stop(signal.SIGKILL)
    try:
        for name, port in FRONTS.items():
            r = request(port, "POST", "/v1/streams/front-1/messages", {"type": "broadcast"},
                        token=S.token("alice"))
            assert r.status == 503, (name, r)
            assert r.header("Content-Type").startswith("application/json"), (name, r.headers)
            assert r.json["error"]["code"] == "unavailable", (name, r.body)
    finally:
        S.daemons["rtw-fcgi"].start()


@test
def events_still_stream_when_sse_is_up():
    for name, port in FRONTS.items():
        c = SSEClient(port, EVENTS, timeout=10)
        try:
            assert c.status == 200, (name, c.status)
            ev = c.next_event(10)
            assert ev["json"]["type"] == "init", (name, ev)
        finally:
            c.close()


if __name__ == "__main__":
    rtwtest.main()
