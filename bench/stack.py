"""bench/stack.py: brings up the rtw stack that bench/run measures: a
durable PostgreSQL (fsync and synchronous_commit on), rtw-fcgi (on TCP, and
a second one on a unix socket for the ingest scenario; a third, another
build's program, when RTW_BENCH_FCGI_B names one), N rtw-sse
processes sharing one port (SO_REUSEPORT), nginx in front (the shipped
config with more connections) and optionally Apache (the shipped config
with more workers), through
tests/integration/rtwtest.py. Also runs a standalone Nchan nginx
(bench/nchan.conf) when asked.

Prints one JSON line with ports, pids, a widget key and a publisher token,
then holds everything up until stdin closes (bench/run keeps the pipe
open) and tears it down. Never touches the dev stack.

usage: python3 bench/stack.py rtw [--sse-procs N]
       python3 bench/stack.py nchan [--workers N]
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtwtest  # noqa: E402
import tempfile  # noqa: E402

# Our own temp root: other people's cleanups of /tmp/rtwtest-* must not
# pull a running benchmark's PostgreSQL from under it.
tempfile.tempdir = os.environ.get("RTW_BENCH_TMP", "/tmp/rtwbench")
os.makedirs(tempfile.tempdir, mode=0o755, exist_ok=True)
os.chmod(tempfile.tempdir, 0o755)


def pids_of(pid):
    """pid and its children (nginx master + workers)."""
    out = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids):
    """User + system CPU seconds of pids and their children (postmaster's
    backends, nginx's workers), threads included."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        for p in pids_of(pid):
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError):
                pass
    return total


def postgres_pids(pgdir):
    with open(os.path.join(pgdir, "postmaster.pid")) as f:
        master = int(f.readline())
    return pids_of(master)


def sized(st, server, port, edits):
    """Renders conf/<server>.conf.in for stack st with the bench's sizing
    edits (old, new) applied, so that the bench runs the shipped routes
    with enough connections; returns the config path."""
    rundir, conf = st._front_conf(server, port, None)
    with open(conf) as f:
        text = f.read()
    for old, new in edits:
        assert old in text, (server, old)
        text = text.replace(old, new)
    with open(conf, "w") as f:
        f.write(text)
    return rundir, conf


def start_nginx(st):
    """nginx from conf/nginx.conf.in, sized for 10,000 proxied subscribers:
    each costs a worker two connections (client and rtw-sse), and each of
    the 2 workers may get most of them. The same limits hold for the
    stream pass-through (conf/nginx-stream.conf.in), when it runs."""
    # with the events port as a TCP pass-through when the stream module is here
    st.start_nginx(stream=os.path.exists(rtwtest.STREAM_MODULE))
    rundir, conf = sized(st, "nginx", st.http_port, [
        ("worker_processes 2;", "worker_processes 2;\nworker_rlimit_nofile 60000;"),
        ("worker_connections 8192;", "worker_connections 50000;")])
    subprocess.run(["nginx", "-c", conf, "-s", "reload"], check=True)
    time.sleep(1)  # the new workers replace the old ones


def start_apache(st, streams):
    """Apache from conf/apache.conf.in + conf/apache-rtw.conf, sized so that
    its event-stream pool holds `streams` subscribers (one thread each):
    every child started up front, the cap on streams per child (which
    keeps threads for POSTs) at all of its 64 threads, since here Apache
    carries streams only, and twice the children that needs, because
    connections do not spread evenly over them. Returns (port, pids)."""
    children = streams // 32 + 2
    port = rtwtest.free_port()
    st.apache_port = port
    rundir, conf = sized(st, "apache", port, [
        ("StartServers 1", "StartServers %d" % children),
        ("ServerLimit 4", "ServerLimit %d" % children),
        ("MaxRequestWorkers 256", "MaxRequestWorkers %d" % (64 * children)),
        ("MaxSpareThreads 128", "MaxSpareThreads %d" % (64 * children)),
        ("Define RTW_EVENTS_PER_CHILD 48", "Define RTW_EVENTS_PER_CHILD 64")])
    st._daemon("apache", ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"], port)
    master = st.daemons["apache"].proc.pid
    rtwtest.wait_for(lambda: len(pids_of(master)) >= children + 1, 30, "apache children")
    return port, pids_of(master)


def tls_pair(tmp):
    """A throwaway self-signed P-256 certificate for 127.0.0.1 in tmp, the
    same kind for rtw-sse's TLS port and Nchan's (the bench's client does
    not verify): (cert path, key path)."""
    cert, key = os.path.join(tmp, "bench-tls.pem"), os.path.join(tmp, "bench-tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def rtw(args):
    env = {
        # the load tool spreads over 249 source addresses; nginx proxies from one
        "RTW_SSE_MAX_PER_IP": "100000",
        "RTW_SSE_MAX_PER_USER": "100000",
        "RTW_SSE_MAX_CONNECTIONS": "19000",
        "RTW_SSE_HEARTBEAT_S": "15",
        "RTW_LOG_LEVEL": "warn",
        # the events port through nginx's stream module names each client
        # in a PROXY header (conf/nginx-stream.conf.in)
        "RTW_SSE_PROXY_PROTOCOL_FROM": "127.0.0.1",
    }
    st = rtwtest.Stack(durable=True, extra_env=env)
    # rtw-sse's own TLS port (sse.tls_listen), every process on it; the
    # bench opens its 1,000 subscribers at once, so no handshake cap
    tls_port = rtwtest.free_port()
    cert, key = tls_pair(st.tmp)
    tls_env = {"RTW_SSE_TLS_LISTEN": "127.0.0.1:%d" % tls_port, "RTW_SSE_TLS_CERT": cert, "RTW_SSE_TLS_KEY": key,
               "RTW_SSE_TLS_MAX_HANDSHAKES": "100000"}
    st.start_fcgi()
    # A second rtw-fcgi on a unix socket, same database: the ingest
    # scenario measures TCP against unix side by side (bench/driver.py).
    fcgi_unix = os.path.join(st.tmp, "fcgi-bench.sock")
    st._daemon("rtw-fcgi-unix", [rtwtest.prog("rtw-fcgi")], None,
               {"RTW_FCGI_SOCKET": fcgi_unix, "RTW_FCGI_SOCKET_MODE": "0666", "RTW_FCGI_HEALTH_LISTEN": ""})
    rtwtest.wait_for(lambda: os.path.exists(fcgi_unix), 10, "rtw-fcgi on its unix socket")
    # RTW_BENCH_FCGI_B: another rtw-fcgi program (a build of an older
    # commit), a third one on its own unix socket: the ingest scenario
    # measures it beside this build's in the same run (an A/B).
    fcgi_b = os.environ.get("RTW_BENCH_FCGI_B")
    if fcgi_b:
        fcgi_b_sock = os.path.join(st.tmp, "fcgi-bench-b.sock")
        st._daemon("rtw-fcgi-b", [fcgi_b], None,
                   {"RTW_FCGI_SOCKET": fcgi_b_sock, "RTW_FCGI_SOCKET_MODE": "0666", "RTW_FCGI_HEALTH_LISTEN": ""})
        rtwtest.wait_for(lambda: os.path.exists(fcgi_b_sock), 10, "rtw-fcgi B on its unix socket")
    port = rtwtest.free_port()
    sse = []
    for i in range(args.sse_procs):
        d = st.start_sse(name="rtw-sse" if i == 0 else "rtw-sse-%d" % i, port=port, env=tls_env)
        sse.append(d.proc.pid)
    start_nginx(st)
    with open(st.nginx_pidfile) as f:
        ngx = int(f.read().strip())
    apache = start_apache(st, args.apache_streams) if args.apache_streams else None
    info = {
        "kind": "rtw",
        "sse_port": port,
        "tls_port": tls_port,
        "http_port": st.http_port,
        "events_port": getattr(st, "events_port", None),
        "fcgi_port": st.fcgi_port,
        "sse_pids": sse,
        "fcgi_pids": [st.daemons["rtw-fcgi"].proc.pid],
        "fcgi_unix": fcgi_unix,
        "fcgi_unix_pid": st.daemons["rtw-fcgi-unix"].proc.pid,
        "fcgi_b": fcgi_b and fcgi_b_sock,
        "fcgi_b_pid": fcgi_b and st.daemons["rtw-fcgi-b"].proc.pid,
        "nginx_master": ngx,
        "apache_port": apache and apache[0],
        "apache_pids": apache and apache[1],
        "pg_pids": postgres_pids(st.pg.dir),
        "widget_key": st.widget_key,
        "token": st.token("bench-publisher", ttl=24 * 3600),
        "sub_token": st.token("bench-viewer", ttl=24 * 3600),
        "tmp": st.tmp,
        "pgdsn": st.pg.dsn,
    }
    return st, info


def nchan(args):
    tmp = rtwtest.TempDir(prefix="rtwbench-nchan-").path
    port = rtwtest.free_port()
    with open(os.path.join(HERE, "nchan.conf")) as f:
        text = f.read()
    text = text.replace("@RUNDIR@", tmp).replace("@LISTEN@", "127.0.0.1:%d" % port)
    text = text.replace("@WORKERS@", str(args.workers))
    tls_port = rtwtest.free_port()
    cert, key = tls_pair(tmp)
    text = text.replace("@TLS_LISTEN@", "127.0.0.1:%d" % tls_port).replace("@TLS_CERT@", cert)
    text = text.replace("@TLS_KEY@", key)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    subprocess.run(["nginx", "-c", conf, "-e", os.path.join(tmp, "error.log")], check=True)
    rtwtest.wait_port(port)
    pidfile = os.path.join(tmp, "nginx.pid")
    with open(pidfile) as f:
        master = int(f.read().strip())
    rtwtest.wait_for(lambda: len(pids_of(master)) == args.workers + 1, 10, "nchan workers")

    class Stopper:
        def stop_all(self):
            try:
                os.kill(master, 15)
                rtwtest.wait_for(lambda: not os.path.exists(pidfile), 10, "nginx to stop")
            except (ProcessLookupError, TimeoutError):
                pass

    info = {"kind": "nchan", "port": port, "tls_port": tls_port, "pids": pids_of(master), "tmp": tmp}
    return Stopper(), info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["rtw", "nchan"])
    ap.add_argument("--sse-procs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--apache-streams", type=int, default=0, help="also Apache in front, for N subscribers")
    args = ap.parse_args()
    st, info = rtw(args) if args.kind == "rtw" else nchan(args)
    print(json.dumps(info), flush=True)
    try:
        sys.stdin.read()
    finally:
        st.stop_all()
        time.sleep(0.2)


if __name__ == "__main__":
    main()
