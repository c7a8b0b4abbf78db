// The review page: list items (most uncertain first), show the frame with the detector's boxes,
// let a reviewer choose a class and draw boxes, save with the version seen (409 = someone else was first).
"use strict";
const MAX_W = 640, MAX_H = 480;
const USER_BOX = "rgb(0, 255, 0)", DET_BOX = "rgb(255, 0, 255)";
const S = { key: sessionStorage.getItem("reviewKey") || "", items: [], index: -1, item: null, img: null,
            scale: 1, chosen: null, boxes: [], drag: null, status: "pending" };
window.reviewState = S;  // for tests and debugging

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const fmt = (x, d = 2) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "—");

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), Authorization: "Bearer " + S.key,
                                                    "Content-Type": "application/json" } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) { signOut("That key was not accepted."); throw new Error("unauthorized"); }
  return { status: r.status, body };
}

function signOut(msg) {
  sessionStorage.removeItem("reviewKey"); S.key = "";
  $("app").hidden = true; $("login").hidden = false; $("login-error").textContent = msg || "";
}

async function signIn(key) {
  S.key = key;
  const r = await api("/v1/review/whoami");
  if (r.status !== 200) return;
  sessionStorage.setItem("reviewKey", key);
  $("who").textContent = "reviewer: " + r.body.reviewer;
  $("login").hidden = true; $("app").hidden = false;
  await loadList();
}

async function loadList(keepId) {
  const r = await api("/v1/review/items?status=" + encodeURIComponent(S.status));
  S.items = (r.body && r.body.items) || [];
  $("count").textContent = S.items.length + " " + S.status;
  const nav = $("list");
  nav.innerHTML = "";
  S.items.forEach((it, i) => {
    const b = document.createElement("button");
    b.type = "button"; b.dataset.id = it.id;
    b.innerHTML = `<img class="thumb" alt="" width="48" height="48">` +
                  `<span class="name">${esc(it.file_name)}</span> <small>#${it.id} · ${esc(it.domain)} · ` +
                  `${esc(it.reason_text)} · uncertainty ${fmt(it.uncertainty)}` +
                  `${it.current ? " · labelled " + esc(it.current.label) : ""}</small>`;
    b.onclick = () => select(i);
    nav.appendChild(b);
  });
  loadThumbs(S.items.map((it) => it.id));
  const at = keepId != null ? S.items.findIndex((it) => it.id === keepId) : -1;
  if (S.items.length) await select(at >= 0 ? at : 0); else showEmpty();
}

async function loadThumbs(ids) {
  // one at a time: the list stays responsive and the server is not flooded
  for (const id of ids) {
    const img = document.querySelector(`#list button[data-id="${id}"] img.thumb`);
    if (!img) continue;
    try {
      const r = await fetch(`/v1/review/items/${id}/image`, { headers: { Authorization: "Bearer " + S.key } });
      if (r.ok) img.src = URL.createObjectURL(await r.blob()); else img.alt = "no image";
    } catch (e) { img.alt = "no image"; }
  }
}

function showEmpty() {
  S.item = null; $("title").textContent = "nothing to review";
  $("evidence").innerHTML = ""; $("classes").innerHTML = ""; $("history").innerHTML = "";
  const c = $("canvas"); c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

async function select(i) {
  S.index = i;
  [...$("list").children].forEach((b, j) => b.classList.toggle("active", j === i));
  const r = await api("/v1/review/items/" + S.items[i].id);
  if (r.status !== 200) { banner(r.body?.error?.message || "could not load the item"); return; }
  showItem(r.body);
}

function showItem(item) {
  S.item = item; banner(null);
  S.chosen = item.current ? item.current.label : null;
  S.boxes = item.current && item.current.boxes ? item.current.boxes.map((b) => ({ cls: b.cls, box: b.box.slice() })) : [];
  $("title").textContent = `#${item.id} ${item.image_ref}`;
  const tau = item.tau, z = item.z;
  const zClass = typeof z === "number" && typeof tau === "number" ? (z > tau ? "above" : "below") : "";
  const dets = (item.detections || []).map((d) => `${esc(d.cls)} ${fmt(d.confidence)}`).join(", ") || "none";
  $("evidence").innerHTML =
    `<dt>domain</dt><dd>${esc(item.domain)}</dd>` +
    `<dt>file</dt><dd>${esc(item.file_name)}</dd>` +
    `<dt>why here</dt><dd>${esc(item.reason_text)}</dd>` +
    `<dt>anomaly score</dt><dd class="${zClass}">${fmt(z)}${typeof tau === "number"
      ? (z > tau ? " — above the threshold " : " — below the threshold ") + fmt(tau)
      : " (no threshold known for this domain)"}</dd>` +
    `<dt>detector</dt><dd>${dets}</dd>` +
    `<dt>oracle</dt><dd>${item.oracle_class ? esc(item.oracle_class) + " " + fmt(item.oracle_confidence) : "—"}</dd>` +
    (item.oracle_reasoning ? `<dt>reasoning</dt><dd>${esc(item.oracle_reasoning)}</dd>` : "") +
    `<dt>version</dt><dd id="version">${item.version}</dd>`;
  const cls = $("classes"); cls.innerHTML = "";
  defectClasses().forEach((c, k) => cls.appendChild(classButton(c, String(k + 1))));
  if (item.classes.includes("no_defect")) cls.appendChild(classButton("no_defect", "0"));
  $("history").innerHTML = (item.history || []).map((h) =>
    `<li>${esc(h.label)} — ${esc(h.source)}${h.labelled_by ? " by " + esc(h.labelled_by) : ""}` +
    ` at ${new Date(h.ts * 1000).toLocaleString()}${h.boxes && h.boxes.length ? " (" + h.boxes.length + " boxes)" : ""}</li>`).join("");
  const img = new Image();
  img.onload = () => { S.img = img; S.scale = Math.min(MAX_W / img.naturalWidth, MAX_H / img.naturalHeight, 4);
                       const c = $("canvas"); c.width = Math.round(img.naturalWidth * S.scale);
                       c.height = Math.round(img.naturalHeight * S.scale); draw(); };
  img.onerror = () => { S.img = null; banner("the image of this item could not be loaded"); };
  fetch(`/v1/review/items/${item.id}/image`, { headers: { Authorization: "Bearer " + S.key } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(r))).then((b) => { img.src = URL.createObjectURL(b); })
    .catch(() => { S.img = null; banner("the image of this item is not available"); draw(); });
  refreshControls();
}

function defectClasses() { return S.item ? S.item.classes.filter((c) => c !== "no_defect") : []; }

function classButton(name, key) {
  const b = document.createElement("button");
  b.type = "button"; b.dataset.cls = name; b.textContent = `${key} ${name}`;
  b.onclick = () => choose(name);
  return b;
}

function choose(name) {
  S.chosen = name;
  if (name === "no_defect") S.boxes = [];
  refreshControls(); draw();
}

function refreshControls() {
  [...$("classes").children].forEach((b) => b.classList.toggle("chosen", b.dataset.cls === S.chosen));
  $("boxes").innerHTML = S.boxes.map((b) => `<li>${esc(b.cls)} [${b.box.map((v) => Math.round(v)).join(", ")}]</li>`).join("");
}

function draw() {
  const c = $("canvas"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (S.img) g.drawImage(S.img, 0, 0, c.width, c.height);
  const rect = (box, colour, dashed) => {
    g.save(); g.strokeStyle = colour; g.lineWidth = 3; g.setLineDash(dashed ? [8, 5] : []);
    const [x1, y1, x2, y2] = box.map((v) => v * S.scale);
    g.strokeRect(x1, y1, x2 - x1, y2 - y1); g.restore();
  };
  (S.item?.detections || []).forEach((d) => rect(d.box, DET_BOX, true));
  S.boxes.forEach((b) => rect(b.box, USER_BOX, false));
  if (S.drag) rect(S.drag.box, USER_BOX, false);
}

function toImage(ev) {
  const c = $("canvas"), r = c.getBoundingClientRect();
  const x = (ev.clientX - r.left) * (c.width / r.width) / S.scale, y = (ev.clientY - r.top) * (c.height / r.height) / S.scale;
  const w = S.img ? S.img.naturalWidth : c.width / S.scale, h = S.img ? S.img.naturalHeight : c.height / S.scale;
  return [Math.max(0, Math.min(w, x)), Math.max(0, Math.min(h, y))];
}

function boxClass() {
  if (S.chosen && S.chosen !== "no_defect") return S.chosen;
  const first = defectClasses()[0];
  S.chosen = first; refreshControls();
  return first;
}

$("canvas").addEventListener("mousedown", (ev) => {
  if (!S.item) return;
  const [x, y] = toImage(ev);
  S.drag = { start: [x, y], box: [x, y, x, y] };
});
window.addEventListener("mousemove", (ev) => {
  if (!S.drag) return;
  const [x, y] = toImage(ev), [sx, sy] = S.drag.start;
  S.drag.box = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
  draw();
});
window.addEventListener("mouseup", () => {
  if (!S.drag) return;
  const b = S.drag.box; S.drag = null;
  if (b[2] - b[0] >= 2 && b[3] - b[1] >= 2) S.boxes.push({ cls: boxClass(), box: b });
  refreshControls(); draw();
});

function acceptDetector() {
  const dets = (S.item?.detections || []).filter((d) => defectClasses().includes(d.cls));
  S.boxes = dets.map((d) => ({ cls: d.cls, box: d.box.slice() }));
  if (dets.length && (!S.chosen || S.chosen === "no_defect")) S.chosen = dets[0].cls;
  refreshControls(); draw();
}

async function save() {
  if (!S.item) return;
  if (!S.chosen) { banner("choose a class first (1–9, or 0 for no defect)"); return; }
  $("status-line").textContent = "saving…";
  const r = await api(`/v1/review/items/${S.item.id}/label`, { method: "POST",
    body: JSON.stringify({ label: S.chosen, boxes: S.chosen === "no_defect" ? [] : S.boxes, version: S.item.version }) });
  if (r.status === 200) {
    $("status-line").textContent = `saved: ${S.chosen} by ${r.body.labelled_by} (label ${r.body.label_id})`;
    const next = S.status === "pending" ? null : S.item.id;
    await loadList(next);
  } else if (r.status === 409) {
    const cur = r.body.current;
    showItem(cur);
    banner(`Someone else labelled this item first: ${cur.current ? cur.current.label + " by " + cur.current.labelled_by : "changed"}. ` +
           "Check it, then save again if you still disagree.");
    $("status-line").textContent = "not saved (conflict)";
  } else {
    banner(r.body?.error?.message || `not saved (HTTP ${r.status})`);
    $("status-line").textContent = "not saved";
  }
}

function banner(msg) { const b = $("banner"); b.hidden = !msg; b.textContent = msg || ""; }

document.addEventListener("keydown", (ev) => {
  if ($("app").hidden || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  const k = ev.key;
  if (/^[1-9]$/.test(k)) { const c = defectClasses()[Number(k) - 1]; if (c) choose(c); }
  else if (k === "0" || k === "n") { if (S.item?.classes.includes("no_defect")) choose("no_defect"); }
  else if (k === "a") acceptDetector();
  else if (k === "z" || k === "Backspace") { S.boxes.pop(); refreshControls(); draw(); }
  else if (k === "Enter") save();
  else if (k === "j" && S.index + 1 < S.items.length) select(S.index + 1);
  else if (k === "k" && S.index > 0) select(S.index - 1);
  else if (k === "?") $("help").showModal();
  else return;
  ev.preventDefault();
});

$("accept").onclick = acceptDetector;
$("undo").onclick = () => { S.boxes.pop(); refreshControls(); draw(); };
$("submit").onclick = save;
$("help-btn").onclick = () => $("help").showModal();
$("status").onchange = (ev) => { S.status = ev.target.value; loadList(); };
$("login").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("key").value.trim()); });
if (S.key) signIn(S.key);
