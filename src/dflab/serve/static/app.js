// dflab web UI: submit → job id → poll → result, over the JSON API (see dflab/serve/app.py).
"use strict";
const $ = (id) => document.getElementById(id);

function show(id, on) { $(id).hidden = !on; }

function fail(text) {
  $("error").textContent = text;
  show("error", true);
  show("status-box", false);
  $("submit").disabled = false;
}

function render(job) {
  const r = job.result || {};
  $("verdict").textContent = r.verdict || job.status;
  $("verdict").className = "badge " + (r.verdict || job.status);
  if (r.status === "ok") {
    const ci = r.ci ? ` (95% interval ${r.ci[0].toFixed(3)}–${r.ci[1].toFixed(3)})` : "";
    $("score-line").textContent =
      `P(fake) ${r.score.toFixed(3)}${ci}; ${r.n_faces} face(s) in ${r.n_sampled} sampled frame(s); threshold ${r.threshold}.`;
  } else if (r.status === "no_face") {
    $("score-line").textContent = `No face found in ${r.n_sampled} sampled frame(s).`;
  } else {
    const e = job.error || r.error || {};
    $("score-line").textContent = `Could not scan: ${e.cause || "error"} — ${e.detail || ""}`;
  }
  const base = `/api/jobs/${job.id}/artifacts/`;
  $("timeline").hidden = !job.artifacts.includes("timeline");
  if (!$("timeline").hidden) $("timeline").src = base + "timeline";
  $("overlays").replaceChildren(...job.artifacts.filter((a) => a.startsWith("frame")).map((a) => {
    const img = document.createElement("img");
    img.src = base + a;
    img.alt = a;
    return img;
  }));
  $("json").textContent = JSON.stringify(r, null, 2);
  show("result", true);
  show("status-box", false);
  $("submit").disabled = false;
}

async function poll(id) {
  for (;;) {
    const res = await fetch(`/api/jobs/${id}`);
    const job = await res.json();
    if (!res.ok) return fail(job.error ? job.error.detail : `HTTP ${res.status}`);
    $("progress").value = job.progress || 0;
    $("message").textContent = `${job.status}: ${job.message || ""}`;
    if (job.status === "done" || job.status === "error") return render(job);
    await new Promise((ok) => setTimeout(ok, 400));
  }
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  show("result", false);
  show("error", false);
  show("status-box", true);
  $("submit").disabled = true;
  $("progress").value = 0;
  $("message").textContent = "uploading";
  const body = new FormData();
  body.append("file", file);
  const res = await fetch("/api/jobs", { method: "POST", body });
  const data = await res.json();
  if (res.status === 503) {
    return fail(`The server is busy; retry in ${res.headers.get("Retry-After") || "a few"} s.`);
  }
  if (!res.ok) return fail(`Rejected: ${data.error.cause} — ${data.error.detail}`);
  poll(data.id);
});

fetch("/api/health").then((r) => r.json()).then((h) => {
  $("detector").textContent = `detector: ${h.detector.join(", ")}`;
});
