"""rtwtest: the integration-test harness of rtw.

Owns throwaway services for one test file: a PostgreSQL cluster in a temp
folder on a free loopback port (run as the postgres user when we are root,
since PostgreSQL refuses to run as root), the rtw daemons and nginx or
Apache, each on free ports, all stopped at exit. Also: an HTTP helper, an
SSE reader, an independent HS256 minter (a cross-check of lib/token.c) and
a tiny test runner that prints one line per test.

Never touches the dev stack (var/): everything lives under a mkdtemp().
"""
import atexit
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

SRCDIR = os.path.abspath(os.environ.get("RTW_SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..")))
BUILDDIR = os.path.abspath(os.environ.get("RTW_BUILDDIR", SRCDIR))
# The newest installed PostgreSQL major, unless RTW_PGBIN names one.
PGBIN = os.environ.get("RTW_PGBIN") or max(
    glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]), default="/usr/lib/postgresql/15/bin")
IS_ROOT = os.geteuid() == 0


def prog(name):
    """Path of a built program: rtw-fcgi, rtw-sse, rtw-webhookd, rtwctl."""
    sub = {"rtw-fcgi": "fcgi", "rtw-sse": "sse", "rtw-webhookd": "webhookd", "rtwctl": "ctl"}[name]
    return os.path.join(BUILDDIR, sub, name)


# nginx's stream module as Debian installs it (libnginx-mod-stream)
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, what="condition", interval=0.02):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError("timed out waiting for %s (last error: %r)" % (what, last))


def wait_streams(port, timeout=30.0):
    """Waits until rtw-sse (directly or through a front on port) is healthy
    and knows its stream position: /healthz says 200 once PostgreSQL is up,
    a moment before the first position query has answered, and a new
    stream is refused with 503 until then."""
    def ready():
        if request(port, "GET", "/healthz", timeout=2).status != 200:
            return False
        c = SSEClient(port, "/v1/streams/probe/events", timeout=2)
        c.close()
        return c.status == 200
    wait_for(ready, timeout, "rtw-sse streaming")


def rss_kib(pid):
    """The resident memory of process pid in KiB (VmRSS), for the bound
    checks of tests that must not let memory grow."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def wait_port(port, timeout=10.0):
    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    wait_for(up, timeout, "port %d" % port)


class TempDir:
    def __init__(self, prefix="rtwtest-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.path, 0o755)
        atexit.register(self.cleanup)

    def cleanup(self):
        if os.environ.get("RTW_KEEP_TMP"):
            sys.stderr.write("kept %s\n" % self.path)
            return
        shutil.rmtree(self.path, ignore_errors=True)


def _as_postgres(argv):
    if IS_ROOT:
        return ["runuser", "-u", "postgres", "--"] + argv
    return argv


class Postgres:
    """A throwaway cluster. fsync is off unless durable=True (benchmarks)."""

    def __init__(self, tmp, durable=False):
        need(os.path.exists(os.path.join(PGBIN, "initdb")), "PostgreSQL (%s/initdb)" % PGBIN)
        self._dirs(os.path.join(tmp, "pg"), os.path.join(tmp, "pgsock"))
        subprocess.run(_as_postgres([PGBIN + "/initdb", "-D", self.dir, "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        conf = [
            "listen_addresses = '127.0.0.1'",
            "port = %d" % self.port,
            "unix_socket_directories = '%s'" % self.sockdir,
            "max_connections = 200",
            "fsync = %s" % ("on" if durable else "off"),
            "synchronous_commit = %s" % ("on" if durable else "off"),
            "full_page_writes = %s" % ("on" if durable else "off"),
            "shared_buffers = 128MB",
            "max_prepared_transactions = 4",  # test_horizon: a dangling prepared transaction
            "log_min_messages = warning",
        ]
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        self.dsn = "host=127.0.0.1 port=%d dbname=rtw user=postgres" % self.port
        self.start()
        self.psql_admin("CREATE DATABASE rtw")
        atexit.register(self.stop)

    def _dirs(self, datadir, sockdir):
        """A free port, and the data and socket folders, owned by postgres
        when running as root."""
        self.dir, self.sockdir, self.port = datadir, sockdir, free_port()
        os.makedirs(self.sockdir)
        os.makedirs(self.dir, mode=0o700)
        if IS_ROOT:
            pw = pwd.getpwnam("postgres")
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def start(self):
        subprocess.run(_as_postgres([PGBIN + "/pg_ctl", "-D", self.dir, "-l", self.dir + "/log", "-w", "-t", "30",
                                     "start"]), check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.dir, "postmaster.pid")):
            subprocess.run(_as_postgres([PGBIN + "/pg_ctl", "-D", self.dir, "-m", mode, "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self):
        self.stop()
        self.start()

    def psql_admin(self, sql):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-d", "postgres", "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def connect(self):
        import psycopg2
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        return conn

    def query(self, sql, params=None):
        """Rows of one statement, on a fresh connection."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def snapshot(self):
        """Every row of every rtw table, to compare before and after."""
        out = {}
        for t in ("rtw_messages", "rtw_idempotency", "rtw_webhook_jobs", "rtw_widgets"):
            rows = self.query("SELECT * FROM %s" % t)
            # bytea arrives as memoryview, whose repr holds an address
            rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
            out[t] = sorted(map(repr, rows))
        return out


class Standby(Postgres):
    """A streaming standby of `primary` made with pg_basebackup -R, under
    tmp/<name>; it reports itself to the primary as application_name
    `name` (for synchronous_standby_names)."""

    def __init__(self, tmp, primary, name="standby"):
        self._dirs(os.path.join(tmp, name), os.path.join(tmp, name + "-sock"))
        src = "host=127.0.0.1 port=%d user=postgres application_name=%s" % (primary.port, name)
        subprocess.run(_as_postgres([PGBIN + "/pg_basebackup", "-D", self.dir, "-R", "-X", "stream", "-c", "fast",
                                     "-d", src]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write("port = %d\nunix_socket_directories = '%s'\nhot_standby = on\n" % (self.port, self.sockdir))
        self.dsn = "host=127.0.0.1 port=%d dbname=rtw user=postgres" % self.port
        self.start()
        atexit.register(self.stop)

    def promote(self):
        subprocess.run(_as_postgres([PGBIN + "/pg_ctl", "-D", self.dir, "-w", "-t", "30", "promote"]), check=True,
                       stdout=subprocess.DEVNULL)


def cross_a_power_of_ten(pg):
    """Moves the id sequence to just below the next power of ten, so the
    next rows' ids differ in digit count (text order != numeric order)."""
    cur = pg.query("SELECT nextval(pg_get_serial_sequence('rtw_messages', 'id'))")[0][0]
    p = 10
    while p <= cur + 6:
        p *= 10
    pg.query("SELECT setval(pg_get_serial_sequence('rtw_messages', 'id'), %s)", (p - 6,))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(secret, sub, ttl=3600, streams=None, admin=None, exp=None, service=None, no_exp=False):
    """An HS256 token, minted independently of lib/token.c. It always
    carries exp (contract 1.1: required), now + ttl unless exp is given;
    no_exp=True leaves it out, for the tests of that refusal."""
    claims = {"sub": sub}
    if not no_exp:
        claims["exp"] = exp if exp is not None else int(time.time()) + ttl
    if streams is not None:
        claims["streams"] = streams
    if admin is not None:
        claims["admin"] = admin
    if service is not None:
        claims["service"] = service
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


class Daemon:
    def __init__(self, name, argv, env, log, ready_port=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.ready_port = ready_port
        self.proc = None

    def start(self, timeout=10.0):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        if self.ready_port:
            def up():
                if self.proc.poll() is not None:
                    raise RuntimeError("%s exited with %s; log:\n%s" % (self.name, self.proc.returncode,
                                                                        self.log_text()[-3000:]))
                with socket.create_connection(("127.0.0.1", self.ready_port), timeout=0.5):
                    return True
            wait_for(up, timeout, "%s to listen on %d" % (self.name, self.ready_port))
        return self

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def send_signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self):
        return self.stop(signal.SIGKILL)

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Stack:
    """PostgreSQL plus whichever of rtw-fcgi, rtw-sse, rtw-webhookd, nginx
    and Apache a test asks for. Ports are free loopback ports."""

    def __init__(self, auth="token", durable=False, extra_env=None):
        self.tmp = TempDir().path
        self.pg = Postgres(self.tmp, durable=durable)
        self.secret = "test-secret-" + uuid.uuid4().hex
        self.webhook_secret = "whsec-" + uuid.uuid4().hex
        self.env = dict(os.environ)
        self.env.update({
            "RTW_PGDSN": self.pg.dsn,
            "RTW_AUTH_MODE": auth,
            "RTW_AUTH_SECRET": self.secret,
            "RTW_WEBHOOK_SECRET": self.webhook_secret,
            "RTW_HTTP_CORS_ORIGINS": "",
            "RTW_LOG_LEVEL": "info",
            "RTW_SQL_DIR": os.path.join(SRCDIR, "sql"),
            # never the machine's $(sysconfdir)/rtw/rtw.ini, should one exist
            "RTW_CONFIG": os.devnull,
            # rtw-fcgi: no side listener on the default port (start_fcgi
            # gives it a free one), and no rate limit unless a test sets one
            # (tests post far faster than people do); the same for the
            # per-address limits, since every test client is 127.0.0.1
            "RTW_FCGI_HEALTH_LISTEN": "",
            "RTW_FCGI_RATE_LIMIT_PER_S": "0",
            "RTW_FCGI_RATE_LIMIT_PER_IP_PER_S": "0",
            "RTW_FCGI_RATE_LIMIT_PER_USER_PER_S": "0",
            "RTW_SSE_ANON_PER_IP_PER_MIN": "0",
        })
        if extra_env:
            self.env.update(extra_env)
        self.daemons = {}
        _stacks.append(self)
        self.fcgi_port = self.sse_port = self.http_port = self.webhookd_port = None
        self.fcgi_health_port = None
        # the fronts' address of rtw-sse when not 127.0.0.1:<sse_port> (unix:/path)
        self.sse_addr = None
        # nginx's per-address request rate (conf/nginx.conf.in): every test
        # client is 127.0.0.1, and tests post far faster than people do
        self.nginx_req_rate = "100000r/s"
        self.ctl("migrate")
        self.widget_key = self.add_widget("demo")
        self.widget_key2 = self.add_widget("second")
        atexit.register(self.stop_all)

    def ctl(self, *args, check=True):
        r = subprocess.run([prog("rtwctl")] + list(args), env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("rtwctl %s failed: %s" % (" ".join(args), r.stderr))
        return r

    def add_widget(self, name, *opts):
        return self.ctl("widget", "add", name, *opts).stdout.strip()

    def token(self, sub, **kw):
        return mint(self.secret, sub, **kw)

    def _daemon(self, name, argv, port, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        d = Daemon(name, argv, e, os.path.join(self.tmp, name + ".log"), port)
        self.daemons[name] = d
        return d.start()

    def start_fcgi(self, env=None, unix=False):
        """unix=True: rtw-fcgi listens on a unix socket (self.fcgi_unix),
        and the front ends the stack starts after it use that."""
        self.fcgi_port = self.fcgi_port or free_port()
        self.fcgi_health_port = self.fcgi_health_port or free_port()
        e = {"RTW_FCGI_SOCKET": "127.0.0.1:%d" % self.fcgi_port,
             "RTW_FCGI_HEALTH_LISTEN": "127.0.0.1:%d" % self.fcgi_health_port}
        if unix:
            self.fcgi_unix = e["RTW_FCGI_SOCKET"] = os.path.join(self.tmp, "fcgi.sock")
            # nginx's workers (nobody when the tests run as root) must write it
            e["RTW_FCGI_SOCKET_MODE"] = "0666"
        e.update(env or {})
        d = self._daemon("rtw-fcgi", [prog("rtw-fcgi")], None if unix else self.fcgi_port, e)
        if unix:
            def up():
                with socket.socket(socket.AF_UNIX) as c:
                    c.connect(self.fcgi_unix)
                    return True
            wait_for(up, 10, "rtw-fcgi on %s" % self.fcgi_unix)
        return d

    def start_sse(self, env=None, name="rtw-sse", port=None):
        port = port or self.sse_port or free_port()
        if name == "rtw-sse":
            self.sse_port = port
        e = {"RTW_SSE_LISTEN": "127.0.0.1:%d" % port, "RTW_SSE_HEARTBEAT_S": "15"}
        e.update(env or {})
        return self._daemon(name, [prog("rtw-sse")], port, e)

    def start_webhookd(self, env=None, name="rtw-webhookd"):
        port = free_port()
        if name == "rtw-webhookd":
            self.webhookd_port = port
        e = {"RTW_WEBHOOK_HEALTH_LISTEN": "127.0.0.1:%d" % port}
        e.update(env or {})
        return self._daemon(name, [prog("rtw-webhookd")], port, e)

    def render(self, template, **values):
        with open(os.path.join(SRCDIR, "conf", template)) as f:
            text = f.read()
        for k, v in values.items():
            text = text.replace("@%s@" % k, str(v))
        return text

    def _front_conf(self, server, port, webroot):
        """Writes conf/<server>.conf.in, filled in for this stack, into its
        own run folder; returns (rundir, config path)."""
        rundir = os.path.join(self.tmp, server)
        os.makedirs(rundir, exist_ok=True)
        conf = os.path.join(rundir, server + ".conf")
        # logs readable by their owner's group only (they hold client
        # addresses); the servers append to files that exist
        for log in ("access", "error"):
            os.close(os.open(os.path.join(rundir, "%s-%s.log" % (server, log)), os.O_CREAT | os.O_WRONLY, 0o640))
        with open(conf, "w") as f:
            f.write(self.render(server + ".conf.in", RUNDIR=rundir, LISTEN="127.0.0.1:%d" % port,
                                REQ_RATE=self.nginx_req_rate,
                                FCGI_ADDR=("unix:" + self.fcgi_unix) if getattr(self, "fcgi_unix", None)
                                else "127.0.0.1:%d" % self.fcgi_port,
                                SSE_ADDR=self.sse_addr or "127.0.0.1:%d" % (self.sse_port or free_port()),
                                WEBROOT=webroot or os.path.join(SRCDIR, "web"),
                                CONFDIR=os.path.join(SRCDIR, "conf")))
        return rundir, conf

    def start_nginx(self, webroot=None, stream=False):
        """nginx in front of rtw-fcgi and rtw-sse (start those first).
        webroot: the folder served at / (default: the checkout's web/).
        stream=True: also the events port as a TCP pass-through with the
        PROXY protocol (conf/nginx-stream.conf.in) on self.events_port;
        rtw-sse must list 127.0.0.1 in sse.proxy_protocol_from."""
        need(shutil.which("nginx"), "nginx")
        self.http_port = free_port()
        rundir, conf = self._front_conf("nginx", self.http_port, webroot)
        if stream:
            need(os.path.exists(STREAM_MODULE), "nginx's stream module (libnginx-mod-stream)")
            self.events_port = free_port()
            os.makedirs(os.path.join(rundir, "stream.d"), exist_ok=True)
            with open(os.path.join(rundir, "stream.d", "events.conf"), "w") as f:
                f.write(self.render("nginx-stream.conf.in", STREAM_MODULE=STREAM_MODULE,
                                    EVENTS_LISTEN="127.0.0.1:%d" % self.events_port,
                                    SSE_ADDR=self.sse_addr or "127.0.0.1:%d" % self.sse_port))
        subprocess.run(["nginx", "-c", conf, "-e", os.path.join(rundir, "nginx-error.log")], check=True)
        self.nginx_pidfile = os.path.join(rundir, "nginx.pid")
        wait_port(self.http_port)
        return self.http_port

    def stop_nginx(self):
        pidfile = getattr(self, "nginx_pidfile", None)
        if pidfile and os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().strip())
            try:
                os.kill(pid, signal.SIGQUIT)
                wait_for(lambda: not os.path.exists(pidfile), 10, "nginx to stop")
            except ProcessLookupError:
                pass

    def start_apache(self, webroot=None):
        """Apache httpd (conf/apache.conf.in) in front of rtw-fcgi and
        rtw-sse (start those first), in the foreground as a Daemon named
        "apache". Returns its port, also in self.apache_port."""
        need(os.path.exists("/usr/sbin/apache2"), "Apache httpd (apache2)")
        self.apache_port = free_port()
        _, conf = self._front_conf("apache", self.apache_port, webroot)
        self._daemon("apache", ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"], self.apache_port)
        return self.apache_port

    def stop_all(self):
        for d in list(self.daemons.values()):
            d.stop()
        self.stop_nginx()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def request(port, method, path, body=None, headers=None, token=None, timeout=10.0, tls=None, host=None):
    """One HTTP/1.1 request on a fresh connection. body: dict/list (sent as
    JSON), str or bytes. tls: an ssl.SSLContext for HTTPS, whose certificate
    is checked against host (also sent as Host)."""
    h = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if tls:
        conn.sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout),
                                    server_hostname=host)
    if host:
        h.setdefault("Host", host)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class SSEClient:
    """Reads an event stream on a raw socket: events() yields dicts
    {"id":..., "data":..., "json":...}; comments are counted."""

    def __init__(self, port, path, headers=None, timeout=10.0, tls=None, host=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:  # an ssl.SSLContext; the certificate is checked against host
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        lines = ["GET %s HTTP/1.1" % path, "Host: " + (host or "127.0.0.1"), "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.status = None
        self.headers = {}
        self.comments = 0
        self.retry = None
        self.closed = False
        self.chunked = False
        self._raw = b""
        self._read_head()

    def _recv(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the event stream")
        if not data:
            self.closed = True
        return data

    def _read_head(self):
        while b"\r\n\r\n" not in self._raw:
            d = self._recv()
            if not d:
                raise ConnectionError("closed before the response head")
            self._raw += d
        head, rest = self._raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self._raw = rest
        self._dechunk()

    def _dechunk(self):
        if not self.chunked:
            self.buf += self._raw
            self._raw = b""
            return
        while True:
            i = self._raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self._raw[:i].split(b";")[0], 16)
            if len(self._raw) < i + 2 + size + 2:
                return
            self.buf += self._raw[i + 2:i + 2 + size]
            self._raw = self._raw[i + 2 + size + 2:]
            if size == 0:
                self.closed = True
                return

    def body_text(self):
        """For error responses: the rest of the body."""
        self.sock.settimeout(2)
        try:
            while not self.closed:
                d = self._recv()
                if not d:
                    break
                self._raw += d
                self._dechunk()
        except TimeoutError:
            pass
        return self.buf.decode(errors="replace")

    def next_event(self, timeout=10.0):
        """The next event (dict), or raises TimeoutError / ConnectionError."""
        deadline = time.time() + timeout
        while True:
            sep = self.buf.find(b"\n\n")
            if sep >= 0:
                block, self.buf = self.buf[:sep], self.buf[sep + 2:]
                ev = {}
                data = []
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments += 1
                        continue
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "data":
                        data.append(v)
                    elif k == "id":
                        ev["id"] = v
                    elif k == "retry":
                        self.retry = int(v)
                    elif k == "event":
                        ev["event"] = v
                if data:
                    ev["data"] = "\n".join(data)
                    ev["json"] = json.loads(ev["data"])
                    return ev
                continue
            if self.closed:
                raise ConnectionError("event stream closed")
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no event within %.1fs" % timeout)
            self.sock.settimeout(left)
            d = self._recv()
            self._raw += d
            self._dechunk()

    def events(self, n, timeout=10.0):
        return [self.next_event(timeout) for _ in range(n)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- the runner ----------------------------------------------------------

_tests = []
_stacks = []
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


def sanitizer_reports():
    """Stops every stack's daemons (so leak checks run at exit) and returns
    [(daemon, excerpt)] for each log holding a sanitizer report."""
    found = []
    for st in _stacks:
        st.stop_all()
        for d in st.daemons.values():
            text = d.log_text()
            for mark in SANITIZER_MARKS:
                i = text.find(mark)
                if i >= 0:
                    found.append((d.name, text[max(0, i - 200):i + 2500]))
                    break
    return found


def test(fn):
    _tests.append(fn)
    return fn


def need(ok, what):
    """Skips the whole file (exit 77, automake's SKIP) when ok is false,
    saying what is missing; under RTW_REQUIRE_ALL=1 (./dev test, which
    installs everything) a missing tool is a failure instead."""
    if ok:
        return
    if os.environ.get("RTW_REQUIRE_ALL") == "1":
        print("FAIL: needs %s (RTW_REQUIRE_ALL=1: every test must run)" % what, flush=True)
        sys.exit(1)
    print("SKIP: needs %s" % what, flush=True)
    sys.exit(77)


def main():
    """Runs every @test of the calling file in order, prints one line per
    test, and exits 1 if any failed. RTW_TEST_FILTER selects by substring."""
    flt = os.environ.get("RTW_TEST_FILTER", "")
    passed = failed = 0
    for fn in _tests:
        if flt and flt not in fn.__name__:
            continue
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("ok %s (%.2fs)" % (fn.__name__, time.time() - t0), flush=True)
        except Exception:  # noqa: BLE001 - a failing test is reported, not raised
            failed += 1
            print("FAIL %s (%.2fs)" % (fn.__name__, time.time() - t0), flush=True)
            traceback.print_exc()
    for name, excerpt in sanitizer_reports():
        failed += 1
        print("FAIL sanitizer report from %s:\n%s" % (name, excerpt), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or not passed else 0)
