// r1 web chat: streams /v1/chat/completions and shows `reasoning_content` in a collapsible block
// above the answer, as DeepSeek's app does. No framework, no CDN: marked (vendored) renders markdown.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], controller: null, config: { auth: false, thinking: false } };

// Model output is untrusted: raw HTML in it is shown as text, and links may only be http(s)/mailto.
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
marked.use({
  gfm: true,
  breaks: false,
  renderer: {
    html(token) { return escapeHtml(token.text || token.raw || ""); },
    link(token) {
      const href = token.href || "";
      const text = this.parser.parseInline(token.tokens);
      if (!/^(https?:|mailto:|#|\/)/i.test(href)) return text;
      return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer">${text}</a>`;
    },
    image(token) { return escapeHtml(`![${token.text || ""}](${token.href || ""})`); },
    code(token) {
      const lang = (token.lang || "").split(/\s/)[0];
      const label = lang ? `<span class="lang">${escapeHtml(lang)}</span>` : "";
      return `<pre>${label}<code class="language-${escapeHtml(lang || "text")}">${escapeHtml(token.text)}</code></pre>`;
    },
  },
});
// Math: TeX between $$..$$ / \[..\] (display) or \(..\) / $..$ (inline), and a bare \boxed{..}
// (what R1 ends its answers with), is set aside before markdown, so marked cannot mangle the
// backslashes, then typeset by KaTeX (vendored). A formula KaTeX cannot parse is shown as its TeX.
function boxedEnd(text, start) {  // index after the brace that closes the \boxed{ at `start`, or -1
  let depth = 0;
  for (let i = text.indexOf("{", start); i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return i + 1;
  }
  return -1;
}
const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|\$(?=\S)([^$\n]*?\S)\$(?!\d)/g;
function renderMarkdown(text) {
  const math = [];
  const keep = (tex, display) => `@@MATH${math.push({ tex, display }) - 1}@@`;
  const prose = (part) => {  // math only outside code: `$HOME` or a regex's \( in code stay as typed
    let out = part.replace(MATH, (m, d1, d2, i1, i2) => keep(d1 ?? d2 ?? i1 ?? i2, d1 !== undefined || d2 !== undefined));
    for (let i = out.indexOf("\\boxed{"); i >= 0; i = out.indexOf("\\boxed{", i)) {
      const end = boxedEnd(out, i);
      if (end < 0) break;  // still streaming: the brace has not closed yet
      const slot = keep(out.slice(i, end), false);
      out = out.slice(0, i) + slot + out.slice(end);
      i += slot.length;
    }
    return out;
  };
  const src = text.split(/(```[\s\S]*?(?:```|$)|`[^`\n]*`)/).map((part, j) => (j % 2 ? part : prose(part))).join("");
  const html = marked.parse(src);
  return html.replace(/@@MATH(\d+)@@/g, (m, k) => {
    const { tex, display } = math[Number(k)];
    if (typeof katex === "undefined") return escapeHtml(tex);
    try {
      return katex.renderToString(tex, { displayMode: display, throwOnError: true, output: "html" });
    } catch (e) {
      return `<code>${escapeHtml(tex)}</code>`;
    }
  });
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = `Bearer ${key}`;
  return h;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadConfig() {
  try {
    state.config = await (await fetch("/config.json")).json();
  } catch (e) { /* the defaults will do */ }
  $("key-field").hidden = !state.config.auth;
  $("api-key").value = localStorage.getItem("r1-api-key") || "";
  $("think").parentElement.hidden = !state.config.thinking;
  showEmpty();
  await loadModels();
}

// The empty chat says what the model is for (its card, when it has one) and offers its examples.
function showEmpty() {
  const box = document.createElement("div");
  box.className = "empty";
  box.id = "empty";
  const about = document.createElement("p");
  about.textContent = state.config.about
    ? `${state.config.model}: ${state.config.about}`
    : "Ask anything. The model's thinking appears folded above its answer.";
  box.appendChild(about);
  const examples = document.createElement("div");
  examples.className = "examples";
  for (const text of state.config.examples || []) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "ghost example";
    b.textContent = text;
    b.addEventListener("click", () => { if (!state.controller) send(text); });
    examples.appendChild(b);
  }
  box.appendChild(examples);
  $("messages").replaceChildren(box);
}

// Ask for the key plainly, where the chat would be, while the server refuses us without one.
function needKey(needed) {
  $("key-needed").hidden = !needed;
  $("api-key").classList.toggle("wanted", needed);
  if (needed) $("api-key").focus();
}

async function loadModels() {
  const select = $("model");
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    needKey(r.status === 401);
    if (r.status === 401) { select.innerHTML = ""; setStatus(""); return; }
    if (!r.ok) throw new Error((await r.json()).error?.message || r.statusText);
    const data = await r.json();
    select.innerHTML = "";
    for (const m of data.data) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = m.id;
      select.appendChild(opt);
    }
    setStatus("");
  } catch (e) {
    setStatus(`models: ${e.message}`, true);
  }
}

function addMessage(role) {
  $("empty")?.remove();
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  div.appendChild(bubble);
  $("messages").appendChild(div);
  return bubble;
}

function scrollDown() {
  const m = $("messages");
  m.scrollTop = m.scrollHeight;
}

function assistantView(bubble) {
  const details = document.createElement("details");
  details.className = "thinking";
  details.hidden = true;
  details.open = true;
  const summary = document.createElement("summary");
  summary.textContent = "Thinking…";
  const body = document.createElement("div");
  body.className = "thinking-body";
  details.append(summary, body);
  const answer = document.createElement("div");
  answer.className = "answer cursor";
  const meta = document.createElement("div");
  meta.className = "meta";
  bubble.append(details, answer, meta);
  return { details, summary, body, answer, meta };
}

// Read an SSE body: yields the parsed JSON of each `data:` event until [DONE].
async function* sse(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  state.history.push({ role: "user", content: text });
  addMessage("user").textContent = text;
  const view = assistantView(addMessage("assistant"));
  scrollDown();
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let reasoning = "", content = "", finish = null, usage = null;
  const t0 = performance.now();
  let thinkEnd = null;
  const body = {
    model: $("model").value, messages: state.history, stream: true,
    stream_options: { include_usage: true },
  };
  if (state.config.thinking) body.thinking = { type: $("think").checked ? "enabled" : "disabled" };
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!r.ok) {
      if (r.status === 401) needKey(true);
      const err = await r.json().catch(() => ({}));
      throw new Error(err.error?.message || `${r.status} ${r.statusText}`);
    }
    for await (const chunk of sse(r, controller.signal)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      const d = choice.delta || {};
      if (d.reasoning_content) {
        reasoning += d.reasoning_content;
        view.details.hidden = false;
        view.body.textContent = reasoning;
      }
      if (d.content) {
        if (thinkEnd === null) thinkEnd = performance.now();
        content += d.content;
        view.answer.innerHTML = renderMarkdown(content);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      if (d.content || d.reasoning_content) scrollDown();
    }
  } catch (e) {
    if (e.name !== "AbortError") {
      view.meta.textContent = e.message;
      view.meta.classList.add("error");
    }
    finish = finish || (e.name === "AbortError" ? "stopped" : "error");
  } finally {
    setBusy(false);
    state.controller = null;
    view.answer.classList.remove("cursor");
    if (reasoning) {
      const secs = (((thinkEnd ?? performance.now()) - t0) / 1000).toFixed(1);
      view.summary.textContent = `Thought for ${secs} s`;
      view.details.open = false;  // folded once the answer is there, one click to unfold
    }
    if (finish === "content_filter") view.answer.innerHTML = renderMarkdown(content);
    const parts = [];
    if (usage) parts.push(`${usage.completion_tokens} tokens`);
    if (finish && finish !== "stop") parts.push(finish);
    if (!view.meta.classList.contains("error")) view.meta.textContent = parts.join(" · ");
    // earlier turns go back without their reasoning, as the API expects
    state.history.push({ role: "assistant", content });
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("prompt").disabled = busy;
  if (!busy) $("prompt").focus();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller?.abort());
$("new-chat").addEventListener("click", () => {
  state.controller?.abort();
  state.history = [];
  showEmpty();
});
$("api-key").addEventListener("change", () => {
  localStorage.setItem("r1-api-key", $("api-key").value.trim());
  loadModels();
});
loadConfig();
