"""test_cells: two cells behind one front nginx routing by stream
(conf/nginx-cells.conf.in, doc/scaling.md).

Each cell is a whole stack: its own PostgreSQL, rtw-fcgi, rtw-sse and nginx
(conf/nginx.conf.in). One front nginx hashes the stream id of each request
(`hash $rtw_stream consistent`) onto the cells. Both cells share the token
secret and register the same widget key (rtwctl widget add --key).

Checks: each stream's rows are in exactly one cell, and always the same one
(POST twice, history, SSE); both cells get streams; a stream's subscriber
sees its stream's messages and nothing of another stream; every stream
works end to end through the front; rtwctl with `cells` listing both
cells runs each command in each (one widget key everywhere, per-cell
counts, a dead cell fails the run while the other still gets it, publish
refused).

Run: RTW_BUILDDIR=$PWD /usr/bin/python3 tests/integration/test_cells.py
"""
import atexit
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, free_port, request, test, wait_port  # noqa: E402

STREAMS = ["cell-%02d" % i for i in range(16)]

A = rtwtest.Stack()
B = rtwtest.Stack()
B.secret = B.env["RTW_AUTH_SECRET"] = A.secret
KEY = str(uuid.uuid4())
for cell in (A, B):
    cell.ctl("widget", "add", "cells", "--key", KEY)
    cell.start_fcgi()
    cell.start_sse()
    cell.start_nginx()

FRONT = free_port()
_rundir = os.path.join(A.tmp, "front")
os.makedirs(_rundir)
_conf = os.path.join(_rundir, "nginx-cells.conf")
with open(_conf, "w") as f:
    f.write(A.render("nginx-cells.conf.in", RUNDIR=_rundir, LISTEN="127.0.0.1:%d" % FRONT,
                     CELL_A="127.0.0.1:%d" % A.http_port, CELL_B="127.0.0.1:%d" % B.http_port))
subprocess.run(["nginx", "-c", _conf, "-e", os.path.join(_rundir, "nginx-cells-error.log")], check=True)
A.front_pidfile = os.path.join(_rundir, "nginx-cells.pid")
wait_port(FRONT)
TOKEN = A.token("alice")


def stop_front():
    with open(A.front_pidfile) as f:
        pid = int(f.read().strip())
    subprocess.run(["kill", "-QUIT", str(pid)], check=False)


atexit.register(stop_front)


def post(stream, n):
    r = request(FRONT, "POST", "/v1/streams/%s/messages" % stream, token=TOKEN,
                body={"type": "broadcast", "widget_key": KEY, "timestamp": n, "message": {"n": n, "s": stream}})
    assert r.status == 201, r
    return r.json["id"]


def rows(cell, stream):
    return [r[0] for r in cell.pg.query("SELECT (message->>'n')::int FROM rtw_messages WHERE stream_id = %s "
                                        "ORDER BY xid, id", (stream, ))]


@test
def each_stream_lives_in_exactly_one_cell_always_the_same():
    home = {}
    for s in STREAMS:
        post(s, 1)
        post(s, 2)
        a, b = rows(A, s), rows(B, s)
        assert (a, b) in (([1, 2], []), ([], [1, 2])), (s, a, b)
        home[s] = A if a else B
    # the ring spreads 16 streams over both cells
    assert {id(c) for c in home.values()} == {id(A), id(B)}, home
    # history through the front comes from the stream's cell
    for s in STREAMS:
        r = request(FRONT, "GET", "/v1/streams/%s/messages?widget_key=%s&limit=100" % (s, KEY), token=TOKEN)
        assert r.status == 200, r
        assert [m["message"]["n"] for m in r.json["message"]["messages"]] == [1, 2], (s, r.json)


@test
def every_stream_works_end_to_end_and_is_isolated():
    subs = {}
    try:
        for s in STREAMS:
            subs[s] = SSEClient(FRONT, "/v1/streams/%s/events?access_token=%s" % (s, TOKEN))
            assert subs[s].status == 200, subs[s].status
        ids = {s: post(s, 10 + i) for i, s in enumerate(STREAMS)}
        for i, s in enumerate(STREAMS):
            got = []
            while not got or got[-1]["id"] != str(ids[s]):
                ev = subs[s].next_event(timeout=20)
                m = ev.get("json") or {}
                if m.get("type") == "broadcast":
                    got.append(ev)
            # only this stream's messages, and this one exactly once
            assert all(e["json"]["message"]["s"] == s for e in got), (s, got)
            assert [e["json"]["message"]["n"] for e in got].count(10 + i) == 1, got
    finally:
        for c in subs.values():
            c.close()
    # the other cell never saw the stream
    for s in STREAMS:
        assert not (rows(A, s) and rows(B, s)), s


def ctl_cells(*args, cells=None):
    """rtwctl with `cells` listing both cells' DSNs (RTW_CELLS)."""
    env = dict(A.env)
    env["RTW_CELLS"] = cells or "%s | %s" % (A.pg.dsn, B.pg.dsn)
    return subprocess.run([rtwtest.prog("rtwctl")] + list(args), env=env, capture_output=True, text=True)


@test
def rtwctl_runs_every_command_in_every_cell():
    # a widget without --key: one key drawn, registered in both cells
    r = ctl_cells("widget", "add", "everywhere")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("== cell ") == 2, r.stdout
    keys = [c.pg.query("SELECT widget_key::text FROM rtw_widgets WHERE name = 'everywhere'") for c in (A, B)]
    assert keys[0] == keys[1] and len(keys[0]) == 1, keys
    # per-cell results: each cell's own message count (one stream posted to,
    # so one cell has a message the other has not)
    post("cell-00", 99)
    r = ctl_cells("stats")
    assert r.returncode == 0, r.stderr
    parts = r.stdout.split("== cell ")[1:]
    assert [p.split(" ==")[0] for p in parts] == ["1", "2"], r.stdout
    counts = []
    for part, cell in zip(parts, (A, B)):
        n = cell.pg.query("SELECT count(*) FROM rtw_messages WHERE type = 'broadcast'")[0][0]
        counts.append(n)
        assert ("messages.broadcast\t%d\n" % n in part.split("== all cells")[0]) == (n > 0), (part, n)
    # and summed over the cells after the last one
    total = r.stdout.split("== all cells (2 of 2 answered) ==\n")
    assert len(total) == 2, r.stdout
    assert "messages.broadcast\t%d\n" % sum(counts) in total[1], (total[1], counts)
    w = sum(c.pg.query("SELECT count(*) FROM rtw_widgets")[0][0] for c in (A, B))
    assert "widgets\t%d\n" % w in total[1], (total[1], w)
    # one cell down: the other still gets the command, the exit is non-zero
    dead = "host=127.0.0.1 port=%d dbname=rtw user=postgres connect_timeout=2" % free_port()
    r = ctl_cells("widget", "add", "half", cells="%s | %s" % (dead, B.pg.dsn))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "cell 1" in r.stderr, r.stderr
    # stats with a dead cell: the sum says one of two answered, exit 1
    r = ctl_cells("stats", cells="%s | %s" % (dead, B.pg.dsn))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "== all cells (1 of 2 answered) ==" in r.stdout, r.stdout
    assert len(B.pg.query("SELECT 1 FROM rtw_widgets WHERE name = 'half'")) == 1
    # a command that belongs to one cell is refused, nothing written
    r = ctl_cells("publish", "--stream", "cell-00", "--widget", KEY, '{"x": 1}')
    assert r.returncode == 2, (r.returncode, r.stderr)


if __name__ == "__main__":
    rtwtest.main()
