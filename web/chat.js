/*
 * chat.js: the demo chat widget. A chat line is a broadcast {"text": ...};
 * with a "to" user id it is a private message that only that user (and
 * the sender, from the POST answer) sees. The latest lines come from
 * history (the widget's {last: 50}), older ones on demand ("earlier
 * messages", when the server pages backwards); privates are live only, as
 * the contract keeps them out of history. A redact event removes its line.
 * opts.canRedact(msg): show a delete button on that line; opts.onBan(msg)
 * (a moderator view): a ban button on other users' lines calls it.
 */
(function (global) {
  "use strict";

  var MAX_LINES = 200;
  var MAX_TEXT = 500;

  function fmtTime(s) {
    s = Number(s) || 0;
    var m = Math.floor(s / 60);
    var r = (s - m * 60).toFixed(1);
    return m + ":" + (r < 10 ? "0" : "") + r;
  }

  function shortId(id) {
    id = String(id);
    return id.length > 14 ? id.slice(0, 12) + "…" : id;
  }

  function mount(root, client, opts) {
    opts = opts || {};
    var canRedact = opts.canRedact || function () { return false; };
    var log = root.querySelector(".chat-log");
    var olderBtn = root.querySelector(".older");
    var firstLive = null;   /* history lines go above the first live one */
    var form = root.querySelector("form");
    var to = root.querySelector("#chat-to");
    var text = root.querySelector("#chat-text");
    var errEl = root.querySelector(".error");
    var shown = new Set();

    function line(msg, meta) {
      var m = msg.message;
      if (!m || typeof m !== "object" || typeof m.text !== "string") return null;
      if (msg.id && shown.has(msg.id)) return null;
      if (msg.id) shown.add(msg.id);
      var li = document.createElement("li");
      li.setAttribute("data-id", msg.id || "");
      li.setAttribute("data-type", msg.type);
      if (msg.type === "private") {
        li.className = "private";
        var tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = msg.author_id === client.userId ? "to " + shortId(msg.to_user_id) : "private";
        li.appendChild(tag);
      }
      var who = document.createElement("span");
      who.className = "author";
      who.title = "click to answer privately: " + msg.author_id;
      who.textContent = msg.author_id === client.userId ? "you" : shortId(msg.author_id);
      who.addEventListener("click", function () { to.value = msg.author_id; text.focus(); });
      li.appendChild(who);
      li.appendChild(document.createTextNode(": "));
      var body = document.createElement("span");
      body.className = "text";
      body.textContent = m.text.slice(0, MAX_TEXT);   /* text, never HTML */
      li.appendChild(body);
      var meta_ = document.createElement("span");
      meta_.className = "meta";
      meta_.textContent = " @" + fmtTime(msg.timestamp) + (meta && meta.history ? " · earlier" : "");
      li.appendChild(meta_);
      if (msg.id && msg.type === "broadcast" && canRedact(msg)) {
        var del = document.createElement("button");
        del.type = "button";
        del.className = "del";
        del.title = "delete this line";
        del.textContent = "×";
        del.addEventListener("click", function () {
          client.redact(msg.id).catch(function (err) {
            errEl.textContent = "not deleted: " + err.message + " (" + err.code + ")";
            errEl.hidden = false;
          });
        });
        li.appendChild(del);
      }
      if (opts.onBan && msg.author_id !== client.userId) {
        var ban = document.createElement("button");
        ban.type = "button";
        ban.className = "ban";
        ban.title = "ban " + msg.author_id + " from this stream";
        ban.textContent = "ban";
        ban.addEventListener("click", function () { opts.onBan(msg); });
        li.appendChild(ban);
      }
      return li;
    }

    function add(msg, meta) {
      var li = line(msg, meta);
      if (!li) return;
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      if (meta && meta.history && firstLive && firstLive.parentNode === log) {
        log.insertBefore(li, firstLive);
      } else {
        log.appendChild(li);
        if (!(meta && meta.history) && !firstLive) firstLive = li;
      }
      while (log.children.length > MAX_LINES) log.removeChild(log.firstChild);
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function remove(id) {
      var li = log.querySelector("li[data-id=\"" + String(id).replace(/["\\]/g, "") + "\"]");
      if (!li) return;
      if (li === firstLive) firstLive = li.nextElementSibling;
      li.parentNode.removeChild(li);
    }

    client.on("broadcast", add);
    client.on("private", add);
    client.on("redact", remove);
    client.on("reset", function () { firstLive = null; });

    /* scroll-back: a page older than the oldest line, prepended in order */
    function showOlder() { if (olderBtn) olderBtn.hidden = !client.hasOlder; }
    client.on("history", showOlder);
    if (olderBtn) olderBtn.addEventListener("click", function () {
      olderBtn.disabled = true;
      client.older(50, {deliver: false}).then(function (page) {
        var top = log.firstChild;
        page.messages.forEach(function (msg) {
          var li = line(msg, {history: true});
          if (li) log.insertBefore(li, top);
        });
        olderBtn.disabled = false;
        showOlder();
      }, function (err) {
        olderBtn.disabled = false;
        errEl.textContent = "no earlier messages: " + err.message;
        errEl.hidden = false;
      });
    });

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var line = text.value.trim();
      if (!line) return;
      var target = to.value.trim();
      errEl.hidden = true;
      var p = target ? client.sendPrivate(target, {text: line}) : client.send("broadcast", {text: line});
      p.then(function (stored) {
        text.value = "";
        /* our own private never comes back on our stream: show the answer */
        if (stored && stored.type === "private") add(stored, {sent: true});
      }, function (err) {
        errEl.textContent = "not sent: " + err.message + " (" + err.code + ")";
        errEl.hidden = false;
      });
    });
    return {add: add, remove: remove};
  }

  global.RTWChat = {mount: mount};
})(window);
