"""Scan reports: machine-readable JSON/CSV and a self-contained HTML page (timeline plots and overlays inline).

The same pieces (timeline PNG, overlay PNGs) are what the web service stores per job.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CSV_FIELDS = [
    "path",
    "status",
    "verdict",
    "reason",
    "score",
    "ci_low",
    "ci_high",
    "n_sampled",
    "n_faces",
    "error",
    "seconds",
]
_COLOURS = {"fake": "#c62828", "real": "#2e7d32", "uncertain": "#ef6c00", "no_face": "#546e7a", "error": "#6a1b9a"}


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as PNG."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def timeline_png(record: dict[str, Any]) -> bytes | None:
    """Per-frame P(fake) of every track against time (or frame index), with the threshold; None without faces."""
    frames = record.get("frames") or []
    if record.get("status") != "ok" or not frames:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_time = bool(record.get("fps"))
    fig, ax = plt.subplots(figsize=(7.0, 2.4), dpi=100)
    tracks: dict[int, list[tuple[float, float]]] = {}
    for fr in frames:
        x = fr["time_s"] if use_time else fr["frame_index"]
        for face in fr["faces"]:
            tracks.setdefault(face["track_id"], []).append((x, face["score"]))
    for tid, pts in sorted(tracks.items()):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=f"face {tid}")
    ax.axhline(record["threshold"], color="k", ls="--", lw=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("P(fake)")
    ax.set_xlabel("time (s)" if use_time else "frame")
    if len(tracks) > 1:
        ax.legend(fontsize=7, loc="upper right", ncol=min(4, len(tracks)))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_json(records: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps({"meta": meta or {}, "files": list(records)}, indent=2))
    return path


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in records:
            ci = r.get("ci") or [None, None]
            err = r.get("error") or {}
            w.writerow(
                {
                    "path": r["path"],
                    "status": r["status"],
                    "verdict": r["verdict"],
                    "reason": r.get("reason") or "",
                    "score": "" if r.get("score") is None else f"{r['score']:.4f}",
                    "ci_low": "" if ci[0] is None else f"{ci[0]:.4f}",
                    "ci_high": "" if ci[1] is None else f"{ci[1]:.4f}",
                    "n_sampled": r.get("n_sampled", ""),
                    "n_faces": r.get("n_faces", ""),
                    "error": f"{err.get('cause', '')}: {err.get('detail', '')}" if err else "",
                    "seconds": r.get("seconds", ""),
                }
            )
    return path


def _img_tag(png: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def write_html(
    records: Sequence[dict[str, Any]],
    overlays: Sequence[Sequence[tuple[str, np.ndarray]]],
    path: Path,
    meta: dict[str, Any] | None = None,
) -> Path:
    """One self-contained page: a summary table, then per file its verdict, interval, timeline and overlays."""
    meta = meta or {}
    rows, sections = [], []
    for i, (r, ovs) in enumerate(zip(records, overlays, strict=True)):
        colour = _COLOURS.get(r["verdict"], "#333")
        score = "–" if r.get("score") is None else f"{r['score']:.3f}"
        ci = r.get("ci")
        ci_s = "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        name = html.escape(Path(r["path"]).name)
        badge = f'<span class="badge" style="background:{colour}">{html.escape(r["verdict"])}</span>'
        rows.append(f'<tr><td><a href="#f{i}">{name}</a></td><td>{badge}</td><td>{score}</td><td>{ci_s}</td></tr>')
        body = [f'<h2 id="f{i}">{name} {badge}</h2>', f'<p class="path">{html.escape(r["path"])}</p>']
        if r["status"] == "error":
            err = r.get("error") or {}
            body.append(
                f"<p><b>could not scan</b>: {html.escape(err.get('cause', ''))} — {html.escape(err.get('detail', ''))}"
            )
        if r["status"] == "partial":
            err = r.get("error") or {}
            body.append(
                f"<p><b>partly scanned</b>: decoding stopped after {err.get('frames_decoded')} of "
                f"{err.get('frames_planned')} sampled frame(s) — {html.escape(str(err.get('cause', '')))}: "
                f"{html.escape(str(err.get('detail', '')))}</p>"
            )
        if r["status"] == "error":
            pass
        elif r["verdict"] == "no_face":
            body.append(f"<p>No face found in {r.get('n_sampled', 0)} sampled frame(s).</p>")
        else:
            body.append(
                f"<p>P(fake) <b>{score}</b>, 95% interval {ci_s}, threshold {r['threshold']:.2f}; "
                f"{r['n_faces']} face(s) in {r['n_sampled']} sampled frame(s) of {r.get('n_frames', 1)}; "
                f"{len(r['tracks'])} track(s); detector(s): {html.escape(', '.join(r['detectors']))}.</p>"
            )
            tl = timeline_png(r) if r.get("kind") == "video" else None  # matplotlib is imported only for videos
            if tl is not None:
                body.append(_img_tag(tl, "timeline"))
            body.append('<div class="ovs">' + "".join(_img_tag(png_bytes(im), n, 320) for n, im in ovs) + "</div>")
            if r.get("overlay_video"):
                v = html.escape(r["overlay_video"])
                body.append(f'<p>overlay video: <a href="{v}">{v}</a></p>')
        sections.append("<section>" + "\n".join(body) + "</section>")
    det = html.escape(str(meta.get("detector", "")))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>dflab scan report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px}}.badge{{color:#fff;border-radius:4px;padding:2px 8px;font-size:.9em}}
.ovs img{{margin:4px;border:1px solid #ccc}}.path{{color:#666;font-size:.85em}}section{{margin-top:2em}}</style>
</head><body><h1>dflab scan report</h1>
<p>Detector: {det}. Scores are calibrated P(fake) of the most suspicious face track; the interval is a 95%
bootstrap over frames (test-time views for stills). Heatmaps show where the detector looked.</p>
<table><tr><th>file</th><th>verdict</th><th>P(fake)</th><th>95% interval</th></tr>{"".join(rows)}</table>
{"".join(sections)}
</body></html>"""
    path.write_text(page)
    return path


def write_overlay_video(frames: Sequence[np.ndarray], fps: float, path: Path) -> Path:
    """H.264 (libx264 via PyAV) video of the sampled frames' overlays.

    Shape:
        frames: T × (H, W, 3) uint8, all the same size.
    """
    import av

    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps or 5)))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for im in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(im[:h2, :w2]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
