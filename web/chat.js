/*
 * chat.js: the demo chat widget. A chat line is a broadcast {"text": ...};
 * with a "to" user id it is a private message that only that user (and
 * the sender, from the POST answer) sees. History brings back the public
 * lines; privates are live only, as the contract keeps them out of history.
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

  function mount(root, client) {
    var log = root.querySelector(".chat-log");
    var form = root.querySelector("form");
    var to = root.querySelector("#chat-to");
    var text = root.querySelector("#chat-text");
    var errEl = root.querySelector(".error");
    var shown = new Set();

    function add(msg, meta) {
      var m = msg.message;
      if (!m || typeof m !== "object" || typeof m.text !== "string") return;
      if (msg.id && shown.has(msg.id)) return;
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
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(li);
      while (log.children.length > MAX_LINES) log.removeChild(log.firstChild);
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    client.on("broadcast", add);
    client.on("private", add);

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
    return {add: add};
  }

  global.RTWChat = {mount: mount};
})(window);
