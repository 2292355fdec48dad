// The explorer's page: plain DOM, no external code. Data from /api/*; text is set with
// textContent only, never parsed as HTML.
"use strict";
const $ = id => document.getElementById(id);
const state = { info: null, view: "ranking", offset: 0, selected: null };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function status(text, error) {
  $("status").textContent = text || "";
  $("status").className = error ? "error" : "";
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const body = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
  if (!r.ok) throw new Error(body.error || (r.status + " " + r.statusText));
  return body;
}

function fmt(x) { return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(3) : x.toPrecision(4); }

function card(set, ex, extra) {
  const c = el("div", "card");
  c.dataset.set = set;
  c.dataset.index = ex.index;
  if (state.info.images) {
    const img = el("img");
    img.loading = "lazy";
    img.alt = set + " #" + ex.index;
    img.src = "api/image/" + set + "/" + ex.index + ".png";
    c.appendChild(img);
  }
  if (ex.text) c.appendChild(el("div", "text", ex.text));
  if (extra) c.appendChild(el("div", "score", extra));
  c.appendChild(el("div", null, set + " #" + ex.index));
  c.appendChild(el("div", null, "given: " + ex.given));
  c.appendChild(el("div", ex.predicted !== ex.given ? "mismatch" : null, "predicted: " + ex.predicted));
  if (ex.trueLabel) c.appendChild(el("div", "flip", "flipped, true: " + ex.trueLabel));
  if (ex.source) c.appendChild(el("div", "src", ex.source));
  if (ex.decision) c.appendChild(el("div", "dec", describe(ex.decision)));
  c.addEventListener("click", () => select(set, ex.index, ex));
  return c;
}

function describe(d) {
  return d.verdict === "relabel" ? "mislabeled: should be " + d.label : d.verdict;
}

async function loadList(append) {
  if (!append) { state.offset = 0; $("list").replaceChildren(); }
  const cls = $("class").value;
  const q = "offset=" + state.offset + "&limit=60" + (cls ? "&class=" + encodeURIComponent(cls) : "");
  status("loading ...");
  try {
    if (state.view === "ranking") {
      const r = await api("api/ranking?method=" + encodeURIComponent($("method").value) + "&" + q);
      $("list-summary").textContent = r.total + " training examples, highest self-influence (" + r.method + ") first";
      for (const row of r.rows) $("list").appendChild(card("train", row.example, "#" + row.rank + "  " + fmt(row.score)));
      state.offset += r.rows.length;
      $("more").hidden = state.offset >= r.total;
    } else {
      const r = await api("api/test?" + q);
      $("list-summary").textContent = r.total + " test points: click one to see its proponents and opponents";
      for (const ex of r.rows) $("list").appendChild(card("test", ex));
      state.offset += r.rows.length;
      $("more").hidden = state.offset >= r.total;
    }
    status("");
  } catch (e) { status(e.message, true); }
}

async function select(set, index, ex) {
  state.selected = { set, index };
  document.querySelectorAll(".card.selected").forEach(c => c.classList.remove("selected"));
  document.querySelectorAll('#list .card[data-set="' + set + '"][data-index="' + index + '"]').forEach(c => c.classList.add("selected"));
  $("detail-pane").hidden = false;
  $("proponents").replaceChildren();
  $("opponents").replaceChildren();
  $("explain-source").textContent = "";
  const q = $("query");
  q.replaceChildren();
  if (state.info.images) { const img = el("img"); img.alt = "query"; img.src = "api/image/" + set + "/" + index + ".png"; q.appendChild(img); }
  const text = el("div");
  text.appendChild(el("div", null, set.startsWith("upload") ? "uploaded image " + (ex && ex.name ? ex.name : "") : set + " #" + index));
  if (ex && ex.text) text.appendChild(el("div", "text", ex.text));
  if (ex && ex.given) text.appendChild(el("div", null, "given: " + ex.given));
  if (ex && ex.predicted) text.appendChild(el("div", null, "predicted: " + ex.predicted));
  if (ex && ex.source) {
    const s = el("div", "src");
    if (ex.file) { const a = el("a", null, ex.source); a.href = "files/data/" + ex.file.split("/").map(encodeURIComponent).join("/"); a.target = "_blank"; s.appendChild(a); }
    else s.textContent = ex.source;
    text.appendChild(s);
  }
  q.appendChild(text);
  $("decide").hidden = set !== "train";
  if (ex && ex.predicted && ex.predicted !== ex.given) $("relabel-to").value = ex.predicted;
  $("decision-state").textContent = ex && ex.decision ? "saved: " + describe(ex.decision) : "";
  status("computing proponents and opponents ...");
  const t0 = performance.now();
  try {
    const r = await api("api/explain?set=" + encodeURIComponent(set) + "&index=" + index + "&method=" + encodeURIComponent($("method").value));
    if (state.selected.set !== set || state.selected.index !== index) return;
    for (const p of r.proponents) $("proponents").appendChild(card("train", p.example, "+" + fmt(p.score)));
    for (const p of r.opponents) $("opponents").appendChild(card("train", p.example, fmt(p.score)));
    if (r.proponents.length === 0) $("proponents").appendChild(el("div", null, "none"));
    if (r.opponents.length === 0) $("opponents").appendChild(el("div", null, "none"));
    status(r.method + ": " + r.proponents.length + " proponents, " + r.opponents.length + " opponents in " + ((performance.now() - t0) / 1000).toFixed(2) + " s");
    $("explain-source").textContent = "answered by " + r.method + " from the " + r.source;
    document.body.dataset.explained = set + ":" + index;
  } catch (e) { status(e.message, true); }
}

async function decide(verdict) {
  const s = state.selected;
  if (!s || s.set !== "train") return;
  const body = { index: s.index, decision: verdict, label: verdict === "relabel" ? $("relabel-to").value : null };
  try {
    const r = await api("api/decision", { method: "POST", headers: { "Content-Type": "application/json", "X-Influence": "1" }, body: JSON.stringify(body) });
    $("decision-state").textContent = r.saved ? "saved: " + describe(r.saved) : "cleared";
    status("decision saved to " + r.file);
    document.querySelectorAll('.card[data-set="train"][data-index="' + s.index + '"]').forEach(c => {
      let d = c.querySelector(".dec");
      if (!d) { d = el("div", "dec"); c.appendChild(d); }
      d.textContent = r.saved ? describe(r.saved) : "";
    });
  } catch (e) { status(e.message, true); }
}

async function upload(file) {
  // The server enforces the size limit (--max-upload) and says so.
  status("uploading " + file.name + " ...");
  try {
    const r = await api("api/upload", { method: "POST", headers: { "X-Influence": "1", "X-File-Name": file.name, "Content-Type": "application/octet-stream" }, body: file });
    await select(r.set, r.index, { name: r.name, predicted: r.predicted, given: r.predicted + " (predicted)" });
  } catch (e) { status(e.message, true); }
}

async function init() {
  try {
    state.info = await api("api/info");
  } catch (e) { status(e.message, true); return; }
  const i = state.info;
  $("run-info").textContent = i.run + " | " + i.data + " | " + i.train + " training, " + i.test + " test examples" + (i.corrupted ? " | " + i.corrupted + " labels flipped by train --corrupt" : "");
  for (const m of i.methods) { const o = el("option", null, m.name); o.value = m.name; o.title = m.from; $("method").appendChild(o); }
  for (const c of i.classes) {
    const o = el("option", null, c); o.value = c; $("class").appendChild(o);
    const r = el("option", null, c); r.value = c; $("relabel-to").appendChild(r);
  }
  if (!i.images) $("upload").disabled = true;
  $("view").addEventListener("change", () => { state.view = $("view").value; loadList(false); });
  $("method").addEventListener("change", () => loadList(false));
  $("class").addEventListener("change", () => loadList(false));
  $("more").addEventListener("click", () => loadList(true));
  $("mark-relabel").addEventListener("click", () => decide("relabel"));
  $("mark-remove").addEventListener("click", () => decide("remove"));
  $("mark-keep").addEventListener("click", () => decide("keep"));
  $("mark-clear").addEventListener("click", () => decide("clear"));
  $("upload").addEventListener("change", e => { if (e.target.files.length) upload(e.target.files[0]); e.target.value = ""; });
  await loadList(false);
  document.body.dataset.ready = "1";
}

init();
