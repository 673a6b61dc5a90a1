// dflab web UI over the JSON API (dflab/serve/app.py, dflab/serve/views_api.py):
// drop or choose files → one job each → progress while it runs → the result of the job you pick.
// The session's jobs are kept in sessionStorage (ids and the names you gave them; the server never sees a name).
// No inline script or style anywhere: this file and style.css are all the page runs.
"use strict";
const $ = (id) => document.getElementById(id);
const STORE = "dflab.jobs";
const FINAL = ["done", "error"];
const jobs = loadJobs(); // [{id?, name, status, progress, message, verdict, error}]
let shown = null; // id of the job whose result is on screen

// "30 face(s), 8 scored (at most 8 per track, evenly spaced)" (dflab.scan.views.faces_phrase)
function facesPhrase(n, scored, perTrack) {
  if (scored === undefined || scored === null || scored === n) return `${n} face(s)`;
  return `${n} face(s), ${scored} scored` + (perTrack ? ` (at most ${perTrack} per track, evenly spaced)` : "");
}

function loadJobs() {
  try { return JSON.parse(sessionStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
}
function saveJobs() {
  sessionStorage.setItem(STORE, JSON.stringify(jobs.filter((j) => j.id).slice(-50)));
}
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
function badge(verdict) { return el("span", { class: `badge ${verdict}`, textContent: verdict.replace("_", " ") }); }
function fmtCi(ci) { return ci ? `[${ci[0].toFixed(3)}, ${ci[1].toFixed(3)}]` : "–"; }
function fail(text) { $("error").textContent = text; $("error").hidden = !text; }

// ---------------------------------------------------------------------------------------------------------------
// the session's jobs

function renderJobs() {
  $("jobs-box").hidden = jobs.length === 0;
  $("jobs").replaceChildren(...jobs.slice().reverse().map((j) => {
    const state = j.verdict || j.status;
    const idle = FINAL.includes(j.status) || j.status === "refused";
    const bar = el("progress", { max: 1, value: j.progress || 0, class: idle ? "idle" : "" });
    const open = el("button", { type: "button", textContent: "show", className: "show" });
    open.disabled = !j.id || !FINAL.includes(j.status);
    open.addEventListener("click", () => showJob(j.id));
    const li = el("li", { class: j.id === shown ? "selected" : "" },
      el("span", { class: "name", textContent: j.name, title: j.name }), badge(state), bar,
      el("span", { class: "msg", textContent: j.message || "" }), open);
    li.dataset.id = j.id || "";
    li.dataset.status = j.status;
    return li;
  }));
}

async function submitOne(job, file, attempt = 0) {
  const body = new FormData();
  body.append("file", file);
  job.status = "uploading";
  job.message = "uploading";
  renderJobs();
  let res;
  try {
    res = await fetch("/api/jobs", { method: "POST", body });
  } catch (e) {
    Object.assign(job, { status: "refused", message: `upload failed: ${e}` });
    return renderJobs();
  }
  const data = await res.json().catch(() => ({}));
  if (res.status === 503 && attempt < 5) {
    const wait = Number(res.headers.get("Retry-After") || 5);
    Object.assign(job, { status: "queued", message: `server busy, retrying in ${wait} s` });
    renderJobs();
    await new Promise((ok) => setTimeout(ok, wait * 1000));
    return submitOne(job, file, attempt + 1);
  }
  if (!res.ok) {
    const err = data.error || {};
    Object.assign(job, { status: "refused", message: `${err.cause || res.status}: ${err.detail || ""}` });
    return renderJobs();
  }
  Object.assign(job, { id: data.id, status: "queued", message: "queued", progress: 0 });
  saveJobs();
  renderJobs();
}

async function submitFiles(files) {
  fail("");
  const list = Array.from(files).filter((f) => f.size > 0 || f.name);
  const entries = list.map((f) => ({ name: f.name, status: "uploading", progress: 0 }));
  jobs.push(...entries);
  renderJobs();
  // one upload at a time: the server admits a bounded number of jobs and answers 503 beyond it
  for (let i = 0; i < list.length; i += 1) await submitOne(entries[i], list[i]);
}

async function pollOnce() {
  const active = jobs.filter((j) => j.id && !FINAL.includes(j.status));
  for (const j of active) {
    const res = await fetch(`/api/jobs/${j.id}`).catch(() => null);
    if (!res) continue;
    if (res.status === 404) { Object.assign(j, { status: "error", message: "unknown to the server" }); continue; }
    const job = await res.json();
    j.status = job.status;
    j.progress = job.progress || 0;
    j.message = job.message || "";
    if (job.status === "done") j.verdict = (job.result || {}).verdict;
    if (job.status === "error") { j.verdict = "error"; j.message = ((job.error || {}).cause) || "error"; }
    if (FINAL.includes(job.status) && shown === null) showJob(j.id);
  }
  if (active.length) { saveJobs(); renderJobs(); }
}

async function pollLoop() {
  for (;;) {
    await pollOnce();
    await new Promise((ok) => setTimeout(ok, 400));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// one job's result

function trackCard(t, base, artifacts, kind) {
  const name = `track${t.track_id}`;
  const img = artifacts.includes(name)
    ? el("img", { src: base + name, alt: `face ${t.track_id}` })
    : el("div", { class: "nothumb" });
  const span = kind === "image" ? "still image"
    : (t.start_s === null ? `frames ${t.first_frame}–${t.last_frame}`
      : `${t.start_s.toFixed(1)}–${t.end_s.toFixed(1)} s (frames ${t.first_frame}–${t.last_frame})`);
  const info = el("div", {},
    el("b", { textContent: `face ${t.track_id}` }), t.decisive ? " (decides the file) " : " ", badge(t.verdict),
    el("br"), `P(fake) ${t.score.toFixed(3)}, 95% interval ${fmtCi(t.ci)}`,
    el("br"), `${span}, ${facesPhrase(t.n_faces, t.n_scored)}`,
    t.reason ? el("p", { class: "reason", textContent: t.reason }) : null);
  return el("div", { class: "track" }, img, info);
}

function keyFigure(k, base, artifacts, kind) {
  const idx = String(k.frame_index).padStart(6, "0");
  const stage = el("div", { class: "stage" }, el("img", { src: `${base}key${idx}`, alt: `frame ${k.frame_index}` }));
  if (artifacts.includes(`heat${idx}`)) {
    stage.append(el("img", { src: `${base}heat${idx}`, alt: "heatmap", class: "heat" }));
  }
  const when = kind === "video" && k.time_s !== null ? `${k.time_s.toFixed(2)} s, ` : "";
  return el("figure", {}, stage,
    el("figcaption", { textContent: `frame ${k.frame_index} (${when}P(fake) ${k.score.toFixed(3)})` }));
}

async function showJob(id) {
  const [jobRes, viewRes] = await Promise.all([fetch(`/api/jobs/${id}`), fetch(`/api/jobs/${id}/view`)]);
  if (!jobRes.ok || !viewRes.ok) return fail(`job ${id}: not available (HTTP ${jobRes.status}/${viewRes.status})`);
  const job = await jobRes.json();
  const v = await viewRes.json();
  const r = job.result || {};
  const entry = jobs.find((j) => j.id === id);
  shown = id;
  renderJobs();
  $("result-name").textContent = entry ? entry.name : id;
  $("verdict").replaceWith(Object.assign(badge(v.verdict || job.status), { id: "verdict" }));
  if (r.status === "ok") {
    const rule = r.band
      ? `real below ${r.band[0].toFixed(2)}, fake at or above ${r.band[1].toFixed(2)}`
      : `threshold ${v.threshold.toFixed(2)} ± ${(v.margin || 0).toFixed(2)}`;
    $("score-line").textContent = `P(fake) ${r.score.toFixed(3)}, 95% interval ${fmtCi(r.ci)}, ${rule}; `
      + `${facesPhrase(r.n_faces, r.n_scored, r.faces_per_track)} in ${r.n_sampled} sampled `
      + `frame(s); ${r.tracks.length} track(s); detector(s): ${r.detectors.join(", ")}.`;
  } else {
    $("score-line").textContent = "";
  }
  $("reason").textContent = v.reason || "";
  $("reason").hidden = !v.reason;
  $("evidence").textContent = v.evidence || "";
  $("evidence").hidden = !v.evidence;
  for (const fmt of ["json", "csv", "html"]) {
    $(`dl-${fmt}`).href = `/api/jobs/${id}/report.${fmt}`;
    $(`dl-${fmt}`).download = `${(entry ? entry.name : id).replace(/[^\w.-]+/g, "_")}.dflab.${fmt}`;
  }
  const base = `/api/jobs/${id}/artifacts/`;
  const arts = v.artifacts || [];
  $("timeline-box").hidden = !arts.includes("timeline");
  if (arts.includes("timeline")) $("timeline").src = base + "timeline";
  $("tracks").replaceChildren(...(v.tracks || []).map((t) => trackCard(t, base, arts, v.kind)));
  $("tracks-box").hidden = !(v.tracks || []).length;
  const keys = (v.key_frames || []).filter((k) => arts.includes(`key${String(k.frame_index).padStart(6, "0")}`));
  $("keys").replaceChildren(...keys.map((k) => keyFigure(k, base, arts, v.kind)));
  $("keys-box").hidden = keys.length === 0;
  const overlays = arts.filter((a) => a.startsWith("frame"));
  $("overlays").replaceChildren(...overlays.map((a) => el("img", { src: base + a, alt: a })));
  $("overlays-box").hidden = overlays.length === 0 || (keys.length > 0 && v.kind === "image");
  $("json").textContent = JSON.stringify(r, null, 2);
  $("result").hidden = false;
}

// ---------------------------------------------------------------------------------------------------------------
// wiring

$("upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if ($("file").files.length) submitFiles($("file").files).then(() => { $("upload-form").reset(); });
});
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (ev) => {
  if (ev.dataTransfer && ev.dataTransfer.files.length) submitFiles(ev.dataTransfer.files);
});
$("heat-toggle").addEventListener("change", () => $("keys").classList.toggle("noheat", !$("heat-toggle").checked));

fetch("/api/detector").then((r) => r.json()).then((d) => {
  $("detector").textContent = `detector: ${d.detectors.join(", ")}${d.calibration ? ` — calibration: ${d.calibration}` : ""}`;
  $("card-name").textContent = d.name;
  $("has-seen").replaceChildren(...d.has_seen.map((s) => el("li", { textContent: s })));
  $("has-not-seen").replaceChildren(...d.has_not_seen.map((s) => el("li", { textContent: s })));
  $("card").hidden = !(d.has_seen.length || d.has_not_seen.length);
}).catch(() => {});

renderJobs();
pollLoop();
