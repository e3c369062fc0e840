/* bitbd chat widget. Embed with:
 *   <script src="https://HOST/widget.js" data-key="pk_..." async></script>
 * Optional: data-title, data-greeting, data-position ("right" | "left"), data-color (a CSS colour).
 * Plain JavaScript, no dependencies. Everything renders inside a Shadow DOM, and text from the server is only
 * ever inserted as text (textContent), never as HTML. Protocol: docs/protocol.md.
 */
(function () {
  "use strict";
  var script = document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-key]');
  if (!script || window.__bitbdWidget) { return; }
  window.__bitbdWidget = true;

  var cfg = script.dataset;
  var key = cfg.key || "";
  var base = new URL(script.src, location.href);
  var wsUrl = (base.protocol === "https:" ? "wss:" : "ws:") + "//" + base.host + "/v1/chat?key=" +
    encodeURIComponent(key);
  var title = cfg.title || "Ask us";
  var greeting = cfg.greeting || "Hi! Ask me anything about this site.";
  var side = cfg.position === "left" ? "left" : "right";
  var color = /^[#a-zA-Z0-9(),.% -]{1,40}$/.test(cfg.color || "") ? cfg.color : "#2563eb";
  var storeKey = "bitbd:conversation:" + key.slice(0, 12);

  // Words a visitor understands, for the server's error codes.
  var MESSAGES = {
    origin_not_allowed: "This chat is not enabled for this website.",
    key_expired: "This trial has ended.",
    quota_exhausted: "This trial has ended.",
    key_revoked: "This chat has been switched off by the site owner.",
    unauthorized: "This chat is not set up correctly (unknown key).",
    rate_limited: "Many questions are being asked right now. Please try again in a minute.",
    question_too_long: "That question is too long. Please shorten it.",
    no_documents: "This assistant has nothing to answer from yet.",
    too_many_in_flight: "Please wait for the current answer.",
    timeout: "The answer took too long. Please try again.",
    unavailable: "The assistant is temporarily unavailable. Please try again shortly.",
    conversation_not_found: "Starting a new conversation.",
    message_not_found: "That answer can no longer be rated."
  };
  var FATAL = { origin_not_allowed: 1, key_expired: 1, key_revoked: 1, unauthorized: 1 };

  // A custom element (no page rule for "div" matches it), with inline !important styles that beat even the page's
  // !important rules: the host page's CSS cannot hide or restyle the widget, which lives in its shadow root.
  var host = document.createElement("bitbd-chat");
  host.setAttribute("data-bitbd", "");
  host.style.cssText = "all:initial !important;display:block !important;position:static !important;" +
    "visibility:visible !important;opacity:1 !important";
  var root = host.attachShadow({ mode: "open" });
  var css =
    ":host{all:initial}" +
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;font-size:14px}" +
    ".bubble{position:fixed;bottom:20px;" + side + ":20px;width:56px;height:56px;border-radius:50%;border:0;" +
    "background:" + color + ";color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);" +
    "z-index:2147483646}" +
    ".bubble svg{display:block;margin:auto}" +
    ".bubble:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}" +
    ".panel{position:fixed;bottom:88px;" + side + ":20px;width:min(380px,calc(100vw - 40px));" +
    "height:min(560px,calc(100vh - 120px));display:none;flex-direction:column;background:#fff;color:#111;" +
    "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;z-index:2147483647}" +
    ".panel.open{display:flex}" +
    ".head{background:" + color + ";color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}" +
    ".head h2{margin:0;font-size:16px;font-weight:600;flex:1;color:#fff}" +
    ".head button{background:transparent;border:0;color:#fff;font-size:20px;cursor:pointer;line-height:1}" +
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px;background:#f8fafc}" +
    ".msg{max-width:85%;padding:8px 11px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word;" +
    "line-height:1.4}" +
    ".me{align-self:flex-end;background:" + color + ";color:#fff}" +
    ".bot{align-self:flex-start;background:#fff;border:1px solid #e2e8f0}" +
    ".bot.pending::after{content:'\u2026'}" +
    ".err{align-self:stretch;background:#fef2f2;color:#991b1b;border:1px solid #fecaca}" +
    ".sources{margin:6px 0 0;padding:0;list-style:none;font-size:12px}" +
    ".sources a{color:" + color + ";text-decoration:underline}" +
    ".bitbd-cut{margin:6px 0 0;font-size:12px;font-style:italic;color:#6b7280}" +
    ".rate{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:6px 0 0;font-size:12px;color:#475569;white-space:normal}" +
    ".rate button{background:#fff;border:1px solid #cbd5e1;border-radius:6px;padding:2px 8px;cursor:pointer;" +
    "color:#111}" +
    ".rate button[aria-pressed=true]{background:" + color + ";border-color:" + color + ";color:#fff}" +
    ".rate textarea{flex:1 1 100%;height:48px;padding:5px;font-size:12px;resize:vertical}" +
    ".status{font-size:12px;color:#64748b;padding:2px 12px;min-height:18px;background:#f8fafc}" +
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e2e8f0;background:#fff}" +
    "textarea{flex:1;resize:none;height:40px;padding:9px;border:1px solid #cbd5e1;border-radius:8px;color:#111;" +
    "background:#fff}" +
    "form button{background:" + color + ";color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer}" +
    "form button:disabled{opacity:.5;cursor:default}";
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
  }

  function icon() {  // a speech bubble, drawn: no emoji font or image request needed
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
    svg.appendChild(path);
    return svg;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  var bubble = el("button", { "class": "bubble", "aria-label": "Open chat: " + title, "aria-expanded": "false",
    "aria-controls": "bitbd-panel", type: "button" });
  bubble.appendChild(icon());
  var panel = el("div", { "class": "panel", id: "bitbd-panel", role: "dialog", "aria-label": title });
  var head = el("div", { "class": "head" });
  var heading = el("h2", {}, title);
  var closeButton = el("button", { type: "button", "aria-label": "Close chat" }, "\u00D7");
  head.appendChild(heading);
  head.appendChild(closeButton);
  var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions text" });
  var status = el("div", { "class": "status", role: "status" });
  var form = el("form", {});
  var input = el("textarea", { "aria-label": "Your question", placeholder: "Type your question\u2026",
    maxlength: "2000", rows: "1" });
  var send = el("button", { type: "submit" }, "Send");
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);
  root.appendChild(bubble);
  root.appendChild(panel);

  function addMessage(kind, text) {
    var node = el("div", { "class": "msg " + kind }, text);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }
  addMessage("bot", greeting);

  function open() {
    panel.classList.add("open");
    bubble.setAttribute("aria-expanded", "true");
    input.focus();
    connect();
  }
  function close() {
    panel.classList.remove("open");
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }
  bubble.addEventListener("click", function () {
    if (panel.classList.contains("open")) { close(); } else { open(); }
  });
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { e.preventDefault(); close(); }
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });

  // The connection: opened with the panel, kept alive with pings, re-opened with backoff when dropped.
  var ws = null;
  var ready = false;
  var fatal = null;
  var retryDelay = 500;
  var retryTimer = null;
  var pending = {};  // id -> {node, text}
  var counter = 0;
  var queue = [];

  function setStatus(text) { status.textContent = text || ""; }

  function connect() {
    if (fatal || ws || retryTimer) { return; }
    try { ws = new WebSocket(wsUrl); } catch (err) { scheduleReconnect(); return; }
    setStatus("Connecting\u2026");
    ws.onopen = function () {
      ready = true;
      retryDelay = 500;
      setStatus("");
      while (queue.length && ws && ready) { ws.send(queue.shift()); }
    };
    ws.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (err) { return; }
      handle(data);
    };
    ws.onclose = function () {
      ws = null;
      ready = false;
      Object.keys(pending).forEach(function (id) {
        failAnswer(id, fatal || "The connection was lost. Please ask again.");
      });
      if (!fatal) { scheduleReconnect(); }
    };
  }

  function scheduleReconnect() {
    if (retryTimer || fatal) { return; }
    setStatus("Reconnecting\u2026");
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  setInterval(function () {
    if (ws && ready) { ws.send(JSON.stringify({ type: "ping", id: "keepalive" })); }
  }, 25000);

  function submit() {
    var question = input.value.trim();
    if (!question) { return; }
    if (fatal) { showFatal(); return; }
    input.value = "";
    addMessage("me", question);
    var id = "w" + (++counter);
    var node = addMessage("bot pending", "");
    pending[id] = { node: node, text: "" };
    var message = { type: "ask", id: id, question: question };
    var conversation = sessionGet();
    if (conversation) { message.conversation_id = conversation; }
    var raw = JSON.stringify(message);
    if (ws && ready) { ws.send(raw); } else { queue.push(raw); connect(); }
  }

  function handle(data) {
    var entry = data.id ? pending[data.id] : null;
    if (data.type === "delta" && entry) {
      entry.text += data.text;
      entry.node.textContent = shown(entry.text);
      log.scrollTop = log.scrollHeight;
    } else if (data.type === "citations" && entry) {
      renderSources(entry.node, data.sources || []);
    } else if (data.type === "done" && entry) {
      entry.node.classList.remove("pending");
      if (data.complete === false) {  // the model stopped before it finished: say so, under what it wrote
        var cut = document.createElement("div");
        cut.className = "bitbd-cut";
        cut.textContent = "(This answer was cut short.)";
        entry.node.appendChild(cut);
      }
      if (data.conversation_id) { sessionSet(data.conversation_id); }
      if (data.message_id) { entry.node.appendChild(rating(data.message_id)); }
      delete pending[data.id];
    } else if (data.type === "feedback_saved") {
      setStatus("Thank you for your feedback.");
    } else if (data.type === "error") {
      var words = MESSAGES[data.code] || "Something went wrong. Please try again.";
      if (data.code === "conversation_not_found") { sessionSet(""); }
      if (FATAL[data.code]) { fatal = words; }
      var waiting = Object.keys(pending);
      if (entry) {
        failAnswer(data.id, words);
      } else if (FATAL[data.code] && waiting.length) {
        // A refusal of the connection itself (no id): every question waiting on it gets the reason.
        waiting.forEach(function (id) { failAnswer(id, words); });
      } else {
        addMessage("err", words);
      }
      if (fatal) { setStatus(""); }
    }
  }

  // Answers are Markdown in which raw HTML is escaped (`&lt;`, docs/protocol.md); shown as text, that is the
  // character a Markdown renderer would show. Still textContent: nothing becomes HTML.
  function shown(markdown) { return markdown.replace(/&lt;/g, "<"); }

  // A rating under an answer: "Helpful" / "Not helpful" (toggle buttons), and after "Not helpful" a box for an
  // optional comment. Sent on the chat socket; a later rating of the same answer replaces the earlier one.
  function rating(messageId, given) {
    var row = el("div", { "class": "rate", role: "group", "aria-label": "Rate this answer" });
    // Words, not emoji: a visitor's machine may have no emoji font.
    var up = el("button", { type: "button", "aria-pressed": "false", "aria-label": "Helpful" }, "Yes");
    var down = el("button", { type: "button", "aria-pressed": "false", "aria-label": "Not helpful" }, "No");
    row.appendChild(el("span", { "aria-hidden": "true" }, "Helpful?"));
    row.appendChild(up);
    row.appendChild(down);
    if (given === "up" || given === "down") { (given === "up" ? up : down).setAttribute("aria-pressed", "true"); }
    var comment = null;
    function rate(value, text) {
      up.setAttribute("aria-pressed", value === "up" ? "true" : "false");
      down.setAttribute("aria-pressed", value === "down" ? "true" : "false");
      var message = { type: "feedback", id: "r" + (++counter), message_id: messageId, rating: value };
      if (text) { message.comment = text.slice(0, 2000); }
      var raw = JSON.stringify(message);
      if (ws && ready) { ws.send(raw); } else { queue.push(raw); connect(); }
    }
    up.addEventListener("click", function () { rate("up"); });
    down.addEventListener("click", function () {
      rate("down");
      if (comment) { return; }
      comment = el("textarea", { "aria-label": "What was wrong with this answer? (optional)", maxlength: "2000",
        placeholder: "What was wrong? (optional)" });
      var sendComment = el("button", { type: "button", "aria-label": "Send comment" }, "Send");
      sendComment.addEventListener("click", function () {
        var text = comment.value.trim();
        if (text) { rate("down", text); sendComment.disabled = true; comment.disabled = true; }
      });
      comment.addEventListener("keydown", function (e) {
        if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); sendComment.click(); }
      });
      row.appendChild(comment);
      row.appendChild(sendComment);
      comment.focus();
    });
    return row;
  }

  function failAnswer(id, words) {
    var entry = pending[id];
    if (!entry) { return; }
    delete pending[id];
    entry.node.className = "msg err";
    entry.node.textContent = words;
  }

  function showFatal() { addMessage("err", fatal); }

  function renderSources(node, sources) {
    if (!sources.length) { return; }
    var list = el("ol", { "class": "sources", "aria-label": "Sources" });
    sources.forEach(function (source) {
      var item = el("li", {});
      var href = safeUrl(source.url);
      var label = "[" + source.n + "] " + (source.title || source.url);
      var link = href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer" }, label) :
        el("span", {}, label);
      if (source.snippet) { link.setAttribute("title", source.snippet); }
      item.appendChild(link);
      list.appendChild(item);
    });
    node.appendChild(list);
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (err) { return null; }
  }

  function sessionGet() {
    try { return sessionStorage.getItem(storeKey) || ""; } catch (err) { return ""; }
  }
  function sessionSet(value) {
    try {
      if (value) { sessionStorage.setItem(storeKey, value); } else { sessionStorage.removeItem(storeKey); }
    } catch (err) { /* storage blocked: the conversation lasts as long as the page */ }
  }

  // After a reload, or on another page of the site: the conversation of this tab (sessionStorage) back on screen,
  // read with the public key (the server allows this origin); a conversation gone (past its retention) is dropped.
  function restore() {
    var conversation = sessionGet();
    if (!conversation || !window.fetch) { return; }
    var url = base.origin + "/v1/conversations/" + encodeURIComponent(conversation) + "?key=" +
      encodeURIComponent(key);
    fetch(url, { credentials: "omit" }).then(function (resp) {
      if (resp.status === 404) { sessionSet(""); return null; }
      return resp.ok ? resp.json() : null;
    }).then(function (body) {
      if (!body || !body.messages) { return; }
      body.messages.forEach(function (m) {
        if (m.role === "user") { addMessage("me", m.content); return; }
        var node = addMessage("bot", shown(m.content));
        renderSources(node, m.citations || []);
        node.appendChild(rating(m.message_id, m.rating));
      });
    }).catch(function () { /* offline: the next answer still joins the conversation */ });
  }

  function mount() { document.body.appendChild(host); restore(); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
