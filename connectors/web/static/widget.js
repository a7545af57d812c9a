/*
 * botkit chat widget: plain JavaScript, no build step, no framework.
 *
 *   <script src="https://HOST/widget.js" data-bot-key="pk_..." defer></script>
 *
 * Options (data- attributes; bot.yaml's web: section gives the defaults):
 *   data-bot-key (required), data-title, data-greeting, data-primary-color (#hex),
 *   data-position ("bottom-right" | "bottom-left"), data-open ("true" opens at load),
 *   data-human-text (the message sent by "Talk to a human"), data-api (API origin;
 *   default: where widget.js was loaded from).
 * Suggested questions, offered until the first message, come from bot.yaml
 * (web.suggestions).
 *
 * Security: everything the model, a user or a document wrote is rendered with
 * textContent / createElement (a small markdown subset), never as HTML; links are made
 * only for http(s) URLs. The UI lives in a shadow root, so the host page's CSS does not
 * leak in and ours does not leak out.
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector("script[data-bot-key][src*='widget.js']");
  if (!script || window.__botkitWidget) return;
  var data = script.dataset;
  var API = (data.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var KEY = data.botKey || "";
  var STORE = "botkit:" + API + ":" + KEY;
  var POLL_MS = 5000;

  var CSS = [
    ":host{all:initial;--bk-primary:#2563eb;--bk-fg:#111827;--bk-muted:#6b7280;--bk-bg:#fff;--bk-soft:#f3f4f6;",
    "font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--bk-fg)}",
    "*{box-sizing:border-box}",
    ".launcher{position:fixed;bottom:20px;right:20px;z-index:2147483000;width:56px;height:56px;border-radius:50%;",
    "border:0;background:var(--bk-primary);color:#fff;cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.25);",
    "display:flex;align-items:center;justify-content:center}",
    ".left .launcher{right:auto;left:20px}.launcher svg{width:26px;height:26px;fill:currentColor}",
    ".panel{position:fixed;bottom:88px;right:20px;z-index:2147483001;width:380px;height:min(600px,calc(100vh - 110px));",
    "background:var(--bk-bg);border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.28);display:flex;",
    "flex-direction:column;overflow:hidden}",
    ".left .panel{right:auto;left:20px}.panel[hidden]{display:none}",
    "header{background:var(--bk-primary);color:#fff;padding:12px 12px 12px 16px;display:flex;align-items:center;gap:8px}",
    "h2{font-size:16px;margin:0;flex:1;font-weight:600}",
    "header button{background:rgba(255,255,255,.16);color:#fff;border:0;border-radius:8px;padding:6px 10px;",
    "font:inherit;font-size:13px;cursor:pointer}header .close{font-size:18px;line-height:1;padding:4px 10px}",
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:var(--bk-soft)}",
    ".msg{max-width:88%;padding:9px 12px;border-radius:12px;white-space:normal;overflow-wrap:anywhere}",
    ".user{align-self:flex-end;background:var(--bk-primary);color:#fff;white-space:pre-wrap}",
    ".assistant,.agent,.system{align-self:flex-start;background:var(--bk-bg);border:1px solid #e5e7eb}",
    ".agent{border-color:var(--bk-primary)}.system,.error{font-size:13px;color:var(--bk-muted)}",
    ".error{align-self:center;background:#fef2f2;color:#991b1b;border:1px solid #fecaca}",
    ".who{display:block;font-size:12px;color:var(--bk-muted);margin-bottom:2px}",
    ".msg p{margin:0 0 6px}.msg p:last-child{margin-bottom:0}.msg ul,.msg ol{margin:4px 0 6px;padding-left:20px}",
    ".msg code{background:var(--bk-soft);padding:0 3px;border-radius:4px;font-size:13px}",
    ".msg a{color:var(--bk-primary)}.user a{color:#fff}",
    ".sources{margin-top:8px;padding-top:6px;border-top:1px solid #e5e7eb;font-size:13px}",
    ".sources ol{margin:2px 0 0;padding-left:18px}",
    ".actions{display:flex;gap:6px;margin-top:6px}",
    ".actions button,.retry{border:1px solid #d1d5db;background:var(--bk-bg);border-radius:8px;cursor:pointer;",
    "padding:3px 8px;font:inherit;font-size:14px;color:var(--bk-muted);line-height:0}",
    ".actions svg{width:16px;height:16px;fill:currentColor}.retry{line-height:1.4}",
    ".actions button[aria-pressed=true]{background:var(--bk-primary);border-color:var(--bk-primary);color:#fff}",
    ".actions button:not([aria-pressed=true]):hover{border-color:var(--bk-primary);color:var(--bk-primary)}",
    ".typing::after{content:'\u2026';animation:bk 1s infinite}@keyframes bk{50%{opacity:.3}}",
    ".suggestions{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:100%}",
    ".suggestions button{border:1px solid var(--bk-primary);color:var(--bk-primary);background:var(--bk-bg);",
    "border-radius:16px;padding:5px 11px;font:inherit;font-size:13px;cursor:pointer;text-align:left}",
    ".suggestions button:hover{background:var(--bk-soft)}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e7eb;background:var(--bk-bg)}",
    "textarea{flex:1;resize:none;border:1px solid #d1d5db;border-radius:10px;padding:8px 10px;font:inherit;",
    "height:42px;max-height:120px;color:var(--bk-fg);background:var(--bk-bg)}",
    "form button{border:0;border-radius:10px;background:var(--bk-primary);color:#fff;padding:0 14px;font:inherit;",
    "cursor:pointer}form button:disabled{opacity:.5;cursor:default}",
    "button:focus-visible,textarea:focus-visible,a:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "@media (max-width:480px){.panel{inset:0;width:100%;height:100%;border-radius:0}}",
    "@media (prefers-reduced-motion:reduce){.typing::after{animation:none}}"
  ].join("");

  // ---- DOM helpers: the only way text reaches the page --------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "className") node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  var ICON_UP = "M2 10h4v11H2zM8 21h9.3a2 2 0 0 0 2-1.6l1.6-7.6A2 2 0 0 0 19 9.4h-5.6l.9-4.3a1.6 1.6 0 0 0-2.8-1.3L8 9z";
  var ICON_DOWN = "M22 14h-4V3h4zM16 3H6.7a2 2 0 0 0-2 1.6L3.1 12.2A2 2 0 0 0 5 14.6h5.6l-.9 4.3a1.6 1.6 0 0 0 2.8 1.3L16 15z";

  function svgIcon(d) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg"), path = document.createElementNS(ns, "path");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false"); path.setAttribute("d", d); svg.appendChild(path);
    return svg;
  }

  function safeUrl(value) {
    try {
      var url = new URL(String(value), location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) { return null; }
  }

  // Inline markdown: **bold**, *italic*, `code`, [text](http-url). Everything else is text.
  function inline(parent, text) {
    var re = /(\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)|\*([^*\s][^*]*)\*)/g;
    var last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[2]) parent.appendChild(el("strong", { text: m[2] }));
      else if (m[3]) parent.appendChild(el("code", { text: m[3] }));
      else if (m[4]) {
        var href = safeUrl(m[5]);
        parent.appendChild(href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: m[4] })
          : document.createTextNode(m[0]));
      } else if (m[6]) parent.appendChild(el("em", { text: m[6] }));
      last = re.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // Block markdown: paragraphs, "- " / "* " bullets, "1. " numbered lists.
  function markdown(text) {
    var frag = document.createDocumentFragment(), list = null, para = null;
    String(text || "").split(/\r?\n/).forEach(function (line) {
      var bullet = /^\s*[-*]\s+(.*)$/.exec(line), numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
      var item = bullet || numbered;
      if (item) {
        var tag = bullet ? "UL" : "OL";
        if (!list || list.tagName !== tag) { list = el(tag.toLowerCase()); frag.appendChild(list); }
        var li = el("li"); inline(li, item[1]); list.appendChild(li); para = null;
      } else if (!line.trim()) {
        list = null; para = null;
      } else {
        list = null;
        if (para) para.appendChild(el("br")); else { para = el("p"); frag.appendChild(para); }
        inline(para, line.replace(/^#+\s+/, ""));
      }
    });
    return frag;
  }

  function sources(citations) {
    if (!citations || !citations.length) return null;
    var ol = el("ol");
    citations.forEach(function (c) {
      var label = c.title || c.source || "Source";
      if (c.section && c.section !== label) label += " \u2013 " + c.section;
      var href = c.url ? safeUrl(c.url) : null;
      var li = el("li", { value: String(c.number || ol.children.length + 1) });
      li.appendChild(href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: label })
        : el("span", { text: label }));
      ol.appendChild(li);
    });
    return el("div", { className: "sources" }, [el("span", { text: "Sources" }), ol]);
  }

  // ---- state -------------------------------------------------------------------------
  function loadSession() {
    try { var s = JSON.parse(localStorage.getItem(STORE) || "null"); return s && s.id && s.token ? s : null; }
    catch (e) { return null; }
  }
  function saveSession(s) { try { if (s) localStorage.setItem(STORE, JSON.stringify(s)); else localStorage.removeItem(STORE); } catch (e) { /* private mode */ } }
  function uid() {
    return (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
      : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  var session = loadSession(), shown = {}, busy = false, pollTimer = null, handoff = false;
  var options = {
    title: data.title, greeting: data.greeting, primaryColor: data.primaryColor,
    position: data.position, humanText: data.humanText || "I'd like to talk to a human, please."
  };

  // ---- UI ------------------------------------------------------------------------------
  var host = el("div", { id: "botkit-widget" });
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet];
  } else {
    root.appendChild(el("style", { text: CSS }));
  }
  var launcher = el("button", { type: "button", className: "launcher", "aria-label": "Chat with support",
    "aria-expanded": "false", "aria-controls": "bk-panel" }, [svgIcon(ICON_CHAT)]);
  var title = el("h2", { id: "bk-title", text: options.title || "Support" });
  var human = el("button", { type: "button", className: "human", text: "Talk to a human" });
  var close = el("button", { type: "button", className: "close", "aria-label": "Close chat", text: "\u00d7" });
  var log = el("div", { className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": "Conversation", tabindex: "0" });
  var input = el("textarea", { id: "bk-input", rows: "1", placeholder: "Ask a question\u2026", maxlength: "4000" });
  var send = el("button", { type: "submit", text: "Send" });
  var form = el("form", {}, [el("label", { className: "sr", for: "bk-input", text: "Your message" }), input, send]);
  var panel = el("div", { id: "bk-panel", className: "panel", role: "dialog", "aria-labelledby": "bk-title",
    hidden: "" }, [el("header", {}, [title, human, close]), log, form]);
  var wrap = el("div", { className: "wrap" }, [launcher, panel]);
  root.appendChild(wrap);

  function applyOptions() {
    title.textContent = options.title || "Support";
    if (/^#[0-9a-fA-F]{3,8}$/.test(options.primaryColor || "")) host.style.setProperty("--bk-primary", options.primaryColor);
    wrap.className = "wrap" + (options.position === "bottom-left" ? " left" : "");
  }

  function scroll() { log.scrollTop = log.scrollHeight; }

  function bubble(role, text, extra) {
    var node = el("div", { className: "msg " + role });
    if (role === "agent") node.appendChild(el("span", { className: "who", text: "Support team" }));
    var body = el("div", { className: "body" });
    if (role === "user") body.textContent = text; else body.appendChild(markdown(text));
    node.appendChild(body);
    if (extra) fill(node, extra);
    log.appendChild(node); scroll();
    return node;
  }

  function fill(node, reply) {
    var body = node.querySelector(".body");
    body.className = "body"; body.textContent = "";
    body.appendChild(markdown(reply.text));
    var src = sources(reply.citations);
    if (src) node.appendChild(src);
    if (reply.message_id != null || reply.id != null) node.appendChild(feedbackButtons(reply.message_id != null ? reply.message_id : reply.id));
    if (reply.message_id != null) shown[reply.message_id] = true;
    if (reply.reply_to != null) shown[reply.reply_to] = true;
    scroll();
  }

  function feedbackButtons(messageId) {
    var up = el("button", { type: "button", "aria-label": "Helpful", "aria-pressed": "false" }, [svgIcon(ICON_UP)]);
    var down = el("button", { type: "button", "aria-label": "Not helpful", "aria-pressed": "false" }, [svgIcon(ICON_DOWN)]);
    function rate(button, other, rating) {
      return function () {
        button.setAttribute("aria-pressed", "true"); other.setAttribute("aria-pressed", "false");
        api("POST", "/conversations/" + encodeURIComponent(session.id) + "/feedback",
          { rating: rating, message_id: messageId }).catch(function () { /* best effort */ });
      };
    }
    up.addEventListener("click", rate(up, down, "up"));
    down.addEventListener("click", rate(down, up, "down"));
    return el("div", { className: "actions", role: "group", "aria-label": "Rate this answer" }, [up, down]);
  }

  function notice(text, retry) {
    var node = el("div", { className: "msg error", role: "alert", text: text });
    if (retry) {
      var b = el("button", { type: "button", className: "retry", text: "Retry" });
      b.addEventListener("click", function () { node.remove(); retry(); });
      node.appendChild(document.createTextNode(" ")); node.appendChild(b);
    }
    log.appendChild(node); scroll();
  }

  // ---- HTTP ------------------------------------------------------------------------------
  function api(method, path, body, headers) {
    var h = { "Content-Type": "application/json" };
    if (session) h.Authorization = "Bearer " + session.token;
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(API + "/api/v1" + path, { method: method, headers: h, body: body ? JSON.stringify(body) : undefined,
      mode: "cors", credentials: "omit" });
  }

  function problem(res) {
    var wait = res.headers.get("Retry-After");
    if (res.status === 429) return "You're sending messages too quickly. Try again in " + (wait || "a few") + " seconds.";
    if (res.status === 422) return "That message can't be sent (it may be too long).";
    if (res.status >= 500) return "The assistant is unavailable right now. Please try again shortly.";
    return "Something went wrong (" + res.status + ").";
  }

  function ensureConversation() {
    if (session) return Promise.resolve(session);
    return fetch(API + "/api/v1/conversations", { method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "application/json", "X-Bot-Key": KEY },
      body: JSON.stringify({ metadata: { page: location.href.slice(0, 500) } })
    }).then(function (res) {
      if (!res.ok) throw new Error(problem(res));
      return res.json();
    }).then(function (c) { session = { id: c.id, token: c.token }; saveSession(session); return session; });
  }

  // Parse an SSE body from fetch(): frames separated by a blank line.
  function readEvents(res, onEvent) {
    var reader = res.body.getReader(), decoder = new TextDecoder(), buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        buffer += decoder.decode(chunk.value || new Uint8Array(), { stream: !chunk.done });
        var frames = buffer.split(/\r?\n\r?\n/);
        buffer = chunk.done ? "" : frames.pop();
        frames.forEach(function (frame) {
          var name = "message", lines = [];
          frame.split(/\r?\n/).forEach(function (line) {
            if (line.indexOf("event:") === 0) name = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) lines.push(line.slice(5).replace(/^ /, ""));
          });
          if (lines.length) onEvent(name, JSON.parse(lines.join("\n")));
        });
        return chunk.done ? null : pump();
      });
    }
    return pump();
  }

  function ask(text, clientId) {
    clientId = clientId || uid();
    busy = true; send.disabled = true;
    var node = bubble("assistant", "");
    node.querySelector(".body").className = "body typing";
    node.setAttribute("aria-busy", "true");
    var streamed = "", finished = false;
    return ensureConversation().then(function () {
      return api("POST", "/conversations/" + encodeURIComponent(session.id) + "/messages",
        { text: text, client_message_id: clientId }, { Accept: "text/event-stream" });
    }).then(function (res) {
      if (res.status === 401 || res.status === 403) { saveSession(session = null); throw new Error("Your conversation expired. Please send your message again."); }
      if (!res.ok) throw new Error(problem(res));
      return readEvents(res, function (name, payload) {
        var body = node.querySelector(".body");
        if (name === "delta") { streamed += payload.text; body.className = "body"; body.textContent = streamed; scroll(); }
        else if (name === "done") {
          finished = true; handoff = handoff || payload.handoff;
          if (payload.text) fill(node, payload);
          else { node.className = "msg system"; body.className = "body"; body.textContent = "Your message was passed to our support team."; }
        }
        else if (name === "error") { throw new Error(payload.error && payload.error.message || "The answer failed."); }
      });
    }).then(function () {
      if (!finished) throw new Error("The connection was interrupted.");
    }).catch(function (err) {
      if (!finished) { node.remove(); notice(err.message || "Network error.", function () { ask(text, clientId); }); }
    }).then(function () {
      node.removeAttribute("aria-busy"); busy = false; send.disabled = false; schedulePoll();
    });
  }

  function loadHistory() {
    if (!session) return Promise.resolve();
    return api("GET", "/conversations/" + encodeURIComponent(session.id) + "/messages?limit=100").then(function (res) {
      if (res.status === 401 || res.status === 403 || res.status === 404) { saveSession(session = null); return; }
      if (!res.ok) return;
      return res.json().then(function (h) {
        h.messages.forEach(function (m) {
          if (m.id != null && shown[m.id]) return;
          if (m.id != null) shown[m.id] = true;
          if (m.role === "user") bubble("user", m.text);
          else bubble(m.role, "", { text: m.text, citations: m.citations, id: m.role === "assistant" ? m.id : null });
        });
      });
    }).catch(function () { /* offline: keep what is shown */ });
  }

  // After a handoff, a person answers asynchronously: poll the history while open.
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (handoff && !panel.hidden) pollTimer = setTimeout(function () { loadHistory().then(schedulePoll); }, POLL_MS);
  }

  function open() {
    panel.hidden = false; launcher.setAttribute("aria-expanded", "true");
    input.focus(); scroll(); schedulePoll();
  }
  function shut() {
    panel.hidden = true; launcher.setAttribute("aria-expanded", "false");
    clearTimeout(pollTimer); launcher.focus();
  }

  launcher.addEventListener("click", function () { if (panel.hidden) open(); else shut(); });
  close.addEventListener("click", shut);
  root.addEventListener("keydown", function (e) { if (e.key === "Escape" && !panel.hidden) { e.preventDefault(); shut(); } });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : submit(e); }
  });
  function say(text) {
    withdraw();
    bubble("user", text);
    ask(text);
  }
  function submit(e) {
    if (e) e.preventDefault();
    var text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    say(text);
  }
  form.addEventListener("submit", submit);
  human.addEventListener("click", function () { if (!busy) say(options.humanText); });

  // Suggested questions (web.suggestions): offered under the greeting of a conversation with
  // no message yet, withdrawn by the first message, whichever way it is sent.
  var offered = null;
  function offer(list) {
    if (!list || !list.length || log.querySelector(".msg.user")) return;
    offered = el("div", { className: "suggestions", role: "group", "aria-label": "Suggested questions" },
      list.map(function (text) {  // at most 6: web.suggestions is validated server-side
        var b = el("button", { type: "button", text: String(text) });
        b.addEventListener("click", function () { if (!busy) { say(String(text)); input.focus(); } });
        return b;
      }));
    log.appendChild(offered); scroll();
  }
  function withdraw() { if (offered) { offered.remove(); offered = null; } }

  function start() {
    document.body.appendChild(host);
    applyOptions();
    var configured = fetch(API + "/api/v1/widget/config", { mode: "cors", credentials: "omit" }).then(function (res) {
      return res.ok ? res.json() : {};
    }).catch(function () { return {}; }).then(function (cfg) {
      options.title = options.title || cfg.title;
      options.greeting = options.greeting || cfg.greeting;
      options.primaryColor = options.primaryColor || cfg.primary_color;
      options.position = options.position || cfg.position;
      if (cfg.max_message_chars) input.setAttribute("maxlength", String(cfg.max_message_chars));
      applyOptions();
      if (options.greeting) {
        var g = bubble("assistant", options.greeting);
        g.classList.add("greeting");
        log.insertBefore(g, log.firstChild);
      }
      return cfg;
    });
    var history = loadHistory().then(function () { if (data.open === "true") open(); });
    Promise.all([configured, history]).then(function (done) { offer(done[0].suggestions); });
  }

  window.__botkitWidget = { open: open, close: shut, root: root };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
