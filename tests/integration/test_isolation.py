#!/usr/bin/python3
"""test_isolation: the private-isolation property, through nginx. Many users
with random subscriptions (with and without a widget filter, some users
twice) while random broadcasts and privates are posted by random users on
two widgets; several random seeds. Then for every subscription, live and
after a resume from a random position, the events received must be exactly
the messages it may see, in stream order: every broadcast of its widget
filter, and the privates addressed to its user, nothing else. History
(GET and `request`) never holds a private, and the stored table holds every
acknowledged private with its addressee."""
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import SSEClient, request, test  # noqa: E402

S = rtwtest.Stack()
S.start_fcgi()
S.start_sse()
PORT = S.start_nginx()
KEYS = [S.widget_key, S.widget_key2]
USERS = ["u%d" % i for i in range(12)]
TOKENS = {u: S.token(u) for u in USERS}


def sse_ready():
    c = SSEClient(S.sse_port, "/v1/streams/ready/events")
    try:
        return c.status == 200
    finally:
        c.close()


rtwtest.wait_for(sse_ready, 20, "rtw-sse to know its position")


class Sub(threading.Thread):
    """One subscription; collects every event with an id."""

    def __init__(self, user, stream, widget=None, last_id=None):
        super().__init__(daemon=True)
        self.user, self.widget = user, widget
        q = "access_token=" + TOKENS[user] + ("&widget_key=" + widget if widget else "")
        h = {"Last-Event-ID": last_id} if last_id else None
        self.c = SSEClient(PORT, "/v1/streams/%s/events?%s" % (stream, q), headers=h)
        assert self.c.status == 200, self.c.status
        init = self.c.next_event(10)["json"]
        assert init["type"] == "init" and init["author_id"] == user, init
        self.resumed = init["message"]["resumed"]
        self.got = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                ev = self.c.next_event(0.3)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return
            if "id" in ev:
                self.got.append(ev["json"])

    def close(self):
        self.stop.set()
        self.join(5)
        self.c.close()


def may_see(sub, m):
    if sub.widget and m["widget_key"] != sub.widget:
        return False
    if m["type"] == "broadcast":
        return True
    return m["type"] == "private" and m["to_user_id"] == sub.user


def stream_order(stream):
    return [str(r[0]) for r in S.pg.query("SELECT id FROM rtw_messages WHERE stream_id = %s ORDER BY xid, id",
                                          (stream,))]


def judge(subs, sent, order, what):
    pos = {mid: i for i, mid in enumerate(order)}
    problems = []
    for s in subs:
        want = sorted((m for m in sent.values() if may_see(s, m)), key=lambda m: pos[m["id"]])
        if s.start_after is not None:
            want = [m for m in want if pos[m["id"]] > pos[s.start_after]]
        got_ids = [m["id"] for m in s.got]
        leaked = [m for m in s.got if m["type"] == "private" and m["to_user_id"] != s.user]
        if leaked:
            problems.append("%s %s/%s received privates of others: %r" % (what, s.user, s.widget, leaked[:3]))
        if got_ids != [m["id"] for m in want]:
            problems.append("%s %s/%s: got %d ids, expected %d (first got %r, first expected %r)" % (
                what, s.user, s.widget, len(got_ids), len(want), got_ids[:3], [m["id"] for m in want][:3]))
    return problems


def run_seed(seed):
    rnd = random.Random(seed)
    stream = "iso-%d" % seed
    subs = []
    for u in USERS:
        for _ in range(rnd.choice([1, 1, 2])):
            s = Sub(u, stream, widget=rnd.choice([None, None] + KEYS))
            s.start_after = None
            subs.append(s)
    for s in subs:
        s.start()
    sent = {}
    for i in range(80):
        author = rnd.choice(USERS)
        body = {"widget_key": rnd.choice(KEYS), "timestamp": i, "message": {"i": i, "seed": seed}}
        if rnd.random() < 0.55:
            body.update(type="private", to_user_id=rnd.choice(USERS))
        else:
            body["type"] = "broadcast"
        r = request(PORT, "POST", "/v1/streams/%s/messages" % stream, body, token=TOKENS[author])
        assert r.status == 201, r
        sent[r.json["id"]] = r.json
    order = stream_order(stream)
    assert set(order) == set(sent), "stored and acknowledged differ"
    rtwtest.wait_for(lambda: sum(len(s.got) for s in subs) >= sum(
        sum(1 for m in sent.values() if may_see(s, m)) for s in subs), 20, "live delivery")
    time.sleep(0.3)  # anything extra (a leak) would arrive now
    for s in subs:
        s.close()
    problems = judge(subs, sent, order, "live")

    # resume: each user again, from a random position in stream order
    resumed = []
    for u in USERS:
        widget = rnd.choice([None] + KEYS)
        probe = type("P", (), {"user": u, "widget": widget})
        # a position this subscriber could have seen (ids it could not see
        # are unknown to it: resumed false, live only)
        after = rnd.choice([mid for mid in order[:-1] if may_see(probe, sent[mid])])
        s = Sub(u, stream, widget=widget, last_id=after)
        assert s.resumed, "resume from a known id"
        s.start_after = after
        resumed.append(s)
        s.start()
    pos = {mid: i for i, mid in enumerate(order)}
    rtwtest.wait_for(lambda: all(len(s.got) >= sum(1 for m in sent.values() if may_see(s, m) and
                                                   pos[m["id"]] > pos[s.start_after]) for s in resumed),
                     20, "resumed delivery")
    time.sleep(0.3)
    for s in resumed:
        s.close()
    problems += judge(resumed, sent, order, "resume")

    # history: GET and request, by every user, never a private
    for u in USERS:
        for k in KEYS:
            r = request(PORT, "GET", "/v1/streams/%s/messages?widget_key=%s&limit=1000" % (stream, k),
                        token=TOKENS[u])
            assert r.status == 200, r
            got = r.json["message"]["messages"]
            want = [mid for mid in order if sent[mid]["type"] == "broadcast" and sent[mid]["widget_key"] == k]
            if [m["id"] for m in got] != want:
                problems.append("history %s/%s: %r" % (u, k, [m["type"] for m in got if m["type"] != "broadcast"]))
        r = request(PORT, "POST", "/v1/streams/%s/messages" % stream,
                    {"type": "request", "widget_key": KEYS[0], "message": {"limit": 1000}}, token=TOKENS[u])
        assert r.status == 200, r
        if any(m["type"] != "broadcast" for m in r.json["message"]["messages"]):
            problems.append("request by %s returned a private" % u)
    rows = S.pg.query("SELECT id::text, to_user_id FROM rtw_messages WHERE stream_id = %s AND type = 'private'",
                      (stream,))
    assert {r[0]: r[1] for r in rows} == {mid: m["to_user_id"] for mid, m in sent.items()
                                           if m["type"] == "private"}
    return problems


@test
def privates_reach_their_addressee_only():
    problems = []
    for seed in (1, 2, 3):
        problems += run_seed(seed)
    assert not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems[:20]))


if __name__ == "__main__":
    rtwtest.main()
