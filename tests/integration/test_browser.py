#!/usr/bin/python3
"""test_browser: the demo page (web/) in Debian's headless Chromium, served
by nginx in front of rtw-fcgi and rtw-sse: it connects with an anonymous
identity on one event stream for its three widgets (web/rtw.js, loaded as an
ES module; the classic build exposes the same API), a click on a poll option
comes back as a broadcast and is tallied, messages posted from here
(broadcast and private) appear in the page, the shopping card's webhook
(rtw-webhookd calling nginx's /demo/quote) brings its price back into the
page, the tally survives a reload (history), the page resumes after rtw-sse
restarts, the chat shows the latest 50 lines after a reload and older
ones on demand, the viewer count comes from presence frames, a deleted
line leaves the page, and the moderator view (a second tab with an admin
token) deletes a viewer's line and bans the viewer with its ban button
(the HTTP ban route), whose tab then shows its stream ended and its next
line refused as banned, and lifts the ban (the SDK's unban). Drives
tests/browser/driver.mjs (playwright-core) over a
JSON-lines pipe; needs /usr/bin/chromium and `npm ci` in tests/browser
(done here when node_modules is missing). RTW_SCREENSHOT=path keeps a
screenshot of the page at the end; RTW_BROWSER_FRONT=apache serves the page
through Apache httpd instead of nginx."""
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtwtest  # noqa: E402
from rtwtest import request, test  # noqa: E402

rtwtest.need(os.path.exists("/usr/bin/chromium"), "Chromium (/usr/bin/chromium)")
rtwtest.need(shutil.which("node") and shutil.which("npm"), "Node.js and npm")
BROWSER_DIR = os.path.join(rtwtest.SRCDIR, "tests", "browser")
STREAM = "demo"
FRONT = os.environ.get("RTW_BROWSER_FRONT", "nginx")   # or "apache"


class Browser:
    """One Chromium page behind tests/browser/driver.mjs."""

    def __init__(self, log_path):
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True,
                           stdout=subprocess.DEVNULL)
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "driver.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
                                     start_new_session=True)
        self.answers = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            try:
                self.answers.put(json.loads(line))
            except ValueError:
                self.answers.put({"id": None, "ok": False, "error": "driver said: " + line.strip()})
        self.answers.put(None)

    def call(self, cmd, timeout=40.0, **args):
        self.next_id += 1
        args.update(id=self.next_id, cmd=cmd)
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        try:
            a = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("the browser driver did not answer %s" % cmd)
        if a is None:
            with open(self.log_path, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            raise RuntimeError("the browser driver exited (is /usr/bin/chromium installed?):\n" + tail)
        if not a["ok"]:
            raise AssertionError("%s failed: %s\npage logs: %s" % (cmd, a["error"], self.page_logs()))
        return a["result"]

    def page_logs(self):
        try:
            self.proc.stdin.write(json.dumps({"id": 0, "cmd": "logs"}) + "\n")
            self.proc.stdin.flush()
            a = self.answers.get(timeout=5)
            return "\n".join(a["result"]) if a and a["ok"] else "?"
        except Exception:  # noqa: BLE001 - diagnostics only
            return "?"

    def wait(self, expr, timeout=15.0):
        return self.call("waitFor", timeout=timeout + 10, expr=expr, ms=int(timeout * 1000))

    def eval(self, expr):
        return self.call("eval", expr=expr)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except Exception:  # noqa: BLE001 - then the hard way
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def make_webroot(stack):
    """A copy of web/ with the config.js that ./dev up would write, so the
    dev stack's own web/config.js is never touched."""
    root = os.path.join(stack.tmp, "web")
    shutil.copytree(os.path.join(rtwtest.SRCDIR, "web"), root, ignore=shutil.ignore_patterns("config.js"))
    with open(os.path.join(root, "config.js"), "w") as f:
        f.write("window.RTW_CONFIG = %s;\n" % json.dumps({
            "widgetKey": stack.widget_key, "secondWidgetKey": stack.widget_key2, "stream": STREAM,
            "moderation": True}))
    return root


# the demo's card is an anonymous viewer's webhook on a widget without a
# host list, as on ./dev up's stack
S = rtwtest.Stack(extra_env={"RTW_WEBHOOK_REQUIRE_WIDGET_HOSTS": "false", "RTW_WEBHOOK_REFUSE_ANONYMOUS": "false"})
S.start_fcgi()
S.start_sse()
WEBROOT = make_webroot(S)
if FRONT == "apache":
    S.http_port = S.start_apache(webroot=WEBROOT)
else:
    S.start_nginx(webroot=WEBROOT)
# the shopping card's webhook calls the page's own origin on loopback:
# that port only
S.start_webhookd(env={"RTW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1:%d" % S.http_port})
B = Browser(os.path.join(S.tmp, "browser.log"))
rtwtest.atexit.register(B.close)
STATE = {}


def js(s):
    return json.dumps(s)


def post(body, sub):
    return request(S.http_port, "POST", "/v1/streams/%s/messages" % STREAM, body, token=S.token(sub))


def count(option):
    return B.call("text", selector="#poll-count-" + option).strip()


@test
def page_loads_and_connects_anonymously():
    status = B.call("goto", url=S.url + "/")
    assert status == 200, status
    assert B.eval("document.getElementById('config-error').hidden") is True
    # init seen: rtw-sse minted an identity and the chat shares it
    user = B.wait("window.RTW_DEMO && RTW_DEMO.poll.state === 'open' && RTW_DEMO.chat && "
                  "RTW_DEMO.chat.state === 'open' && RTW_DEMO.poll.userId")
    assert user and B.eval("RTW_DEMO.chat.userId") == user
    assert B.eval("!!RTW_DEMO.poll.token"), "no anonymous token from init"
    assert B.call("text", selector="#me") == user
    STATE["user"] = user


@test
def one_event_stream_for_three_widgets():
    B.wait("RTW_DEMO.card && RTW_DEMO.card.state === 'open'")
    assert B.eval("RTW_DEMO.connection.widgets.length") == 3
    assert B.eval("RTW_DEMO.poll.connection === RTW_DEMO.chat.connection && "
                  "RTW_DEMO.chat.connection === RTW_DEMO.card.connection") is True
    assert B.eval("document.querySelectorAll('#event-log li[data-kind=init]').length") == 1
    # rtw-sse itself counts one subscriber: the tab's (the metrics request
    # is a connection, never a subscriber)
    r = request(S.sse_port, "GET", "/metrics")
    assert r.status == 200, r
    gauge = [ln for ln in r.body.decode().splitlines() if ln.startswith("rtw_sse_subscribers ")]
    assert gauge == ["rtw_sse_subscribers 1"], gauge


@test
def classic_build_exposes_the_module_api():
    keys = B.eval("""new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = 'rtw.classic.js';
        s.onload = () => import(location.origin + '/rtw.js').then((m) => resolve([Object.keys(window.RTW).sort(),
                                                                  Object.keys(m).sort()]));
        s.onerror = reject;
        document.head.appendChild(s);
    })""")
    assert keys[0] == keys[1] and "connect" in keys[0], keys


@test
def vote_click_round_trips_into_the_tally():
    assert count("blue") == "0"
    B.call("click", selector="#poll button[data-option=blue]")
    # the tally counts broadcasts only: this is rtw-fcgi -> PostgreSQL ->
    # NOTIFY -> rtw-sse -> EventSource -> page
    B.wait("document.getElementById('poll-count-blue').textContent === '1'")
    assert B.call("text", selector="#poll-total") == "1 vote"
    assert B.call("text", selector="#poll-mine") == "you voted blue"
    rows = S.pg.query("SELECT author_id, message, widget_key::text, type FROM rtw_messages "
                      "WHERE stream_id = %s AND message->>'poll' IS NOT NULL", (STREAM,))
    assert rows == [(STATE["user"], {"poll": "next-goal", "vote": "blue"}, S.widget_key, "broadcast")], rows


@test
def vote_posted_from_outside_appears_in_the_tally():
    r = post({"type": "broadcast", "widget_key": S.widget_key, "timestamp": 12.5,
              "message": {"poll": "next-goal", "vote": "red"}}, "carol")
    assert r.status == 201, r
    B.wait("document.getElementById('poll-count-red').textContent === '1'")
    assert count("blue") == "1"
    assert B.call("text", selector="#poll-total") == "2 votes"
    # a changed mind replaces the earlier vote (one vote per author)
    r = post({"type": "broadcast", "widget_key": S.widget_key, "timestamp": 13,
              "message": {"poll": "next-goal", "vote": "nobody"}}, "carol")
    assert r.status == 201, r
    B.wait("document.getElementById('poll-count-nobody').textContent === '1'")
    assert count("red") == "0"


@test
def chat_broadcast_from_outside_appears():
    r = post({"type": "broadcast", "widget_key": S.widget_key2, "timestamp": 20,
              "message": {"text": "hello from python <b>not html</b>"}}, "carol")
    assert r.status == 201, r
    sel = "#chat-log li[data-id=%s]" % js(r.json["id"])
    B.wait("!!document.querySelector(%s)" % js(sel))
    assert B.call("text", selector=sel + " .text") == "hello from python <b>not html</b>"
    assert B.eval("document.querySelectorAll('#chat-log b').length") == 0, "chat text rendered as HTML"


@test
def private_reaches_the_page_user_only():
    # first a private to someone else, then one to the page's user: stream
    # order means a leak of the first would be visible before the second
    other = post({"type": "private", "widget_key": S.widget_key2, "timestamp": 21, "to_user_id": "dave",
                  "message": {"text": "for dave only"}}, "carol")
    assert other.status == 201, other
    mine = post({"type": "private", "widget_key": S.widget_key2, "timestamp": 22, "to_user_id": STATE["user"],
                 "message": {"text": "psst, page user"}}, "carol")
    assert mine.status == 201, mine
    sel = "#chat-log li.private[data-id=%s]" % js(mine.json["id"])
    B.wait("!!document.querySelector(%s)" % js(sel))
    assert B.call("text", selector=sel + " .text") == "psst, page user"
    assert "for dave only" not in B.call("text", selector="#chat-log")
    assert "for dave only" not in B.call("text", selector="#event-log")


@test
def chat_line_typed_in_the_page_is_sent_and_shown():
    B.call("fill", selector="#chat-text", value="typed in chromium")
    B.call("press", selector="#chat-text", key="Enter")
    B.wait("[...document.querySelectorAll('#chat-log li .text')].some(e => e.textContent === 'typed in chromium')")
    rows = S.pg.query("SELECT author_id, type, ts > 0 FROM rtw_messages WHERE message->>'text' = 'typed in chromium'")
    # the timestamp is the fake player's running video time
    assert rows == [(STATE["user"], "broadcast", True)], rows


@test
def card_click_fetches_the_price_through_a_webhook():
    # click -> rtw-fcgi queues a job -> rtw-webhookd POSTs to nginx's
    # /demo/quote -> result row -> rtw-sse -> the card shows the price
    if FRONT != "nginx":
        print("  (skipped: the demo's /demo/quote target is served by conf/nginx.conf.in only)")
        return
    assert B.call("text", selector="#card-price") == "?"
    B.wait("!document.getElementById('card-check').disabled")
    B.call("click", selector="#card-check")
    B.wait("document.getElementById('card-price').textContent === '19.90 EUR'", timeout=20)
    assert B.eval("document.getElementById('card-job').dataset.status") == "succeeded"
    assert B.eval("document.getElementById('card-error').hidden") is True
    job = B.eval("document.getElementById('card-job').dataset.job")
    # the 202 named the job as queued (the result may have come first:
    # the card keeps it until the 202 names its job)
    queued = B.eval("[...document.querySelectorAll('#event-log li[data-kind=\"job queued\"]')]"
                    ".map(e => e.textContent)")
    assert any("job=%s" % job in t for t in queued), (job, queued)
    rows = S.pg.query("SELECT id::text, status, author_id, widget_key::text, url, method, body, last_http_status, "
                      "attempts FROM rtw_webhook_jobs")
    assert rows == [(job, "succeeded", STATE["user"], S.widget_key2, S.url + "/demo/quote", "POST",
                     {"sku": "demo-1"}, 200, 1)], rows
    res = S.pg.query("SELECT m.author_id, m.to_user_id, m.type, m.message->>'status', m.message->'body' "
                     "FROM rtw_messages m JOIN rtw_webhook_jobs j ON j.result_message_id = m.id WHERE j.id = %s",
                     (int(job),))
    assert res == [(STATE["user"], STATE["user"], "webhook", "succeeded",
                    {"sku": "demo-1", "price": "19.90", "currency": "EUR"})], res


@test
def reload_keeps_identity_and_rebuilds_tally_from_history():
    B.call("reload")
    B.wait("window.RTW_DEMO && RTW_DEMO.poll.state === 'open' && RTW_DEMO.poll.userId")
    assert B.eval("RTW_DEMO.poll.userId") == STATE["user"], "the stored anonymous identity was not reused"
    B.wait("document.getElementById('poll-total').textContent === '2 votes'")
    assert count("blue") == "1" and count("nobody") == "1" and count("red") == "0"
    assert B.call("text", selector="#poll-mine") == "you voted blue"
    # public chat lines come back from history too (privates do not)
    B.wait("[...document.querySelectorAll('#chat-log li .text')].some(e => e.textContent === 'typed in chromium')")


@test
def vote_is_retried_while_rtw_fcgi_is_down():
    S.daemons["rtw-fcgi"].stop()
    try:
        B.call("click", selector="#poll button[data-option=nobody]")
        # the first attempt failed (nginx: 502) and rtw.js scheduled a retry
        B.wait("document.querySelectorAll('#event-log li[data-kind=retry]').length > 0")
    finally:
        S.start_fcgi()
    B.wait("document.getElementById('poll-count-nobody').textContent === '2'", timeout=30)
    assert count("blue") == "0"
    assert B.call("text", selector="#poll-mine") == "you voted nobody"
    assert B.eval("document.getElementById('poll-error').hidden") is True
    rows = S.pg.query("SELECT count(*) FROM rtw_messages WHERE author_id = %s AND message->>'vote' = 'nobody'",
                      (STATE["user"],))
    assert rows == [(1,)], rows


@test
def page_resumes_after_rtw_sse_restart():
    before = B.eval("RTW_DEMO.poll.lastEventId")
    assert before, "the page has no position to resume from"
    S.daemons["rtw-sse"].stop()
    B.wait("RTW_DEMO.poll.state !== 'open'")
    r = post({"type": "broadcast", "widget_key": S.widget_key, "timestamp": 30,
              "message": {"poll": "next-goal", "vote": "red"}}, "erin")
    assert r.status == 201, r
    S.start_sse()
    B.wait("document.getElementById('poll-count-red').textContent === '1'", timeout=30)
    inits = B.eval("[...document.querySelectorAll('#event-log li[data-kind=init]')].map(e => e.textContent)")
    assert any("resumed=true" in t for t in inits), (before, inits)
    assert B.call("text", selector="#poll-total") == "3 votes"
    shot = os.environ.get("RTW_SCREENSHOT") or os.path.join(S.tmp, "demo.png")
    B.call("screenshot", path=shot)
    assert os.path.getsize(shot) > 10000


@test
def unknown_last_id_resets_and_rebuilds_from_history():
    # as if the server had purged our position: init says resumed:false,
    # the poll starts over and rebuilds the same tally from history
    B.eval("RTW_DEMO.poll.lastEventId = '999999999'")
    S.daemons["rtw-sse"].stop()
    B.wait("RTW_DEMO.poll.state !== 'open'")
    S.start_sse()
    B.wait("document.querySelectorAll('#event-log li[data-kind=reset]').length > 0", timeout=30)
    B.wait("RTW_DEMO.poll.state === 'open'")
    B.wait("document.getElementById('poll-total').textContent === '3 votes'")
    assert count("red") == "1" and count("nobody") == "2" and count("blue") == "0"
    assert B.call("text", selector="#poll-mine") == "you voted nobody"


@test
def refused_stored_token_gets_a_new_anonymous_identity():
    # a stored token the server refuses (here: wrong secret) must not wedge
    # the page: rtw.js sees the 401 and starts over as a new viewer
    forged = rtwtest.mint("not-the-secret", "mallory")
    B.eval("localStorage.setItem('rtw.token:' + location.origin, %s)" % js(forged))
    B.call("reload")
    user = B.wait("window.RTW_DEMO && RTW_DEMO.poll.state === 'open' && RTW_DEMO.poll.userId", timeout=30)
    assert user not in ("mallory", STATE["user"]), user
    assert B.eval("localStorage.getItem('rtw.token:' + location.origin)") != forged
    B.wait("RTW_DEMO.chat && RTW_DEMO.chat.state === 'open'")
    assert B.eval("RTW_DEMO.chat.userId") == user


@test
def chat_shows_the_latest_50_lines_after_a_reload():
    ids = []
    for i in range(60):
        r = post({"type": "broadcast", "widget_key": S.widget_key2, "timestamp": 40 + i,
                  "message": {"text": "line %02d" % i}}, "carol")
        assert r.status == 201, r
        ids.append(r.json["id"])
    B.call("reload")
    B.wait("window.RTW_DEMO && RTW_DEMO.chat.state === 'open'")
    B.wait("!!document.querySelector(%s)" % js("#chat-log li[data-id=%s]" % js(ids[-1])))
    texts = B.eval("[...document.querySelectorAll('#chat-log li .text')].map(e => e.textContent)")
    # the latest 50 of the widget's stored broadcasts, oldest first, and no
    # more (earlier chat lines and the first ten are left out)
    assert texts == ["line %02d" % i for i in range(10, 60)], texts
    assert B.eval("RTW_DEMO.chat.hasOlder") is True, "no scroll-back after the latest 50 of 60 lines"
    B.call("click", selector="#chat-older")
    B.wait("document.querySelectorAll('#chat-log li').length > 50")
    texts = B.eval("[...document.querySelectorAll('#chat-log li .text')].map(e => e.textContent)")
    assert texts[-50:] == ["line %02d" % i for i in range(10, 60)], texts
    assert texts[:-50][-10:] == ["line %02d" % i for i in range(0, 10)], texts


@test
def viewer_count_from_presence_frames():
    r = request(S.http_port, "GET", "/v1/streams/%s/presence" % STREAM, token=S.token("carol"))
    assert r.status == 200, r
    B.wait("!document.getElementById('viewers').hidden", timeout=30)
    assert int(B.call("text", selector="#viewer-count")) >= 1


@test
def deleted_chat_line_leaves_the_page():
    r = post({"type": "broadcast", "widget_key": S.widget_key2, "timestamp": 200,
              "message": {"text": "to be deleted"}}, "carol")
    assert r.status == 201, r
    sel = "#chat-log li[data-id=%s]" % js(r.json["id"])
    B.wait("!!document.querySelector(%s)" % js(sel))
    d = request(S.http_port, "DELETE", "/v1/streams/%s/messages/%s" % (STREAM, r.json["id"]), token=S.token("carol"))
    assert d.status == 200 and d.json["type"] == "redact", d
    # the redact event reaches the page live and the chat drops the line
    B.wait("!document.querySelector(%s)" % js(sel))
    # the page's user deletes its own line with the chat's delete button
    B.call("fill", selector="#chat-text", value="my own mistake")
    B.call("press", selector="#chat-text", key="Enter")
    mine = "[...document.querySelectorAll('#chat-log li')].find(e => e.querySelector('.text').textContent === " \
           "'my own mistake')"
    B.wait("!!(%s)" % mine)
    assert B.eval("!!(%s).querySelector('.del')" % mine) is True, "no delete button on the user's own line"
    B.eval("(%s).querySelector('.del').click()" % mine)
    B.wait("!(%s)" % mine)
    B.call("reload")
    B.wait("window.RTW_DEMO && RTW_DEMO.chat.state === 'open'")
    B.wait("[...document.querySelectorAll('#chat-log li .text')].some(e => e.textContent === 'line 59')")
    log = B.call("text", selector="#chat-log")
    assert "to be deleted" not in log and "my own mistake" not in log, log


@test
def moderator_deletes_a_line_and_bans_a_user():
    # the viewer is this page's anonymous identity; the moderator a second
    # tab with an admin token in the fragment
    viewer = B.eval("RTW_DEMO.connection.userId")
    assert viewer and viewer.startswith("anon-"), viewer
    mod = S.token("moderator", admin=True)
    assert B.call("open", name="mod", url="%s/index.html#moderator=%s" % (S.url, mod)) == 200

    def mod_wait(expr, timeout=15.0):
        return B.call("waitFor", page="mod", expr=expr, ms=int(timeout * 1000), timeout=timeout + 10)
    mod_wait("window.RTW_DEMO && RTW_DEMO.chat.state === 'open' && !!document.getElementById('mod-panel')")
    line = "[...document.querySelectorAll('#chat-log li')].find(e => e.querySelector('.text').textContent === %s)"
    B.call("fill", selector="#chat-text", value="rude words")
    B.call("press", selector="#chat-text", key="Enter")
    B.wait("!!(%s)" % (line % js("rude words")))
    mod_wait("!!(%s)" % (line % js("rude words")))
    # the moderator deletes the viewer's line: gone in the viewer's tab too
    B.call("eval", page="mod", expr="(%s).querySelector('.del').click()" % (line % js("rude words")))
    B.wait("!(%s)" % (line % js("rude words")))
    mod_wait("!(%s)" % (line % js("rude words")))
    # and bans the viewer with one click (PUT .../bans/{user}, ten minutes)
    B.call("fill", selector="#chat-text", value="more rude words")
    B.call("press", selector="#chat-text", key="Enter")
    mod_wait("!!(%s)" % (line % js("more rude words")))
    B.call("eval", page="mod", expr="(%s).querySelector('.ban').click()" % (line % js("more rude words")))
    mod_wait("document.getElementById('mod-panel').getAttribute('data-banned') === %s" % js(viewer))
    assert "Banned %s from %s until " % (viewer, STREAM) in B.call("text", page="mod", selector="#mod-panel")
    left = S.pg.query("SELECT extract(epoch FROM until - now()) FROM rtw_bans WHERE user_id = %s AND stream_id = %s",
                      (viewer, STREAM))
    assert len(left) == 1 and 500 < left[0][0] <= 600, left
    # the viewer's tab: its stream ends and is refused from then on, and
    # its next line is refused as banned
    B.wait("RTW_DEMO.chat.state === 'closed'")
    B.call("fill", selector="#chat-text", value="let me back in")
    B.call("press", selector="#chat-text", key="Enter")
    B.wait("!document.getElementById('chat-error').hidden")
    assert "(banned)" in B.call("text", selector="#chat-error")
    # the moderator's own tab goes on
    assert B.call("eval", page="mod", expr="RTW_DEMO.chat.state") == "open"
    # lifted from the moderator's tab (the SDK's unban)
    assert B.call("eval", page="mod", expr="RTW_DEMO.connection.unban(%s).then(b => b.user_id)" % js(viewer)) == viewer
    B.call("reload")
    B.wait("window.RTW_DEMO && RTW_DEMO.chat.state === 'open'")
    assert B.eval("RTW_DEMO.connection.userId") == viewer


def doc_example(title, key):
    """The runnable page of doc/widgets.md under "### <title>", with the key
    filled in, served by the stack as /example-<title>.html."""
    with open(os.path.join(rtwtest.SRCDIR, "doc", "widgets.md")) as f:
        doc = f.read()
    section = doc.split("\n### %s\n" % title, 1)[1]
    html = re.search(r"```html\n(.*?)```", section, re.S).group(1)
    assert "PUT-THE-WIDGET-KEY-HERE" in html, title
    name = "example-%s.html" % title.lower().replace(" ", "-")
    with open(os.path.join(WEBROOT, name), "w") as f:
        f.write(html.replace("PUT-THE-WIDGET-KEY-HERE", key))
    assert B.call("goto", url="%s/%s" % (S.url, name)) == 200
    return name


@test
def doc_examples_run_in_the_browser():
    # each widget kind's example in doc/widgets.md, as written there
    doc_example("Poll", S.widget_key)
    B.wait("/red \\d+ · blue \\d+/.test(document.getElementById('tally').textContent)")
    red = int(B.eval("document.getElementById('tally').textContent.match(/red (\\d+)/)[1]"))
    B.call("click", selector="button[data-o=red]")
    B.wait("document.getElementById('tally').textContent.startsWith('red %d ')" % (red + 1))

    doc_example("Chat", S.widget_key2)
    B.wait("[...document.querySelectorAll('#log li')].some(e => e.textContent === 'carol: line 59')")
    B.call("fill", selector="#t", value="from the doc example")
    B.call("press", selector="#t", key="Enter")
    B.wait("[...document.querySelectorAll('#log li')].some(e => e.textContent.endsWith(': from the doc example'))")

    doc_example("Quiz", S.widget_key)
    r = post({"type": "broadcast", "widget_key": S.widget_key, "timestamp": 0,
              "message": {"quiz": "q1", "question": "2+2?", "options": ["3", "4"]}}, "quizmaster")
    assert r.status == 201, r
    B.wait("document.getElementById('q').textContent === '2+2?'")
    B.call("click", selector="#opts button:nth-child(2)")
    B.wait("document.getElementById('res').textContent === 'answered 4'")
    answers = S.pg.query("SELECT to_user_id, message FROM rtw_messages WHERE type = 'private' AND "
                         "message->>'quiz' = 'q1'")
    assert answers == [("quizmaster", {"quiz": "q1", "answer": "4"})], answers
    r = post({"type": "broadcast", "widget_key": S.widget_key, "timestamp": 0,
              "message": {"quiz": "q1", "correct": "4"}}, "quizmaster")
    assert r.status == 201, r
    B.wait("document.getElementById('res').textContent === 'right!'")

    if FRONT != "nginx":
        print("  (card example skipped: /demo/quote is served by conf/nginx.conf.in only)")
        return
    doc_example("Shopping card", S.widget_key2)
    B.wait("!!document.getElementById('check')")
    B.call("click", selector="#check")
    B.wait("document.getElementById('price').textContent === '19.90 EUR'", timeout=20)


if __name__ == "__main__":
    rtwtest.main()
