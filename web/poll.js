/*
 * poll.js: the demo poll widget. A vote is a broadcast
 * {"poll": id, "vote": option}; the tally is computed from broadcasts only
 * (history + live), one vote per author, the latest in stream order
 * counting; a redacted vote stops counting. Never counts a click that the
 * server did not store.
 */
(function (global) {
  "use strict";

  function mount(root, client, opts) {
    opts = opts || {};
    var pollId = opts.pollId || "next-goal";
    var buttons = root.querySelectorAll("button[data-option]");
    var options = Array.prototype.map.call(buttons, function (b) { return b.getAttribute("data-option"); });
    /* author -> {option, live}: a live vote is newer than any history page,
     * history pages arrive in stream order, so later history wins over
     * earlier history but never over a live vote */
    var votes = new Map();
    var errEl = root.querySelector(".error");

    function render() {
      var counts = {};
      options.forEach(function (o) { counts[o] = 0; });
      var total = 0;
      votes.forEach(function (v) {
        if (counts[v.option] === undefined) return;
        counts[v.option]++;
        total++;
      });
      var mine = client.userId !== null && votes.get(client.userId);
      Array.prototype.forEach.call(buttons, function (b) {
        var o = b.getAttribute("data-option");
        b.querySelector(".count").textContent = String(counts[o]);
        var fill = b.querySelector(".fill");
        if (!fill) {
          fill = document.createElement("span");
          fill.className = "fill";
          b.insertBefore(fill, b.firstChild);
        }
        fill.style.width = total ? Math.round(100 * counts[o] / total) + "%" : "0";
        b.classList.toggle("mine", !!mine && mine.option === o);
      });
      root.querySelector("#poll-total").textContent = total + (total === 1 ? " vote" : " votes");
      root.querySelector("#poll-mine").textContent = mine ? "you voted " + mine.option : "you have not voted";
    }

    function onVote(msg, meta) {
      var m = msg.message;
      if (!m || typeof m !== "object" || m.poll !== pollId || options.indexOf(m.vote) < 0) return;
      var live = !(meta && meta.history);
      var old = votes.get(msg.author_id);
      if (old && old.live && !live) return;
      votes.set(msg.author_id, {option: m.vote, live: live, id: msg.id});
      render();
    }

    /* a deleted vote stops counting (an earlier vote of that author is
     * not brought back: it was replaced) */
    function onRedact(id) {
      votes.forEach(function (v, author) {
        if (v.id === id) votes.delete(author);
      });
      render();
    }

    client.on("broadcast", onVote);
    client.on("redact", onRedact);
    client.on("identity", render);
    client.on("reset", function () {
      /* the server lost our place: rebuild from history (it follows) */
      votes.clear();
      render();
    });

    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () {
        var option = b.getAttribute("data-option");
        errEl.hidden = true;
        b.disabled = true;
        client.send("broadcast", {poll: pollId, vote: option}).then(function () {
          b.disabled = false;
        }, function (err) {
          b.disabled = false;
          errEl.textContent = "vote failed: " + err.message + " (" + err.code + ")";
          errEl.hidden = false;
        });
      });
    });
    render();
    return {votes: votes, render: render};
  }

  global.RTWPoll = {mount: mount};
})(window);
