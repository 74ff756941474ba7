"""test_fcgi_kept: rtw-fcgi on a unix socket behind nginx with kept FastCGI
connections (fastcgi_keep_conn on and the upstream's keepalive, as
conf/nginx.conf.in ships them).

A kept connection carries many requests, so whatever one request leaves
behind (an unread body after an early error answer, a half-written
response) would corrupt the next: errors and successes alternate on the
same few connections and each answer must be its own. Idempotency-Key
replays stay exact; more concurrent POSTs than nginx keeps connections
all get their 201 (kept idle connections hold worker threads, the others
serve the rest), and every acknowledged message is stored once.
"""
import os
import threading
import uuid

import rtwtest as t

S = t.Stack()
S.start_fcgi(unix=True)
P = S.start_nginx()
TOK = S.token("alice")


def bcast(**kw):
    m = {"type": "broadcast", "widget_key": S.widget_key, "timestamp": 1.5, "message": {"v": 1}}
    m.update(kw)
    return m


def post(stream, body, headers=None, token=TOK):
    return t.request(P, "POST", "/v1/streams/%s/messages" % stream, body, token=token, headers=headers)


def stored(stream):
    return [str(r[0]) for r in S.pg.query("SELECT id FROM rtw_messages WHERE stream_id = %s ORDER BY id", (stream,))]


@t.test
def nginx_reaches_the_unix_socket():
    assert S.fcgi_unix and os.path.exists(S.fcgi_unix)
    with open(os.path.join(S.tmp, "nginx", "nginx.conf")) as f:
        assert "server unix:%s;" % S.fcgi_unix in f.read()
    r = post("unix-1", bcast(message="over a unix socket"))
    assert r.status == 201 and r.json["message"] == "over a unix socket", r
    assert stored("unix-1") == [r.json["id"]]


@t.test
def errors_and_successes_alternate_on_kept_connections():
    st = "kept-%s" % uuid.uuid4().hex[:8]
    ids = []
    for i in range(60):
        kind = i % 4
        if kind == 0:  # an invalid body: answered before the handler uses it
            r = post(st, "{not json" + "x" * 3000)
            assert r.status == 400 and r.json["error"]["code"] == "invalid_json", r
        elif kind == 1:  # refused before the body is read at all
            r = post(st, bcast(message="nope"), token="not-a-token")
            assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
        else:
            r = post(st, bcast(message={"i": i, "pad": "y" * (i * 50)}))
            assert r.status == 201 and r.json["message"] == {"i": i, "pad": "y" * (i * 50)}, r
            ids.append(r.json["id"])
    assert stored(st) == ids


@t.test
def idempotency_replay_over_kept_connections():
    st = "idem-%s" % uuid.uuid4().hex[:8]
    key = "kept-" + uuid.uuid4().hex
    first = post(st, bcast(message="once"), headers={"Idempotency-Key": key})
    assert first.status == 201, first
    for _ in range(5):
        again = post(st, bcast(message="once"), headers={"Idempotency-Key": key})
        assert again.status == first.status and again.json == first.json, (first, again)
    assert stored(st) == [first.json["id"]]


@t.test
def more_concurrent_posts_than_kept_connections():
    # 48 at once: above nginx's 2 x 8 kept connections and rtw-fcgi's 32
    # workers, three rounds, so kept connections are reused under load.
    st = "burst-%s" % uuid.uuid4().hex[:8]
    got, errors = [], []
    lock = threading.Lock()

    def one(i):
        try:
            r = post(st, bcast(message=i))
            with lock:
                (got if r.status == 201 else errors).append(r.json["id"] if r.status == 201 else r)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(e)

    for rnd in range(3):
        th = [threading.Thread(target=one, args=(rnd * 100 + i,)) for i in range(48)]
        for x in th:
            x.start()
        for x in th:
            x.join(60)
    assert not errors, errors[:3]
    assert len(got) == 144 and sorted(got, key=int) == stored(st)
    # and the daemon still answers a lone request afterwards
    r = post(st, bcast(message="after"))
    assert r.status == 201, r


if __name__ == "__main__":
    t.main()
