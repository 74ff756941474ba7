/*
 * demo.js: wires the demo page: a fake video player whose running time is
 * the timestamp of every message, the poll (first widget key), the chat
 * and the shopping card (second widget key, one connection) on one
 * anonymous identity, and the event log.
 */
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
  function watch(name, client) {
    var status = document.getElementById(name + "-status");
    client.on("state", function (s) {
      status.textContent = s;
      status.className = "status " + s;
    });
    client.on("init", function (msg) {
      var m = msg.message || {};
      logLine(name, "init", "you=" + msg.author_id + " resumed=" + m.resumed + " connection=" + m.connection_id);
    });
    client.on("*", function (msg, meta) {
      logLine(name, msg.type + (meta && meta.history ? " (history)" : ""),
        "id=" + msg.id + " from=" + msg.author_id + " t=" + Number(msg.timestamp).toFixed(1) + " " + short(msg.message));
    });
    client.on("history", function (msgs) { logLine(name, "history", msgs.length + " stored messages"); });
    client.on("reset", function () { logLine(name, "reset", "the server no longer knows our last id; re-fetching"); });
    client.on("retry", function (r) {
      logLine(name, "retry", r.method + " " + r.code + ": attempt " + r.attempt + " in " + r.waitMs + " ms");
    });
    client.on("disconnect", function (d) { logLine(name, "disconnect", "retry in " + d.retryInMs + " ms"); });
    client.on("error", function (e) { logLine(name, "error", e.code + ": " + e.message); });
  }

  if (!cfg || !cfg.widgetKey) {
    document.getElementById("config-error").hidden = false;
    return;
  }
  var stream = cfg.stream || "demo";
  document.getElementById("stream-name").textContent = stream;

  /* The poll connects first; without a stored token rtw-sse mints an
   * anonymous identity in init, and the chat reuses it, so both widgets
   * are the same viewer. */
  var poll = RTW.connect({base: cfg.base || "", stream: stream, widgetKey: cfg.widgetKey, getTime: player.time});
  watch("poll", poll);
  RTWPoll.mount(document.getElementById("poll"), poll);
  poll.on("identity", function (id) { document.getElementById("me").textContent = id || "…"; });
  window.RTW_DEMO = {poll: poll, player: player};

  poll.ready.then(function () {
    var chat = RTW.connect({base: cfg.base || "", stream: stream, widgetKey: cfg.secondWidgetKey || cfg.widgetKey,
      token: poll.token, anonymous: true, userId: poll.userId, getTime: player.time});
    watch("chat", chat);
    RTWChat.mount(document.getElementById("chat"), chat);
    window.RTW_DEMO.chat = chat;

    /* The shopping card rides on the chat's connection: a webhook result
     * comes back only on a connection filtered to the widget key the job
     * was posted with (or on an unfiltered one). */
    var cardStatus = document.getElementById("card-status");
    function cardState(s) {
      cardStatus.textContent = s;
      cardStatus.className = "status " + s;
    }
    cardState(chat.state);
    chat.on("state", cardState);
    RTWCard.mount(document.getElementById("card"), chat, {
      onStatus: function (status, jobId, detail) {
        logLine("card", "job " + status, (jobId ? "job=" + jobId : "") + (detail ? " " + detail : ""));
      }
    });
  });
})();
