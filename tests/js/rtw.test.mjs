// tests/js/rtw.test.mjs: unit tests of the client SDK (web/rtw.js) in Node
// (node --test): its logic against a scripted fetch and EventSource, no
// server. The real thing, Chromium against the real stack, is
// tests/integration/test_browser.py. Run by tests/js/run.sh in make check.
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";
import * as RTW from "../../web/rtw.js";
import { build } from "../../web/build.mjs";

const WEB = new URL("../../web/", import.meta.url);
const K1 = "11111111-1111-4111-8111-111111111111";
const K2 = "22222222-2222-4222-8222-222222222222";

function b64url(o) {
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}
function jwt(claims) {
  return b64url({ alg: "HS256", typ: "JWT" }) + "." + b64url(claims) + ".sig";
}

/* waits until cond() is true (polling); fails after a generous bound */
async function until(cond, what) {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("never happened: " + what);
}

/*
 * A scripted server behind fetch: events requests get a stream the test
 * writes frames into; other requests go to api(req) -> {status, body,
 * headers}. Every request is recorded.
 */
function fakeServer(api) {
  const s = { requests: [], streams: [] };
  s.fetch = async (url, init = {}) => {
    const u = new URL(url, "http://rtw.test");
    const headers = Object.assign({}, init.headers);
    const req = { url: u, method: init.method || "GET", headers, body: init.body ? JSON.parse(init.body) : null };
    s.requests.push(req);
    if (u.pathname.endsWith("/events")) {
      const st = s.onEvents ? s.onEvents(req) : null;
      if (st && st.status) {
        return new Response(JSON.stringify({ error: { code: st.code || "x", message: "no" } }),
          { status: st.status, headers: { "Content-Type": "application/json" } });
      }
      let ctl;
      const body = new ReadableStream({ start(c) { ctl = c; } });
      const enc = new TextEncoder();
      const stream = {
        req, open: true,
        push(t) { if (stream.open) ctl.enqueue(enc.encode(t)); },
        frame(o, id) { stream.push((id ? "id: " + id + "\n" : "") + "data: " + JSON.stringify(o) + "\n\n"); },
        init(m = {}, author = "u1") {
          stream.frame({ type: "init", stream_id: "s", author_id: author, timestamp: 0, widget_key: null,
            message: Object.assign({ connection_id: "c" + s.streams.length, last_event_id: null, resumed: false,
              heartbeat_s: 15 }, m) });
        },
        end() { if (stream.open) { stream.open = false; ctl.close(); } },
      };
      if (init.signal) init.signal.addEventListener("abort", () => {
        if (stream.open) { stream.open = false; try { ctl.error(new Error("aborted")); } catch (e) { /* closed */ } }
      });
      s.streams.push(stream);
      return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
    }
    const a = (api && api(req)) || { status: 404, body: { error: { code: "not_found" } } };
    return new Response(a.body === undefined ? "" : JSON.stringify(a.body),
      { status: a.status, headers: Object.assign({ "Content-Type": "application/json" }, a.headers || {}) });
  };
  s.events = () => s.requests.filter((r) => r.url.pathname.endsWith("/events"));
  s.last = () => s.streams[s.streams.length - 1];
  return s;
}

function msg(id, key, type = "broadcast", extra = {}) {
  return Object.assign({ id: String(id), stream_id: "s", author_id: "a", type, widget_key: key, timestamp: 1,
    message: { n: id } }, extra);
}

function page(messages, extra) {
  return { status: 200, body: { type: "request", stream_id: "s", timestamp: 0,
    message: Object.assign({ messages }, extra) } };
}

function conn(server, opts = {}) {
  return RTW.connect(Object.assign({ base: "http://rtw.test", stream: "s", fetch: server.fetch, persist: false,
    transport: "fetch", events: new EventTarget(), isOnline: () => true }, opts));
}

test("SSEParser: CRLF split across chunks, comments, multi-line data, ids", () => {
  const ev = [], com = [];
  const p = new RTW.SSEParser((e) => ev.push(e), (c) => com.push(c));
  p.push("retry: 1000\r");
  p.push("\n: hb\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r");
  p.push("\ndata: x\n\n");
  assert.deepEqual(com, ["hb"]);
  assert.deepEqual(ev, [{ data: "{\"a\":\n1}", id: "7" }, { data: "x", id: null }]);
  assert.equal(p.retry, 1000);
});

test("tokenExp reads exp from a JWT and is null for junk", () => {
  assert.equal(RTW.tokenExp(jwt({ sub: "a", exp: 1234 })), 1234);
  assert.equal(RTW.tokenExp("nope"), null);
});

test("the committed classic build is the build of the committed module", () => {
  const src = readFileSync(new URL("rtw.js", WEB), "utf8");
  const classic = readFileSync(new URL("rtw.classic.js", WEB), "utf8");
  assert.equal(classic, build(src), "run: node web/build.mjs");
  // and it runs as a classic script, exposing what the module exports
  const win = { crypto: globalThis.crypto, atob: globalThis.atob, setTimeout, clearTimeout };
  win.self = win;   // a browser window: the global object, also named self
  vm.runInNewContext(classic, win);
  assert.deepEqual(Object.keys(win.RTW).sort(), Object.keys(RTW).sort());
  assert.equal(win.RTW.tokenExp(jwt({ exp: 5 })), 5);
});

test("one event stream for three widgets, dispatched by widget_key", async () => {
  const srv = fakeServer(() => page([], { next_before_id: null }));
  const c = conn(srv);
  const poll = c.widget(K1, { history: false });
  const chat = c.widget(K2, { history: false });
  const card = c.widget(K2, { history: false });
  const got = { poll: [], chat: [], card: [], conn: [] };
  poll.on("broadcast", (m) => got.poll.push(m.id));
  chat.on("broadcast", (m) => got.chat.push(m.id));
  chat.on("private", (m) => got.chat.push("p" + m.id));
  card.on("webhook", (m) => got.card.push("w" + m.id));
  c.on("*", (m) => got.conn.push(m.id));
  await until(() => srv.streams.length === 1, "events request");
  const s = srv.last();
  assert.equal(s.req.url.searchParams.get("widget_key"), null, "an unfiltered stream carries every widget");
  s.init();
  await until(() => c.state === "open", "open");
  s.frame(msg(1, K1), "1");
  s.frame(msg(2, K2), "2");
  s.frame(msg(3, K2, "private", { to_user_id: "u1" }), "3");
  s.frame(msg(4, K2, "webhook"), "4");
  s.frame(msg(5, "33333333-3333-4333-8333-333333333333"), "5");
  await until(() => got.conn.length === 5, "all five");
  assert.deepEqual(got.poll, ["1"]);
  assert.deepEqual(got.chat, ["2", "p3"]);
  assert.deepEqual(got.card, ["w4"]);
  assert.equal(c.lastEventId, "5");
  assert.equal(srv.events().length, 1);
  assert.equal(poll.userId, "u1");
  c.close();
});

test("connect({widgetKey}) filters the stream until a second key joins, then resumes unfiltered", async () => {
  const srv = fakeServer();
  const w = conn(srv, { widgetKey: K1, history: false });
  await until(() => srv.streams.length === 1, "first");
  assert.equal(srv.last().req.url.searchParams.get("widget_key"), K1);
  srv.last().init();
  srv.last().frame(msg(9, K1), "9");
  await until(() => w.lastEventId === "9", "event");
  w.connection.widget(K2, { history: false });
  await until(() => srv.streams.length === 2, "second");
  const q = srv.last().req.url.searchParams;
  assert.equal(q.get("widget_key"), null);
  assert.equal(q.get("last_event_id"), "9");
  w.connection.close();
});

test("history({last: N}) on a 1.1 server: order=desc pages, delivered in stream order; older() pages back", async () => {
  const srv = fakeServer((req) => {
    const q = req.url.searchParams;
    assert.equal(q.get("order"), "desc");
    if (!q.get("before_id")) return page([msg(30, K1), msg(29, K1)], { next_before_id: "29" });
    assert.equal(q.get("before_id"), "29");
    return page([msg(28, K1), msg(27, K1)], { next_before_id: null });
  });
  const c = conn(srv);
  const w = c.widget(K1, { history: { last: 2 } });
  const seen = [];
  w.on("broadcast", (m, meta) => seen.push(m.id + (meta.older ? "o" : "h")));
  await until(() => srv.streams.length === 1, "events");
  srv.last().init();
  await until(() => seen.length === 2, "history");
  assert.deepEqual(seen, ["29h", "30h"]);
  assert.equal(srv.requests[1].url.searchParams.get("limit"), "2");
  assert.equal(w.hasOlder, true);
  const o = await w.older(2);
  assert.deepEqual(o.messages.map((m) => m.id), ["27", "28"]);
  assert.equal(o.more, false);
  assert.deepEqual(seen, ["29h", "30h", "27o", "28o"]);
  // one widget, nothing live yet: the position is the newest stored message
  assert.equal(c.lastEventId, "30");
  c.close();
});

test("history({last: N}) on a server that ignores order: reads forward and keeps the last N", async () => {
  const all = [1, 2, 3, 4, 5].map((i) => msg(i, K1));
  const srv = fakeServer((req) => {
    const since = req.url.searchParams.get("since_id");
    const start = since ? all.findIndex((m) => m.id === since) + 1 : 0;
    const lim = Number(req.url.searchParams.get("limit"));
    const out = all.slice(start, start + lim);
    const more = start + lim < all.length;
    return page(out, { next_since_id: more ? out[out.length - 1].id : null });
  });
  const c = conn(srv);
  const w = c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "events");
  const got = await w.history({ last: 2 });
  assert.deepEqual(got.map((m) => m.id), ["4", "5"]);
  assert.equal(srv.requests.filter((r) => r.url.pathname.endsWith("/messages") && !r.url.searchParams.get("order")).length, 1,
    "the fallback reads forward without order");
  assert.equal(w.hasOlder, false);
  assert.deepEqual((await w.older(10)).messages, []);
  c.close();
});

test("a descending answer without next_before_id is read again forward, never shown in the wrong order", async () => {
  const all = [1, 2, 3].map((i) => msg(i, K1));
  const srv = fakeServer((req) => {
    const desc = req.url.searchParams.get("order") === "desc";
    return page(desc ? all.slice().reverse() : all, { next_since_id: null });
  });
  const c = conn(srv);
  const w = c.widget(K1, { history: false });
  const got = await w.history({ last: 3 });
  assert.deepEqual(got.map((m) => m.id), ["1", "2", "3"]);
  c.close();
});

test("redact: the widget of the key hears the id; the original never shows afterwards", async () => {
  const srv = fakeServer(() => page([msg(7, K2)], { next_before_id: null }));
  const c = conn(srv);
  const chat = c.widget(K2, { history: false });
  const poll = c.widget(K1, { history: false });
  const red = [], shown = [], pollRed = [];
  chat.on("redact", (id, ev) => red.push([id, ev.id]));
  chat.on("broadcast", (m) => shown.push(m.id));
  poll.on("redact", (id) => pollRed.push(id));
  await until(() => srv.streams.length === 1, "events");
  srv.last().init();
  srv.last().frame({ id: "8", type: "redact", stream_id: "s", author_id: "mod", widget_key: K2, timestamp: 0,
    message: { id: "7" } }, "8");
  await until(() => red.length === 1, "redact");
  assert.deepEqual(red, [["7", "8"]]);
  assert.deepEqual(pollRed, []);
  await chat.history({ last: 10 });
  assert.deepEqual(shown, [], "a redacted message came back from history");
  c.close();
});

test("redact(id) sends DELETE and applies the answer at once", async () => {
  const srv = fakeServer((req) => {
    assert.equal(req.method, "DELETE");
    assert.equal(req.url.pathname, "/v1/streams/s/messages/41");
    return { status: 200, body: { id: "42", type: "redact", stream_id: "s", author_id: "u1", widget_key: K2,
      timestamp: 0, message: { id: "41" } } };
  });
  const c = conn(srv);
  const chat = c.widget(K2, { history: false });
  const red = [];
  chat.on("redact", (id) => red.push(id));
  const ev = await chat.redact("41");
  assert.equal(ev.type, "redact");
  assert.deepEqual(red, ["41"]);
  c.close();
});

test("ban and unban send PUT and DELETE to the stream's or every stream's ban of the user", async () => {
  const srv = fakeServer((req) => ({ status: 200, body: { user_id: "a/b", stream_id: null, until: null,
    created_at: "2026-11-28T00:00:00.000000Z" } }));
  const c = conn(srv);
  const b = await c.ban("a/b", { forS: 600 });
  assert.equal(b.user_id, "a/b");
  await c.ban("eve", { everywhere: true, until: "2030-01-01T00:00:00Z" });
  await c.ban("eve");
  await c.unban("eve", { everywhere: true });
  const got = srv.requests.filter((r) => !r.url.pathname.endsWith("/events"))
    .map((r) => [r.method, r.url.pathname, r.body]);
  assert.deepEqual(got, [
    ["PUT", "/v1/streams/s/bans/a%2Fb", { for_s: 600 }],
    ["PUT", "/v1/bans/eve", { until: "2030-01-01T00:00:00Z" }],
    ["PUT", "/v1/streams/s/bans/eve", {}],
    ["DELETE", "/v1/bans/eve", null],
  ]);
  c.close();
});

test("presence frames reach the connection and every widget; presence=1 is asked for", async () => {
  const srv = fakeServer();
  const c = conn(srv);
  const w = c.widget(K1, { history: false });
  const got = [];
  w.on("presence", (p) => got.push(p.viewers));
  await until(() => srv.streams.length === 1, "events");
  assert.equal(srv.last().req.url.searchParams.get("presence"), "1");
  srv.last().init();
  srv.last().frame({ type: "presence", stream_id: "s", timestamp: 0, widget_key: null,
    message: { connections: 3, viewers: 2 } });
  await until(() => got.length === 1, "presence");
  assert.deepEqual(c.viewers, { connections: 3, viewers: 2 });
  assert.equal(c.lastEventId, null, "a presence frame is no position");
  c.close();
});

test("a widget added to an open connection fetches its history; presence asked later reopens the stream", async () => {
  const srv = fakeServer(() => page([msg(2, K2), msg(1, K2)], { next_before_id: null }));
  const c = conn(srv);
  c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "events");
  assert.equal(srv.last().req.url.searchParams.get("presence"), null);
  srv.last().init();
  srv.last().frame(msg(0, K1), "0");
  await until(() => c.lastEventId === "0", "live");
  const late = c.widget(K2, { history: { last: 2 } });
  const got = [];
  late.on("broadcast", (m, meta) => got.push(m.id + (meta.history ? "h" : "")));
  await until(() => got.length === 2, "late history");
  assert.deepEqual(got, ["1h", "2h"]);
  assert.equal(c.lastEventId, "0", "history moved the live position");
  c.on("presence", () => {});
  await until(() => srv.streams.length === 2, "reopen");
  const q = srv.last().req.url.searchParams;
  assert.equal(q.get("presence"), "1");
  assert.equal(q.get("last_event_id"), "0");
  c.close();
});

test("a dropped stream resumes from the last id; a replayed id is delivered once", async () => {
  const srv = fakeServer();
  const c = conn(srv);
  const w = c.widget(K1, { history: false });
  const got = [];
  w.on("broadcast", (m) => got.push(m.id));
  await until(() => srv.streams.length === 1, "events");
  srv.last().init();
  srv.last().frame(msg(1, K1), "1");
  srv.last().frame(msg(2, K1), "2");
  await until(() => got.length === 2, "two");
  srv.last().end();
  await until(() => srv.streams.length === 2, "reconnect");
  assert.equal(srv.last().req.url.searchParams.get("last_event_id"), "2");
  srv.last().init({ resumed: true, last_event_id: "2" });
  srv.last().frame(msg(2, K1), "2");
  srv.last().frame(msg(3, K1), "3");
  await until(() => got.length === 3, "three");
  assert.deepEqual(got, ["1", "2", "3"]);
  c.close();
});

test("the watchdog reconnects a stream silent for 2 x heartbeat_s", async () => {
  const srv = fakeServer();
  const c = conn(srv);
  c.widget(K1, { history: false });
  const stalls = [];
  c.on("stall", (s) => stalls.push(s));
  await until(() => srv.streams.length === 1, "events");
  srv.last().init({ heartbeat_s: 0.02 });
  srv.last().frame(msg(5, K1), "5");
  await until(() => srv.streams.length === 2, "reconnect after silence");
  assert.equal(stalls.length >= 1, true);
  assert.equal(srv.last().req.url.searchParams.get("last_event_id"), "5");
  c.close();
});

test("refreshToken is called before exp and the stream reopens with the new token and the last id", async () => {
  const srv = fakeServer();
  const old = jwt({ sub: "u1", exp: Date.now() / 1000 + 0.3 });
  const fresh = jwt({ sub: "u1", exp: Date.now() / 1000 + 3600 });
  let asked = 0;
  const c = conn(srv, { token: old, refreshToken: async () => { asked++; return fresh; } });
  c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "events");
  assert.equal(srv.last().req.headers.Authorization, "Bearer " + old);
  assert.equal(srv.last().req.url.searchParams.get("access_token"), null, "token in the URL");
  srv.last().init();
  srv.last().frame(msg(6, K1), "6");
  await until(() => srv.streams.length === 2, "reopen");
  assert.equal(asked, 1);
  assert.equal(srv.last().req.headers.Authorization, "Bearer " + fresh);
  assert.equal(srv.last().req.url.searchParams.get("last_event_id"), "6");
  c.close();
});

test("a refused stored anonymous token is dropped and the viewer starts over", async () => {
  const srv = fakeServer();
  let first = true;
  srv.onEvents = () => (first ? ((first = false), { status: 401, code: "unauthorized" }) : null);
  const c = conn(srv, { token: jwt({ sub: "anon-x", exp: Date.now() / 1000 + 3600 }), anonymous: true });
  c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "second attempt");
  assert.equal(srv.last().req.headers.Authorization, undefined);
  srv.last().init({ token: jwt({ sub: "anon-y", exp: Date.now() / 1000 + 3600 }) }, "anon-y");
  await until(() => c.userId === "anon-y", "new identity");
  c.close();
});

test("403 on the event stream (banned) is final", async () => {
  const srv = fakeServer();
  srv.onEvents = () => ({ status: 403, code: "banned" });
  const c = conn(srv, { token: jwt({ sub: "u", exp: Date.now() / 1000 + 3600 }) });
  const errs = [];
  c.on("error", (e) => errs.push(e.code));
  await until(() => c.state === "closed", "closed");
  assert.deepEqual(errs, ["banned"]);
  assert.equal(srv.events().length, 1);
});

test("offline closes the stream, online reopens it from the last id", async () => {
  const srv = fakeServer();
  const ev = new EventTarget();
  const c = conn(srv, { events: ev });
  c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "events");
  srv.last().init();
  srv.last().frame(msg(3, K1), "3");
  await until(() => c.lastEventId === "3", "event");
  ev.dispatchEvent(new Event("offline"));
  assert.equal(c.state, "waiting");
  assert.equal(srv.last().open, false, "the stream was not closed");
  ev.dispatchEvent(new Event("online"));
  await until(() => srv.streams.length === 2, "reopen");
  assert.equal(srv.last().req.url.searchParams.get("last_event_id"), "3");
  c.close();
});

test("publish() retries 503 and a network error with one Idempotency-Key", async () => {
  let n = 0;
  const keys = [];
  const srv = fakeServer((req) => {
    keys.push(req.headers["Idempotency-Key"]);
    n++;
    if (n === 1) return { status: 503, body: { error: { code: "unavailable" } }, headers: { "Retry-After": "0" } };
    if (n === 2) throw new TypeError("network down");
    return { status: 201, body: Object.assign(msg(10, K1), { message: req.body.message }) };
  });
  const c = conn(srv, { token: jwt({ sub: "u", exp: Date.now() / 1000 + 3600 }) });
  const w = c.widget(K1, { history: false });
  const retries = [];
  c.on("retry", (r) => retries.push(r.status));
  const stored = await w.publish({ vote: "red" }, { timestamp: 2 });
  assert.equal(stored.id, "10");
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 1, "the key changed across retries");
  assert.deepEqual(retries, [503, 0]);
  const post = srv.requests.find((r) => r.method === "POST");
  assert.deepEqual(post.body, { type: "broadcast", widget_key: K1, message: { vote: "red" }, timestamp: 2 });
  c.close();
});

test("eventsBase: the event stream from its own origin, everything else from base", async () => {
  const srv = fakeServer((req) => ({ status: 201, body: Object.assign(msg(10, K1), { message: req.body.message }) }));
  const c = conn(srv, { eventsBase: "http://rtw.test:8084/", token: jwt({ sub: "u", exp: Date.now() / 1000 + 3600 }) });
  const w = c.widget(K1, { history: false });
  await until(() => srv.streams.length === 1, "events request");
  assert.equal(srv.last().req.url.origin, "http://rtw.test:8084");
  assert.equal(srv.last().req.url.pathname, "/v1/streams/s/events");
  srv.last().init({}, "u");
  await until(() => c.state === "open", "open");
  await w.publish({ vote: "red" }, { timestamp: 2 });
  const post = srv.requests.find((r) => r.method === "POST");
  assert.equal(post.url.origin, "http://rtw.test", "POSTs stay on base");
  c.close();
});

test("a 400 is not retried and rejects with the contract's code", async () => {
  const srv = fakeServer(() => ({ status: 400, body: { error: { code: "invalid_field", field: "timestamp" } } }));
  const c = conn(srv, { token: jwt({ sub: "u", exp: Date.now() / 1000 + 3600 }) });
  const w = c.widget(K1, { history: false });
  await assert.rejects(w.publish({}), (e) => e instanceof RTW.RTWError && e.code === "invalid_field" &&
    e.field === "timestamp" && e.status === 400);
  assert.equal(srv.requests.filter((r) => r.method === "POST").length, 1);
  c.close();
});

test("the EventSource transport: token in the URL, reconnect with last_event_id", async () => {
  const made = [];
  class FakeES {
    constructor(url) { this.url = new URL(url); made.push(this); }
    close() { this.closed = true; }
  }
  const srv = fakeServer();
  const c = conn(srv, { transport: "eventsource", EventSource: FakeES,
    token: jwt({ sub: "u", exp: Date.now() / 1000 + 3600 }) });
  c.widget(K1, { history: false });
  await until(() => made.length === 1, "EventSource");
  assert.ok(made[0].url.searchParams.get("access_token"));
  made[0].onopen();
  const init = { type: "init", author_id: "u", message: { resumed: false, heartbeat_s: 15 } };
  made[0].onmessage({ data: JSON.stringify(init), lastEventId: "" });
  made[0].onmessage({ data: JSON.stringify(msg(4, K1)), lastEventId: "4" });
  assert.equal(c.lastEventId, "4");
  assert.equal(c.watchdog, null, "an EventSource cannot see heartbeats: no watchdog");
  made[0].onerror();
  assert.equal(made[0].closed, true);
  await until(() => made.length === 2, "reconnect");
  assert.equal(made[1].url.searchParams.get("last_event_id"), "4");
  c.close();
});
