#!/usr/bin/python3
"""bench/batch.py: backend publishing throughput. Starts a durable rtw
stack (PostgreSQL with fsync and synchronous_commit on, rtw-fcgi, nginx;
bench/stack.py's way, through tests/integration/rtwtest.py), then:

  http  wrk (bench/batch.lua) POSTs batches of --batch messages over 100
        streams to /v1/messages through nginx, --conns connections, for
        --seconds; every 201 means the whole batch was committed durably.
  sql   one client calls rtw_publish() with arrays of --batch messages in
        autocommit, for --seconds.

Prints one line per run and checks the stored row count against what was
acknowledged. Measures; never fails on a number. Never touches the dev
stack.

usage: bench/batch.py [--batch 1000] [--conns 4] [--seconds 10] [--reps 3] [--only http,sql]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("RTW_BUILDDIR", os.path.join(HERE, "..", "build", "dev"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402
from stack import cpu_seconds  # noqa: E402

tempfile.tempdir = os.environ.get("RTW_BENCH_TMP", "/tmp/rtwbench")
os.makedirs(tempfile.tempdir, mode=0o755, exist_ok=True)


def batch_body(st, n, text):
    return [{"stream_id": "batch-%d" % (i % 100), "type": "broadcast", "widget_key": st.widget_key,
             "timestamp": i + 0.5, "message": {"seq": i, "text": text}, "author_id": "bench-backend"}
            for i in range(n)]


def stored(st):
    return st.pg.query("SELECT count(*) FROM rtw_messages")[0][0]


def processes(st):
    with open(os.path.join(st.pg.dir, "postmaster.pid")) as f:
        pg = int(f.readline())
    with open(st.nginx_pidfile) as f:
        ngx = int(f.read().strip())
    return {"rtw-fcgi": [st.daemons["rtw-fcgi"].proc.pid], "postgres": [pg], "nginx": [ngx]}


def run_http(st, args, body_file, rep):
    token = st.token("bench-backend", ttl=24 * 3600, service=True)
    before = stored(st)
    procs = processes(st)
    cpu0 = {k: cpu_seconds(v) for k, v in procs.items()}
    env = dict(os.environ, RTW_BENCH_TOKEN=token, RTW_BENCH_BODY=body_file)
    cmd = ["wrk", "-t2", "-c%d" % args.conns, "-d%ds" % args.seconds, "--latency", "-s",
           os.path.join(HERE, "batch.lua"), "http://127.0.0.1:%d/" % st.http_port]
    load = os.getloadavg()[0]
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.seconds + 120)
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (wrk1.ru_utime + wrk1.ru_stime) - (wrk0.ru_utime + wrk0.ru_stime)
    res = {}
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            res = json.loads(line[8:])
    if not res:
        print("wrk said:", r.stdout, r.stderr)
        return
    ok = res["statuses"].get("201", 0)
    after = stored(st)
    cpu = ", ".join("%s %.2f" % (k, (cpu_seconds(v) - cpu0[k]) / max(ok, 1) * 1000)
                    for k, v in procs.items())
    # the load tool runs on the same cores: its share is part of the picture
    cpu += ", wrk %.2f; load average %.1f" % (wrk_cpu / max(ok, 1) * 1000, load)
    print("http rep%d: %d msg/s durable (%d batches of %d in %.1f s, %.1f batches/s), p50 %.0f ms, p99 %.0f ms, "
          "statuses %s; rows stored %d (acknowledged %d); CPU ms per batch: %s" % (
              rep, ok * args.batch / res["duration_s"], ok, args.batch, res["duration_s"],
              ok / res["duration_s"], res["p50_ms"], res["p99_ms"], res["statuses"], after - before,
              ok * args.batch, cpu), flush=True)


def run_sql(st, args, body, rep):
    conn = st.pg.connect()
    text = json.dumps(body)
    before = stored(st)
    n = 0
    t0 = time.time()
    with conn.cursor() as cur:
        while time.time() - t0 < args.seconds:
            cur.execute("SELECT jsonb_array_length(rtw_publish(%s::jsonb))", (text,))
            n += cur.fetchone()[0]
    dt = time.time() - t0
    conn.close()
    print("sql  rep%d: %d msg/s durable (rtw_publish of %d, one client, %.1f s); rows stored %d" % (
        rep, n / dt, args.batch, dt, stored(st) - before), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--text", default="price changed: 12.90 EUR, was 14.90 EUR")
    ap.add_argument("--only", default="http,sql")
    args = ap.parse_args()
    only = set(args.only.split(","))

    st = rtwtest.Stack(durable=True, extra_env={"RTW_LOG_LEVEL": "warn"})
    st.start_fcgi()
    st.start_nginx()
    body = batch_body(st, args.batch, args.text)
    body_file = os.path.join(st.tmp, "batch.json")
    with open(body_file, "w") as f:
        json.dump(body, f)
    print("batch of %d messages, %d bytes; %d CPUs; load average %s" % (
        args.batch, os.path.getsize(body_file), os.cpu_count(), os.getloadavg()), flush=True)
    try:
        for rep in range(args.reps):
            if "http" in only:
                run_http(st, args, body_file, rep)
            if "sql" in only:
                run_sql(st, args, body, rep)
    finally:
        st.stop_all()


if __name__ == "__main__":
    main()
