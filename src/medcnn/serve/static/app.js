// medcnn workbench: upload an image, show the model's answer on it. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], result: null, image: null, mask: null, heat: null, restored: null };
const TYPES = { float32: Float32Array, uint8: Uint8Array };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== "") e.textContent = text;
  return e;
}

async function loadModels() {
  const r = await fetch("/v1/models");
  state.models = await r.json();
  const sel = $("model");
  sel.replaceChildren(...state.models.map((m) => el("option", { value: m.name }, `${m.name} (${m.task})`)));
  showCard();
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value) || state.models[0];
}

function showCard() {
  const m = currentModel();
  if (!m) return;
  const c = m.card;
  $("model-info").textContent = `${c.task} · ${c.dimensions} · ${c.classes.join(", ") || c.degradation?.kind || ""}`;
  const rows = [["task", c.intended_use], ["network", c.network], ["input", `${c.input.size.join("×")}, ${c.input.channels} channel(s)`],
    ["training data", c.training_data], ["cases", c.cases ? Object.entries(c.cases).map(([k, v]) => `${k} ${v}`).join(", ") : ""],
    ["validation", Object.entries(c.validation).map(([k, v]) => `${k} ${v}`).join(", ")],
    ["test", Object.entries(c.test).map(([k, v]) => `${k} ${v}`).join(", ")], ["trained", c.trained], ["caveat", c.caveat]];
  $("card-body").replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

async function fetchView(v) {
  if (!v) return null;
  const r = await fetch(v.url);
  if (!r.ok) throw new Error(`could not load ${v.url} (${r.status})`);
  const data = new TYPES[v.dtype](await r.arrayBuffer());
  return { ...v, data };
}

async function upload(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  await predictWith("/v1/predict", form, file.name);
}

async function predictWith(url, form, what) {
  document.body.dataset.state = "busy";
  setStatus(`predicting ${what} …`);
  let r, body;
  try {
    r = await fetch(url, { method: "POST", body: form });
    body = await r.json();
  } catch (e) {
    setStatus(`request failed: ${e}`, true);
    document.body.dataset.state = "error";
    return;
  }
  if (!r.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    setStatus(`error ${r.status}: ${detail}`, true);
    document.body.dataset.state = "error";
    return;
  }
  state.result = body;
  [state.image, state.mask, state.heat, state.restored] = await Promise.all(
    ["image", "mask", "heat", "restored"].map((k) => fetchView(body.views[k])));
  setupControls();
  showResult();
  draw();
  setStatus(`${body.file} (${body.type}, ${body.input.dimensions} ${body.input.shape.join("×")}) — ${body.seconds} s`);
  document.body.dataset.state = "done";
}

// ---- display ------------------------------------------------------------------------------
function setupControls() {
  const im = state.image;
  const [lo, hi] = im.range;
  for (const id of ["window", "level"]) $(id).disabled = false;
  $("window").min = Math.max((hi - lo) / 1000, 1e-6); $("window").max = Math.max(2 * (hi - lo), 1e-6);
  $("level").min = lo; $("level").max = hi;
  autoWindow();
  const depth = im.shape[0];
  $("slice-control").hidden = depth < 2;
  $("slice").max = depth - 1;
  $("slice").value = defaultSlice();
  const overlay = state.mask ? "segmentation" : state.heat ? "Grad-CAM heat-map" : null;
  $("overlay-control").hidden = $("opacity-control").hidden = !overlay;
  $("overlay-name").textContent = overlay || "overlay";
  $("split-control").hidden = !state.restored;
  $("split-line").hidden = !state.restored;
  $("stage").hidden = $("controls").hidden = false;
}

function autoWindow() {
  const [a, b] = state.image.window;
  $("window").value = b - a;
  $("level").value = (a + b) / 2;
}

function defaultSlice() {
  const d = state.image.shape[0];
  if (!state.mask || d < 2) return Math.floor(d / 2);
  const [, h, w] = state.mask.shape;
  let best = Math.floor(d / 2), most = 0;
  for (let k = 0; k < d; k++) {
    let n = 0;
    const s = state.mask.data.subarray(k * h * w, (k + 1) * h * w);
    for (let i = 0; i < s.length; i++) if (s[i]) n++;
    if (n > most) { most = n; best = k; }
  }
  return best;
}

function greyInto(px, view, k, x0, x1) {
  const [, h, w, c] = view.shape;
  const width = +$("window").value, level = +$("level").value;
  const lo = level - width / 2, scale = 255 / Math.max(width, 1e-12);
  const base = k * h * w * c;
  for (let y = 0; y < h; y++) {
    for (let x = x0; x < x1; x++) {
      const i = base + (y * w + x) * c, o = (y * w + x) * 4;
      for (let ch = 0; ch < 3; ch++) px[o + ch] = (view.data[i + (c === 3 ? ch : 0)] - lo) * scale;
      px[o + 3] = 255;
    }
  }
}

function jet(t) {  // t in [0, 1] -> [r, g, b]
  const f = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - x)));
  return [255 * f(3), 255 * f(2), 255 * f(1)];
}

function draw() {
  const im = state.image;
  if (!im) return;
  const [, h, w] = im.shape;
  const k = +$("slice").value;
  $("slice-label").textContent = `${k * im.slice_step + 1} / ${state.result.input.shape[2] || 1}`;
  for (const id of ["view", "overlay"]) { $(id).width = w; $(id).height = h; }
  sizeStage(w, h);
  const ctx = $("view").getContext("2d");
  const img = ctx.createImageData(w, h);
  if (state.restored) {  // before | after, split where the slider is
    const cut = Math.round(+$("split").value * w);
    greyInto(img.data, im, k, 0, cut);
    greyInto(img.data, state.restored, k, cut, w);
    $("split-line").style.left = `${(cut / w) * 100}%`;
  } else {
    greyInto(img.data, im, k, 0, w);
  }
  ctx.putImageData(img, 0, 0);
  drawOverlay(k, w, h);
}

function drawOverlay(k, w, h) {
  const ctx = $("overlay").getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!$("show-overlay").checked) return;
  const alpha = Math.round(255 * +$("opacity").value);
  if (state.mask) {
    const colours = Object.fromEntries(state.mask.labels.map((l) => [l.value, l.colour]));
    const img = ctx.createImageData(w, h);
    const s = state.mask.data.subarray(k * h * w, (k + 1) * h * w);
    for (let i = 0; i < s.length; i++) {
      const c = colours[s[i]];
      if (!c) continue;
      img.data.set([c[0], c[1], c[2], alpha], i * 4);
    }
    ctx.putImageData(img, 0, 0);
  } else if (state.heat) {  // the map lies on the network's input grid: scaled over the whole image
    const [d, hh, hw] = state.heat.shape;
    const depth = state.result.input.dimensions === "3D" ? state.result.input.shape[2] : 1;
    const kh = Math.min(d - 1, Math.floor(((k * state.image.slice_step + 0.5) / depth) * d));
    const small = new OffscreenCanvas(hw, hh);
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(hw, hh);
    const s = state.heat.data.subarray(kh * hh * hw, (kh + 1) * hh * hw);
    for (let i = 0; i < s.length; i++) {
      const t = s[i] / 255;
      img.data.set([...jet(t), alpha * Math.min(1, 0.25 + t)], i * 4);
    }
    sctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, w, h);
  }
}

function sizeStage(w, h) {  // fit 600 px wide, keeping the physical aspect (pixel spacing)
  const sp = state.result.input.spacing_mm;
  const [sy, sx] = state.result.input.dimensions === "3D" ? [sp[1], sp[0]] : [sp[0], sp[1]];
  const aspect = (h * (sy || 1)) / (w * (sx || 1));
  const cw = Math.min(600, Math.max(256, w * 4));
  for (const id of ["view", "overlay"]) { $(id).style.width = `${cw}px`; $(id).style.height = `${cw * aspect}px`; }
}

// ---- result panel ---------------------------------------------------------------------------
function showResult() {
  const r = state.result, res = r.result;
  const details = $("details");
  details.replaceChildren();
  $("measurements").hidden = true;
  if (r.task === "classify" && res.findings) {  // a PACS study: one finding per image, read back from the stored report
    $("prediction").textContent = Object.entries(res.counts).map(([k, n]) => `${k}: ${n}`).join(" · ");
    const shown = res.findings.slice(0, 20);
    $("measurements").querySelector("thead").replaceChildren(row(["image", "finding", "probability"], "th"));
    $("measurements").querySelector("tbody").replaceChildren(...shown.map((f, i) =>
      row([String(i + 1), f.prediction, f.probability === null ? "–" : f.probability.toFixed(3)])));
    $("measurements").hidden = false;
    if (res.findings.length > shown.length) details.append(el("p", {}, `first ${shown.length} of ${res.findings.length} images`));
  } else if (r.task === "classify") {
    const p = res.prediction ?? (res.labels || []).join(", ");
    $("prediction").textContent = res.confidence !== undefined && !res.abstained && !res.refused ? `${p} (p = ${res.confidence.toFixed(3)})` : p;
    if (res.domain && res.domain.verdict !== "in-domain") {
      // the model says when an input is unlike its training data (medcnn.infer.domain)
      const warn = el("p", { class: "domain-warning", id: "domain-warning" },
        `${res.domain.verdict === "foreign" ? "Not like the training data" : "Unusual input"}: ${res.domain.reasons.join("; ")}`);
      details.append(warn);
    }
    for (const [name, v] of Object.entries(res.probabilities)) {
      const bar = el("div", { class: "bar" });
      const track = el("div", { class: "track" });
      const fill = el("div");
      fill.style.width = `${(100 * v).toFixed(1)}%`;
      track.append(fill);
      bar.append(el("span", {}, name), track, el("span", { class: "num" }, v.toFixed(3)));
      details.append(bar);
    }
    details.append(el("p", {}, res.calibrated ? "probabilities calibrated on validation (temperature scaling)" : "probabilities not calibrated"));
  } else if (r.task === "segment") {
    $("prediction").textContent = res.labels.map((l) => `${l.name} ${l.size_mm.toFixed(0)} ${res.unit}`).join(" · ");
    const colours = Object.fromEntries(state.mask.labels.map((l) => [l.name, l.colour]));
    $("measurements").querySelector("thead").replaceChildren(row(["structure", `size (${res.unit})`, "components", "largest: centroid (RAS mm)"], "th"));
    $("measurements").querySelector("tbody").replaceChildren(...res.labels.map((l) => {
      const tr = row(["", l.size_mm.toFixed(1), String(l.n_components),
        l.components.length ? l.components[0].centroid_ras_mm.map((v) => v.toFixed(1)).join(", ") : "–"]);
      const sw = el("span", { class: "swatch" });
      sw.style.background = `rgb(${(colours[l.name] || [0, 0, 0]).join(",")})`;
      tr.firstChild.append(sw, l.name);
      return tr;
    }));
    $("measurements").hidden = false;
  } else {
    $("prediction").textContent = `${res.what}`;
    details.append(el("p", {}, `mean |change| ${res.mean_abs_change}, 99th percentile ${res.p99_abs_change} (input units). ` +
      "Drag the before | after slider to compare."));
  }
  const stored = r.stored || [];
  $("stored-title").hidden = !stored.length;
  $("stored").replaceChildren(...stored.map((s) => {
    const li = el("li", {}, `${s.modality}, ${s.instances} instance${s.instances > 1 ? "s" : ""}: series `);
    li.append(el("a", { href: s.url, title: s.series }, `…${s.series.slice(-16)}`));
    return li;
  }));
  $("downloads-title").hidden = !r.downloads.length;
  $("downloads").replaceChildren(...r.downloads.map((d) => {
    const li = el("li");
    li.append(el("a", { href: `${d.url}?download=true`, download: d.file }, d.file));
    return li;
  }));
}

function row(cells, tag = "td") {
  const tr = el("tr");
  cells.forEach((c, i) => tr.append(el(tag, i > 0 && tag === "td" ? { class: "num" } : {}, c)));
  return tr;
}

// ---- PACS (medcnn serve --dicomweb URL) --------------------------------------------------------
async function setupPacs() {
  const info = await (await fetch("/v1/pacs")).json();
  if (!info.enabled) return;
  $("pacs").hidden = false;
  $("pacs-url").textContent = info.url;
}

async function searchStudies(e) {
  if (e) e.preventDefault();
  setStatus("searching the PACS …");
  const r = await fetch(`/v1/pacs/studies?query=${encodeURIComponent($("pacs-query").value)}`);
  const body = await r.json();
  if (!r.ok) { setStatus(`error ${r.status}: ${body.detail}`, true); return; }
  $("pacs-studies").querySelector("tbody").replaceChildren(...body.map((s) => {
    const tr = row([s.date, s.description, s.modalities.join(", "), String(s.series ?? "")]);
    const go = el("button", { type: "button", title: s.study }, "predict & store");
    go.addEventListener("click", () => predictStudy(s.study));
    const td = el("td");
    td.append(go);
    tr.append(td);
    return tr;
  }));
  $("pacs-studies").hidden = false;
  setStatus(`${body.length} studies`);
}

async function predictStudy(study) {
  const form = new FormData();
  form.append("study", study);
  form.append("model", $("model").value);
  await predictWith("/v1/pacs/predict", form, `study ${study}`);
}

// ---- wiring ---------------------------------------------------------------------------------
$("file").addEventListener("change", (e) => upload(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files[0]); });
for (const id of ["window", "level", "slice", "show-overlay", "opacity", "split"]) $(id).addEventListener("input", draw);
$("auto-wl").addEventListener("click", () => { autoWindow(); draw(); });
$("model").addEventListener("change", showCard);
$("pacs-search").addEventListener("submit", searchStudies);
loadModels().catch((e) => setStatus(`cannot list models: ${e}`, true));
setupPacs().catch((e) => setStatus(`cannot reach the PACS panel: ${e}`, true));
