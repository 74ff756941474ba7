/*
 * demo.js: wires the demo page (an ES module): a fake video player whose
 * running time is the timestamp of every message, one rtw connection for
 * the tab with three widgets on it (the poll on the first widget key, the
 * chat and the shopping card on the second), the viewer count, the event
 * log, and the moderator view: opened as index.html#moderator=<admin
 * token> (the fragment never reaches a server or its logs), the page
 * speaks as that admin, may delete any chat line, and its ban button
 * bans the line's author from the stream for ten minutes
 * (PUT /v1/streams/{s}/bans/{user}, contract 1.1): its open streams end
 * and its posts are refused.
 */
import {connect} from "./rtw.js";

(function () {
  "use strict";

  var cfg = window.RTW_CONFIG;
  var LOG_MAX = 300;

  /* ---- the fake player: video time runs while playing ---- */
  var player = {playing: true, base: 0, since: performance.now()};
  player.time = function () {
    return player.playing ? player.base + (performance.now() - player.since) / 1000 : player.base;
  };
  function fmt(s) {
    var m = Math.floor(s / 60);
    var r = (s - m * 60).toFixed(1);
    return m + ":" + (r < 10 ? "0" : "") + r;
  }
  var playBtn = document.getElementById("play");
  playBtn.addEventListener("click", function () {
    if (player.playing) {
      player.base = player.time();
      player.playing = false;
      playBtn.textContent = "▶";
      playBtn.setAttribute("aria-label", "play");
    } else {
      player.since = performance.now();
      player.playing = true;
      playBtn.textContent = "❚❚";
      playBtn.setAttribute("aria-label", "pause");
    }
  });
  setInterval(function () {
    var t = player.time();
    document.getElementById("video-time").textContent = fmt(t);
    document.getElementById("bar-fill").style.width = ((t % 600) / 6) + "%";
    var ball = document.getElementById("ball");  /* something moves on the "video" */
    ball.style.left = (50 + 40 * Math.sin(t / 3)) + "%";
    ball.style.top = (50 + 30 * Math.sin(t / 2.1 + 1)) + "%";
  }, 100);
  window.RTW_PLAYER = player;

  /* ---- the event log ---- */
  var logEl = document.getElementById("event-log");
  function logLine(widget, kind, detail) {
    var li = document.createElement("li");
    var w = document.createElement("span");
    w.className = "w";
    w.textContent = "[" + widget + "] ";
    var t = document.createElement("span");
    t.className = "t";
    t.textContent = kind + " ";
    li.appendChild(document.createTextNode(new Date().toISOString().slice(11, 23) + " "));
    li.appendChild(w);
    li.appendChild(t);
    li.appendChild(document.createTextNode(detail || ""));
    li.setAttribute("data-kind", kind);
    logEl.appendChild(li);
    while (logEl.children.length > LOG_MAX) logEl.removeChild(logEl.firstChild);
    logEl.scrollTop = logEl.scrollHeight;
  }
  function short(v) {
    var s = JSON.stringify(v);
    return s.length > 160 ? s.slice(0, 160) + "…" : s;
  }
  /* One connection, so one log of it; events name their widget by key. */
  function watch(conn, names) {
    conn.on("state", function (s) {
      ["poll", "chat", "card"].forEach(function (name) {
        var status = document.getElementById(name + "-status");
        status.textContent = s;
        status.className = "status " + s;
      });
    });
    conn.on("init", function (msg) {
      var m = msg.message || {};
      logLine("stream", "init", "you=" + msg.author_id + " resumed=" + m.resumed + " connection=" + m.connection_id +
        " widgets=" + conn.widgets.length);
    });
    conn.on("*", function (msg, meta) {
      logLine(names[msg.widget_key] || "stream", msg.type + (meta && meta.history ? " (history)" : ""),
        "id=" + msg.id + " from=" + msg.author_id + " t=" + Number(msg.timestamp).toFixed(1) + " " + short(msg.message));
    });
    conn.on("reset", function () { logLine("stream", "reset", "the server no longer knows our last id; re-fetching"); });
    conn.on("retry", function (r) {
      logLine("stream", "retry", r.method + " " + r.code + ": attempt " + r.attempt + " in " + r.waitMs + " ms");
    });
    conn.on("disconnect", function (d) { logLine("stream", "disconnect", "retry in " + d.retryInMs + " ms"); });
    conn.on("stall", function () { logLine("stream", "stall", "no heartbeat: reconnecting"); });
    conn.on("error", function (e) { logLine("stream", "error", e.code + ": " + e.message); });
  }

  if (!cfg || !cfg.widgetKey) {
    document.getElementById("config-error").hidden = false;
    return;
  }
  var stream = cfg.stream || "demo";
  document.getElementById("stream-name").textContent = stream;
  var pollKey = cfg.widgetKey;
  var chatKey = cfg.secondWidgetKey || cfg.widgetKey;

  /* One event stream for the tab: the poll, the chat and the shopping card
   * are widgets on it, dispatched by widget_key, one viewer. Without a
   * stored token rtw-sse mints an anonymous identity in init. */
  var modMatch = /(?:^#|&)moderator=([^&]+)/.exec(window.location.hash);
  var modToken = modMatch ? decodeURIComponent(modMatch[1]) : null;
  var opts = {base: cfg.base || "", stream: stream, getTime: player.time, presence: true};
  /* the moderator's token is never stored: the viewer identity of this
   * browser stays what it was */
  if (modToken) { opts.token = modToken; opts.persist = false; }
  var conn = connect(opts);
  /* the tally needs every vote: a real poll would keep its tally on the
   * platform's side; the demo reads the latest 1000 */
  var poll = conn.widget(pollKey, {history: {last: 1000}});
  var chat = conn.widget(chatKey, {history: {last: 50}});
  /* the card listens on the chat's key: a webhook result carries the key
   * the job was posted with; it needs no history */
  var card = conn.widget(chatKey, {history: false});
  var names = {};
  names[chatKey] = "chat";
  names[pollKey] = "poll";
  watch(conn, names);

  RTWPoll.mount(document.getElementById("poll"), poll);
  /* moderation: the author may delete its line (contract 1.1 DELETE), the
   * moderator (an admin token) any line, and ban its author */
  var modPanel = null;
  if (modToken) {
    document.body.classList.add("moderator");
    modPanel = document.createElement("p");
    modPanel.id = "mod-panel";
    modPanel.className = "small mod-panel";
    modPanel.textContent = "Moderator view: × deletes a line; ban bans its author from this stream for 10 minutes.";
    document.getElementById("chat").appendChild(modPanel);
  }
  RTWChat.mount(document.getElementById("chat"), chat, {
    canRedact: function (msg) { return !!modToken || (!!cfg.moderation && msg.author_id === conn.userId); },
    onBan: modToken ? function (msg) {
      conn.ban(msg.author_id, {forS: 600}).then(function (b) {
        modPanel.textContent = "Banned " + b.user_id + " from " + stream + " until " + b.until + ".";
        modPanel.setAttribute("data-banned", b.user_id);
        logLine("chat", "ban", b.user_id + " until " + b.until);
      }, function (err) {
        modPanel.textContent = "Not banned: " + err.message + " (" + err.code + ")";
        logLine("chat", "ban failed", err.code + ": " + err.message);
      });
    } : null
  });
  RTWCard.mount(document.getElementById("card"), card, {
    onStatus: function (status, jobId, detail) {
      logLine("card", "job " + status, (jobId ? "job=" + jobId : "") + (detail ? " " + detail : ""));
    }
  });
  conn.on("identity", function (id) { document.getElementById("me").textContent = id || "…"; });

  /* the viewer count: presence frames (contract 1.1), hidden until one comes */
  var viewersEl = document.getElementById("viewers");
  conn.on("presence", function (p) {
    viewersEl.hidden = false;
    viewersEl.setAttribute("data-viewers", String(p.viewers));
    document.getElementById("viewer-count").textContent = String(p.viewers);
  });

  window.RTW_DEMO = {connection: conn, poll: poll, chat: chat, card: card, player: player};
})();
