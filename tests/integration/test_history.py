"""test_history: history pages through real nginx, rtw-fcgi and PostgreSQL.

Both directions (order asc/desc, since_id, before_id, next_since_id and
next_before_id) against the stream order read straight from the table;
position ids that are not broadcasts of the stream; pages bounded in bytes
(cut with the next id, one larger message alone); rtw-fcgi's memory after
parallel large pages (VmRSS, a bound, not a timing); the rate limit on
history reads. rtw-fcgi is restarted with other settings for the last two.
"""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import rtwtest as t  # noqa: E402

# a small ASan quarantine keeps the memory bound meaningful in sanitizer builds
ASAN = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")
S = t.Stack()
S.start_fcgi(env={"ASAN_OPTIONS": ASAN})
S.start_nginx()
P = S.http_port
TOK = S.token("alice")
_n = [0]


def stream_name():
    _n[0] += 1
    return "h%d-%d" % (os.getpid(), _n[0])


def insert(stream, n, typ="broadcast", widget=None, to=None, size=10):
    """n rows, one transaction each (so their xids differ); their ids."""
    conn = S.pg.connect()
    ids = []
    try:
        with conn.cursor() as cur:
            for i in range(n):
                cur.execute("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message,"
                            " ts) VALUES (%s, %s, %s, 'w', %s, %s, %s) RETURNING id",
                            (stream, typ, widget or S.widget_key, to, json.dumps({"i": i, "pad": "x" * size}), i))
                ids.append(str(cur.fetchone()[0]))
    finally:
        conn.close()
    return ids


def order(stream, widget=None):
    """The widget's broadcasts of the stream in stream order, from the table."""
    rows = S.pg.query("SELECT id::text FROM rtw_messages WHERE stream_id = %s AND widget_key = %s"
                      " AND type = 'broadcast' ORDER BY xid, id", (stream, widget or S.widget_key))
    return [r[0] for r in rows]


def request(stream, filters=None, token=TOK):
    body = {"type": "request", "widget_key": S.widget_key}
    if filters is not None:
        body["message"] = filters
    return t.request(P, "POST", "/v1/streams/%s/messages" % stream, body, token=token)


def get(stream, query="", token=TOK):
    return t.request(P, "GET", "/v1/streams/%s/messages?widget_key=%s%s" % (stream, S.widget_key, query),
                     token=token)


def ids_of(r):
    assert r.status == 200, r
    return [m["id"] for m in r.json["message"]["messages"]]


def walk(stream, desc, limit, via_get=False):
    """Every page from the first; returns (ids in page order, pages)."""
    key = "next_before_id" if desc else "next_since_id"
    pos_key = "before_id" if desc else "since_id"
    out, pages, pos = [], 0, None
    while True:
        if via_get:
            q = "&limit=%d&order=%s" % (limit, "desc" if desc else "asc")
            r = get(stream, q + ("&%s=%s" % (pos_key, pos) if pos else ""))
        else:
            f = {"limit": limit, "order": "desc" if desc else "asc"}
            if pos:
                f[pos_key] = pos
            r = request(stream, f)
        page = ids_of(r)
        msg = r.json["message"]
        assert set(msg) == {"messages", key}, msg
        pages += 1
        out += page
        if msg[key] is None:
            return out, pages
        assert page and msg[key] == page[-1], msg
        pos = msg[key]
        assert pages < 1000, "paging does not end"


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    e = r.json["error"]
    assert e["code"] == code, r
    if field is not None:
        assert e.get("field") == field, r


# ---- both directions ---------------------------------------------------------

@t.test
def latest_n_newest_first_and_paging_back():
    s = stream_name()
    t.cross_a_power_of_ten(S.pg)  # ids differ in digit count: text order is not stream order
    insert(s, 23)
    insert(s, 2, widget=S.widget_key2)
    insert(s, 2, typ="private", to="bob")
    insert(stream_name(), 3)
    want = order(s)
    assert len(want) == 23
    r = request(s, {"order": "desc", "limit": 5})
    assert ids_of(r) == want[::-1][:5]
    assert r.json["message"]["next_before_id"] == want[-5]
    assert r.json["type"] == "request" and r.json["timestamp"] == 0
    for via_get in (False, True):
        got, pages = walk(s, True, 5, via_get)
        assert got == want[::-1], (got, want)
        assert pages == 5
        got, pages = walk(s, False, 5, via_get)
        assert got == want
    # exactly one page: no next id
    r = request(s, {"order": "desc", "limit": 23})
    assert ids_of(r) == want[::-1] and r.json["message"]["next_before_id"] is None


@t.test
def before_and_since_bound_both_directions():
    s = stream_name()
    insert(s, 12)
    want = order(s)
    assert ids_of(request(s, {"before_id": want[6]})) == want[:6]
    assert ids_of(request(s, {"before_id": want[6], "order": "desc", "limit": 2})) == [want[5], want[4]]
    r = request(s, {"since_id": want[2], "before_id": want[9]})
    assert ids_of(r) == want[3:9] and r.json["message"]["next_since_id"] is None
    r = request(s, {"since_id": want[2], "before_id": want[9], "order": "desc", "limit": 4})
    assert ids_of(r) == want[8:4:-1] and r.json["message"]["next_before_id"] == want[5]
    assert ids_of(get(s, "&before_id=%s&order=desc&limit=3" % want[3])) == want[2::-1]
    assert ids_of(request(s, {"before_id": want[0]})) == []
    assert ids_of(request(s, {"since_id": want[5], "before_id": want[3]})) == []
    # timestamps (video time) still filter, both ways
    assert ids_of(request(s, {"order": "desc", "from_timestamp": 3, "to_timestamp": 5})) == want[5:2:-1]


@t.test
def positions_not_in_the_stream_are_400():
    s, other = stream_name(), stream_name()
    insert(s, 2)
    foreign = insert(other, 1)[0]
    private = insert(s, 1, typ="private", to="bob")[0]
    for field in ("before_id", "since_id"):
        for bad in (foreign, private, "9223372036854775807"):
            assert_error(request(s, {field: bad, "order": "desc"}), 400, "invalid_field", field)
            assert_error(get(s, "&%s=%s" % (field, bad)), 400, "invalid_field", field)
        assert_error(request(s, {field: "x"}), 400, "invalid_field", field)
    assert_error(request(s, {"order": "newest"}), 400, "invalid_field", "order")
    assert_error(get(s, "&order=DESC"), 400, "invalid_field", "order")
    assert_error(request(s, {"order": "desc", "offset": 1}), 400, "unexpected_field")


# ---- pages bounded in bytes --------------------------------------------------

def restart_fcgi(env):
    S.daemons["rtw-fcgi"].stop()
    e = {"ASAN_OPTIONS": ASAN}
    e.update(env)
    S.start_fcgi(env=e)


@t.test
def page_cut_by_bytes_keeps_the_next_id():
    restart_fcgi({"RTW_HISTORY_MAX_BYTES": "4096"})
    s = stream_name()
    insert(s, 20, size=1000)
    insert(s, 1, size=10000)  # larger than a page: alone on its own
    insert(s, 3, size=1000)
    want = order(s)
    r = request(s, {"limit": 1000})
    got = ids_of(r)
    assert 1 <= len(got) < 20, got
    assert len(r.body) <= 4096 + 200, len(r.body)
    assert r.json["message"]["next_since_id"] == got[-1]
    for desc in (False, True):
        got, pages = walk(s, desc, 1000)
        assert got == (want[::-1] if desc else want)
        assert pages >= 7, pages
    r = request(s, {"since_id": want[19], "limit": 1000})
    assert ids_of(r) == [want[20]] and len(r.body) > 10000
    assert r.json["message"]["next_since_id"] == want[20]



@t.test
def parallel_large_pages_leave_memory_bounded():
    restart_fcgi({})  # the default history.max_bytes, 1 MiB
    s = stream_name()
    # 1,000 messages of 60 KB: an unbounded page would be 60 MB
    S.pg.query("INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)"
               " SELECT %s, 'broadcast', %s, 'w', jsonb_build_object('i', g, 'pad', repeat('x', 60000)), g"
               " FROM generate_series(1, 1000) g", (s, S.widget_key))
    pid = S.daemons["rtw-fcgi"].proc.pid
    assert request(s, {"limit": 1000}).status == 200  # warms up one worker
    rss0 = t.rss_kib(pid)
    results = []

    def pages(desc):
        for _ in range(3):
            try:
                results.append(request(s, {"limit": 1000, "order": "desc" if desc else "asc"}))
            except OSError as e:  # an unbounded page may not even arrive in time
                results.append(e)

    th = [threading.Thread(target=pages, args=(i % 2 == 1,)) for i in range(6)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    growth_mb = (t.rss_kib(pid) - rss0) / 1024.0
    print("rtw-fcgi VmRSS grew by %.1f MB after 18 pages in 6 parallel clients" % growth_mb)
    # e8acdea kept each worker's 60 MB page buffer for good (88 MB for six)
    assert growth_mb < 40, "rtw-fcgi grew by %.1f MB" % growth_mb
    assert len(results) == 18
    for r in results:
        assert isinstance(r, t.Response) and r.status == 200, r
        assert len(r.body) <= (1 << 20) + 200, len(r.body)
        m = r.json["message"]
        assert 10 <= len(m["messages"]) < 1000 and (m.get("next_since_id") or m.get("next_before_id")), len(r.body)


# ---- rate limit --------------------------------------------------------------

@t.test
def history_flood_gets_429():
    restart_fcgi({"RTW_FCGI_RATE_LIMIT_PER_S": "1", "RTW_FCGI_RATE_LIMIT_BURST": "5"})
    s = stream_name()
    insert(s, 1)
    statuses = [get(s).status for _ in range(5)]
    assert statuses == [200] * 5, statuses
    r = get(s)
    assert_error(r, 429, "rate_limited")
    assert int(r.header("Retry-After")) >= 1, r.headers
    assert_error(request(s, {"order": "desc"}), 429, "rate_limited")  # the same bucket as POST
    # per identity and per stream: another author, or another stream, is not held back
    assert get(s, token=S.token("bob")).status == 200
    assert get(stream_name()).status == 200
    restart_fcgi({})


if __name__ == "__main__":
    t.main()
