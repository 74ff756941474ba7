"""bench/driver.py: the scenarios of bench/run, rtw against Nchan side by
side. Starts the stacks (bench/stack.py helpers over rtwtest), runs each
scenario on every target in turn (alternating, so drift hits all alike),
takes medians over the repetitions and prints one table with the ratios
and the targets of the performance issue. Never asserts: it measures.

Every raw result goes to OUT/results.jsonl, the table to OUT/table.md
(OUT: --out, default var/bench/<timestamp>).
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stack  # noqa: E402
import rtwtest  # noqa: E402  (stack put it on sys.path)


class Ns:
    pass


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Targets:
    """The running servers and how to reach them."""

    def __init__(self, args, workers, apache_streams=0):
        self.args = args
        self.workers = workers
        self.nchan_stopper, self.nchan = stack.nchan(self._ns(workers=workers))
        self.rtw = None
        self.rtw_stack = None
        if args.rtw and os.path.exists(rtwtest.prog("rtw-sse")) and os.path.exists(rtwtest.prog("rtw-fcgi")):
            self.rtw_stack, self.rtw = stack.rtw(self._ns(sse_procs=workers, apache_streams=apache_streams))
            if args.rtw_b_env:
                # a second rtw-sse on the same stack, other options: A/B in one run
                env = dict(kv.split("=", 1) for kv in args.rtw_b_env.split(","))
                port = rtwtest.free_port()
                d = self.rtw_stack.start_sse(name="rtw-sse-b", port=port, env=env)
                self.rtw["b_port"], self.rtw["b_pids"] = port, [d.proc.pid]
        elif args.rtw:
            log("rtw binaries missing (%s): Nchan only" % rtwtest.prog("rtw-sse"))

    @staticmethod
    def _ns(**kw):
        n = Ns()
        n.__dict__.update(kw)
        return n

    def names(self, via_nginx=False, via_apache=False, tls=False):
        if tls:
            # subscribers over TLS: Nchan behind nginx's TLS against rtw-sse's
            # own TLS port, with both plain direct paths of the same run
            return ["nchan", "nchan-tls"] + (["rtw", "rtw-tls"] if self.rtw else [])
        out = ["nchan"]
        if self.rtw:
            out.append("rtw")
            if "b_port" in self.rtw:
                out.append("rtw-b")
            if via_nginx:
                out.append("rtw-nginx")
                if self.rtw.get("events_port"):
                    out.append("rtw-stream")
            if via_apache and self.rtw.get("apache_port"):
                out.append("rtw-apache")
        return out

    def restart_servers(self):
        """Fresh SSE servers (same PostgreSQL): for memory measured from a cold heap."""
        self.nchan_stopper.stop_all()
        self.nchan_stopper, self.nchan = stack.nchan(self._ns(workers=self.workers))
        if self.rtw_stack:
            pids = []
            for name, d in sorted(self.rtw_stack.daemons.items()):
                if name.startswith("rtw-sse"):
                    d.stop()
            for name, d in sorted(self.rtw_stack.daemons.items()):
                if name.startswith("rtw-sse"):
                    d.start()
                    pids.append(d.proc.pid)
            self.rtw["sse_pids"] = pids

    def stop(self):
        self.nchan_stopper.stop_all()
        if self.rtw_stack:
            self.rtw_stack.stop_all()
            self.rtw_stack.pg.stop()

    def pids_all(self, name):
        if name in ("nchan", "nchan-tls"):
            return self.nchan["pids"]
        r = self.rtw
        pg = stack.postgres_pids(self.rtw_stack.pg.dir)
        # publishing always goes through nginx; Apache only when it carries the streams
        front = r["apache_pids"] if name == "rtw-apache" else []
        sse = r["b_pids"] if name == "rtw-b" else r["sse_pids"]
        return sse + r["fcgi_pids"] + stack.pids_of(r["nginx_master"]) + front + pg

    def front_pids(self, name):
        """The front's processes for target name: Apache's for its column,
        else nginx's (it proxies every target's publishing); [] for Nchan."""
        if name in ("nchan", "nchan-tls") or not self.rtw:
            return []
        # masters only: cpu_seconds adds their children
        return self.rtw["apache_pids"][:1] if name == "rtw-apache" else [self.rtw["nginx_master"]]

    def bench_args(self, name, stream):
        """rtw-bench arguments that address target name on stream."""
        tls = ["--tls", "1"] if name.endswith("-tls") else []
        if name in ("nchan", "nchan-tls"):
            p = self.nchan["port"]
            sp = self.nchan["tls_port"] if tls else p
            pids = self.nchan["pids"]
            return tls + ["--format", "nchan", "--sub", "127.0.0.1:%d/sub/%s" % (sp, stream),
                    "--pub", "127.0.0.1:%d/pub/%s" % (p, stream),
                    "--pids", ",".join(map(str, pids)), "--pids-all", ",".join(map(str, pids))]
        r = self.rtw
        sub_port = {"rtw": r["sse_port"], "rtw-apache": r["apache_port"], "rtw-b": r.get("b_port"),
                    "rtw-stream": r.get("events_port"), "rtw-tls": r.get("tls_port")}.get(name, r["http_port"])
        sse_pids = r["b_pids"] if name == "rtw-b" else r["sse_pids"]
        return tls + ["--format", "rtw", "--widget-key", r["widget_key"], "--token", r["token"],
                "--sub", "127.0.0.1:%d/v1/streams/%s/events" % (sub_port, stream),
                "--pub", "127.0.0.1:%d/v1/streams/%s/messages" % (r["http_port"], stream),
                "--pids", ",".join(map(str, sse_pids)),
                "--pids-all", ",".join(map(str, self.pids_all(name)))]

    def sse_metrics(self, name):
        """rtw-sse's /metrics counters and histogram buckets for target name (direct targets), else {}."""
        port = {"rtw": self.rtw and self.rtw["sse_port"], "rtw-b": self.rtw and self.rtw.get("b_port"),
                "rtw-tls": self.rtw and self.rtw["sse_port"]}.get(name)
        if not port:
            return {}
        try:
            body = rtwtest.request(port, "GET", "/metrics").body
        except OSError:
            return {}
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out


class Runner:
    def __init__(self, args):
        self.args = args
        self.tool = args.tool
        os.makedirs(args.out, exist_ok=True)
        self.results = open(os.path.join(args.out, "results.jsonl"), "a")
        self.rows = {}  # (scenario, metric) -> {target: [values]}
        self.loads = []

    @staticmethod
    def load():
        """1-minute load average: the box is shared, so each result says how busy it was."""
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])

    def bench(self, mode, argv, label, sse_before=None, t=None, name=None):
        cmd = [self.tool, mode] + argv + ["--label", label]
        self.loads.append(self.load())
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
        try:
            res = json.loads(line)
        except ValueError:
            res = {}
        res["label"] = label
        if sse_before:
            # rtw-sse's own view of the run: per-stage histograms, writes per delivery
            after = t.sse_metrics(name)
            res["sse"] = {k: after[k] - sse_before.get(k, 0) for k in after
                          if k.startswith(("rtw_sse_stage_seconds", "rtw_sse_delivery_lag_seconds",
                                           "rtw_sse_writes_total", "rtw_sse_events_delivered_total",
                                           "rtw_sse_tail_unsettled_total", "rtw_sse_coalesce_holds_total",
                                           "rtw_sse_tail_rows_total"))}
            d = res["sse"].get("rtw_sse_events_delivered_total")
            if d:
                res["deliveries_per_write"] = d / max(1, res["sse"].get("rtw_sse_writes_total", 0))
        self.results.write(json.dumps(res) + "\n")
        self.results.flush()
        log(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "%s: no output (rc %d)" % (label, r.returncode))
        return res

    def add(self, scenario, metric, target, value):
        self.rows.setdefault((scenario, metric), {}).setdefault(target, []).append(value)

    @staticmethod
    def stream():
        return "b%d%04d" % (int(time.time() * 1000) % 100000000, random.randrange(10000))

    # ---- scenarios --------------------------------------------------------

    @staticmethod
    def _bucket_q(sse, family, q, labels=""):
        """Upper bound (ms) of the bucket holding quantile q of an rtw-sse histogram delta."""
        pre = family + "_bucket{" + labels
        b = sorted((float(k.split('le="')[1][:-2].replace("+Inf", "inf")), v) for k, v in sse.items() if k.startswith(pre))
        if not b or not b[-1][1]:
            return None
        for le, v in b:
            if v >= q * b[-1][1]:
                return le * 1000

    def tail_rows(self, scen, name, res):
        """The tail's targets (issue 11 item 3, issue 15) and where a delivery waits."""
        self.add(scen, "p99 ms, worst rep", name, res.get("p99_ms"))
        self.add(scen, "publish -> 201 p99 ms (commit included)", name, res.get("pub_p99_ms"))
        sse = res.get("sse")
        if sse:
            self.add(scen, "rtw-sse deliveries per write", name, res.get("deliveries_per_write"))
            self.add(scen, "rtw-sse created_at -> dispatch p99 ms (bucket bound)", name,
                     self._bucket_q(sse, "rtw_sse_delivery_lag_seconds", 0.99))
            self.add(scen, "rtw-sse flush round p99 ms (bucket bound)", name,
                     self._bucket_q(sse, "rtw_sse_stage_seconds", 0.99, 'stage="flush",'))
            self.add(scen, "rtw-sse tail batches behind the horizon", name, sse.get("rtw_sse_tail_unsettled_total"))

    def fanout(self, t, subs, rate, duration, scen, tail=False, tls=False):
        for rep in range(self.args.reps):
            # Apache holds a thread per stream: only where bench/stack.py sized it for them
            names = t.names(via_nginx=True, via_apache=subs <= self.args.apache_streams, tls=tls)
            if tls and rep % 2:
                names.reverse()  # alternate: neither side always runs first
            if self.args.targets:
                names = [n for n in names if n in self.args.targets.split(",")]
            if rep % 2 and "rtw-b" in names:
                # A/B: B first every other rep, so neither side always runs
                # right after the other (or after Nchan)
                i, j = names.index("rtw"), names.index("rtw-b")
                names[i], names[j] = names[j], names[i]
            for name in names:
                before = t.sse_metrics(name)
                front = t.front_pids(name)
                front_cpu = stack.cpu_seconds(front)
                res = self.bench("run", t.bench_args(name, self.stream()) + [
                    "--conns", str(subs), "--rate", str(rate), "--duration", str(duration),
                    "--procs", str(max(1, subs // 5000)), "--pub-conns", "16", "--drain", "3"],
                    "%s %s rep%d" % (scen, name, rep), sse_before=before, t=t, name=name)
                if front and res.get("delivered"):
                    # the front's own share (nginx, or Apache for its column; nginx also proxies
                    # the publisher's POSTs, which is all it does for "rtw direct")
                    self.add(scen, "front CPU µs/delivery (nginx; Apache)", name,
                             (stack.cpu_seconds(front) - front_cpu) * 1e6 / res["delivered"])
                self.add(scen, "server CPU µs/delivery", name, res.get("cpu_us_per_delivery"))
                self.add(scen, "pipeline CPU µs/delivery", name, res.get("all_cpu_us_per_delivery"))
                self.add(scen, "published msg/s (acked)", name, res.get("pub_rate"))
                self.add(scen, "kept msg/s per sub", name, res.get("kept_msg_s"))
                self.add(scen, "p50 ms", name, res.get("p50_ms"))
                self.add(scen, "p99 ms", name, res.get("p99_ms"))
                self.add(scen, "lost", name, res.get("lost"))
                self.add(scen, "connected", name, res.get("connected"))
                if tail:
                    self.tail_rows(scen, name, res)

    @staticmethod
    def kept_up(res, subs, rate):
        """Every subscriber got every message, at the asked rate."""
        return (res.get("connected") == subs and res.get("lost", 1) == 0 and res.get("pub_ok") == res.get("pub_sent")
                and res.get("kept_msg_s", 0) >= 0.95 * rate)

    def maxrate(self, t, subs, rates, duration, scen):
        """Steps the rate up. Two answers: the highest rate kept up with
        (no loss, >= 95% of the asked rate delivered during publishing) and
        the highest with also p99 < 100 ms. The box is shared, so a failed
        step is tried once more before it counts."""
        for rep in range(self.args.reps):
            for name in t.names():
                best_keep = best_p99 = 0
                p99_chain = True  # every rate so far also met p99 < 100 ms
                for rate in rates:
                    keep = p99 = False
                    for attempt in range(2):
                        res = self.bench("run", t.bench_args(name, self.stream()) + [
                            "--conns", str(subs), "--rate", str(rate), "--duration", str(duration),
                            "--pub-conns", "16", "--drain", "2"],
                            "%s %s rep%d rate %d try %d" % (scen, name, rep, rate, attempt))
                        if self.kept_up(res, subs, rate):
                            keep = True
                            p99 = p99 or res.get("p99_ms", 1e9) < 100
                        if keep and (p99 or not p99_chain):
                            break
                    if not keep:
                        break
                    best_keep = rate
                    if p99 and p99_chain:
                        best_p99 = rate
                    else:
                        p99_chain = False
                self.add(scen, "highest msg/s kept up (no loss)", name, best_keep)
                self.add(scen, "highest msg/s with p99 < 100 ms", name, best_p99)
                self.add(scen, "deliveries/s kept up", name, best_keep * subs)

    def idle(self, t, conns, procs, hold, scen, tls=False):
        """RSS growth per idle connection, twice per fresh server: first on a
        cold heap (what a new deployment pays), then again after those
        connections closed (a warm heap reuses what the first burst left)."""
        for rep in range(self.args.reps):
            if rep:
                t.restart_servers()
            for name in t.names(tls=tls):
                for phase in ("fresh server", "warm server"):
                    a = t.bench_args(name, self.stream())
                    a = a[:a.index("--pub")] + a[a.index("--pub") + 2:]
                    res = self.bench("idle", a + ["--conns", str(conns), "--procs", str(procs), "--hold", str(hold),
                                                  "--connect-timeout", "120"], "%s %s rep%d %s" % (scen, name, rep, phase))
                    if phase == "fresh server":
                        self.add(scen, "connected", name, res.get("connected"))
                    self.add(scen, "server RSS B/conn, %s" % phase, name, res.get("rss_bytes_per_conn"))
                    time.sleep(3)  # let the server reap the closed connections

    def wrk(self, port, script, env, duration, conns, label):
        e = dict(os.environ)
        e.update(env)
        self.loads.append(self.load())
        cmd = ["wrk", "-t2", "-c%d" % conns, "-d%ds" % duration, "--latency", "-s", script,
               "http://127.0.0.1:%d/" % port]
        # wrk's own CPU: the children waited for during the run (wrk alone)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=duration + 60)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = {}
        for line in r.stdout.splitlines():
            if line.startswith("WRKJSON "):
                res = json.loads(line[8:])
        res["label"] = label
        res["cpu_s"] = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        ok = sum(v for k, v in res.get("statuses", {}).items() if k.startswith("2"))
        res["ok_per_s"] = ok / res["duration_s"] if res.get("duration_s") else 0
        self.results.write(json.dumps(res) + "\n")
        self.results.flush()
        log("%s: %.0f ok/s, p50 %.1f ms p99 %.1f ms, statuses %s" % (
            label, res["ok_per_s"], res.get("p50_ms", -1), res.get("p99_ms", -1), res.get("statuses")))
        return res

    # Durable ingest through nginx, one message per POST, in three nginx
    # configurations side by side (each its own nginx, same PostgreSQL):
    # "before" is the configuration shipped until performance round two
    # (a new FastCGI TCP connection per request, an unbuffered access
    # log); "kept" is conf/nginx*.conf as shipped now over TCP; "kept,
    # unix" the same to an rtw-fcgi on a unix socket; "kept, unix, B" the
    # same to another build's rtw-fcgi (RTW_BENCH_FCGI_B, bench/stack.py),
    # when one is given.
    INGEST_VARIANTS = (("before", False), ("kept", False), ("kept, unix", True), ("kept, unix, B", True))

    def ingest_variants(self, t):
        return [(v, unix) for v, unix in self.INGEST_VARIANTS if not v.endswith(", B") or t.rtw.get("fcgi_b")]

    def ingest_front(self, t, variant, unix):
        """Starts an nginx for one ingest variant; returns its port."""
        st = t.rtw_stack
        rundir = os.path.join(st.tmp, "ingest-" + variant.replace(", ", "-"))
        os.makedirs(rundir, exist_ok=True)
        port = rtwtest.free_port()
        sock = t.rtw["fcgi_b"] if variant.endswith(", B") else t.rtw["fcgi_unix"]
        addr = ("unix:" + sock) if unix else "127.0.0.1:%d" % t.rtw["fcgi_port"]
        conf = st.render("nginx.conf.in", RUNDIR=rundir, LISTEN="127.0.0.1:%d" % port, REQ_RATE="1000000r/s",
                         FCGI_ADDR=addr, SSE_ADDR="127.0.0.1:%d" % t.rtw["sse_port"],
                         WEBROOT=os.path.join(rtwtest.SRCDIR, "web"), CONFDIR=rundir)
        rtwconf = st.render("nginx-rtw.conf")
        if variant == "before":
            assert "fastcgi_keep_conn on;" in rtwconf and " buffer=64k flush=1s;" in conf
            rtwconf = rtwconf.replace("fastcgi_keep_conn on;", "fastcgi_keep_conn off;")
            conf = conf.replace(" buffer=64k flush=1s;", ";").replace("keepalive 8;", "keepalive 32;")
        with open(os.path.join(rundir, "nginx-rtw.conf"), "w") as f:
            f.write(rtwconf)
        with open(os.path.join(rundir, "nginx.conf"), "w") as f:
            f.write(conf)
        subprocess.run(["nginx", "-c", os.path.join(rundir, "nginx.conf"), "-e",
                        os.path.join(rundir, "nginx-error.log")], check=True)
        rtwtest.wait_port(port)
        with open(os.path.join(rundir, "nginx.pid")) as f:
            self.ingest_nginx.append(int(f.read().strip()))
        return port

    def ingest(self, t, duration, conns):
        self.ingest_nginx = []
        fronts = {}
        if t.rtw:
            fronts = {v: self.ingest_front(t, v, unix) for v, unix in self.ingest_variants(t)}
        try:
            self._ingest(t, duration, conns, fronts)
        finally:
            for pid in self.ingest_nginx:
                os.kill(pid, 15)

    def ingest_parts(self, t, name):
        """{part: pids} whose CPU one ingest variant spends."""
        fcgi = (t.rtw["fcgi_b_pid"] if name.endswith(", B") else t.rtw["fcgi_unix_pid"] if name.endswith("unix")
                else t.rtw["fcgi_pids"][0])
        ngx = self.ingest_nginx[[v for v, _ in self.ingest_variants(t)].index(name)]
        return {"nginx": [ngx], "rtw-fcgi": [fcgi], "PostgreSQL": stack.postgres_pids(t.rtw_stack.pg.dir)[:1]}

    def _ingest(self, t, duration, conns, fronts):
        for rep in range(self.args.reps):
            for scen, streams in (("ingest, 100 streams", 100), ("ingest, one hot stream", 1)):
                for name in ["nchan"] + list(fronts):
                    prefix = self.stream()
                    if name == "nchan":
                        res = self.wrk(t.nchan["port"], os.path.join(HERE, "nchan_post.lua"),
                                       {"RTW_BENCH_STREAMS": str(streams), "RTW_BENCH_PREFIX": prefix},
                                       duration, conns, "%s nchan rep%d" % (scen, rep))
                        self.add(scen, "accepted msg/s (2xx)", "nchan", res.get("ok_per_s"))
                        self.add(scen, "p99 ms", "nchan", res.get("p99_ms"))
                        continue
                    parts = self.ingest_parts(t, name)
                    cpu0 = {k: stack.cpu_seconds(v) for k, v in parts.items()}
                    res = self.wrk(fronts[name], os.path.join(HERE, "post.lua"), {
                        "RTW_BENCH_TOKEN": t.rtw["token"], "RTW_BENCH_WIDGET_KEY": t.rtw["widget_key"],
                        "RTW_BENCH_STREAMS": str(streams), "RTW_BENCH_PREFIX": prefix},
                        duration, conns, "%s rtw-nginx %s rep%d" % (scen, name, rep))
                    # Durable: every 201 must be a stored row (the streams
                    # are this run's own); counted after wrk has stopped.
                    acked = res.get("statuses", {}).get("201", 0)
                    rows = t.rtw_stack.pg.query(
                        "SELECT count(*) FROM rtw_messages WHERE stream_id LIKE %s", (prefix + "-%",))[0][0]
                    lost = max(acked - rows, 0)
                    durable = min(acked, rows) / res["duration_s"] if res.get("duration_s") else 0
                    log("%s rtw-nginx %s: %d acknowledged, %d stored, %.0f durable msg/s" % (
                        scen, name, acked, rows, durable))
                    label = "%s (nginx: %s)" % (scen, name)
                    self.add(label, "durable msg/s (201, stored)", "rtw-nginx", durable)
                    self.add(label, "p99 ms", "rtw-nginx", res.get("p99_ms"))
                    bad = sum(v for k, v in res.get("statuses", {}).items() if not k.startswith("2"))
                    self.add(label, "non-2xx", "rtw-nginx", bad + res.get("socket_errors", 0))
                    self.add(label, "201 not stored", "rtw-nginx", lost)
                    # where the CPU goes, per stored message, the load tool's included
                    cpu = {k: stack.cpu_seconds(v) - cpu0[k] for k, v in parts.items()}
                    cpu["wrk"] = res.get("cpu_s", 0)
                    for k, v in cpu.items():
                        self.add(label, "CPU us/msg, %s" % k, "rtw-nginx", v * 1e6 / rows if rows else None)
                    self.add(label, "CPU us/msg, all four", "rtw-nginx",
                             sum(cpu.values()) * 1e6 / rows if rows else None)

    def soak(self, t, subs, rate, minutes):
        """Memory over a long fan-out (a new stream and new subscribers every
        minute): RSS of the servers after the first minute and its growth
        from there to the end (the first minute pays the heap's warm-up)."""
        scen = "soak %d subs x %d msg/s, %d min" % (subs, rate, minutes)
        for name in t.names():
            pids = t.pids_all(name) if name == "nchan" else t.rtw["sse_pids"] + t.rtw["fcgi_pids"]
            after_first = None
            for i in range(minutes):
                self.bench("run", t.bench_args(name, self.stream()) + [
                    "--conns", str(subs), "--rate", str(rate), "--duration", "55", "--drain", "2"],
                    "soak %s minute %d" % (name, i))
                rss = self.rss(pids)
                log("soak %s: RSS %d KiB after minute %d" % (name, rss, i))
                if after_first is None:
                    after_first = rss
            self.add(scen, "server RSS KiB after minute 1", name, after_first)
            self.add(scen, "RSS growth KiB after minute 1", name, rss - after_first)

    @staticmethod
    def rss(pids):
        total = 0
        for p in pids:
            try:
                with open("/proc/%d/status" % p) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    # ---- the tables ---------------------------------------------------------

    def median(self, scen, metric, col):
        """The median of one cell; scen may be a prefix ("fan-out 1,000")
        since some scenario names carry --quick's smaller sizes."""
        for (s, m), vals in self.rows.items():
            if m == metric and s.startswith(scen):
                v = [x for x in vals.get(col, []) if isinstance(x, (int, float))]
                return statistics.median(v) if v else None
        return None

    def table(self, targets):
        def agg(metric, v):
            v = [x for x in v if isinstance(x, (int, float))]
            if not v:
                return None
            return max(v) if "worst rep" in metric else statistics.median(v)

        cols = ["nchan", "rtw", "rtw-nginx", "rtw-stream", "rtw-apache"]
        heads = ["Nchan", "rtw direct", "rtw via nginx", "rtw via nginx stream", "rtw via Apache"]
        if any("rtw-tls" in vals for vals in self.rows.values()):
            cols += ["nchan-tls", "rtw-tls"]
            heads += ["Nchan behind nginx TLS", "rtw-sse direct TLS"]
        if self.args.rtw_b_env:
            cols.append("rtw-b")
            heads.append("rtw direct, %s" % self.args.rtw_b_env)
        out = ["| scenario | metric | %s | rtw / Nchan |" % " | ".join(heads),
               "|---|---|" + "---|" * (len(cols) + 1)]
        for (scen, metric), vals in self.rows.items():
            m = {c: agg(metric, vals.get(c, [])) for c in cols}
            ratio = "n/a"
            if m["nchan"] and m["rtw"] is not None:
                ratio = "%.2f" % (m["rtw"] / m["nchan"])
            out.append("| %s | %s | %s | %s |" % (scen, metric, " | ".join(fmt(m[c]) for c in cols), ratio))
        return "\n".join(out)

    def targets_table(self):
        """One row per target of TARGETS whose scenario ran: rtw's measured
        value, Nchan's figure of the same run, and whether it is met."""
        out = ["| target | rtw | Nchan, same run | met? |", "|---|---|---|---|"]
        for t in TARGETS:
            v = self.median(t.scen, t.metric, t.col)
            if v is None:
                continue
            n = self.median(t.nchan_scen or t.scen, t.nchan_metric or t.metric, t.nchan_col)
            met = t.check(v, n, self.median)
            out.append("| %s | %s | %s | %s |" % (t.text, fmt(v), fmt(n), "n/a" if met is None else
                                                  ("**yes**" if met else "**no**")))
        return "\n".join(out)


def fmt(x):
    if x is None:
        return "n/a"
    if isinstance(x, float) and abs(x) < 100 and x != int(x):
        return "%.2f" % x
    return "{:,}".format(int(round(x)))


class Target:
    """A target of the performance issue: the cell (scenario prefix, metric,
    column) that measures it, and check(value, nchan, median) -> met? where
    median(scen, metric, col) reads any other cell of the same run (None
    when a cell it needs did not run). nchan_metric, nchan_scen: Nchan's
    comparable metric and scenario when they are not the same ones;
    nchan_col: Nchan's column (the TLS rows compare with Nchan behind
    nginx's TLS)."""

    def __init__(self, text, scen, metric, col, check, nchan_metric=None, nchan_scen=None, nchan_col="nchan"):
        self.text, self.scen, self.metric, self.col = text, scen, metric, col
        self.check, self.nchan_metric, self.nchan_scen = check, nchan_metric, nchan_scen
        self.nchan_col = nchan_col


def _within_5ms_of_direct(scen):
    def check(v, n, median):
        direct = median(scen, "p50 ms", "rtw")
        return None if direct is None else v <= direct + 5
    return check


FAN = "fan-out 1,000"
BIG = "10,000 subs"
TLS = "TLS: fan-out 1,000"
TLS_IDLE = "TLS: idle"
# The targets bench/run reports on, in the order printed. Add a row next to
# the scenario that measures it; rows whose scenario did not run are left out.
TARGETS = [
    Target("via nginx: pipeline CPU µs/delivery ≤ Nchan's (1,000 × 80)", FAN, "pipeline CPU µs/delivery",
           "rtw-nginx", lambda v, n, _: None if n is None else v <= n),
    Target("via nginx: p50 ms within 5 ms of rtw direct (1,000 × 80)", FAN, "p50 ms", "rtw-nginx",
           _within_5ms_of_direct(FAN)),
    Target("via nginx stream (PROXY protocol): pipeline CPU µs/delivery ≤ Nchan's (1,000 × 80)", FAN,
           "pipeline CPU µs/delivery", "rtw-stream", lambda v, n, _: None if n is None else v <= n),
    Target("via nginx stream (PROXY protocol): p50 ms within 5 ms of rtw direct (1,000 × 80)", FAN, "p50 ms",
           "rtw-stream", _within_5ms_of_direct(FAN)),
    Target("via Apache: pipeline CPU µs/delivery ≤ Nchan's (1,000 × 80)", FAN, "pipeline CPU µs/delivery",
           "rtw-apache", lambda v, n, _: None if n is None else v <= n),
    Target("via Apache: p50 ms within 5 ms of rtw direct (1,000 × 80)", FAN, "p50 ms", "rtw-apache",
           _within_5ms_of_direct(FAN)),
    Target("direct: server CPU µs/delivery ≤ ⅓ of Nchan's (1,000 × 80)", FAN, "server CPU µs/delivery", "rtw",
           lambda v, n, _: None if n is None else v <= n / 3),
    Target("direct: p99 ms < 50 (1,000 × 80)", FAN, "p99 ms", "rtw", lambda v, n, _: v < 50),
    Target("direct: p99 ms < 100 (10,000 × 20)", BIG, "p99 ms", "rtw", lambda v, n, _: v < 100),
    Target("via nginx: p99 ms < 100 (10,000 × 20)", BIG, "p99 ms", "rtw-nginx", lambda v, n, _: v < 100),
    Target("via nginx stream: p99 ms < 100 (10,000 × 20)", BIG, "p99 ms", "rtw-stream", lambda v, n, _: v < 100),
    Target("durable ingest through nginx ≥ 10,000 msg/s (100 streams, FastCGI over TCP)",
           "ingest, 100 streams (nginx: kept)", "durable msg/s (201, stored)", "rtw-nginx",
           lambda v, n, _: v >= 10000, nchan_metric="accepted msg/s (2xx)", nchan_scen="ingest, 100 streams"),
    Target("durable ingest through nginx ≥ 10,000 msg/s (100 streams, FastCGI over a unix socket)",
           "ingest, 100 streams (nginx: kept, unix)", "durable msg/s (201, stored)", "rtw-nginx",
           lambda v, n, _: v >= 10000, nchan_metric="accepted msg/s (2xx)", nchan_scen="ingest, 100 streams"),
    Target("direct TLS: pipeline CPU µs/delivery ≤ Nchan behind nginx TLS (1,000 × 80)", TLS,
           "pipeline CPU µs/delivery", "rtw-tls", lambda v, n, _: None if n is None else v <= n,
           nchan_col="nchan-tls"),
    Target("direct TLS: server CPU µs/delivery ≤ ⅓ of Nchan behind nginx TLS (1,000 × 80)", TLS,
           "server CPU µs/delivery", "rtw-tls", lambda v, n, _: None if n is None else v <= n / 3,
           nchan_col="nchan-tls"),
    Target("direct TLS: p99 ms < 50 (1,000 × 80)", TLS, "p99 ms", "rtw-tls", lambda v, n, _: v < 50,
           nchan_col="nchan-tls"),
    Target("direct TLS: idle server RSS B/subscriber ≤ Nchan behind nginx TLS", TLS_IDLE,
           "server RSS B/conn, fresh server", "rtw-tls", lambda v, n, _: None if n is None else v <= n,
           nchan_col="nchan-tls"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--only", default="", help="comma list: fanout,front,maxrate,big,idle,ingest,soak,tail,tls")
    ap.add_argument("--workers", type=int, default=1, help="rtw-sse processes = Nchan nginx workers")
    ap.add_argument("--idle-workers", type=int, default=3)
    ap.add_argument("--apache-streams", type=int, default=1000,
                    help="size the Apache front for N subscribers (0: no Apache)")
    ap.add_argument("--no-rtw", dest="rtw", action="store_false")
    ap.add_argument("--rtw-b-env", default="",
                    help="KEY=VAL,...: a second rtw-sse with these options, measured alongside (fan-out scenarios)")
    ap.add_argument("--targets", default="",
                    help="comma list: only these of nchan,rtw,rtw-b,rtw-nginx,rtw-apache (fan-out scenarios)")
    ap.add_argument("--soak-minutes", type=int, default=0)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    only = set(filter(None, args.only.split(",")))
    want = (lambda s: not only or s in only)
    q = args.quick
    r = Runner(args)
    t0 = time.time()

    t = Targets(args, args.workers, args.apache_streams)
    try:
        if want("fanout") or "front" in only:  # front: the fan-out, for the fronts' rows alone
            r.fanout(t, 1000, 80, 4 if q else 10, "fan-out 1,000 subs x 80 msg/s")
        if "tail" in only:  # only when asked: the fan-out again, with where deliveries wait
            r.fanout(t, 1000, 80, 4 if q else 10, "tail: 1,000 subs x 80 msg/s", tail=True)
        if want("maxrate"):
            rates = [100, 300, 900] if q else [40, 60, 80, 100, 120, 150, 180, 220, 270, 330, 400, 500,
                                                          600, 800, 1000, 1300, 1600, 2000]
            r.maxrate(t, 1000, rates, 3 if q else 5, "max rate, 1,000 subs")
        if want("big"):
            subs = 3000 if q else 10000
            # tail rows too: deliveries per write and the flush round say why p99 is what it is
            r.fanout(t, subs, 20, 4 if q else 10, "%s subs x 20 msg/s" % "{:,}".format(subs), tail=True)
        if want("ingest"):
            r.ingest(t, 4 if q else 10, 64)
        if want("tls"):
            # subscribers over TLS: rtw-sse's own port against Nchan behind
            # nginx's TLS, plain direct alongside; then idle memory per stream
            r.fanout(t, 1000, 80, 4 if q else 10, "TLS: fan-out 1,000 subs x 80 msg/s", tls=True)
            t.restart_servers()  # idle memory from a cold heap, as the idle scenario measures it
            r.idle(t, 2000 if q else 5000, 1, 3 if q else 5, "TLS: idle %s conns (1 server proc)"
                   % ("2,000" if q else "5,000"), tls=True)
        if want("soak") and args.soak_minutes:
            r.soak(t, 1000, 50, args.soak_minutes)
    finally:
        t.stop()
    if want("idle"):
        t = Targets(args, args.idle_workers)
        try:
            conns = 5000 if q else 50000
            r.idle(t, conns, 1 if q else 4, 3 if q else 5,
                   "idle %s conns (%d server procs)" % ("{:,}".format(conns), args.idle_workers))
        finally:
            t.stop()
    tab = r.table(t)
    head = ("rtw-bench on %s, %d cores, load tool on the same cores; %d rtw-sse process(es) = %d Nchan worker(s) "
            "(idle: %d); medians of %d; %.0f s total; load average at run starts: median %.1f, max %.1f; nice %d"
            % (os.uname().nodename, os.cpu_count(), args.workers, args.workers, args.idle_workers, args.reps,
               time.time() - t0, statistics.median(r.loads or [0]), max(r.loads or [0]), os.nice(0)))
    goals = r.targets_table()
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(head + "\n\n" + tab + "\n\n" + goals + "\n")
    print(head)
    print()
    print(tab)
    print()
    print(goals)


if __name__ == "__main__":
    main()
