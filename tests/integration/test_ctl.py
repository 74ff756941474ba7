"""rtwctl and the schema against a real PostgreSQL: migrations are
idempotent, the widget registry commands, token minting (checked by an
independent HS256 implementation), NOTIFY only after commit, and the
settled horizon that stream order relies on."""
import base64
import hashlib
import hmac
import json
import os
import select
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import rtwtest  # noqa: E402
from rtwtest import test  # noqa: E402

S = rtwtest.Stack()


@test
def migrate_twice_is_harmless():
    r = S.ctl("migrate")
    assert r.stdout.strip() == "0 migration(s) applied", r.stdout
    n = S.pg.query("SELECT count(*) FROM rtw_schema_migrations")[0][0]
    assert n == len([f for f in os.listdir(os.path.join(rtwtest.SRCDIR, "sql")) if f.endswith(".sql")])


@test
def concurrent_migrations_apply_once():
    tmp = rtwtest.TempDir().path
    pg = rtwtest.Postgres(tmp)
    env = dict(S.env, RTW_PGDSN=pg.dsn)
    import subprocess
    procs = [subprocess.Popen([rtwtest.prog("rtwctl"), "migrate"], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    applied = sum(int(o.split()[0]) for o in outs)
    assert applied == len([f for f in os.listdir(os.path.join(rtwtest.SRCDIR, "sql")) if f.endswith(".sql")]), outs
    pg.stop()


@test
def widget_registry():
    key = S.add_widget("quiz", "--origins", "https://a.example,https://b.example", "--webhook-hosts", "api.example")
    assert len(key) == 36
    rows = S.pg.query("SELECT name, enabled, allowed_origins, webhook_hosts FROM rtw_widgets WHERE widget_key = %s",
                      (key,))
    assert rows == [("quiz", True, ["https://a.example", "https://b.example"], ["api.example"])], rows
    listing = S.ctl("widget", "list").stdout
    assert key in listing and "quiz" in listing
    S.ctl("widget", "disable", key)
    assert S.pg.query("SELECT enabled FROM rtw_widgets WHERE widget_key = %s", (key,)) == [(False,)]
    S.ctl("widget", "enable", key.upper())
    assert S.pg.query("SELECT enabled FROM rtw_widgets WHERE widget_key = %s", (key,)) == [(True,)]
    S.ctl("widget", "set", key, "--name", "quiz2", "--origins", "https://c.example")
    assert S.pg.query("SELECT name, allowed_origins, webhook_hosts FROM rtw_widgets WHERE widget_key = %s",
                      (key,)) == [("quiz2", ["https://c.example"], ["api.example"])]


@test
def widget_errors():
    r = S.ctl("widget", "disable", "not-a-uuid", check=False)
    assert r.returncode == 1 and "invalid widget key" in r.stderr
    r = S.ctl("widget", "disable", "00000000-0000-4000-8000-000000000000", check=False)
    assert r.returncode == 1 and "no such widget" in r.stderr
    r = S.ctl("widget", "frobnicate", check=False)
    assert r.returncode == 2
    r = S.ctl("widget", "add", "x", "--origins", 'a"b', check=False)
    assert r.returncode == 1


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@test
def token_is_valid_hs256():
    tok = S.ctl("token", "--user", "viewer-9", "--ttl", "600", "--stream", "live-1").stdout.strip()
    head, body, sig = tok.split(".")
    want = hmac.new(S.secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(b64d(sig), want)
    assert json.loads(b64d(head))["alg"] == "HS256"
    claims = json.loads(b64d(body))
    assert claims["sub"] == "viewer-9" and claims["streams"] == ["live-1"]
    import time
    assert 590 <= claims["exp"] - time.time() <= 610
    r = S.ctl("token", "--user", "a b", check=False)
    assert r.returncode == 1
    env = dict(S.env, RTW_AUTH_SECRET="")
    import subprocess
    r = subprocess.run([rtwtest.prog("rtwctl"), "token", "--user", "u"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "auth.secret" in r.stderr
    assert S.secret not in r.stderr


@test
def notify_only_after_commit():
    listener = S.pg.connect()
    listener.cursor().execute("LISTEN rtw_messages")
    writer = S.pg.connect()
    writer.autocommit = False
    cur = writer.cursor()
    cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message) "
                "SELECT 's', 'broadcast', %s, 'a', '1' FROM generate_series(1, 5)", (S.widget_key,))
    select.select([listener], [], [], 0.3)
    listener.poll()
    assert listener.notifies == [], "notified before commit"
    writer.commit()
    select.select([listener], [], [], 5)
    listener.poll()
    assert len(listener.notifies) == 1 and listener.notifies[0].channel == "rtw_messages", listener.notifies
    writer.close()
    listener.close()


@test
def late_commit_stays_behind_horizon():
    """A transaction that takes an id first but commits last is not lost by
    a reader walking (xid, id) below the horizon: the reader simply does not
    pass it until it ends."""
    early = S.pg.connect()
    early.autocommit = False
    ec = early.cursor()
    ec.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message) "
               "VALUES ('h', 'broadcast', %s, 'early', '1') RETURNING id, xid::text", (S.widget_key,))
    early_id, early_xid = ec.fetchone()
    S.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message) "
               "VALUES ('h', 'broadcast', %s, 'late', '2')", (S.widget_key,))
    settled = S.pg.query("SELECT author_id FROM rtw_messages WHERE stream_id = 'h' AND xid < rtw_horizon() "
                         "ORDER BY xid, id")
    assert settled == [], "the later commit must wait behind the open transaction: %r" % settled
    early.commit()
    settled = S.pg.query("SELECT author_id FROM rtw_messages WHERE stream_id = 'h' AND xid < rtw_horizon() "
                         "ORDER BY xid, id")
    assert settled == [("early",), ("late",)], settled
    early.close()


@test
def tail_prints_stream_order_and_follows():
    import subprocess
    ins = ("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message, ts) "
           "VALUES ('tl', %s, %s, 'a', %s, %s, 1.25)")
    S.pg.query(ins, ("broadcast", S.widget_key, None, '{"n": 1}'))
    S.pg.query(ins, ("private", S.widget_key, "bob", '"secret"'))
    S.pg.query(ins, ("broadcast", S.widget_key, None, '{"n": 2}'))
    out = S.ctl("tail", "--stream", "tl", "--no-follow").stdout.splitlines()
    msgs = [json.loads(line) for line in out]
    assert [m["message"] for m in msgs] == [{"n": 1}, {"n": 2}], out
    assert all(m["type"] == "broadcast" and m["timestamp"] == 1.25 for m in msgs)
    out = S.ctl("tail", "--stream", "tl", "--no-follow", "--all", "--last", "2").stdout.splitlines()
    assert [json.loads(line)["message"] for line in out] == ["secret", {"n": 2}], out
    p = subprocess.Popen([rtwtest.prog("rtwctl"), "tail", "--stream", "tl", "--last", "0"], env=S.env,
                         stdout=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(0.5)  # let it LISTEN; a row before that is still found by the poll
        S.pg.query(ins, ("broadcast", S.widget_key, None, '{"n": 3}'))
        ready = select.select([p.stdout], [], [], 10)[0]
        assert ready, "tail printed nothing for a new row"
        assert json.loads(p.stdout.readline())["message"] == {"n": 3}
    finally:
        p.terminate()
        p.wait()


@test
def tail_orders_by_position_not_text():
    rtwtest.cross_a_power_of_ten(S.pg)
    conn = S.pg.connect()
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message) "
                "SELECT 'digits', 'broadcast', %s, 'a', to_jsonb(g) FROM generate_series(1, 12) g", (S.widget_key,))
    conn.commit()
    conn.close()
    out = S.ctl("tail", "--stream", "digits", "--no-follow", "--last", "4").stdout.splitlines()
    assert [json.loads(line)["message"] for line in out] == [9, 10, 11, 12], out


@test
def stats_counts():
    out = S.ctl("stats").stdout
    assert "messages.broadcast" in out and "widgets" in out


if __name__ == "__main__":
    rtwtest.main()
