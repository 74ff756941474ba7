"""tailtest: what test_shared_tail.py and test_relay.py share: one stack
(PostgreSQL, rtw-fcgi behind nginx for the POSTs) and several rtw-sse
processes on their own ports, their /metrics, subscribers straight on a
process, posts, and a stream's stored order. Not a test itself."""
import rtwtest
from rtwtest import SSEClient, request

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
