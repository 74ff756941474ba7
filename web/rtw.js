/*
 * rtw.js: the browser client of rtw for widget authors. Owns one widget's
 * connection to a stream: the Server-Sent Events subscription (with resume
 * after a drop), the identity (a given token, or the anonymous one rtw-sse
 * mints in init), sending messages with retries, and history pages.
 * Never touches the page (no DOM), never logs payloads. Plain ES2017, no
 * build step; exposes window.RTW. Guide: doc/widgets.md.
 *
 *   var c = RTW.connect({stream: "demo", widgetKey: "6b9f...", getTime: () => video.currentTime});
 *   c.on("broadcast", function (msg, meta) { ... });
 *   c.send("broadcast", {vote: "a"}).then(function (stored) { ... });
 */
(function (global) {
  "use strict";

  var STATE = {IDLE: "idle", CONNECTING: "connecting", OPEN: "open", WAITING: "waiting", CLOSED: "closed"};
  var SEEN_MAX = 5000;           /* ids remembered to drop duplicates (history vs live) */
  var RECONNECT_MIN_MS = 1000;
  var RECONNECT_MAX_MS = 30000;
  var HISTORY_PAGE = 1000;       /* the contract's max page */

  function uuid4() {
    var c = global.crypto;
    if (c && typeof c.randomUUID === "function")
      return c.randomUUID();
    /* crypto.randomUUID needs a secure context; getRandomValues does not */
    var b = new Uint8Array(16);
    c.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  /* exp claim of a JWT in seconds, or null; the signature is the server's business */
  function tokenExp(token) {
    try {
      var p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var claims = JSON.parse(atob(p + "===".slice((p.length + 3) % 4)));
      return typeof claims.exp === "number" ? claims.exp : null;
    } catch (e) {
      return null;
    }
  }

  function storageGet(key) {
    try { return global.localStorage ? global.localStorage.getItem(key) : null; } catch (e) { return null; }
  }
  function storageSet(key, value) {
    try {
      if (!global.localStorage) return;
      if (value === null) global.localStorage.removeItem(key);
      else global.localStorage.setItem(key, value);
    } catch (e) { /* private mode: identity lasts for the page only */ }
  }

  /* Retry-After in seconds (delta form) or an HTTP date; ms, or null */
  function retryAfterMs(res) {
    var v = res.headers.get("Retry-After");
    if (!v) return null;
    if (/^\d+$/.test(v.trim())) return parseInt(v, 10) * 1000;
    var t = Date.parse(v);
    return isNaN(t) ? null : Math.max(0, t - Date.now());
  }

  /* An error of the rtw API: status, code and field from the JSON body. */
  function RTWError(status, body, message) {
    var e = (body && body.error) || {};
    this.name = "RTWError";
    this.status = status;
    this.code = e.code || (status ? "http_" + status : "network_error");
    this.field = e.field || null;
    this.message = e.message || message || ("HTTP " + status);
    this.body = body;
  }
  RTWError.prototype = Object.create(Error.prototype);
  RTWError.prototype.constructor = RTWError;

  function Client(opts) {
    if (!opts || !opts.stream) throw new TypeError("RTW.connect: stream is required");
    this.base = (opts.base || "").replace(/\/+$/, "");
    this.stream = String(opts.stream);
    this.widgetKey = opts.widgetKey || null;
    this.getTime = opts.getTime || null;
    this.maxRetries = opts.maxRetries === undefined ? 5 : opts.maxRetries;
    this.autoHistory = opts.history !== false;
    this.historyMax = opts.historyMax || 10000;
    this.storageKey = opts.persist === false ? null : "rtw.token:" + (this.base || global.location.origin);
    this.userId = opts.userId || null;   /* open mode: sent as author_id */
    this.token = opts.token || null;
    this.tokenGiven = !!opts.token && !opts.anonymous; /* a minted token is ours to drop */
    this.refreshToken = opts.refreshToken || null;
    if (!this.token && this.storageKey) {
      var stored = storageGet(this.storageKey);
      var exp = stored && tokenExp(stored);
      if (stored && (!exp || exp > Date.now() / 1000 + 60)) this.token = stored;
    }
    this.state = STATE.IDLE;
    this.lastEventId = null;
    this.connectionId = null;
    this.heartbeatS = null;
    this.handlers = {};
    this.seen = new Set();
    this.seenOrder = [];
    this.es = null;
    this.timer = null;
    this.failures = 0;
    var self = this;
    this.ready = new Promise(function (resolve) { self.resolveReady = resolve; });
    this.open();
  }

  Client.prototype.on = function (type, fn) {
    (this.handlers[type] = this.handlers[type] || []).push(fn);
    return this;
  };

  Client.prototype.off = function (type, fn) {
    var l = this.handlers[type] || [];
    var i = l.indexOf(fn);
    if (i >= 0) l.splice(i, 1);
    return this;
  };

  Client.prototype.emit = function (type, a, b) {
    var l = (this.handlers[type] || []).slice();
    for (var i = 0; i < l.length; i++) {
      try { l[i].call(this, a, b); } catch (e) { setTimeout(function () { throw e; }); }
    }
  };

  Client.prototype.setState = function (s) {
    if (this.state === s) return;
    var old = this.state;
    this.state = s;
    this.emit("state", s, old);
  };

  Client.prototype.eventsUrl = function () {
    var q = [];
    if (this.widgetKey) q.push("widget_key=" + encodeURIComponent(this.widgetKey));
    if (this.token) q.push("access_token=" + encodeURIComponent(this.token));
    if (this.lastEventId !== null) q.push("last_event_id=" + encodeURIComponent(this.lastEventId));
    return this.base + "/v1/streams/" + encodeURIComponent(this.stream) + "/events" + (q.length ? "?" + q.join("&") : "");
  };

  /*
   * Reconnection is ours, not EventSource's: its own retry would reuse the
   * first URL, which may lack the identity minted since (a new anonymous
   * user per drop) and carries a stale last_event_id. So every drop closes
   * the EventSource and opens a new one with the current token and id.
   */
  Client.prototype.open = function () {
    var self = this;
    if (this.state === STATE.CLOSED) return;
    this.setState(STATE.CONNECTING);
    var es = new EventSource(this.eventsUrl());
    this.es = es;
    es.onmessage = function (ev) {
      if (self.es !== es) return;
      self.onFrame(ev);
    };
    es.onerror = function () {
      if (self.es !== es) return;
      es.close();
      self.es = null;
      self.dropped();
    };
  };

  Client.prototype.dropped = function () {
    var self = this;
    if (this.state === STATE.CLOSED) return;
    var neverOpened = this.state === STATE.CONNECTING;
    this.setState(STATE.WAITING);
    this.failures++;
    var delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, Math.min(this.failures - 1, 5)));
    delay = delay / 2 + Math.random() * delay / 2;
    this.emit("disconnect", {failures: this.failures, retryInMs: Math.round(delay)});
    /* EventSource hides the status of a refused subscription; ask once to
     * tell a rejected token (401: never retried as is) from a dead server */
    var probe = neverOpened && this.token ? this.probeStatus() : Promise.resolve(0);
    probe.then(function (status) {
      if (status === 401 || status === 403) return self.tokenRejected(status);
      return status;
    }).then(function () {
      if (self.state !== STATE.WAITING) return;
      self.timer = setTimeout(function () { self.timer = null; self.open(); }, delay);
    });
  };

  Client.prototype.probeStatus = function () {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    return fetch(this.eventsUrl(), {headers: {Accept: "text/event-stream"}, signal: ctl && ctl.signal, cache: "no-store"})
      .then(function (res) {
        if (ctl) ctl.abort();
        return res.status;
      }, function () { return 0; });
  };

  Client.prototype.tokenRejected = function (status) {
    var self = this;
    if (!this.tokenGiven) {
      /* a stored anonymous identity expired or the secret changed: start over */
      this.token = null;
      this.lastEventId = null;
      if (this.storageKey) storageSet(this.storageKey, null);
      this.emit("identity", null);
      return null;
    }
    if (this.refreshToken) {
      return Promise.resolve(this.refreshToken()).then(function (t) {
        if (t) self.token = t;
        else self.fail(new RTWError(status, null, "the token was refused"));
      });
    }
    this.fail(new RTWError(status, null, "the token was refused"));
    return null;
  };

  Client.prototype.fail = function (err) {
    this.emit("error", err);
    this.close();
  };

  Client.prototype.onFrame = function (ev) {
    var msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      this.emit("error", new RTWError(0, null, "unparsable event"));
      return;
    }
    if (msg.type === "init") {
      this.onInit(msg);
      return;
    }
    if (ev.lastEventId) this.lastEventId = ev.lastEventId;
    this.deliver(msg, {live: true});
  };

  Client.prototype.onInit = function (msg) {
    var m = msg.message || {};
    var asked = this.lastEventId;
    this.failures = 0;
    this.connectionId = m.connection_id || null;
    this.heartbeatS = m.heartbeat_s || null;
    if (m.token) {
      this.token = m.token;
      this.tokenGiven = false;
      if (this.storageKey) storageSet(this.storageKey, m.token);
    }
    if (msg.author_id !== undefined && msg.author_id !== null) {
      var changed = this.userId !== msg.author_id;
      this.userId = msg.author_id;
      if (changed) this.emit("identity", this.userId);
    }
    this.setState(STATE.OPEN);
    this.emit("init", msg);
    this.resolveReady(msg);
    if (!m.resumed) {
      /* a fresh start, or an id the server no longer knows: live only, so the
       * past comes from history (broadcasts of this widget) */
      if (asked !== null) {
        /* what we saw before may come again from history: let it through */
        this.seen.clear();
        this.seenOrder = [];
        this.emit("reset", {lastEventId: asked});
      }
      if (this.autoHistory && this.widgetKey) {
        var self = this;
        this.history({all: true}).then(function (msgs) {
          /* nothing live yet: resume from the newest stored message rather
           * than from "now" (a later reconnect then misses nothing) */
          if (self.lastEventId === null && msgs.length) self.lastEventId = msgs[msgs.length - 1].id;
          self.emit("history", msgs);
        }, function (err) {
          self.emit("error", err);
        });
      }
    }
  };

  /* Hands one message to the handlers of its type and of "*", once per id. */
  Client.prototype.deliver = function (msg, meta) {
    if (msg.id !== undefined && msg.id !== null) {
      if (this.seen.has(msg.id)) return false;
      this.seen.add(msg.id);
      this.seenOrder.push(msg.id);
      if (this.seenOrder.length > SEEN_MAX) this.seen.delete(this.seenOrder.shift());
    }
    this.emit(msg.type, msg, meta);
    this.emit("*", msg, meta);
    return true;
  };

  Client.prototype.authHeaders = function () {
    var h = {};
    if (this.token) h.Authorization = "Bearer " + this.token;
    return h;
  };

  /* fetch + JSON + retries on 503/429/network errors, honouring Retry-After */
  Client.prototype.call = function (method, path, body, extraHeaders) {
    var self = this;
    var attempt = 0;
    function once() {
      var h = Object.assign({Accept: "application/json"}, self.authHeaders(), extraHeaders || {});
      if (body !== undefined) h["Content-Type"] = "application/json";
      return fetch(self.base + path, {
        method: method, headers: h, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body)
      }).then(function (res) {
        return res.text().then(function (text) {
          var json = null;
          try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
          if (res.ok) return json;
          var err = new RTWError(res.status, json);
          err.retryAfterMs = retryAfterMs(res);
          throw err;
        });
      }).catch(function (err) {
        if (!(err instanceof RTWError)) err = new RTWError(0, null, String(err && err.message || err));
        /* 503/429 promise nothing was written; a network error or a proxy's
         * 502/504 may hide a stored message, which the unchanged
         * Idempotency-Key makes safe to ask again */
        var retryable = [0, 429, 502, 503, 504].indexOf(err.status) >= 0;
        if (!retryable || attempt >= self.maxRetries) throw err;
        attempt++;
        var wait = err.retryAfterMs;
        if (wait === null || wait === undefined)
          wait = Math.min(RECONNECT_MAX_MS, 500 * Math.pow(2, attempt - 1)) * (0.5 + Math.random() / 2);
        self.emit("retry", {method: method, path: path, attempt: attempt, status: err.status, code: err.code,
          waitMs: Math.round(wait)});
        return sleep(wait).then(once);
      });
    }
    return once();
  };

  /*
   * Posts one message. type: "broadcast", "private", "webhook" or
   * "request". opts: {to: user id (private), timestamp: video seconds
   * (default getTime() or 0), idempotencyKey (default a fresh UUID, kept
   * across retries)}. Resolves with the server's answer (the stored
   * message for broadcast/private); rejects with an RTWError.
   */
  Client.prototype.send = function (type, message, opts) {
    var self = this;
    opts = opts || {};
    var key = opts.idempotencyKey || uuid4();
    /* an anonymous viewer can post only once init handed it a token */
    var wait = this.token || this.tokenGiven || this.state === STATE.CLOSED ? Promise.resolve() : this.ready;
    return wait.then(function () {
      var body = {type: type, widget_key: self.widgetKey, message: message};
      var ts = opts.timestamp;
      if (ts === undefined && self.getTime) ts = self.getTime();
      if (ts === undefined && (type === "broadcast" || type === "private")) ts = 0;
      if (ts !== undefined) body.timestamp = Math.max(0, Number(ts) || 0);
      if (opts.to !== undefined) body.to_user_id = String(opts.to);
      if (!self.token && self.userId) body.author_id = self.userId;
      return self.call("POST", "/v1/streams/" + encodeURIComponent(self.stream) + "/messages", body,
        {"Idempotency-Key": key});
    });
  };

  Client.prototype.broadcast = function (message, opts) {
    return this.send("broadcast", message, opts);
  };

  Client.prototype.sendPrivate = function (toUserId, message, opts) {
    return this.send("private", message, Object.assign({}, opts, {to: toUserId}));
  };

  /*
   * Asks rtw-webhookd to call a URL for this viewer. spec: a URL string
   * (POST, no body of ours) or {url, method, headers, body}. Resolves with
   * the queued job {job_id, status: "queued", url}; the outcome arrives
   * later as a "webhook" event whose message.job_id is that id (possibly
   * before this promise resolves: keep early results by job_id).
   */
  Client.prototype.webhook = function (spec, opts) {
    return this.send("webhook", spec, opts).then(function (res) {
      return (res && res.message) || null;
    });
  };

  /*
   * The stream's stored broadcasts of this widget, in stream order.
   * opts: {sinceId, limit, fromTimestamp, toTimestamp, all}. With all:true
   * follows next_since_id until done (at most historyMax messages) and
   * resolves with an array; otherwise resolves with one page
   * {messages, nextSinceId}. Each message is also handed to the handlers
   * (meta {history: true}) unless already seen, when deliver is not false.
   */
  Client.prototype.history = function (opts) {
    var self = this;
    opts = opts || {};
    var out = [];
    function page(sinceId) {
      var q = ["widget_key=" + encodeURIComponent(self.widgetKey)];
      if (sinceId) q.push("since_id=" + encodeURIComponent(sinceId));
      q.push("limit=" + (opts.limit || HISTORY_PAGE));
      if (opts.fromTimestamp !== undefined) q.push("from_timestamp=" + encodeURIComponent(opts.fromTimestamp));
      if (opts.toTimestamp !== undefined) q.push("to_timestamp=" + encodeURIComponent(opts.toTimestamp));
      return self.call("GET", "/v1/streams/" + encodeURIComponent(self.stream) + "/messages?" + q.join("&"))
        .then(function (res) {
          var m = (res && res.message) || {};
          var msgs = m.messages || [];
          for (var i = 0; i < msgs.length; i++) {
            out.push(msgs[i]);
            if (opts.deliver !== false) self.deliver(msgs[i], {history: true});
          }
          var next = m.next_since_id || null;
          if (!opts.all) return {messages: out, nextSinceId: next};
          if (next && msgs.length && out.length < self.historyMax) return page(next);
          return out;
        });
    }
    return page(opts.sinceId || null);
  };

  Client.prototype.close = function () {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.es) this.es.close();
    this.es = null;
    this.setState(STATE.CLOSED);
  };

  global.RTW = {
    connect: function (opts) { return new Client(opts); },
    Client: Client,
    Error: RTWError,
    STATE: STATE,
    uuid4: uuid4
  };
})(typeof window !== "undefined" ? window : this);
