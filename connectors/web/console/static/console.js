/*
 * botkit agent console: live updates for server-rendered pages. Plain JavaScript, no build.
 *
 * An element #live carries data-live (a URL that returns its fresh HTML, rendered and
 * escaped by the server) and data-events (a Server-Sent Events stream). On each "changed"
 * event the fragment is fetched and swapped in, keeping keyboard focus where it was. If
 * the stream cannot be used, the fragment is polled instead. Ctrl+Enter sends a textarea's form.
 */
(function () {
  "use strict";

  var POLL_MS = 10000;
  var live = document.getElementById("live");

  function focusKey() {
    var active = document.activeElement;
    if (!live || !active || !live.contains(active)) return null;
    var form = active.closest("form");
    return { id: active.id, action: form ? form.getAttribute("action") : null, text: active.textContent };
  }

  function restoreFocus(key) {
    if (!key) return;
    var target = key.id ? document.getElementById(key.id) : null;
    if (!target && key.action) {
      var form = live.querySelector("form[action='" + CSS.escape(key.action) + "']");
      target = form && form.querySelector("button, select, input:not([type=hidden])");
    }
    if (target) target.focus();
  }

  function refresh() {
    return fetch(live.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) {
        if (res.redirected && /\/console\/login/.test(res.url)) { location.assign(res.url); return; }
        if (!res.ok) return;
        return res.text().then(function (html) {
          var key = focusKey();
          live.innerHTML = html;  // markup from our own server; every value in it is escaped there
          restoreFocus(key);
          live.dispatchEvent(new CustomEvent("console:updated", { bubbles: true }));
        });
      })
      .catch(function () { /* offline: keep what is shown */ });
  }

  function poll() { setTimeout(function () { refresh().then(poll); }, POLL_MS); }

  function listen() {
    if (!window.EventSource || !live.dataset.events) { poll(); return; }
    var source = new EventSource(live.dataset.events, { withCredentials: true });
    var failures = 0;
    source.addEventListener("changed", function () { failures = 0; refresh(); });
    source.addEventListener("open", function () { failures = 0; });
    source.addEventListener("error", function () {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures > 5) {  // refused (signed out?) or flapping
        source.close();
        refresh().then(poll);
      }
    });
  }

  if (live && live.dataset.live) listen();

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.tagName === "TEXTAREA" && target.form) {
      event.preventDefault();
      if (target.form.requestSubmit) target.form.requestSubmit(); else target.form.submit();
    }
  });
})();
