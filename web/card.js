/*
 * card.js: the demo shopping card. "Check price" posts a webhook message
 * {url, method: "POST", body: {"sku": ...}}; the 202 answer is the queued
 * job, shown as such; rtw-webhookd calls the URL and its result comes back
 * on the event stream as a "webhook" event to this viewer, whose
 * message.body is the target's JSON ({"sku","price","currency"}). The
 * target defaults to the page's own origin + /demo/quote (nginx answers it
 * in conf/nginx.conf.in). Never shows a price the result did not carry.
 */
(function (global) {
  "use strict";

  var EARLY_MAX = 20;

  function mount(root, client, opts) {
    opts = opts || {};
    var sku = opts.sku || root.getAttribute("data-sku") || "demo-1";
    var url = opts.url || (global.location.protocol + "//" + global.location.host + "/demo/quote");
    var onStatus = opts.onStatus || function () {};
    var btn = root.querySelector(".check");
    var priceEl = root.querySelector(".price");
    var jobEl = root.querySelector(".job");
    var errEl = root.querySelector(".error");
    var pending = null;     /* the job id whose result we show */
    var posting = 0;        /* POSTs in flight */
    /* a result may arrive before the 202 that names its job: keep it */
    var early = new Map();

    function setJob(status, jobId, detail) {
      jobEl.setAttribute("data-status", status);
      jobEl.setAttribute("data-job", jobId || "");
      jobEl.textContent = (jobId ? "job " + jobId + ": " : "") + status + (detail ? " (" + detail + ")" : "");
      onStatus(status, jobId, detail);
    }

    function show(m) {
      pending = null;
      var b = m.body;
      if (m.status === "succeeded" && b && typeof b === "object" &&
          (typeof b.price === "string" || typeof b.price === "number")) {
        priceEl.textContent = String(b.price) + (typeof b.currency === "string" ? " " + b.currency : "");
        priceEl.setAttribute("data-sku", typeof b.sku === "string" ? b.sku : sku);
        setJob("succeeded", m.job_id, "HTTP " + m.http_status);
        return;
      }
      var why = m.error || (m.http_status ? "HTTP " + m.http_status : "no price in the answer");
      setJob(m.status === "succeeded" ? "no price" : "failed", m.job_id, why);
      errEl.textContent = "price check failed: " + why;  /* text, never HTML */
      errEl.hidden = false;
    }

    client.on("webhook", function (msg) {
      var m = msg.message;
      if (!m || typeof m !== "object" || m.job_id === undefined || m.job_id === null) return;
      var id = String(m.job_id);
      if (pending !== null && id === pending) {
        show(m);
      } else if (posting) {
        early.set(id, m);
        if (early.size > EARLY_MAX) early.delete(early.keys().next().value);
      }
    });

    btn.addEventListener("click", function () {
      errEl.hidden = true;
      btn.disabled = true;
      posting++;
      setJob("sending");
      client.webhook({url: url, method: "POST", body: {sku: sku}}).then(function (job) {
        posting--;
        btn.disabled = false;
        if (!job || job.job_id === undefined) throw new Error("no job in the answer");
        pending = String(job.job_id);
        var r = early.get(pending);
        if (!posting) early.clear();
        /* what the 202 said, even when the result already came */
        setJob(job.status || "queued", pending);
        if (r) show(r);
      }).catch(function (err) {
        if (btn.disabled) {
          posting--;
          btn.disabled = false;
        }
        setJob("not sent");
        errEl.textContent = "price check not sent: " + err.message + (err.code ? " (" + err.code + ")" : "");
        errEl.hidden = false;
      });
    });
    btn.disabled = false;
    return {url: url, sku: sku};
  }

  global.RTWCard = {mount: mount};
})(window);
