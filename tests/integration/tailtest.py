"""tailtest: what test_shared_tail.py and test_relay.py share: one stack
(PostgreSQL, rtw-fcgi behind nginx for the POSTs) and several rtw-sse
processes on their own ports, their /metrics, subscribers straight on a
process, posts, and a stream's stored order. Not a test itself."""
import signal
import threading
import time

import rtwtest
from rtwtest import SSEClient, request, wait_for

WAIT = 60.0  # only ever a bound on waiting, never an assertion


class Procs:
    """A stack and the rtw-sse processes started on it (name -> port)."""

    def __init__(self, env):
        self.S = rtwtest.Stack()
        self.S.start_fcgi()
        self.port = self.S.start_nginx()
        self.token = self.S.token("alice")
        self.env = env  # every process's, before start()'s own
        self.procs = {}

    def start(self, name, env=None):
        port = rtwtest.free_port()
        e = dict(self.env)
        e.update(env or {})
        self.S.start_sse(name=name, port=port, env=e)
        self.procs[name] = port
        return port

    def alive(self):
        return {n: p for n, p in self.procs.items() if self.S.daemons[n].running()}

    def subscribe(self, port, stream):
        c = SSEClient(port, "/v1/streams/%s/events" % stream, headers={"Authorization": "Bearer " + self.token})
        assert c.status == 200, (c.status, c.body_text())
        init = c.next_event(WAIT)
        assert init["json"]["type"] == "init", init
        return c

    def post(self, stream, n):
        r = request(self.port, "POST", "/v1/streams/%s/messages" % stream,
                    {"type": "broadcast", "widget_key": self.S.widget_key, "timestamp": n, "message": {"n": n}},
                    token=self.token)
        assert r.status == 201, (r.status, r.body)
        return r.json["id"]

    def kill_mid_stream(self, victim, survivors, stream, total=60, kill_at=20):
        """Posts total messages on stream over about a second, SIGKILLs
        the process victim after kill_at, and checks that every survivor's
        subscriber got every message exactly once in stream order. Returns
        the survivors' subscribers, still open."""
        subs = {n: self.subscribe(self.procs[n], stream) for n in survivors}
        acked = []

        def publish():
            for i in range(total):
                acked.append(self.post(stream, i))
                time.sleep(0.02)  # spread over about a second: the kill lands mid-stream

        t = threading.Thread(target=publish)
        t.start()
        wait_for(lambda: len(acked) >= kill_at, WAIT, "%d acknowledged" % kill_at)
        self.S.daemons[victim].kill()
        t.join(WAIT)
        assert len(acked) == total, len(acked)
        order = self.stored(stream)
        assert sorted(order, key=int) == sorted(acked, key=int), (order, acked)
        for n, c in subs.items():
            got = received(c, total)
            assert got == order, (n, got, order)
        return subs

    def stop_mid_stream(self, victim, others, stream, counter):
        """Stops the process victim (SIGSTOP) while 10 messages are posted
        on stream: each of the others' subscribers gets them in order and
        its /metrics counter grows (it noticed); then 10 more after
        SIGCONT, and the stream holds exactly what was posted."""
        subs = {n: self.subscribe(self.procs[n], stream) for n in others}
        before = {n: metric(self.procs[n], counter) for n in others}
        self.S.daemons[victim].send_signal(signal.SIGSTOP)
        try:
            ids = [self.post(stream, i) for i in range(10)]
            for n, c in subs.items():
                assert received(c, 10) == ids, n
                assert metric(self.procs[n], counter) > before[n], (n, counter)
        finally:
            self.S.daemons[victim].send_signal(signal.SIGCONT)
        ids += [self.post(stream, 10 + i) for i in range(10)]
        for n, c in subs.items():
            assert received(c, 10) == ids[10:], n
            c.close()
        assert self.stored(stream) == ids

    def stored(self, stream):
        """The stream's ids in stream order."""
        return [r[0] for r in self.S.pg.query(
            "SELECT id::text FROM rtw_messages WHERE stream_id = %s ORDER BY xid, id", (stream, ))]


def metric(port, name):
    body = request(port, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def received(c, n):
    return [c.next_event(WAIT)["id"] for _ in range(n)]
