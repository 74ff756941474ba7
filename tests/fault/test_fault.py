#!/usr/bin/env python3
"""test_fault.py: the fault-injection suite. Kills, restarts and starves
every part of a real stack (PostgreSQL, rtw-fcgi, two rtw-sse processes on
one port, rtw-webhookd, nginx) while a publisher posts broadcasts through
nginx and subscribers read them, then judges delivery from outside:

- standard EventSource clients (tests/fault/es-clients.mjs, the WHATWG
  `eventsource` npm package) through nginx, which give up for good on any
  non-200 answer: none may give up;
- the project's own reconnecting readers (one through nginx, one direct,
  one that stops reading during a restart);
- every subscriber must end with every stored message of the stream
  exactly once, in stream order (`ORDER BY xid, id`), and every message the
  publisher saw acknowledged must be stored.

`./dev test` runs the short version (one pass over every fault, a few
seconds of traffic between them); `./dev fault` (RTW_FAULT_LONG=1) runs
the long one: 200 EventSource clients, 50 msg/s, a 60 s foreign
transaction and a storm of 10,000 reconnects.

Memory flat: rtw-sse's RSS may grow by at most RSS_GROWTH_MAX_KIB over the
faults its processes live through (from after the last rtw-sse restart to
the storm: lost PostgreSQL sessions, nginx reload, rtw-fcgi and
rtw-webhookd restarts, the long foreign transactions, traffic all along)
and from the first storm wave to the second (its pools are warm by then).
"""
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rtwtest as T  # noqa: E402

LONG = os.environ.get("RTW_FAULT_LONG") == "1"
ES_CLIENTS = 200 if LONG else 40
RATE = 50 if LONG else 20           # broadcasts per second
GAP = 8.0 if LONG else 2.0          # seconds of traffic after each fault
STORM = 10000 if LONG else 1000     # reconnect storm size (direct to rtw-sse)
FOREIGN_S = 60 if LONG else 4       # foreign transactions stay open this long
STREAM = "fault"


def log(msg):
    print("# " + msg, flush=True)


def rss_kib(pid):
    """None when the process is gone (printed, not asserted)."""
    try:
        return T.rss_kib(pid)
    except OSError:
        return None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# Memory flat: rtw-sse's RSS may grow from one wave of the reconnect storm
# to the next, and over the span of faults its processes live through, by
# at most this much (the first wave and the first seconds of traffic warm
# its pools up). The daemons run with a small ASan quarantine, so freed
# memory is reused as it would be without the sanitizer.
RSS_GROWTH_MAX_KIB = 16 * 1024
ASAN = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")


class Publisher(threading.Thread):
    """Posts broadcasts at RATE through the front server; each message
    keeps one Idempotency-Key across its retries, so a retry after a lost
    answer stores nothing twice. acked: ids answered 201."""

    def __init__(self, st, token):
        super().__init__(daemon=True)
        self.st, self.token = st, token
        self.stop_ev = threading.Event()
        self.acked, self.failed, self.retries = [], [], 0

    def post(self, i):
        body = {"type": "broadcast", "widget_key": self.st.widget_key, "timestamp": i / 10.0,
                "message": {"n": i}}
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                r = T.request(self.st.http_port, "POST", "/v1/streams/%s/messages" % STREAM, body,
                              headers={"Idempotency-Key": "fault-%d" % i}, token=self.token, timeout=5)
                if r.status == 201:
                    self.acked.append(r.json["id"])
                    return
                if r.status not in (502, 503, 504):
                    self.failed.append((i, r.status, r.body[:200]))
                    return
            except (OSError, http.client.HTTPException):
                pass
            self.retries += 1
            time.sleep(0.1)
        self.failed.append((i, "gave up", b""))

    def run(self):
        i, t = 1, time.time()
        while not self.stop_ev.is_set():
            self.post(i)
            i += 1
            t += 1.0 / RATE
            time.sleep(max(0.0, t - time.time()))
            t = max(t, time.time() - 1.0)  # after a stall, do not burst to catch up


class OwnReader(threading.Thread):
    """The project's own reader: reconnects with Last-Event-ID after any
    failure (it never gives up, so it judges loss and order, not
    availability). paused: stop reading (a slow consumer)."""

    def __init__(self, port, name):
        super().__init__(daemon=True)
        self.port, self.name = port, name
        self.ids, self.refusals, self.reconnects = [], [], 0
        self.stop_ev, self.paused = threading.Event(), threading.Event()

    def run(self):
        last = None
        while not self.stop_ev.is_set():
            try:
                c = T.SSEClient(self.port, "/v1/streams/%s/events" % STREAM,
                                headers={"Last-Event-ID": last} if last else None, timeout=5)
            except (OSError, ConnectionError, TimeoutError):
                time.sleep(0.2)
                continue
            try:
                if c.status != 200:
                    self.refusals.append(c.status)
                    time.sleep(0.2)
                    continue
                while not self.stop_ev.is_set():
                    if self.paused.is_set():
                        time.sleep(0.05)
                        continue
                    try:
                        ev = c.next_event(timeout=0.5)
                    except TimeoutError:
                        continue
                    if "id" in ev:
                        self.ids.append(ev["id"])
                        last = ev["id"]
            except (OSError, ConnectionError, ValueError):
                pass
            finally:
                c.close()
            self.reconnects += 1
            time.sleep(0.1)


class EsClients:
    """tests/fault/es-clients.mjs in a child process."""

    def __init__(self, url, n):
        # a tree without node_modules (a release tarball): the same npm ci ./dev test runs
        if not os.path.isdir(os.path.join(HERE, "node_modules", "eventsource")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "es-clients.mjs"), url, str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError("es-clients did not start: %r" % line)

    def report(self):
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["clients"]

    def quit(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


class Faults:
    """Each fault, by name; each returns when the part is back (or, for the
    held transactions, when they have been released)."""

    def __init__(self, st, readers):
        self.st, self.readers = st, readers

    def _restart(self, name, sig):
        d = self.st.daemons[name]
        d.stop(sig)
        time.sleep(0.3)
        d.start(timeout=30)

    def sigkill_sse(self):
        self._restart("rtw-sse", signal.SIGKILL)

    def sigterm_sse(self):
        self._restart("rtw-sse-2", signal.SIGTERM)

    def sigkill_both_sse(self):
        # the port is unserved for a moment: the front must keep clients on
        a, b = self.st.daemons["rtw-sse"], self.st.daemons["rtw-sse-2"]
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
        time.sleep(1.0)
        a.start(timeout=30)
        b.start(timeout=30)

    def sse_restart_while_pg_down(self):
        # a fresh rtw-sse that cannot learn its position yet: new streams
        # must still be answered 200 (held, or told to retry)
        self.st.pg.stop("fast")
        for n in ("rtw-sse", "rtw-sse-2"):
            self.st.daemons[n].stop(signal.SIGKILL)
        for n in ("rtw-sse", "rtw-sse-2"):
            self.st.daemons[n].start(timeout=30)
        time.sleep(GAP)
        self.st.pg.start()

    def sigkill_fcgi(self):
        self._restart("rtw-fcgi", signal.SIGKILL)

    def sigterm_fcgi(self):
        self._restart("rtw-fcgi", signal.SIGTERM)

    def sigkill_webhookd(self):
        self._restart("rtw-webhookd", signal.SIGKILL)

    def sigterm_webhookd(self):
        self._restart("rtw-webhookd", signal.SIGTERM)

    def pg_fast_restart(self):
        self.st.pg.stop("fast")
        time.sleep(1.0)
        self.st.pg.start()

    def pg_immediate_restart(self):
        self.st.pg.stop("immediate")
        time.sleep(1.0)
        self.st.pg.start()

    def terminate_backends(self):
        for app in ("rtw-sse", "rtw-fcgi", "rtw-webhookd"):
            n = self.st.pg.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE application_name = %s", (app,))[0][0]
            log("terminated %d session(s) of %s" % (n, app))
            time.sleep(GAP / 2)

    def nginx_reload(self):
        rundir = os.path.join(self.st.tmp, "nginx")
        subprocess.run(["nginx", "-c", os.path.join(rundir, "nginx.conf"), "-e",
                        os.path.join(rundir, "nginx-error.log"), "-s", "reload"], check=True)

    def _hold(self, dbname, sqls):
        import psycopg2
        conn = psycopg2.connect(self.st.pg.dsn.replace("dbname=rtw", "dbname=" + dbname))
        conn.autocommit = True  # the statements below say BEGIN and COMMIT themselves
        cur = conn.cursor()
        for s in sqls:
            cur.execute(s)
        return conn, cur

    def foreign_transaction_other_db(self):
        conn, cur = self._hold("other_app", ["CREATE TABLE IF NOT EXISTS other_t (x int)", "BEGIN",
                                             "INSERT INTO other_t VALUES (1)"])
        time.sleep(FOREIGN_S)
        cur.execute("COMMIT")
        conn.close()

    def foreign_transaction_same_db(self):
        conn, cur = self._hold("rtw", ["CREATE TABLE IF NOT EXISTS platform_t (x int)", "BEGIN",
                                       "INSERT INTO platform_t VALUES (1)"])
        time.sleep(FOREIGN_S)
        cur.execute("COMMIT")
        conn.close()

    def dangling_prepared_transaction(self):
        conn, cur = self._hold("other_app", ["CREATE TABLE IF NOT EXISTS other_t (x int)", "BEGIN",
                                             "INSERT INTO other_t VALUES (2)",
                                             "PREPARE TRANSACTION 'rtw_fault_dangling'"])
        conn.close()
        time.sleep(FOREIGN_S)
        conn = self._hold("other_app", [])[0]
        conn.cursor().execute("ROLLBACK PREPARED 'rtw_fault_dangling'")  # in the database that prepared it
        conn.close()

    def sse_pids(self):
        return [self.st.daemons[n].proc.pid for n in ("rtw-sse", "rtw-sse-2")]

    def reconnect_storm(self):
        """STORM subscribers connect to rtw-sse at once, read their heads,
        and drop; then the same again (a reconnect storm). Each names its
        own client address (X-Forwarded-For, from the trusted loopback), so
        they are STORM clients, not one address over sse.max_per_ip. rtw-sse's RSS
        after each wave, once it has seen every storm connection close,
        goes to storm_rss."""
        pids = self.storm_pids = self.sse_pids()
        base = [fd_count(p) for p in pids]
        self.storm_rss = []
        for wave in range(2):
            socks = []
            for i in range(STORM):
                try:
                    s = socket.create_connection(("127.0.0.1", self.st.sse_port), timeout=10)
                    s.sendall(("GET /v1/streams/%s/events HTTP/1.1\r\nHost: x\r\n"
                               "X-Forwarded-For: 10.%d.%d.%d\r\n\r\n" % (STREAM, wave, i // 256, i % 256)).encode())
                    socks.append(s)
                except OSError:
                    break
            answers = {}
            for s in socks:
                try:
                    head = s.recv(12)
                    status = head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "none"
                except OSError:
                    status = "error"
                answers[status] = answers.get(status, 0) + 1
            for s in socks:
                s.close()
            T.wait_for(lambda: all(fd_count(p) <= b + 50 for p, b in zip(pids, base)), 60,
                       "rtw-sse to see the storm's connections close")
            self.storm_rss.append([rss_kib(p) for p in pids])
            log("storm wave %d: %d connected, answers %s; rtw-sse RSS %s KiB" % (
                wave + 1, len(socks), answers, self.storm_rss[-1]))

    def slow_consumer_during_restart(self):
        slow = self.readers["slow"]
        slow.paused.set()
        time.sleep(GAP)
        self._restart("rtw-sse", signal.SIGKILL)
        self._restart("rtw-sse-2", signal.SIGKILL)
        time.sleep(GAP)
        slow.paused.clear()


FAULTS = ["sigkill_sse", "sigterm_sse", "sigkill_both_sse", "pg_fast_restart", "pg_immediate_restart",
          "sse_restart_while_pg_down",
          "terminate_backends", "nginx_reload", "sigkill_fcgi", "sigterm_fcgi", "sigkill_webhookd",
          "sigterm_webhookd", "foreign_transaction_other_db", "foreign_transaction_same_db",
          "dangling_prepared_transaction", "reconnect_storm", "slow_consumer_during_restart"]


def first_divergence(got, want):
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return "at %d: got %s, expected %s" % (i, a, b)
    return "got %d ids, expected %d" % (len(got), len(want))


@T.test
def test_every_fault_exactly_once_and_nobody_gives_up():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    st = T.Stack(durable=True)
    # the dangling-prepared-transaction fault needs two-phase commit
    st.pg.stop()
    with open(os.path.join(st.pg.dir, "postgresql.conf"), "a") as f:
        f.write("max_prepared_transactions = 4\n")
    st.pg.start()
    st.pg.psql_admin("CREATE DATABASE other_app")
    st.start_fcgi()
    st.start_sse(env={"ASAN_OPTIONS": ASAN})
    st.start_sse(name="rtw-sse-2", port=st.sse_port, env={"ASAN_OPTIONS": ASAN})
    st.start_webhookd()
    st.start_nginx()
    token = st.token("publisher")

    readers = {"front": OwnReader(st.http_port, "front"), "direct": OwnReader(st.sse_port, "direct"),
               "slow": OwnReader(st.sse_port, "slow")}
    for r in readers.values():
        r.start()
    es = EsClients(st.url + "/v1/streams/%s/events" % STREAM, ES_CLIENTS)
    pub = Publisher(st, token)
    try:
        # every subscriber holds an id before the first fault, so each
        # reconnect is a resume, never a fresh "live only" start
        pub.post(0)
        assert pub.acked, "the first publish failed: %r" % pub.failed
        first = pub.acked[0]
        T.wait_for(lambda: all(first in r.ids for r in readers.values()), 30, "readers to see the first message")
        T.wait_for(lambda: all(first in c["ids"] for c in es.report()), 30, "EventSource clients to see it")
        pids = [st.daemons[n].proc.pid for n in ("rtw-sse", "rtw-sse-2")]
        log("rtw-sse RSS before: %s KiB" % [rss_kib(p) for p in pids])
        pub.start()
        faults = Faults(st, readers)
        span = {}  # rtw-sse's RSS over the faults its processes live through
        for name in FAULTS:
            if name == FAULTS[FAULTS.index("sse_restart_while_pg_down") + 1]:
                span["pids"], span["before"] = faults.sse_pids(), [rss_kib(p) for p in faults.sse_pids()]
            if name == "reconnect_storm":
                span["after"] = [rss_kib(p) for p in span["pids"]]
                log("rtw-sse RSS from %s to %s KiB over %s..%s" % (
                    span["before"], span["after"], FAULTS[FAULTS.index("sse_restart_while_pg_down") + 1],
                    FAULTS[FAULTS.index("reconnect_storm") - 1]))
            t0 = time.time()
            getattr(faults, name)()
            log("%s done in %.1fs; %d acked so far" % (name, time.time() - t0, len(pub.acked)))
            time.sleep(GAP)
        pub.stop_ev.set()
        pub.join(120)

        want = [str(r[0]) for r in st.pg.query(
            "SELECT id FROM rtw_messages WHERE stream_id = %s AND type = 'broadcast' ORDER BY xid, id", (STREAM,))]
        stored = set(want)
        lost = [a for a in pub.acked if a not in stored]
        assert not pub.failed, "publishes refused or abandoned: %r" % pub.failed[:5]
        assert not lost, "acknowledged but not stored: %r" % lost[:10]
        assert len(pub.acked) > len(FAULTS) * RATE * GAP / 4, "too little traffic: %d" % len(pub.acked)

        def caught_up():
            return (all(len(r.ids) >= len(want) for r in readers.values())
                    and all(len(c["ids"]) >= len(want) or c["closed"] for c in es.report()))
        try:
            T.wait_for(caught_up, 90, "every subscriber to catch up")
        except Exception:  # noqa: BLE001 - judged below, with details
            pass
        pids = [st.daemons[n].proc.pid for n in ("rtw-sse", "rtw-sse-2")]
        log("rtw-sse RSS after (new processes after restarts): %s KiB" % [rss_kib(p) for p in pids])
        log("%d stored, %d acked, %d publisher retries" % (len(want), len(pub.acked), pub.retries))

        problems = []
        for name, r in readers.items():
            log("reader %s: %d ids, %d reconnects, refusals %s" % (name, len(r.ids), r.reconnects,
                                                                   sorted(set(r.refusals))))
            if r.ids != want:
                problems.append("reader %s: %s" % (name, first_divergence(r.ids, want)))
            # the contract: transient trouble never answers /events with a
            # non-200 (a standard EventSource would give up for good)
            transient = sorted(set(s for s in r.refusals if s not in (401, 403, 404, 429)))
            if transient:
                problems.append("reader %s was answered %s on /events" % (name, transient))
        report = es.report()
        gave_up = [c for c in report if c["closed"]]
        log("EventSource clients: %d, gave up: %d, reconnects (errors) total %d" % (
            len(report), len(gave_up), sum(c["errors"] for c in report)))
        for i, c in enumerate(report):
            if c["closed"]:
                problems.append("EventSource %d gave up (%s)" % (i, c["close_reason"]))
            elif c["ids"] != want:
                problems.append("EventSource %d: %s" % (i, first_divergence(c["ids"], want)))
        # memory flat: the same processes, across faults and storm waves
        assert span["pids"] == faults.storm_pids, "rtw-sse restarted within the span it is measured over"
        for what, a, b in (("over the faults", span["before"], span["after"]),
                           ("from storm wave 1 to 2", faults.storm_rss[0], faults.storm_rss[1])):
            growth = max(y - x for x, y in zip(a, b))
            if growth > RSS_GROWTH_MAX_KIB:
                problems.append("rtw-sse RSS grew %d KiB %s (%s -> %s)" % (growth, what, a, b))
        assert not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems[:20]))
        for n in ("rtw-sse", "rtw-sse-2", "rtw-fcgi", "rtw-webhookd"):
            assert st.daemons[n].running(), n + " is not running at the end"
    finally:
        pub.stop_ev.set()
        for r in readers.values():
            r.stop_ev.set()
        es.quit()


if __name__ == "__main__":
    T.main()
