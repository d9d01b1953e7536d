/* oidc-idle browser snippet. No build step, no third-party code.
 *
 * Reports real interactions (keys, clicks, scrolls, touches; throttled) to the
 * plugin, polls the plugin's passive status endpoint (never counted as
 * activity), warns before the deadline (NIST SP 800-53 AC-12(3)) with a
 * "Stay signed in" button, keeps tabs in sync, counts down from the absolute
 * deadline (timers in hidden tabs and sleeping laptops drift), re-checks on
 * wake and when a tab becomes visible, and at the end clears the tokens the
 * app names and shows the signed-out page. It is a courtesy to the user: the
 * enforcement is on the servers (worker + plugin), never here.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = (script && script.src) ? script.src.replace(/\/static\/oidc-idle\.js.*$/, "") : "/oidc-idle";
  var PASSIVE = { "X-OIDC-Idle-Passive": "1" };

  function clearTokens() {
    var keys = (document.body && document.body.getAttribute("data-oidc-idle-clear")) ||
      (script && script.getAttribute("data-clear")) || "";
    keys.split(",").forEach(function (k) {
      k = k.trim();
      if (!k) return;
      try { localStorage.removeItem(k); } catch (e) { /* storage disabled */ }
      try { sessionStorage.removeItem(k); } catch (e) { /* storage disabled */ }
    });
  }

  if (script && script.getAttribute("data-signed-out")) {
    clearTokens();
    try { localStorage.setItem("oidc-idle:signed-out", String(Date.now())); } catch (e) { /* */ }
    return;
  }

  var channel = ("BroadcastChannel" in window) ? new BroadcastChannel("oidc-idle") : null;
  var deadline = null, warnAt = null, ended = false, dialog = null, pending = {}, lastSent = 0;
  var lastCheck = 0;
  var THROTTLE_MS = 5000;

  function signedOut(why) {
    if (ended) return;
    ended = true;
    clearTokens();
    if (channel) channel.postMessage({ type: "signed-out" });
    window.location.assign(base + "/signed-out?why=" + encodeURIComponent(why || "idle"));
  }

  function apply(body) {
    if (!body || body.state !== "active" || !body.deadline) return;
    deadline = Date.parse(body.deadline);
    warnAt = Date.parse(body.warn_at);
    document.querySelectorAll("[data-oidc-idle-deadline]").forEach(function (el) {
      el.textContent = new Date(deadline).toLocaleTimeString();
    });
    tick();
  }

  function check() {
    return fetch(base + "/status", { headers: PASSIVE, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { signedOut("idle"); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (b) {
        if (!b) return;
        lastCheck = Date.now();
        apply(b);
        if (channel) channel.postMessage({ type: "status", body: b });
      })
      .catch(function () { /* network blip: the server-side check still enforces */ });
  }

  function send() {
    var kinds = Object.keys(pending);
    if (!kinds.length) return;
    // The age of the newest interaction, not a wall-clock time: the browser's
    // clock may be wrong, an interval measured on it is not (much).
    var newest = Math.max.apply(null, kinds.map(function (k) { return pending[k]; }));
    pending = {};
    lastSent = Date.now();
    fetch(base + "/activity", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kinds: kinds, ago_ms: Math.max(0, Date.now() - newest) })
    }).then(function (r) {
      if (r.status === 401) signedOut("idle");
      else setTimeout(check, 600);
    }).catch(function () { /* kept by nobody: the next interaction reports again */ });
  }

  function interacted(kind) {
    if (ended) return;
    pending[kind] = Date.now();
    if (dialog && !dialog.hidden) hideWarning();
    if (channel) channel.postMessage({ type: "activity" });
    if (Date.now() - lastSent >= THROTTLE_MS) send();
    else setTimeout(send, THROTTLE_MS - (Date.now() - lastSent));
  }

  function buildDialog() {
    dialog = document.createElement("div");
    dialog.setAttribute("role", "alertdialog");
    dialog.setAttribute("aria-modal", "true");
    dialog.setAttribute("aria-labelledby", "oidc-idle-title");
    dialog.setAttribute("aria-describedby", "oidc-idle-text");
    dialog.id = "oidc-idle-warning";
    dialog.hidden = true;
    dialog.style.cssText = "position:fixed;inset:auto 1rem 1rem auto;max-width:24rem;padding:1rem;" +
      "background:#fff;border:2px solid #b35900;border-radius:6px;box-shadow:0 4px 16px #0004;z-index:2147483647;font-family:system-ui,sans-serif";
    dialog.innerHTML = '<h2 id="oidc-idle-title" style="margin:0 0 .5rem;font-size:1.1rem">You will be signed out soon</h2>' +
      '<p id="oidc-idle-text" aria-live="assertive">Signed out in <span id="oidc-idle-countdown"></span> for inactivity.</p>' +
      '<button type="button" id="oidc-idle-stay">Stay signed in</button>';
    document.body.appendChild(dialog);
    dialog.querySelector("#oidc-idle-stay").addEventListener("click", function () {
      pending.click = Date.now(); lastSent = 0; send(); hideWarning();
    });
  }

  function showWarning() {
    if (!dialog) buildDialog();
    if (dialog.hidden) {
      dialog.hidden = false;
      dialog.querySelector("#oidc-idle-stay").focus();
    }
  }

  function hideWarning() { if (dialog) dialog.hidden = true; }

  function tick() {
    if (ended || deadline === null) return;
    var now = Date.now();
    if (now >= deadline) { check().then(function () { if (Date.now() >= deadline) signedOut("idle"); }); return; }
    if (now >= warnAt && lastCheck < warnAt) {
      // Activity in another app of the same SSO session may have moved the one
      // clock: ask before warning, so nobody is warned while working elsewhere.
      lastCheck = now;
      check();
      return;
    }
    if (now >= warnAt) {
      showWarning();
      var left = Math.max(0, Math.ceil((deadline - now) / 1000));
      dialog.querySelector("#oidc-idle-countdown").textContent =
        Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    } else {
      hideWarning();
    }
  }

  ["keydown", "click", "scroll", "touchstart"].forEach(function (ev) {
    var kind = { keydown: "keypress", click: "click", scroll: "scroll", touchstart: "touch" }[ev];
    window.addEventListener(ev, function (e) { if (e.isTrusted) interacted(kind); }, { passive: true, capture: true });
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) check(); });
  window.addEventListener("focus", check);
  if (channel) channel.onmessage = function (m) {
    var d = m.data || {};
    if (d.type === "signed-out") signedOut("idle");
    else if (d.type === "status") apply(d.body);
    else if (d.type === "activity") { hideWarning(); setTimeout(check, 1500); }
  };
  window.addEventListener("storage", function (e) { if (e.key === "oidc-idle:signed-out") signedOut("idle"); });
  // A wall-clock tick: comparing Date.now() with the absolute deadline survives
  // throttled timers and sleep; a jump in time means we slept, so re-check.
  var lastTick = Date.now();
  setInterval(function () {
    var now = Date.now();
    if (now - lastTick > 5000) check();
    lastTick = now;
    tick();
  }, 1000);
  setInterval(check, 15000);
  check();
})();
