#!/usr/bin/python3
"""test_deb: the Debian package and the deploy guide, on this machine.

Builds the `rtw` package from `make dist` with dpkg-buildpackage (no
sanitizers, parallel make), checks it with lintian (no errors), installs it
with dpkg, then follows doc/deploy.md with the installed files only:
`rtwctl migrate` from /usr/share/rtw/sql into a throwaway PostgreSQL (a
role `rtw` owning the database, its DSN in /etc/rtw/secrets.env as the
guide says), the daemons started as their units start them (ExecStart plus
EnvironmentFile: test machines run no systemd; the units are checked with
`systemd-analyze verify`), a self-signed certificate for rtw.example.com,
and the nginx and Apache blocks of the installed deploy.md on loopback
ports. The README walk-through runs over HTTPS through nginx, a shorter one
through Apache; at the end the package is purged.

Changes the machine: it installs and purges `rtw` under dpkg, so it refuses
to run (skip, exit 77) where an `rtw` package is already installed, and
holds /run/lock/rtw-package-test.lock so two runs never overlap. Needs root,
dpkg-buildpackage, debhelper, lintian, nginx, Apache and openssl; without
them it skips (a failure under RTW_REQUIRE_ALL=1, as in ./dev test).
"""
import atexit
import fcntl
import glob
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rtwtest  # noqa: E402
from rtwtest import test, wait_for  # noqa: E402

rtwtest.need(os.geteuid() == 0, "root (it installs the package with dpkg)")
for tool in ("dpkg-buildpackage", "dh", "lintian", "nginx", "openssl", "systemd-analyze", "psql"):
    rtwtest.need(shutil.which(tool), "%s (./dev test installs it)" % tool)
rtwtest.need(os.path.exists("/usr/sbin/apache2"), "apache2")
# make's variables of the `make check` around us must not reach the builds below.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}

LOCK = open("/run/lock/rtw-package-test.lock", "w")
fcntl.flock(LOCK, fcntl.LOCK_EX)


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "rtw"], capture_output=True, text=True)
    return "install ok installed" in r.stdout or "config-files" in r.stdout


rtwtest.need(not installed(), "a machine without an rtw package (one is installed; this test would replace it)")

TMP = rtwtest.TempDir("rtwdeb-").path
HOST = "rtw.example.com"
DOC = "/usr/share/doc/rtw/deploy.md"


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, env=kw.pop("env", CLEAN_ENV), **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(argv), r.returncode, r.stdout[-3000:],
                                                         r.stderr[-3000:]))
    return r


# ---- build, lint, install -------------------------------------------------

for old in glob.glob(os.path.join(rtwtest.BUILDDIR, "rtw-*.tar.gz")):
    os.unlink(old)
run(["make", "-C", rtwtest.BUILDDIR, "-s", "dist"])
TARBALL = glob.glob(os.path.join(rtwtest.BUILDDIR, "rtw-*.tar.gz"))[0]
run(["tar", "-xzf", TARBALL, "-C", TMP])
os.unlink(TARBALL)
SRC = glob.glob(os.path.join(TMP, "rtw-*"))[0]
run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=SRC,
    env=dict(CLEAN_ENV, DEB_BUILD_OPTIONS="nocheck parallel=%d" % (os.cpu_count() or 2)))
DEB = [d for d in glob.glob(os.path.join(TMP, "rtw_*.deb"))][0]
CHANGES = glob.glob(os.path.join(TMP, "rtw_*.changes"))[0]
LINTIAN = subprocess.run(["lintian", "--fail-on", "error", CHANGES], capture_output=True, text=True)


def purge():
    if installed():
        subprocess.run(["dpkg", "--purge", "rtw"], capture_output=True)


atexit.register(purge)
INSTALL = run(["dpkg", "-i", DEB], env=dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive"))


def secrets():
    """/etc/rtw/secrets.env as systemd's EnvironmentFile reads it."""
    env = {}
    with open("/etc/rtw/secrets.env") as f:
        for line in f:
            k, sep, v = line.strip().partition("=")
            if sep and not k.startswith("#"):
                env[k] = v[1:-1] if len(v) > 1 and v[0] == v[-1] and v[0] in "'\"" else v
    return env


def unit_env():
    """The environment a unit gives its daemon: no RTW_* of ours, only the
    secrets file (so /etc/rtw/rtw.ini and the built-in defaults apply)."""
    env = {k: v for k, v in CLEAN_ENV.items() if not k.startswith("RTW_") and not k.startswith("PG")}
    env.update(secrets())
    return env


def exec_start(unit):
    with open("/lib/systemd/system/" + unit) as f:
        return re.search(r"^ExecStart=(.*)$", f.read(), re.M).group(1).split()


# ---- the guide, sections 2 to 4, with the installed files -----------------

PG = rtwtest.Postgres(TMP)
PG.psql_admin("CREATE ROLE rtw LOGIN PASSWORD 'rtw-pw'")
PG.psql_admin("ALTER DATABASE rtw OWNER TO rtw")
with open("/etc/rtw/secrets.env", "a") as f:
    f.write("RTW_PGDSN='host=127.0.0.1 port=%d dbname=rtw user=rtw password=rtw-pw'\n" % PG.port)
PORTS = {k: rtwtest.free_port() for k in ("fcgi", "fcgi_health", "sse", "webhookd", "https", "http", "apache", "hook")}
# The guide keeps the defaults (9000, 8081, ...); this machine is shared,
# so the test moves them to free ports, in the installed file.
with open("/etc/rtw/rtw.ini", "a") as f:
    f.write("\n[fcgi]\nsocket = 127.0.0.1:%d\nhealth_listen = 127.0.0.1:%d\n[sse]\nlisten = 127.0.0.1:%d\n"
            "[webhook]\nhealth_listen = 127.0.0.1:%d\nallow_hosts = 127.0.0.1:%d\n"
            % (PORTS["fcgi"], PORTS["fcgi_health"], PORTS["sse"], PORTS["webhookd"], PORTS["hook"]))
MIGRATE = run(["rtwctl", "migrate"], env=unit_env())
PG.psql_admin("CREATE ROLE rtw_reader NOLOGIN")
subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(PG.port), "-U", "postgres",
                "-d", "rtw", "-c", "SELECT rtw_grant_reader('rtw_reader')"], check=True, stdout=subprocess.DEVNULL)
# the walk-through's webhook target is on loopback: the widget names it
WIDGET = run(["rtwctl", "widget", "add", "Poll", "--webhook-hosts", "127.0.0.1"], env=unit_env()).stdout.strip()
TOKEN = run(["rtwctl", "token", "--user", "alice", "--ttl", "3600"], env=unit_env()).stdout.strip()
BOB = run(["rtwctl", "token", "--user", "bob", "--ttl", "3600"], env=unit_env()).stdout.strip()

DAEMONS = []
for unit, port in (("rtw-fcgi.service", PORTS["fcgi"]), ("rtw-sse.service", PORTS["sse"]),
                   ("rtw-webhookd.service", PORTS["webhookd"])):
    d = rtwtest.Daemon(unit, exec_start(unit), unit_env(), os.path.join(TMP, unit + ".log"), port)
    DAEMONS.append(d)
    d.start()


def stop_daemons():
    for d in DAEMONS:
        d.stop()


atexit.register(stop_daemons)

# ---- sections 5 to 7: certificate, nginx and Apache from the guide --------

CERTS = os.path.join(TMP, "ssl")
os.makedirs(CERTS)
run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + HOST,
     "-addext", "subjectAltName=DNS:" + HOST, "-keyout", os.path.join(CERTS, "privkey.pem"),
     "-out", os.path.join(CERTS, "fullchain.pem")])
TLS = ssl.create_default_context(cafile=os.path.join(CERTS, "fullchain.pem"))


def doc_block(lang, marker):
    with open(DOC) as f:
        blocks = re.findall(r"```%s\n(.*?)```" % lang, f.read(), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, "deploy.md: one %s block with %r, found %d" % (lang, marker, len(found))
    return found[0]


def localize(text):
    """The guide's block on this test's loopback ports and certificate."""
    for a, b in (("/etc/ssl/rtw/", CERTS + "/"), ("127.0.0.1:9000", "127.0.0.1:%d" % PORTS["fcgi"]),
                 ("127.0.0.1:8081", "127.0.0.1:%d" % PORTS["sse"])):
        text = text.replace(a, b)
    return text


NGINX_DIR = os.path.join(TMP, "nginx")
os.makedirs(NGINX_DIR)
site = localize(doc_block("nginx", "ssl_certificate"))
site = site.replace("listen 443 ssl http2;", "listen 127.0.0.1:%d ssl http2;" % PORTS["https"])
site = site.replace("listen 80;", "listen 127.0.0.1:%d;" % PORTS["http"])
assert str(PORTS["https"]) in site and str(PORTS["http"]) in site, site
with open(os.path.join(NGINX_DIR, "nginx.conf"), "w") as f:
    f.write("pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            "http {{\n include /etc/nginx/mime.types;\n"
            # the http-level lines doc/deploy.md asks for ("nginx: per-address
            # limits and the access log")
            " limit_conn_zone $binary_remote_addr zone=rtw_addr_conn:10m;\n"
            " limit_req_zone $binary_remote_addr zone=rtw_addr_req:10m rate=100r/s;\n"
            " log_format rtw '$remote_addr [$time_local] \"$request_method $uri $server_protocol\" $status';\n"
            " access_log {d}/access.log rtw;\n"
            " client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;\n"
            " uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n{site}}}\n".format(d=NGINX_DIR, site=site))
run(["nginx", "-t", "-c", os.path.join(NGINX_DIR, "nginx.conf"), "-e", os.path.join(NGINX_DIR, "error.log")])
run(["nginx", "-c", os.path.join(NGINX_DIR, "nginx.conf"), "-e", os.path.join(NGINX_DIR, "error.log")])


def stop_nginx():
    subprocess.run(["nginx", "-c", os.path.join(NGINX_DIR, "nginx.conf"), "-e", os.path.join(NGINX_DIR, "error.log"),
                    "-s", "quit"], capture_output=True)
    pidfile = os.path.join(NGINX_DIR, "nginx.pid")
    wait_for(lambda: not os.path.exists(pidfile), 10, "nginx to stop")


atexit.register(stop_nginx)

APACHE_DIR = os.path.join(TMP, "apache")
os.makedirs(APACHE_DIR)
vhost = localize(doc_block("apache", "SSLEngine"))
vhost = vhost.replace("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:%d>" % PORTS["apache"])
mods = ["mpm_event", "authz_core", "mime", "dir", "alias", "headers", "rewrite", "proxy", "proxy_http",
        "proxy_fcgi", "socache_shmcb", "ssl", "http2", "lua"]
with open(os.path.join(APACHE_DIR, "apache.conf"), "w") as f:
    f.write('ServerRoot "{d}"\nDefaultRuntimeDir "{d}"\nPidFile "{d}/apache.pid"\nErrorLog "{d}/error.log"\n'
            "LogLevel warn\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nUser www-data\nGroup www-data\n"
            "TypesConfig /etc/mime.types\n".format(d=APACHE_DIR, port=PORTS["apache"]))
    for m in mods:
        f.write("LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n" % (m, m))
    f.write("<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n" + vhost)
APACHE = rtwtest.Daemon("apache", ["/usr/sbin/apache2", "-f", os.path.join(APACHE_DIR, "apache.conf"),
                                   "-DFOREGROUND"], CLEAN_ENV, os.path.join(APACHE_DIR, "stdout.log"),
                        PORTS["apache"])
APACHE.start()
atexit.register(APACHE.stop)


# ---- HTTPS helpers --------------------------------------------------------

def https(port, method, path, body=None, headers=None, token=None):
    """A request over TLS, the certificate checked against the site's name."""
    return rtwtest.request(port, method, path, body, headers, token, tls=TLS, host=HOST)


def subscribe(port, token, stream="demo", last_id=None):
    c = rtwtest.SSEClient(port, "/v1/streams/%s/events?access_token=%s" % (stream, token),
                          {"Last-Event-ID": last_id} if last_id else None, tls=TLS, host=HOST)
    assert c.status == 200, (c.status, c.body_text())
    init = c.next_event()
    assert init["json"]["type"] == "init", init
    return c


def broadcast(port, payload, ts=12.5, stream="demo"):
    r = https(port, "POST", "/v1/streams/%s/messages" % stream,
              {"type": "broadcast", "widget_key": WIDGET, "timestamp": ts, "message": payload}, token=TOKEN)
    assert r.status == 201, r
    return r.json


def next_matching(c, pred):
    while True:
        ev = c.next_event()
        if pred(ev):
            return ev


class Hook(http.server.BaseHTTPRequestHandler):
    """The webhook target of step 6: answers every POST with a quote."""
    hits = []

    def do_POST(self):
        Hook.hits.append(self.rfile.read(int(self.headers["Content-Length"] or 0)))
        out = b'{"price":"19.90"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


# ---- tests ----------------------------------------------------------------

@test
def package_builds_lintian_clean():
    assert LINTIAN.returncode == 0, LINTIAN.stdout + LINTIAN.stderr
    assert not re.search(r"^E: ", LINTIAN.stdout, re.M), LINTIAN.stdout
    info = run(["dpkg-deb", "-f", DEB, "Depends"]).stdout
    assert "libfcgi0ldbl (>= 2.4.2-2+deb12u1)" in info, info


@test
def package_installs_what_the_guide_names():
    for f in ("/usr/bin/rtw-fcgi", "/usr/bin/rtw-sse", "/usr/bin/rtw-webhookd", "/usr/bin/rtwctl",
              "/usr/share/rtw/sql/001_init.sql", "/usr/share/rtw/web/rtw.js", "/usr/share/rtw/web/errors/413.json",
              "/etc/rtw/nginx-rtw.conf", "/etc/rtw/apache-rtw.conf", "/lib/systemd/system/rtw-sse@.service",
              "/usr/share/man/man1/rtwctl.1.gz", "/usr/share/man/man5/rtw.ini.5.gz", DOC,
              "/usr/share/doc/rtw/sql.md"):
        assert os.path.exists(f), f
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "rtw"]).stdout
    for f in ("/etc/rtw/rtw.ini", "/etc/rtw/nginx-rtw.conf", "/etc/rtw/apache-rtw.conf"):
        assert f in conffiles, conffiles
    st = os.stat("/etc/rtw/secrets.env")
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0, oct(st.st_mode)
    sec = secrets()
    assert len(sec["RTW_AUTH_SECRET"]) == 64 and len(sec["RTW_WEBHOOK_SECRET"]) == 64, list(sec)
    assert "rtwctl migrate" in INSTALL.stdout, INSTALL.stdout


@test
def units_verify():
    for unit in ("rtw-fcgi.service", "rtw-sse.service", "rtw-sse@1.service", "rtw-webhookd.service"):
        path = "/lib/systemd/system/" + unit.replace("@1", "@")
        r = subprocess.run(["systemd-analyze", "verify", path if "@" not in unit else path], capture_output=True,
                           text=True)
        # Containers without systemd lack sysinit.target, and minimal images /bin/kill (procps).
        bad = [line for line in (r.stdout + r.stderr).splitlines()
               if line.strip() and "sysinit.target" not in line and "/bin/kill" not in line]
        assert not bad, (unit, bad)
        assert exec_start(unit.replace("@1", "@"))[0].startswith("/usr/bin/rtw-"), unit


@test
def migrate_uses_the_installed_schema_and_default_config():
    assert "migration(s) applied" in MIGRATE.stdout and not MIGRATE.stdout.startswith("0 "), MIGRATE.stdout
    # the role rtw may not create roles: the migration says what to run instead
    assert "rtw_grant_reader" in MIGRATE.stderr, MIGRATE.stderr
    files = sorted(os.listdir("/usr/share/rtw/sql"))
    versions = PG.query("SELECT version FROM rtw_schema_migrations ORDER BY version")
    assert [v[0] for v in versions] == [int(f[:3]) for f in files], (versions, files)
    owner = PG.query("SELECT tableowner FROM pg_tables WHERE tablename = 'rtw_messages'")
    assert owner == [("rtw",)], owner
    again = run(["rtwctl", "migrate"], env=unit_env())
    assert again.stdout.startswith("0 migration(s)"), again.stdout


@test
def readme_walkthrough_over_https_through_nginx():
    port = PORTS["https"]
    # 1. subscribe; 2. a broadcast arrives at once
    c = subscribe(port, TOKEN)
    m1 = broadcast(port, {"vote": "b"})
    ev = next_matching(c, lambda e: e.get("id") == m1["id"])
    assert ev["json"]["message"] == {"vote": "b"}, ev
    # 3. a private message reaches bob only
    cb = subscribe(port, BOB)
    r = https(port, "POST", "/v1/streams/demo/messages", {"type": "private", "to_user_id": "bob",
                                                          "widget_key": WIDGET, "timestamp": 13,
                                                          "message": "hi bob"}, token=TOKEN)
    assert r.status == 201, r
    ev = next_matching(cb, lambda e: e["json"].get("type") == "private")
    assert ev["json"]["message"] == "hi bob", ev
    # 4. history, in stream order
    m2 = broadcast(port, {"vote": "a"}, ts=14)
    r = https(port, "GET", "/v1/streams/demo/messages?widget_key=%s&limit=10" % WIDGET, token=TOKEN)
    assert r.status == 200, r
    ids = [m["id"] for m in r.json["message"]["messages"]]
    assert ids.index(m1["id"]) < ids.index(m2["id"]), ids
    # 5. resume after the first: the second comes next, exactly once
    c2 = subscribe(port, TOKEN, last_id=m1["id"])
    ev = next_matching(c2, lambda e: "id" in e)
    assert ev["id"] == m2["id"], ev
    # 6. a webhook, called by rtw-webhookd; its result comes over SSE
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORTS["hook"]), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
    r = https(port, "POST", "/v1/streams/demo/messages",
              {"type": "webhook", "widget_key": WIDGET, "message": url}, token=TOKEN)
    assert r.status == 202, r
    job = r.json["message"]["job_id"]
    ev = next_matching(c, lambda e: e["json"].get("type") == "webhook")
    assert ev["json"]["message"]["status"] == "succeeded", ev
    r = https(port, "GET", "/v1/webhooks/%s" % job, token=TOKEN)
    assert r.status == 200 and r.json["status"] == "succeeded", r
    assert len(Hook.hits) == 1
    srv.shutdown()
    for x in (c, cb, c2):
        x.close()
    # 7. SQL and rtwctl tail see the same order
    rows = PG.query("SELECT id FROM rtw_messages WHERE stream_id = 'demo' AND type = 'broadcast' ORDER BY xid, id")
    assert [str(r[0]) for r in rows][-2:] == [m1["id"], m2["id"]], rows
    tail = run(["rtwctl", "tail", "--stream", "demo", "--all", "--no-follow"], env=unit_env()).stdout
    lines = [json.loads(x) for x in tail.splitlines()]
    assert [x["id"] for x in lines if x["type"] == "broadcast"][-2:] == [m1["id"], m2["id"]], lines
    # 8. health and metrics
    assert https(port, "GET", "/healthz").status == 200
    for p in (PORTS["fcgi_health"], PORTS["webhookd"]):
        r = rtwtest.request(p, "GET", "/metrics")
        assert r.status == 200 and b"# TYPE" in r.body, r


@test
def nginx_site_serves_the_installed_files_and_json_errors():
    port = PORTS["https"]
    r = https(port, "GET", "/rtw.js")
    with open("/usr/share/rtw/web/rtw.js", "rb") as f:
        assert r.status == 200 and r.body == f.read(), r
    r = https(port, "POST", "/v1/streams/demo/messages", "x" * 70000, token=TOKEN)
    assert r.status == 413 and r.json["error"]["code"] == "payload_too_large", r
    r = rtwtest.request(PORTS["http"], "GET", "/v1/streams/demo/messages", headers={"Host": HOST})
    assert r.status == 301 and r.header("Location").startswith("https://" + HOST + "/"), r


@test
def apache_site_from_the_guide():
    port = PORTS["apache"]
    assert https(port, "GET", "/healthz").status == 200
    r = https(port, "GET", "/rtw.js")
    assert r.status == 200 and b"EventSource" in r.body, r
    c = subscribe(port, TOKEN, stream="apache")
    m = broadcast(port, {"via": "apache"}, stream="apache")
    ev = next_matching(c, lambda e: e.get("id") == m["id"])
    assert ev["json"]["message"] == {"via": "apache"}, ev
    c.close()
    r = https(port, "POST", "/v1/streams/apache/messages", "x" * 70000, token=TOKEN)
    assert r.status == 413 and r.json["error"]["code"] == "payload_too_large", r


@test
def purge_leaves_nothing():
    # rtw-sse first: it ends the event streams Apache would otherwise wait on
    stop_daemons()
    APACHE.stop()
    stop_nginx()
    run(["dpkg", "--purge", "rtw"])
    assert not installed()
    for f in ("/usr/bin/rtwctl", "/etc/rtw", "/lib/systemd/system/rtw-sse@.service", "/usr/share/rtw"):
        assert not os.path.exists(f), f


if __name__ == "__main__":
    rtwtest.main()
