// enf edit page: latent points over the decoded image, edits sent to the server as Edit records.
// Positions: x right, y up, both in [-1, 1]; pixel (row, col) sits at x = -1 + 2 col / (W - 1),
// y = 1 - 2 row / (H - 1). The SVG overlays use a viewBox of W x H pixel units (pixel centres at +0.5).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const st = { info: null, sid: null, H: 1, W: 1, points: [], selected: new Set(), numEdits: 0, source: null };

// ------------------------------------------------------------------ requests and messages
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, opts);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : `${response.status} ${response.statusText}`;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

function setImage(img, src) {
  return new Promise((resolve) => {
    if (img.getAttribute("src") === src) { resolve(); return; }
    img.onload = () => resolve();
    img.onerror = () => resolve();
    img.src = src;
  });
}

const recent = {};  // kind -> the last 20 round trips (ms), for the median in the status line's data
function status(kind, t0, decodeMs) {
  const ms = performance.now() - t0;
  const el = $("status");
  const times = (recent[kind] = [...(recent[kind] || []), ms].slice(-20));
  const sorted = [...times].sort((a, b) => a - b);
  el.dataset[`${kind}MedianMs`] = sorted[Math.floor(sorted.length / 2)].toFixed(1);
  el.dataset.roundtripMs = ms.toFixed(1);
  el.dataset.kind = kind;
  el.dataset.numEdits = String(st.numEdits);
  el.textContent = `${kind}: round trip ${ms.toFixed(0)} ms (server decode ${decodeMs.toFixed(0)} ms) · ` +
    `${st.points.length} latents · ${st.numEdits} edit${st.numEdits === 1 ? "" : "s"}`;
}

// ------------------------------------------------------------------ coordinates
const toView = ([x, y]) => [((x + 1) * (st.W - 1)) / 2 + 0.5, ((1 - y) * (st.H - 1)) / 2 + 0.5];
const viewDelta = (dvx, dvy) => [(dvx * 2) / Math.max(st.W - 1, 1), (-dvy * 2) / Math.max(st.H - 1, 1)];
function eventView(svg, ev) {
  const r = svg.getBoundingClientRect();
  return [((ev.clientX - r.left) / r.width) * st.W, ((ev.clientY - r.top) / r.height) * st.H];
}
function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}
const radius = () => Math.max(0.45, 0.02 * Math.max(st.W, st.H));
const selectedList = (set) => [...set].sort((a, b) => a - b);
function centroid(points, indices) {
  let x = 0, y = 0;
  for (const i of indices) { x += points[i][0]; y += points[i][1]; }
  return [x / indices.length, y / indices.length];
}

// ------------------------------------------------------------------ drawing
function drawPoints(svg, points, selected, live) {
  svg.setAttribute("viewBox", `0 0 ${st.W} ${st.H}`);
  svg.querySelectorAll(".point, #selection-frame-group").forEach((e) => e.remove());
  points.forEach((p, i) => {
    const [vx, vy] = toView(p);
    const c = svgEl("circle", { cx: vx, cy: vy, r: radius(), class: "point", "data-index": i }, svg);
    if (selected.has(i)) c.classList.add("selected");
  });
  if (live) drawSelectionFrame();
}

function drawSelectionFrame() {
  const svg = $("overlay");
  svg.querySelectorAll("#selection-frame-group").forEach((e) => e.remove());
  const sel = selectedList(st.selected);
  $("selection-info").textContent = sel.length ? `${sel.length} selected` : "no points selected";
  for (const id of ["delete", "duplicate"]) $(id).disabled = !sel.length;
  $("rotate-angle").disabled = sel.length < 2;
  if (sel.length < 2) return;
  const vs = sel.map((i) => toView(st.points[i]));
  const pad = radius() * 1.6;
  const x0 = Math.min(...vs.map((v) => v[0])) - pad, x1 = Math.max(...vs.map((v) => v[0])) + pad;
  const y0 = Math.min(...vs.map((v) => v[1])) - pad, y1 = Math.max(...vs.map((v) => v[1])) + pad;
  const g = svgEl("g", { id: "selection-frame-group" }, svg);
  svgEl("rect", { id: "selection-frame", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, g);
  const hx = (x0 + x1) / 2, above = y0 - 3 * radius() > radius();  // below the box if above is off the image
  const hy = above ? y0 - 3 * radius() : y1 + 3 * radius();
  svgEl("line", { id: "rotate-stem", x1: hx, y1: above ? y0 : y1, x2: hx, y2: hy }, g);
  svgEl("circle", { id: "rotate-handle", cx: hx, cy: hy, r: radius() * 0.9 }, g);
}

function movePoints(points) {  // a preview's positions, without redrawing (a gesture holds the circles)
  points.forEach((p, i) => {
    const c = $("overlay").querySelector(`.point[data-index="${i}"]`);
    if (!c) return;
    const [vx, vy] = toView(p);
    c.setAttribute("cx", vx);
    c.setAttribute("cy", vy);
  });
}
function renderEdited() { drawPoints($("overlay"), st.points, st.selected, true); }
function renderSource() {
  if (st.source) drawPoints($("source-overlay"), st.source.points, st.source.selected, false);
  $("paste").disabled = !(st.source && st.source.selected.size);
}

function applyState(s) {
  st.sid = s.session;
  st.points = s.points;
  st.numEdits = s.num_edits;
  for (const i of [...st.selected]) if (i >= st.points.length) st.selected.delete(i);
  $("undo").disabled = !s.can_undo;
  $("redo").disabled = !s.can_redo;
  renderEdited();
}

// ------------------------------------------------------------------ previews (one in flight) and commits
let pendingEdit = null, inflight = null, generation = 0;
function preview(edit) {
  pendingEdit = edit;
  if (!inflight) inflight = pumpPreviews();
}
async function pumpPreviews() {
  try {
    while (pendingEdit && st.sid) {
      const edit = pendingEdit, gen = generation, t0 = performance.now();
      pendingEdit = null;
      const r = await api("POST", `/api/sessions/${st.sid}/preview`, edit);
      if (gen !== generation) continue;
      await setImage($("edited"), r.decoded);
      if (gen === generation) movePoints(r.points);
      status("preview", t0, r.decode_ms);
    }
  } catch (err) { showError(err.message); } finally { inflight = null; }
}
async function settle() {
  pendingEdit = null;
  generation += 1;
  if (inflight) await inflight;
}
async function run(kind, path, body) {
  await settle();
  const t0 = performance.now();
  try {
    const s = await api("POST", path, body);
    clearError();
    await setImage($("edited"), s.decoded);
    applyState(s);
    status(kind, t0, s.decode_ms);
    return s;
  } catch (err) {
    showError(err.message);
    renderEdited();  // put the points back where the server has them
    return null;
  }
}
const commit = (edit) => run("edit", `/api/sessions/${st.sid}/edits`, edit);

// ------------------------------------------------------------------ sessions and sources
function enableSession() {
  for (const id of ["source-open", "source-upload"]) $(id).disabled = false;
  const base = `/api/sessions/${st.sid}`;
  const links = { "download-png": `${base}/image.png?scale=8`, "download-latents": `${base}/latents?format=h5`,
    "download-npz": `${base}/latents?format=npz`, "download-edits": `${base}/edits.json` };
  for (const [id, href] of Object.entries(links)) { $(id).href = href; $(id).classList.remove("disabled"); }
}
async function openSession(path, body) {
  await settle();
  const t0 = performance.now();
  try {
    const s = await api("POST", path, body);
    clearError();
    st.selected.clear();
    st.source = null;
    $("source-overlay").replaceChildren();
    $("source-image").removeAttribute("src");
    await Promise.all([setImage($("original"), s.original), setImage($("reconstruction"), s.reconstruction),
      setImage($("edited"), s.decoded)]);
    applyState(s);
    enableSession();
    status("open", t0, s.decode_ms);
  } catch (err) { showError(err.message); }
}
async function loadSource(path, body) {
  try {
    const r = await api("POST", path, body);
    clearError();
    st.source = { key: r.source, points: r.points, selected: new Set() };
    await setImage($("source-image"), r.decoded);
    $("source-info").textContent = `${r.num_latents} latents`;
    renderSource();
  } catch (err) { showError(err.message); }
}
function uploadForm(input) {
  const file = input.files && input.files[0];
  input.value = "";
  if (!file) return null;
  if (st.info && file.size > st.info.max_upload_bytes) {
    showError(`the upload is larger than the limit of ${st.info.max_upload_bytes} bytes; choose a smaller image`);
    return null;
  }
  const form = new FormData();
  form.append("file", file);
  return form;
}
const readIndex = (id) => { const v = $(id).value.trim(); return /^-?\d+$/.test(v) ? Number(v) : v; };

// ------------------------------------------------------------------ pointer gestures on the edited image
function track(svg, ev, move, up) {  // follow one pointer until it is released or cancelled
  svg.setPointerCapture(ev.pointerId);
  const end = (e) => {
    svg.removeEventListener("pointermove", move);
    svg.removeEventListener("pointerup", end);
    svg.removeEventListener("pointercancel", end);
    up(e);
  };
  svg.addEventListener("pointermove", move);
  svg.addEventListener("pointerup", end);
  svg.addEventListener("pointercancel", end);
}
function boxGesture(svg, ev, boxId, points, selected, onDone) {
  const start = eventView(svg, ev);
  const box = svgEl("rect", { id: boxId, x: start[0], y: start[1], width: 0, height: 0 }, svg);
  const move = (e) => {
    const p = eventView(svg, e);
    box.setAttribute("x", Math.min(p[0], start[0])); box.setAttribute("y", Math.min(p[1], start[1]));
    box.setAttribute("width", Math.abs(p[0] - start[0])); box.setAttribute("height", Math.abs(p[1] - start[1]));
  };
  const up = (e) => {
    const p = eventView(svg, e);
    box.remove();
    const [x0, x1] = [Math.min(p[0], start[0]), Math.max(p[0], start[0])];
    const [y0, y1] = [Math.min(p[1], start[1]), Math.max(p[1], start[1])];
    if (!ev.shiftKey) selected.clear();
    if (x1 - x0 > 0.2 || y1 - y0 > 0.2) {
      points.forEach((q, i) => {
        const [vx, vy] = toView(q);
        if (vx >= x0 && vx <= x1 && vy >= y0 && vy <= y1) selected.add(i);
      });
    }
    onDone();
  };
  track(svg, ev, move, up);
}

function dragPoints(svg, ev, index) {
  if (!st.selected.has(index)) { st.selected.clear(); st.selected.add(index); renderEdited(); }
  const sel = selectedList(st.selected);
  const start = eventView(svg, ev);
  const circles = sel.map((i) => svg.querySelector(`.point[data-index="${i}"]`));
  const origin = sel.map((i) => toView(st.points[i]));
  let offset = [0, 0];
  circles.forEach((c) => c.classList.add("dragging"));
  const move = (e) => {
    const p = eventView(svg, e);
    const dv = [p[0] - start[0], p[1] - start[1]];
    circles.forEach((c, k) => { c.setAttribute("cx", origin[k][0] + dv[0]); c.setAttribute("cy", origin[k][1] + dv[1]); });
    offset = viewDelta(dv[0], dv[1]);
    preview({ op: "translate", offset, select: sel });
  };
  const up = () => {
    if (offset[0] !== 0 || offset[1] !== 0) commit({ op: "translate", offset, select: sel });
    else { settle(); renderEdited(); }
  };
  track(svg, ev, move, up);
}

function rotateGesture(svg, ev) {
  const sel = selectedList(st.selected);
  const center = centroid(st.points, sel);
  const [cvx, cvy] = toView(center);
  const angleAt = (e) => { const p = eventView(svg, e); return Math.atan2(-(p[1] - cvy), p[0] - cvx); };
  const a0 = angleAt(ev);
  const group = $("selection-frame-group");
  let angle = 0;
  const move = (e) => {
    angle = angleAt(e) - a0;
    angle = Math.atan2(Math.sin(angle), Math.cos(angle));
    if (group) group.setAttribute("transform", `rotate(${(-angle * 180) / Math.PI} ${cvx} ${cvy})`);
    preview({ op: "rotate", angle, center, select: sel });
  };
  const up = () => {
    if (angle !== 0) commit({ op: "rotate", angle, center, select: sel });
    else renderEdited();
  };
  track(svg, ev, move, up);
}

function onOverlayDown(ev) {
  if (!st.sid || ev.button !== 0) return;
  ev.preventDefault();
  const svg = $("overlay"), target = ev.target;
  if (target.id === "rotate-handle") { rotateGesture(svg, ev); return; }
  if (target.classList.contains("point")) {
    const i = Number(target.dataset.index);
    if (ev.shiftKey) { st.selected.has(i) ? st.selected.delete(i) : st.selected.add(i); renderEdited(); return; }
    dragPoints(svg, ev, i);
    return;
  }
  boxGesture(svg, ev, "select-box", st.points, st.selected, renderEdited);
}

function onSourceDown(ev) {
  if (!st.source || ev.button !== 0) return;
  ev.preventDefault();
  const svg = $("source-overlay"), target = ev.target, sel = st.source.selected;
  if (target.classList.contains("point")) {
    const i = Number(target.dataset.index);
    sel.has(i) ? sel.delete(i) : sel.add(i);
    renderSource();
    return;
  }
  boxGesture(svg, ev, "source-select-box", st.source.points, sel, renderSource);
}

// ------------------------------------------------------------------ buttons and keys
function rotateSlider(final) {
  const deg = Number($("rotate-angle").value);
  $("rotate-value").textContent = `${deg}°`;
  const sel = selectedList(st.selected);
  if (sel.length < 2) return;
  const edit = { op: "rotate", angle: (deg * Math.PI) / 180, center: centroid(st.points, sel), select: sel };
  if (!final) { preview(edit); return; }
  $("rotate-angle").value = "0";
  $("rotate-value").textContent = "0°";
  if (deg !== 0) commit(edit);
}

async function structural(edit, newFrom) {
  const before = st.points.length;
  const s = await commit(edit);
  if (!s) return;
  st.selected.clear();
  if (newFrom) for (let i = before; i < s.points.length; i++) st.selected.add(i);
  renderEdited();
}

function wire() {
  $("open").addEventListener("click", () =>
    openSession("/api/sessions", { split: $("split").value, index: readIndex("index") }));
  $("upload").addEventListener("change", () => { const f = uploadForm($("upload")); if (f) openSession("/api/sessions/upload", f); });
  $("source-open").addEventListener("click", () =>
    loadSource(`/api/sessions/${st.sid}/source`, { split: $("source-split").value, index: readIndex("source-index") }));
  $("source-upload").addEventListener("change", () => {
    const f = uploadForm($("source-upload"));
    if (f) loadSource(`/api/sessions/${st.sid}/source/upload`, f);
  });
  $("undo").addEventListener("click", () => run("undo", `/api/sessions/${st.sid}/undo`));
  $("redo").addEventListener("click", () => run("redo", `/api/sessions/${st.sid}/redo`));
  $("select-all").addEventListener("click", () => { st.points.forEach((_, i) => st.selected.add(i)); renderEdited(); });
  $("clear-selection").addEventListener("click", () => { st.selected.clear(); renderEdited(); });
  $("delete").addEventListener("click", () => structural({ op: "delete", select: selectedList(st.selected) }, false));
  $("duplicate").addEventListener("click", () => {
    const offset = viewDelta(1.5 * radius(), 1.5 * radius());
    structural({ op: "duplicate", select: selectedList(st.selected), offset }, true);
  });
  $("paste").addEventListener("click", () => {
    if (!st.source) return;
    structural({ op: "paste", source: st.source.key, select: selectedList(st.source.selected) }, true);
  });
  $("rotate-angle").addEventListener("input", () => rotateSlider(false));
  $("rotate-angle").addEventListener("change", () => rotateSlider(true));
  $("overlay").addEventListener("pointerdown", onOverlayDown);
  $("source-overlay").addEventListener("pointerdown", onSourceDown);
  document.addEventListener("keydown", (ev) => {
    if (!st.sid || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    const key = ev.key.toLowerCase();
    if ((key === "delete" || key === "backspace") && st.selected.size) { ev.preventDefault(); $("delete").click(); }
    if (!(ev.ctrlKey || ev.metaKey)) return;
    if (key === "z" && !ev.shiftKey && !$("undo").disabled) { ev.preventDefault(); $("undo").click(); }
    if ((key === "y" || (key === "z" && ev.shiftKey)) && !$("redo").disabled) { ev.preventDefault(); $("redo").click(); }
  });
}

async function start() {
  wire();
  try {
    st.info = await api("GET", "/api/info");
  } catch (err) { showError(`cannot reach the server: ${err.message}`); return; }
  const info = st.info;
  [st.H, st.W] = info.image_shape;
  document.querySelectorAll(".frame").forEach((f) => { f.style.height = `${(f.clientWidth * st.H) / st.W}px`; });
  const sizes = info.dataset_size;
  $("model-info").textContent = `${info.dataset} · ${info.geometry} · ${info.image_shape.join("x")} · ` +
    `${info.num_latents} latents · ${sizes.test} test / ${sizes.train} train images`;
  for (const id of ["index", "source-index"]) $(id).max = Math.max(sizes.test, sizes.train) - 1;
  if (sizes.test > 0) await openSession("/api/sessions", { split: "test", index: 0 });
  else if (sizes.train > 0) { $("split").value = "train"; await openSession("/api/sessions", { split: "train", index: 0 }); }
  else $("status").textContent = "no dataset loaded: upload an image";
}

document.addEventListener("DOMContentLoaded", start);
