#!/usr/bin/python3
"""bench/nodes.py: PostgreSQL's work per message as the number of rtw-sse
processes on one primary grows (issue 13 item 2, issue 15), with every
process tailing alone (sse.shared_tail = false), with the shared tail
(true) and with the host relay on top of it (relay: sse.relay set, so one
process of the host tails and feeds the others over a unix socket) side
by side.

One throwaway stack (tests/integration/rtwtest.py: PostgreSQL with
pg_stat_statements, rtw-fcgi, nginx) and, for each count K, K rtw-sse
processes on their own ports, each with one subscriber on stream
bench<i % 10> (so with 10 or more processes every stream is served
somewhere, and each process serves one stream in ten). For each K and
each repetition the modes run one after the other (the processes are
restarted in the other mode): an idle phase (nothing posted: the polls
only) and a publishing phase (messages posted one by one at a fixed rate
through nginx over 10 streams, one commit each). It prints one row per K
and mode, medians over the repetitions: rtw-sse statements per message
(tails with the horizon, follower ranges and probes), the CPU of the
rtw-sse backends and of every PostgreSQL process (from /proc/<pid>/stat;
the idle rate subtracted) per message and per idle second, and delivery
latency (POST sent to event read by the subscriber, every subscriber of
the message's stream) p50/p99, and where the backends' CPU sits (the
busiest backend, the leader's or the relay server's; the median one; the
followers' range scans' execution time from pg_stat_statements); then,
per mode, a "target:" line with PostgreSQL's CPU per message at the
fewest and the most processes and the slope between them (issue 15: it
must not grow linearly). Measures; never fails on a number. The machine
is shared: read ratios, not absolutes.

usage: RTW_BUILDDIR=$PWD/build/dev python3 bench/nodes.py [--counts 1,4,16,64]
       [--messages 200] [--rate 50] [--idle-s 5] [--reps 3] [--modes false,true,relay]
"""
import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
STREAMS = 10


def cpu_s(pids):
    """User + system CPU seconds of the processes still alive."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def sse_backends(pg):
    return [r[0] for r in pg.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'rtw-sse'")]


def range_exec_ms(pg):
    """Execution time of the followers' range scans so far, in ms."""
    r = pg.query("SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements WHERE query LIKE %s",
                 ("%(m.xid, m.id) <= ($3::xid8%", ))
    return float(r[0][0])


def pg_procs(pg):
    """Every PostgreSQL process: backends and background processes."""
    return [r[0] for r in pg.query("SELECT pid FROM pg_stat_activity")]


def sse_stats(pg):
    """(horizon tails, follower ranges, probes) rtw-sse ran so far."""
    out = []
    # patterns that survive pg_stat_statements' normalisation of constants
    for pat in ("%rtw_horizon() AS h%", "%(m.xid, m.id) <= ($3::xid8%", "%pg_try_advisory_lock%"):
        r = pg.query("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s", (pat, ))
        out.append(float(r[0][0]))
    return out


class Subscriber:
    """One SSE subscriber read by its own thread; records (n, latency)."""

    def __init__(self, port, stream, token, sent):
        self.c = rtwtest.SSEClient(port, "/v1/streams/%s/events" % stream,
                                   headers={"Authorization": "Bearer " + token})
        self.c.next_event(30)  # init
        self.sent, self.lat, self.stop = sent, [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                ev = self.c.next_event(0.5)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return
            n = ev["json"].get("message", {}).get("n")
            if n in self.sent:
                self.lat.append(time.time() - self.sent[n])

    def close(self):
        self.stop = True
        self.t.join(5)
        self.c.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,4,16,64")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="false,true,relay",
                    help="sse.shared_tail values, or relay (shared tail and sse.relay), run alternately")
    a = ap.parse_args()

    st = rtwtest.Stack(extra_env={"RTW_FCGI_WORKERS": "4", "RTW_LOG_LEVEL": "warn"})
    st.pg.psql_admin("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    st.pg.psql_admin("ALTER SYSTEM SET max_connections = 200")
    st.pg.restart()
    st.pg.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    st.start_fcgi()
    port = st.start_nginx()
    token = st.token("bench")
    running = []  # (name, port)
    state = {"mode": None}

    def ensure(k, mode):
        if state["mode"] != mode:
            while running:
                st.daemons.pop(running.pop()[0]).stop()
            state["mode"] = mode
        while len(running) < k:
            name = "rtw-sse-%d" % len(running)
            p = rtwtest.free_port()
            env = {"RTW_SSE_SHARED_TAIL": "true", "RTW_SSE_RELAY": "rtw-bench-relay-%d" % os.getpid()} \
                if mode == "relay" else {"RTW_SSE_SHARED_TAIL": mode}
            st.start_sse(name=name, port=p, env=env)
            running.append((name, p))
        while len(running) > k:
            st.daemons.pop(running.pop()[0]).stop()
        rtwtest.wait_for(lambda: len(sse_backends(st.pg)) >= k, 60, "%d rtw-sse backends" % k)
        time.sleep(1.5)  # the first probes and tails are done

    def phase(work, seconds):
        pids, allp = sse_backends(st.pg), pg_procs(st.pg)
        st.pg.query("SELECT pg_stat_statements_reset()")
        each0 = {p: cpu_s([p]) for p in pids}
        c0, a0, t0 = cpu_s(pids), cpu_s(allp), time.time()
        work() if work else time.sleep(seconds)
        q = sse_stats(st.pg)
        return {"q": q, "cpu": cpu_s(pids) - c0, "all": cpu_s(allp) - a0, "wall": time.time() - t0,
                "each": {p: cpu_s([p]) - c for p, c in each0.items()}, "range_ms": range_exec_ms(st.pg)}

    results = {}
    for k in [int(x) for x in a.counts.split(",")]:
        for rep in range(a.reps):
            for mode in a.modes.split(","):
                ensure(k, mode)
                sent = {}
                subs = [Subscriber(p, "bench%d" % (i % STREAMS), token, sent) for i, (_, p) in enumerate(running)]

                def publish():
                    gap = 1.0 / a.rate
                    t = time.time()
                    for n in range(a.messages):
                        sent[n] = time.time()
                        rtwtest.request(port, "POST", "/v1/streams/bench%d/messages" % (n % STREAMS),
                                        {"type": "broadcast", "widget_key": st.widget_key, "timestamp": n,
                                         "message": {"n": n}}, token=token)
                        t += gap
                        time.sleep(max(0.0, t - time.time()))
                    time.sleep(1.0)  # the last wake-ups finish

                idle = phase(None, a.idle_s)
                pub = phase(publish, 0)
                lat = [x for s in subs for x in s.lat]
                for s in subs:
                    s.close()
                m = a.messages
                # the idle rate is subtracted from the publishing phase: what
                # is left is the cost the messages caused
                extra = max(0.0, pub["cpu"] - idle["cpu"] / idle["wall"] * pub["wall"])
                extra_all = max(0.0, pub["all"] - idle["all"] / idle["wall"] * pub["wall"])
                # per rtw-sse backend: where the per-process cost sits (the
                # busiest is the leader's or the relay server's)
                each = sorted(max(0.0, c - idle["each"].get(p, 0.0) / idle["wall"] * pub["wall"])
                              for p, c in pub["each"].items())
                row = {
                    "idle_q": sum(idle["q"]) / idle["wall"], "idle_cpu": 1000 * idle["cpu"] / idle["wall"],
                    "tails": pub["q"][0] / m, "ranges": pub["q"][1] / m, "probes": pub["q"][2] / m,
                    "cpu": 1e6 * extra / m, "all": 1e6 * extra_all / m,
                    "busiest": 1e6 * each[-1] / m if each else 0.0,
                    "median_backend": 1e6 * statistics.median(each) / m if each else 0.0,
                    "range_us": 1000 * pub["range_ms"] / m,
                    "p50": 1000 * pct(lat, 50), "p99": 1000 * pct(lat, 99), "got": len(lat),
                    "want": sum(1 for i in range(k) for n in range(m) if n % STREAMS == i % STREAMS),
                }
                results.setdefault((k, mode), []).append(row)
                print("# K=%d mode=%s rep %d: %s (load %s)" % (k, mode, rep + 1, row,
                      " ".join(open("/proc/loadavg").read().split()[:3])), flush=True)

    print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    print("| rtw-sse procs | mode | idle q/s | idle sse-backend CPU ms/s | horizon tails/msg | ranges/msg "
          "| probes/msg | sse-backend CPU µs/msg | busiest backend µs/msg | median backend µs/msg "
          "| range scans' execution µs/msg | all-PostgreSQL CPU µs/msg | latency p50 ms | latency p99 ms "
          "| delivered/expected |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (k, mode), rows in results.items():
        def med(key):
            return statistics.median(r[key] for r in rows)
        print("| %d | %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %d/%d |" %
              (k, mode, med("idle_q"), med("idle_cpu"), med("tails"), med("ranges"), med("probes"), med("cpu"),
               med("busiest"), med("median_backend"), med("range_us"), med("all"), med("p50"), med("p99"),
               sum(r["got"] for r in rows), sum(r["want"] for r in rows)))
    # issue 15's last target: PostgreSQL's CPU per message must not grow
    # linearly with the number of processes. The slope (µs per message per
    # extra process, from the fewest to the most processes) says it.
    ks = sorted({k for k, _ in results})
    if len(ks) > 1:
        lo, hi = ks[0], ks[-1]
        for mode in a.modes.split(","):
            if (lo, mode) in results and (hi, mode) in results:
                c_lo = statistics.median(r["all"] for r in results[(lo, mode)])
                c_hi = statistics.median(r["all"] for r in results[(hi, mode)])
                print("target: PostgreSQL CPU per message, %d -> %d rtw-sse processes, mode %s: %.0f -> %.0f µs/msg "
                      "(%.2fx; %.0f µs per extra process)" % (lo, hi, mode, c_lo, c_hi, c_hi / max(c_lo, 1.0),
                                                              (c_hi - c_lo) / (hi - lo)))
    st.stop_all()


if __name__ == "__main__":
    threading.current_thread().name = "nodes"
    main()
