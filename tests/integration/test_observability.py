"""test_observability: what an operator's monitoring reads. The three
daemons (rtw-fcgi's side listener, rtw-sse, rtw-webhookd) against a real
PostgreSQL each show the families every daemon has (rtw_<daemon>_pg_up,
_build_info, _process_*), with plausible values; the alert rules in
conf/prometheus-rtw-rules.yml pass `promtool check rules`; and every rtw_
metric the rules and the dashboard (conf/grafana-rtw.json) name is exposed
by a live daemon; rtw-webhookd's queue gauges follow the jobs table.

Run: RTW_BUILDDIR=$PWD/build/test /usr/bin/python3 tests/integration/test_observability.py
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

CONF = os.path.join(rtwtest.SRCDIR, "conf")
RULES = os.path.join(CONF, "prometheus-rtw-rules.yml")
DASHBOARD = os.path.join(CONF, "grafana-rtw.json")
DAEMONS = ("fcgi", "sse", "webhookd")

rtwtest.need(shutil.which("promtool"), "promtool (Debian package prometheus)")
ST = rtwtest.Stack()
ST.start_fcgi()
ST.start_sse()
ST.start_webhookd()


def scrape(daemon):
    port = {"fcgi": ST.fcgi_health_port, "sse": ST.sse_port, "webhookd": ST.webhookd_port}[daemon]
    r = request(port, "GET", "/metrics")
    assert r.status == 200, (daemon, r)
    return r.body.decode()


def samples(text):
    """{sample name: [(labels, value)]} of a Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        assert m, line
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def exposed():
    """Every sample name the three daemons show now (a family with no
    sample yet, such as rtw_fcgi_requests_total before any request, still
    has its # TYPE line, which counts)."""
    names = set()
    for d in DAEMONS:
        text = scrape(d)
        names |= set(samples(text))
        names |= set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    return names


@test
def every_daemon_has_the_common_families():
    for d in DAEMONS:
        p = "rtw_%s_" % d
        # a daemon just started may still be connecting to PostgreSQL
        rtwtest.wait_for(lambda: samples(scrape(d)).get(p + "pg_up") == [("", 1.0)], 15, d + " pg_up 1")
        s = samples(scrape(d))
        assert all(n.startswith(p) for n in s), (d, [n for n in s if not n.startswith(p)])
        assert s[p + "pg_up"] == [("", 1.0)], (d, s.get(p + "pg_up"))
        (labels, v), = s[p + "build_info"]
        assert v == 1 and re.fullmatch(r'\{version="[0-9][^"]*"\}', labels), (d, labels)
        # the kernel counts CPU in 10 ms ticks: a release build just
        # started may not have used one yet, so scrape (which costs CPU)
        # until it has
        rtwtest.wait_for(lambda: samples(scrape(d))[p + "process_cpu_seconds_total"][0][1] > 0, 15,
                         d + " process_cpu_seconds_total > 0")
        assert s[p + "process_resident_memory_bytes"][0][1] > 1 << 20, d
        # at least stdin/stdout/stderr, a listener and a PostgreSQL connection
        assert s[p + "process_open_fds"][0][1] >= 5, d


@test
def pg_up_falls_when_postgresql_stops():
    ST.pg.stop()
    try:
        for d in ("fcgi", "sse", "webhookd"):
            name = "rtw_%s_pg_up" % d
            rtwtest.wait_for(lambda: samples(scrape(d))[name] == [("", 0.0)], 30, name + " 0")
    finally:
        ST.pg.start()
    for d in ("fcgi", "sse", "webhookd"):
        name = "rtw_%s_pg_up" % d
        rtwtest.wait_for(lambda: samples(scrape(d))[name] == [("", 1.0)], 30, name + " 1")


@test
def webhook_queue_depth_is_sampled():
    # jobs queued for later: counted, not due (so not claimed meanwhile)
    ids = [ST.pg.query("INSERT INTO rtw_webhook_jobs (stream_id, widget_key, author_id, url, method, headers, ts,"
                       " run_at) VALUES ('obs', %s, 'u1', 'https://example.invalid/x', 'POST', '{}'::jsonb, 1,"
                       " now() + interval '1 hour') RETURNING id", (ST.widget_key,))[0][0] for _ in range(3)]
    try:
        def depth():
            s = samples(scrape("webhookd"))
            return s["rtw_webhookd_queue_jobs"] == [("", 3.0)] and s["rtw_webhookd_queue_oldest_due_seconds"]
        (_, due), = rtwtest.wait_for(depth, 20, "rtw_webhookd_queue_jobs 3")
        assert due == 0, due
    finally:
        ST.pg.query("DELETE FROM rtw_webhook_jobs WHERE id = ANY(%s) RETURNING id", (ids,))


@test
def alert_rules_pass_promtool():
    r = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, (r.stdout, r.stderr)


def named(expr):
    """The rtw_ series an expression reads, as sample names."""
    return set(re.findall(r"\brtw_[a-z0-9_]+", expr))


@test
def rules_and_dashboard_name_only_exposed_metrics():
    names = exposed()
    with open(RULES) as f:
        exprs = [ln for ln in f if not ln.lstrip().startswith("#")]
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["panels"], "no panels"
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        exprs += [t["expr"] for t in p["targets"]]
    used = set()
    for e in exprs:
        used |= named(e)
    assert len(used) > 10, used
    missing = sorted(n for n in used if n not in names)
    assert not missing, missing


if __name__ == "__main__":
    rtwtest.main()
