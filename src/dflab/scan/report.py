"""Scan reports: machine-readable JSON/CSV and a self-contained HTML page (timeline plots and overlays inline).

The same pieces (timeline PNG, overlay PNGs) are what the web service stores per job.
"""

from __future__ import annotations

import base64
import csv
import html
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
    "n_scored",
    "error",
    "seconds",
]


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an RGB or RGBA (transparency kept) uint8 image as PNG.

    zlib level 1: the report's dozen pictures encode in about half the time of OpenCV's default level 3, for files
    a few per cent larger (still lossless).

    Shape:
        image (H, W, 3) or (H, W, 4) uint8.
    """
    import cv2

    order = [2, 1, 0, 3] if image.shape[-1] == 4 else [2, 1, 0]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[:, :, order]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB uint8 photograph (a frame with its heatmap baked in) as JPEG.

    The report's four 720p overlays were its largest and slowest pictures as PNG (about 600 KB and 35 ms each at
    zlib level 1, measured on a 1080p DFDC frame); at quality 92 they are about 100 KB and 3 ms, with no visible
    loss. Pictures with drawn boxes, transparency or line art stay PNG (:func:`png_bytes`).

    Shape:
        image (H, W, 3) uint8.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def picture_type(data: bytes) -> str:
    """MIME type of an encoded picture of the report from its first bytes: PNG, JPEG, else
    ``application/octet-stream``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return "application/octet-stream"


#: matplotlib's tab10 colours (RGB), one per track
TRACK_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def _nice_step(span: float, ticks: int = 6) -> float:
    """A 1/2/5 × 10^k step giving about ``ticks`` ticks over ``span``."""
    raw = max(span, 1e-9) / ticks
    mag = 10 ** np.floor(np.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def timeline_png(record: dict[str, Any]) -> bytes | None:
    """Per-frame P(fake) of every track against time (or frame index), with the threshold; None without faces.

    Drawn with OpenCV (700 × 240 px): matplotlib took ~1 s of a ~2 s scan to import and draw this one chart.
    """
    frames = record.get("frames") or []
    if record.get("status") not in ("ok", "partial") or not frames:
        return None
    import cv2

    use_time = bool(record.get("fps"))
    tracks: dict[int, list[tuple[float, float]]] = {}
    for fr in frames:
        x = fr["time_s"] if use_time else fr["frame_index"]
        for face in fr["faces"]:
            if face["score"] is not None:  # faces beyond faces_per_track were not scored
                tracks.setdefault(face["track_id"], []).append((x, face["score"]))
    w, h, left, right, top, bottom = 700, 240, 58, 12, 12, 40
    img = np.full((h, w, 3), 255, np.uint8)
    xs_all = [fr["time_s"] if use_time else fr["frame_index"] for fr in frames]
    x0, x1 = float(min(xs_all)), float(max(xs_all))
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pad = 0.03 * (x1 - x0)
    x0, x1 = x0 - pad, x1 + pad

    def px(x: float, y: float) -> tuple[int, int]:
        u = left + (x - x0) / (x1 - x0) * (w - left - right)
        v = top + (1.02 - y) / 1.04 * (h - top - bottom)
        return round(u), round(v)

    font, grey, dark = cv2.FONT_HERSHEY_SIMPLEX, (225, 225, 225), (40, 40, 40)
    for y in (0.0, 0.25, 0.5, 0.75, 1.0):
        a, b = px(x0, y), px(x1, y)
        cv2.line(img, a, b, grey, 1)
        cv2.putText(img, f"{y:.2f}", (20, a[1] + 4), font, 0.38, dark, 1, cv2.LINE_AA)
    step = _nice_step(x1 - x0)
    for t in np.arange(np.ceil(x0 / step) * step, x1, step):
        t = float(round(t, 9)) + 0.0  # no "-0"
        a, b = px(t, -0.02), px(t, 1.02)
        cv2.line(img, a, b, grey, 1)
        label = f"{t:g}" if step >= 1 else f"{t:.1f}"
        cv2.putText(img, label, (a[0] - 8, h - bottom + 16), font, 0.38, dark, 1, cv2.LINE_AA)
    cv2.rectangle(img, px(x0, 1.02), px(x1, -0.02), dark, 1)
    ty = px(x0, float(record["threshold"]))[1]
    for u in range(left, w - right, 10):  # dashed threshold line
        cv2.line(img, (u, ty), (min(u + 5, w - right), ty), (0, 0, 0), 1)
    cv2.putText(img, "time (s)" if use_time else "frame", (w // 2 - 25, h - 6), font, 0.42, dark, 1, cv2.LINE_AA)
    for k, (tid, pts) in enumerate(sorted(tracks.items())):
        colour = TRACK_COLOURS[k % len(TRACK_COLOURS)]
        poly = np.array([px(x, y) for x, y in pts], np.int32)
        cv2.polylines(img, [poly], False, colour, 2, cv2.LINE_AA)
        for p in poly:
            cv2.circle(img, tuple(int(v) for v in p), 3, colour, -1, cv2.LINE_AA)
        if len(tracks) > 1:  # legend, top right
            lx, ly = w - right - 80 * (min(4, len(tracks)) - k % 4), top + 14 + 14 * (k // 4)
            cv2.line(img, (lx, ly - 4), (lx + 14, ly - 4), colour, 2, cv2.LINE_AA)
            cv2.putText(img, f"face {tid}", (lx + 18, ly), font, 0.36, dark, 1, cv2.LINE_AA)
    ylab = np.full((14, 60, 3), 255, np.uint8)  # the y label, rotated like matplotlib's
    cv2.putText(ylab, "P(fake)", (2, 11), font, 0.38, dark, 1, cv2.LINE_AA)
    rot = np.ascontiguousarray(np.rot90(ylab))
    yc = (top + h - bottom) // 2 - 30
    img[yc : yc + 60, 0:14] = np.minimum(img[yc : yc + 60, 0:14], rot)
    return png_bytes(img)


def write_json(records: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps({"meta": meta or {}, "files": list(records)}, indent=2))
    return path


#: a spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would start a formula gets a leading apostrophe (shown as
    text, the formula never evaluated); numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per file; every text cell goes through :func:`csv_cell` (file names and error details come from
    the analyst's files, which may be named ``=HYPERLINK(...)``)."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in records:
            ci = r.get("ci") or [None, None]
            err = r.get("error") or {}
            row = {
                "path": r["path"],
                "status": r["status"],
                "verdict": r["verdict"],
                "reason": r.get("reason") or "",
                "score": "" if r.get("score") is None else f"{r['score']:.4f}",
                "ci_low": "" if ci[0] is None else f"{ci[0]:.4f}",
                "ci_high": "" if ci[1] is None else f"{ci[1]:.4f}",
                "n_sampled": r.get("n_sampled", ""),
                "n_faces": r.get("n_faces", ""),
                "n_scored": r.get("n_scored", r.get("n_faces", "")),
                "error": f"{err.get('cause', '')}: {err.get('detail', '')}" if err else "",
                "seconds": r.get("seconds", ""),
            }
            w.writerow({k: csv_cell(v) for k, v in row.items()})
    return path


def _img_tag(picture: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    src = f"data:{picture_type(picture)};base64,{base64.b64encode(picture).decode()}"
    return f'<img alt="{html.escape(alt)}"{c} src="{src}">'


def _badge(verdict: str) -> str:
    return f'<span class="badge {html.escape(verdict)}">{html.escape(verdict.replace("_", " "))}</span>'


def _fmt_ci(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _span(start: float | None, end: float | None, first: int, last: int, kind: str | None) -> str:
    if kind == "image":
        return "still image"
    if start is None:
        return f"frames {first}–{last}"
    return f"{start:.1f}–{end:.1f} s (frames {first}–{last})"


def _as_views(item: Any) -> dict[str, bytes]:
    """Per-file pictures: a ``{name: PNG or JPEG}`` dict (:func:`dflab.scan.views.render_views`), or the older list
    of ``(name, RGB array)`` overlays."""
    if isinstance(item, dict):
        return item
    return {name: jpeg_bytes(im) for name, im in item}


def _card_html(cards: Sequence[dict[str, Any]]) -> str:
    from dflab.scan.views import card_summary

    parts = []
    for card in cards:
        c = card_summary(card)
        if not (c["has_seen"] or c["has_not_seen"]):
            continue
        seen = "".join(f"<li>{html.escape(s)}</li>" for s in c["has_seen"])
        unseen = "".join(f"<li>{html.escape(s)}</li>" for s in c["has_not_seen"])
        parts.append(
            f'<details class="card"><summary>What <b>{html.escape(c["name"])}</b> has and has not seen</summary>'
            f'<div class="cols"><div><h4>Has seen in training</h4><ul>{seen}</ul></div>'
            f"<div><h4>Has not seen: treat a low score on such media as &ldquo;not detected&rdquo;</h4>"
            f"<ul>{unseen}</ul></div></div></details>"
        )
    return "".join(parts)


def _rule(r: dict[str, Any]) -> str:
    """The decision rule of a record in words: the detector's verdict band, or the threshold ± margin."""
    if r.get("band"):
        lo, hi = r["band"]
        return f"real below {lo:.2f}, fake at or above {hi:.2f}, uncertain between"
    return f"threshold {r['threshold']:.2f} ± {r.get('margin') or 0:.2f}"


def _file_section(i: int, r: dict[str, Any], views: dict[str, bytes]) -> str:
    from dflab.scan.views import faces_phrase, summarize

    name = html.escape(Path(r["path"]).name)
    v = summarize(r)
    body = [f'<h2 id="f{i}">{name} {_badge(r["verdict"])}</h2>', f'<p class="path">{html.escape(r["path"])}</p>']
    if r["status"] == "ok":
        body.append(
            f'<p class="score">P(fake) <b>{r["score"]:.3f}</b>, 95% interval {_fmt_ci(r.get("ci"))}, {_rule(r)}; '
            f"{faces_phrase(r['n_faces'], r.get('n_scored'), r.get('faces_per_track'))} in {r['n_sampled']} sampled "
            f"frame(s) of {r.get('n_frames', 1)}; {len(r['tracks'])} track(s); detector(s): "
            f"{html.escape(', '.join(r['detectors']))}.</p>"
        )
    if v["reason"]:
        body.append(f'<p class="reason">{html.escape(v["reason"])}</p>')
    if v["evidence"]:
        body.append(f'<p class="evidence">{html.escape(v["evidence"])}</p>')
    if "timeline" in views:
        body.append("<h3>P(fake) per face track over time</h3>" + _img_tag(views["timeline"], "timeline", "timeline"))
    if v["tracks"]:
        cards = []
        for t in v["tracks"]:
            thumb = views.get(f"track{t['track_id']}")
            img = _img_tag(thumb, f"face {t['track_id']}") if thumb else '<div class="nothumb"></div>'
            mark = " (decides the file)" if t["decisive"] else ""
            span = _span(t["start_s"], t["end_s"], t["first_frame"], t["last_frame"], r.get("kind"))
            why = f'<p class="reason">{html.escape(t["reason"])}</p>' if t["reason"] else ""
            cards.append(
                f'<div class="track">{img}<div><b>face {t["track_id"]}</b>{mark} {_badge(t["verdict"])}'
                f"<br>P(fake) {t['score']:.3f}, 95% interval {_fmt_ci(t['ci'])}"
                f"<br>{span}, {faces_phrase(t['n_faces'], t['n_scored'])}"
                f"{why}</div></div>"
            )
        body.append('<h3>Face tracks</h3><div class="tracks">' + "".join(cards) + "</div>")
    keys = [k for k in v["key_frames"] if f"key{k['frame_index']:06d}" in views]
    if keys:
        figs = []
        for k in keys:
            idx = k["frame_index"]
            heat = views.get(f"heat{idx:06d}")
            uid = f"h{i}_{idx}"
            toggle = (
                f'<input type="checkbox" id="{uid}" class="toggle" checked><label for="{uid}">heatmap</label>'
                if heat
                else ""
            )
            when = f"{k['time_s']:.2f} s, " if r.get("kind") == "video" and k.get("time_s") is not None else ""
            layer = _img_tag(heat, "heatmap", "heat") if heat else ""
            figs.append(
                f'<figure class="key">{toggle}<div class="stage">{_img_tag(views[f"key{idx:06d}"], f"frame {idx}")}'
                f"{layer}</div><figcaption>frame {idx} ({when}P(fake) {k['score']:.3f})</figcaption></figure>"
            )
        body.append(
            '<h3>The frames that drove the verdict</h3><p class="note">The decisive face track\'s most suspicious '
            "frames. The heatmap shows where the detector looked; untick it to see the face under it.</p>"
            + '<div class="keys">'
            + "".join(figs)
            + "</div>"
        )
    overlays = sorted(n for n in views if n.startswith("frame"))
    if overlays and not (keys and r.get("kind") == "image"):  # a still's key view already shows its one frame
        body.append(
            '<h3>Sampled frames with heatmaps</h3><div class="ovs">'
            + "".join(_img_tag(views[n], n) for n in overlays)
            + "</div>"
        )
    if r.get("overlay_video"):
        ov = html.escape(r["overlay_video"])
        body.append(f'<p>overlay video: <a href="{ov}">{ov}</a></p>')
    return "<section>" + "\n".join(body) + "</section>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}
.badge{color:#fff;border-radius:4px;padding:2px 8px;font-size:.85em;background:#555}
.badge.fake{background:#c62828}.badge.real{background:#2e7d32}.badge.uncertain{background:#ef6c00}
.badge.no_face{background:#546e7a}.badge.error{background:#6a1b9a}
.path{color:#666;font-size:.85em}section{margin-top:2.5em;border-top:1px solid #ddd}
.reason{background:#fff8e1;border-left:4px solid #ef6c00;padding:.4em .8em}
.timeline{max-width:100%}.tracks{display:flex;flex-wrap:wrap;gap:12px}
.track{display:flex;gap:10px;border:1px solid #ddd;border-radius:6px;padding:8px;max-width:520px}
.track img,.nothumb{width:120px;height:120px;border-radius:4px;flex:none;background:#eee}
.track .reason{font-size:.85em;margin:.4em 0 0}
.keys{display:flex;flex-wrap:wrap;gap:16px}.key{margin:0}.key label{font-size:.9em;user-select:none}
.stage{position:relative;width:fit-content;max-width:100%;margin-top:4px}
.stage img{display:block;max-width:100%}.stage .heat{position:absolute;left:0;top:0;width:100%;height:100%}
.toggle:not(:checked)~.stage .heat{display:none}
.ovs img{margin:4px;border:1px solid #ccc;width:320px}.note{color:#555;font-size:.9em}
.card .cols{display:flex;gap:2em;flex-wrap:wrap}.card .cols>div{flex:1;min-width:280px}"""


def render_html(records: Sequence[dict[str, Any]], views: Sequence[Any], meta: dict[str, Any] | None = None) -> str:
    """One self-contained page (pictures inline, no script): a summary table, what the detector has and has not
    seen, then per file its verdict and why, the timeline, each face track, the key frames with a heatmap toggle and
    the sampled overlays.

    Args:
        records: scan records (:attr:`dflab.scan.pipeline.ScanResult.record`).
        views: per record, ``{artifact name: PNG}`` from :func:`dflab.scan.views.render_views` (or a list of
            ``(name, RGB array)`` overlays).
        meta: ``detector`` (names) and ``cards`` (checkpoint cards).
    """
    meta = meta or {}
    rows, sections = [], []
    for i, (r, item) in enumerate(zip(records, views, strict=True)):
        score = "–" if r.get("score") is None else f"{r['score']:.3f}"
        name = html.escape(Path(r["path"]).name)
        rows.append(
            f'<tr><td><a href="#f{i}">{name}</a></td><td>{_badge(r["verdict"])}</td><td>{score}</td>'
            f"<td>{_fmt_ci(r.get('ci'))}</td></tr>"
        )
        sections.append(_file_section(i, r, _as_views(item)))
    det = html.escape(str(meta.get("detector", "")))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>dflab scan report</title>
<style>{_CSS}</style></head><body><h1>dflab scan report</h1>
<p>Detector: {det}. Scores are calibrated P(fake) of the most suspicious face track; when the detector's card
calibrates files (the default's does), P(fake) assumes the file was as likely fake as real beforehand, and its odds
are the likelihood ratio stated under each verdict. The interval is a 95% bootstrap over frames (test-time views for
stills). A score inside the detector's verdict band (chosen on held-out
sources, where real and fake files overlap), or near the threshold when one is given, is called <i>uncertain</i>.
Heatmaps show where the detector looked.</p>
{_card_html(meta.get("cards") or [])}
<table><tr><th>file</th><th>verdict</th><th>P(fake)</th><th>95% interval</th></tr>{"".join(rows)}</table>
{"".join(sections)}
</body></html>"""


def write_html(
    records: Sequence[dict[str, Any]],
    views: Sequence[Any],
    path: Path,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`render_html` to ``path``."""
    path.write_text(render_html(records, views, meta))
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
