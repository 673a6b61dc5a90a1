"""What an analyst sees of one scan: the verdict in words, each face track's own verdict, the frames that drove the
verdict, and the pictures (timeline, track thumbnails, key frames with a separate heatmap layer).

The HTML report (:mod:`dflab.scan.report`) and the web service (:mod:`dflab.serve`) both build their pages from
:func:`summarize` (JSON-able) and :func:`render_views` (PNG bytes by artifact name), so the two always agree.

:func:`render_views` works from a finished scan record and the media file: it decodes only the few frames it shows
again and asks the first detector for their maps. The heatmap is a separate RGBA layer (``heatNNNNNN``) over the
plain frame (``keyNNNNNN``), so a viewer can switch it on and off and see the face under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

KEY_FRAMES = 3  # frames of the decisive track shown as "the frames that drove the verdict"
MAX_TRACKS = 12  # thumbnails beyond this many tracks are left out (the timeline still shows every track)
KEY_SIZE = 420  # key views: the decisive face's neighbourhood at this side, so the face and its heatmap are large
KEY_MARGIN = 2.2  # the key view's window is this many times the detector box (the face and some context)
THUMB_SIZE = 160
HEAT_ALPHA = 0.6  # opacity of the hottest heatmap pixel

_COLOURS_RGB = {"fake": (198, 40, 40), "real": (46, 125, 50), "uncertain": (239, 108, 0)}


def verdict_words(
    score: float, ci: Sequence[float] | None, threshold: float, margin: float, band: Sequence[float] | None = None
) -> str:
    """Why a score gets the verdict it gets, in one sentence (the rules of :func:`dflab.scan.pipeline.verdict_of`)."""
    if band:
        from dflab.scan.pipeline import digits_apart

        rb, fa = float(band[0]), float(band[1])
        d = max(3, digits_apart(score, rb, fa))
        if score >= fa:
            return f"P(fake) {score:.{d}f} is at or above {fa:.{d}f}, where few held-out real files scored."
        if score < rb:
            return f"P(fake) {score:.{d}f} is below {rb:.{d}f}, where few held-out fake files scored."
        return (
            f"P(fake) {score:.{d}f} lies between {rb:.{d}f} and {fa:.{d}f}, where held-out real and fake files overlap."
        )
    lo, hi = (ci or (score, score))[:2]
    if lo < threshold <= hi and hi - lo > 0:
        return (
            f"The 95 % interval [{lo:.3f}, {hi:.3f}] straddles the threshold {threshold:.2f}: the sampled frames "
            "or views disagree."
        )
    if abs(score - threshold) < margin:
        return f"P(fake) {score:.3f} lies within ±{margin:.2f} of the threshold {threshold:.2f}: too close to call."
    side = "above" if score >= threshold else "below"
    return f"P(fake) {score:.3f} is {side} the threshold {threshold:.2f} and clear of the ±{margin:.2f} margin."


def evidence_words(likelihood_ratio: float | None) -> str:
    """The likelihood ratio behind a file's P(fake), in words ("" when the detector's card has no file-level
    calibration, whose P(fake) states a prior of 1/2: its odds are the ratio)."""
    if likelihood_ratio is None or not np.isfinite(likelihood_ratio) or likelihood_ratio <= 0:
        return ""
    if likelihood_ratio >= 1:
        return (f"What the detector saw is {likelihood_ratio:.1f} times as likely in a fake file as in a real one "
                "(P(fake) assumes fake and real equally likely beforehand).")  # fmt: skip
    return (f"What the detector saw is {1 / likelihood_ratio:.1f} times as likely in a real file as in a fake one "
            "(P(fake) assumes fake and real equally likely beforehand).")  # fmt: skip


def reason_text(reason: Any) -> str:
    """A ``reason`` field as text: a string as is, a dict's ``text``/``detail``/``code``, a list joined."""
    if reason is None:
        return ""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, dict):
        for key in ("text", "detail", "message", "code", "cause"):
            if reason.get(key):
                return str(reason[key])
        return "; ".join(f"{k}: {v}" for k, v in reason.items())
    if isinstance(reason, list | tuple):
        return "; ".join(t for t in (reason_text(r) for r in reason) if t)
    return str(reason)


def file_reason(record: dict[str, Any]) -> str:
    """Why the file has its verdict, in words: the record's own ``reason`` when the scan gave one, else derived."""
    given = reason_text(record.get("reason"))
    if given:
        return given
    status, verdict = record.get("status"), record.get("verdict")
    if status == "error":
        err = record.get("error") or {}
        return f"No verdict: the file could not be scanned ({err.get('cause', 'error')}: {err.get('detail', '')})."
    if status == "no_face":
        return f"No verdict: no face was found in the {record.get('n_sampled', 0)} sampled frame(s)."
    if verdict in ("fake", "real", "uncertain") and record.get("score") is not None:
        return verdict_words(
            record["score"], record.get("ci"), record["threshold"], record.get("margin") or 0.0, record.get("band")
        )
    return ""


def _eligible(tracks: Sequence[dict[str, Any]]) -> set[int]:
    """Tracks that count towards the file's verdict: at least a quarter as long as the longest (see the pipeline)."""
    if not tracks:
        return set()
    longest = max(t["n_faces"] for t in tracks)
    return {t["track_id"] for t in tracks if t["n_faces"] >= max(1, longest / 4)}


def faces_phrase(n_faces: int, n_scored: int | None, per_track: int | None = None) -> str:
    """``"30 face(s), 6 scored (at most 6 per track, evenly spaced)"``: how many faces were found and scored."""
    if n_scored is None or n_scored == n_faces:
        return f"{n_faces} face(s)"
    budget = f" (at most {per_track} per track, evenly spaced)" if per_track else ""
    return f"{n_faces} face(s), {n_scored} scored{budget}"


def _seconds(frame_index: int, fps: float) -> float | None:
    return round(frame_index / fps, 2) if fps else None


def key_frames(record: dict[str, Any], k: int = KEY_FRAMES) -> list[int]:
    """Frame indices that drove the verdict: the decisive track's ``k`` most suspicious frames, in time order."""
    tid = record.get("decisive_track")
    if tid is None:
        return []
    scored = [
        (face["score"], fr["frame_index"])
        for fr in record.get("frames") or []
        for face in fr["faces"]
        if face["track_id"] == tid and face["score"] is not None  # faces beyond faces_per_track were not scored
    ]
    top = sorted(scored, key=lambda s: (-s[0], s[1]))[:k]
    return sorted(idx for _, idx in top)


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The analyst's view of one scan record (JSON-able).

    Returns:
        ``{"verdict", "score", "ci", "threshold", "margin", "reason", "evidence", "kind", "n_sampled", "n_faces",
        "decisive_track", "key_frames": [{"frame_index", "time_s", "score"}], "tracks": [{"track_id", "verdict",
        "score", "ci", "reason", "n_faces", "first_frame", "last_frame", "start_s", "end_s", "counts",
        "decisive"}]}``; a track that is too short to count says so in its ``reason``; ``evidence`` is the
        likelihood ratio in words (:func:`evidence_words`).
    """
    threshold = float(record.get("threshold") or 0.5)
    margin = float(record.get("margin") or 0.0)
    band = record.get("band")
    fps = float(record.get("fps") or 0.0)
    tracks = record.get("tracks") or []
    counts = _eligible(tracks)
    from dflab.scan.pipeline import verdict_of

    out_tracks = []
    for t in tracks:
        verdict = t.get("verdict") or verdict_of(t["score"], t["ci"], threshold, margin, band=band)  # scan's own first
        reason = reason_text(t.get("reason"))
        if not reason and t["track_id"] not in counts:
            reason = (
                f"Seen in only {t['n_faces']} sampled frame(s), under a quarter of the longest track: this face does "
                "not count towards the file's verdict (short tracks are mostly detector noise)."
            )
        elif not reason and verdict == "uncertain":
            reason = verdict_words(t["score"], t["ci"], threshold, margin, band)
        out_tracks.append(
            {
                "track_id": t["track_id"],
                "verdict": verdict,
                "score": t["score"],
                "ci": t["ci"],
                "reason": reason,
                "n_faces": t["n_faces"],
                "n_scored": t.get("n_scored", t["n_faces"]),
                "first_frame": t["first_frame"],
                "last_frame": t["last_frame"],
                "start_s": _seconds(t["first_frame"], fps),
                "end_s": _seconds(t["last_frame"], fps),
                "counts": t["track_id"] in counts,
                "decisive": t["track_id"] == record.get("decisive_track"),
            }
        )
    by_frame = {fr["frame_index"]: fr for fr in record.get("frames") or []}
    keys = []
    for idx in key_frames(record):
        face = next(f for f in by_frame[idx]["faces"] if f["track_id"] == record.get("decisive_track"))
        keys.append({"frame_index": idx, "time_s": by_frame[idx].get("time_s"), "score": face["score"]})
    return {
        "verdict": record.get("verdict"),
        "score": record.get("score"),
        "ci": record.get("ci"),
        "threshold": threshold,
        "margin": margin,
        "reason": file_reason(record),
        "evidence": evidence_words(record.get("likelihood_ratio")),
        "kind": record.get("kind"),
        "n_sampled": record.get("n_sampled"),
        "n_faces": record.get("n_faces", 0),
        "n_scored": record.get("n_scored", record.get("n_faces", 0)),
        "faces_per_track": record.get("faces_per_track"),
        "decisive_track": record.get("decisive_track"),
        "key_frames": keys,
        "tracks": out_tracks,
    }


def card_summary(card: dict[str, Any] | None) -> dict[str, Any]:
    """What a detector card tells an analyst: its name, what it has and has not seen, and its calibration."""
    card = card or {}
    calib = card.get("calibration") or {}
    return {
        "name": card.get("name") or card.get("detector") or "detector",
        "summary": card.get("summary") or "",
        "has_seen": [str(s) for s in card.get("has_seen") or []],
        "has_not_seen": [str(s) for s in card.get("has_not_seen") or []],
        "calibration": calib.get("method") or "",
    }


# ----------------------------------------------------------------------------------------------------------------
# pictures


def _decode(path: Path, kind: str, indices: Sequence[int]) -> dict[int, np.ndarray]:
    from dflab import media

    if kind == "image":
        return {0: media.read_image(path)}
    return {int(i): rgb for i, rgb in media.iter_frames(path, indices=sorted(set(indices)))}


def draw_boxes(
    rgb: np.ndarray,
    faces: Sequence[dict[str, Any]],
    threshold: float,
    margin: float,
    matrix: np.ndarray | None = None,
    band: Sequence[float] | None = None,
) -> np.ndarray:
    """Each face's box and ``face N  P(fake)`` label, coloured by that face's own verdict.

    Args:
        rgb: the picture to draw on (a copy is returned).
        faces: the record's faces of one frame (``box`` in frame pixels, ``score``, ``track_id``).
        threshold: the decision threshold.
        margin: scores within ``threshold ± margin`` are drawn as uncertain.
        matrix: (2, 3) frame → picture transform when ``rgb`` is a crop of the frame.
        band: the detector's verdict band ``(real_below, fake_at)``; replaces threshold ± margin when given.

    Shape:
        rgb (H, W, 3) uint8; returns the same shape.
    """
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = rgb.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    m = np.eye(3)[:2] if matrix is None else np.asarray(matrix, np.float64)
    for face in faces:
        if face["score"] is None:  # not scored (faces_per_track): a grey box, no score
            x0, y0, x1, y1 = (float(v) for v in face["box"])
            (a, b), (c, d) = m @ np.array([x0, y0, 1.0]), m @ np.array([x1, y1, 1.0])
            cv2.rectangle(out, (round(a), round(b)), (round(c), round(d)), (150, 150, 150), thick)
            continue
        s = float(face["score"])
        if band:
            verdict = "fake" if s >= band[1] else ("real" if s < band[0] else "uncertain")
        else:
            verdict = "uncertain" if abs(s - threshold) < margin else ("fake" if s >= threshold else "real")
        colour = _COLOURS_RGB[verdict]
        x0, y0, x1, y1 = (float(v) for v in face["box"])
        (a, b), (c, d) = m @ np.array([x0, y0, 1.0]), m @ np.array([x1, y1, 1.0])
        cv2.rectangle(out, (round(a), round(b)), (round(c), round(d)), colour, thick)
        label = f"face {face['track_id']}  {s:.2f}"
        cv2.putText(
            out, label, (round(a), max(14, round(b) - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thick // 2 + 1
        )
    return out


def heat_layers(
    scorer: Any,
    frames: Sequence[tuple[np.ndarray, Sequence[dict[str, Any]], np.ndarray]],
    size: int,
    known: Sequence[dict[int, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> list[np.ndarray]:
    """RGBA layers of the detector's map for every face of several frames, each drawn in a view of the frame.

    A face whose map the scan already computed (``known``: per view, track id → (map in crop pixels, frame → crop
    matrix), from :attr:`dflab.scan.pipeline.ScanResult.heats`) uses it; the other faces are scored in one batch
    (:meth:`dflab.scan.pipeline.Scorer.score` with maps: the first detector's own maps — predicted masks, CAM — or
    Grad-CAM of the fake class). Each map goes from its face crop back to the frame and on into the view through the
    view's frame → view matrix; alpha grows with the map, so the face stays visible under it.

    Args:
        scorer: the detector (``None``: only the ``known`` maps are drawn).
        frames: per view, the frame, its faces (the record's ``box`` in frame pixels) and the (2, 3) frame → view
            matrix (e.g. :attr:`dflab.faces.align.CropResult.matrix` of a zoom window).
        size: side of the square views.
        known: maps computed by the scan, per view.

    Shape:
        each frame (H, W, 3) uint8; returns per view a (size, size, 4) uint8 layer.
    """
    import cv2

    from dflab.faces import crop_face

    placed: list[tuple[int, np.ndarray, np.ndarray]] = []  # (view, map, frame → crop matrix)
    todo = []
    for v, (rgb, faces, _) in enumerate(frames):
        have = (known or [{}] * len(frames))[v]
        for f in faces:
            if f.get("score") is None:  # not scored (faces_per_track): no map either
                continue
            if f["track_id"] in have:
                placed.append((v, *have[f["track_id"]]))
            elif scorer is not None:
                todo.append((v, crop_face(rgb, tuple(f["box"]), size=scorer.spec.crop_px, margin=scorer.spec.margin)))
    maps = scorer.score([c.image for _, c in todo], maps=True)[1] if todo else []
    placed += [(v, m, c.matrix) for (v, c), m in zip(todo, maps or [], strict=True)]
    heat = [np.zeros((size, size), np.float32) for _ in frames]
    for v, m, matrix in placed:
        crop_to_frame = np.vstack([cv2.invertAffineTransform(np.asarray(matrix, np.float64)), [0.0, 0.0, 1.0]])
        to_view = np.asarray(frames[v][2], np.float64) @ crop_to_frame
        warped = cv2.warpAffine(m.astype(np.float32), to_view, (size, size), flags=cv2.INTER_LINEAR)
        heat[v] = np.maximum(heat[v], warped)
    layers = []
    for h in heat:
        colour = cv2.applyColorMap((h.clip(0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        layers.append(np.dstack([colour, (h.clip(0, 1) * HEAT_ALPHA * 255).astype(np.uint8)]))
    return layers


def render_views(
    record: dict[str, Any],
    media_path: str | Path | None,
    scorer: Any | None,
    overlays: Sequence[tuple[str, np.ndarray]] = (),
    *,
    frames: Mapping[int, np.ndarray] | None = None,
    heats: Mapping[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, bytes]:
    """PNG artifacts of one scan, by name.

    * ``timeline`` — P(fake) per track against time (videos);
    * ``frameNNNNNN`` — the scan's evenly spaced overlays (heatmap baked in), as the scanner rendered them;
    * ``trackN`` — each track's face at its most suspicious frame;
    * ``keyNNNNNN`` / ``heatNNNNNN`` — a frame that drove the verdict, zoomed on the decisive face (``KEY_MARGIN``
      × its box, ``KEY_SIZE`` px) with every face's box, and the heatmap of the same window as a separate RGBA
      layer (none without a scorer).

    Frames come from ``frames`` (the scan's held frames, :attr:`dflab.scan.pipeline.ScanResult.frames`) when it
    has every one shown, else are decoded again from ``media_path`` (only the few shown); when it is gone or
    unreadable, the pictures that need it are left out and the rest is returned. Maps in ``heats``
    (:attr:`~dflab.scan.pipeline.ScanResult.heats`) are used as they are; the scorer computes the others.
    """
    from dflab.errors import MediaError
    from dflab.scan.report import jpeg_bytes, png_bytes, timeline_png

    out = {name: jpeg_bytes(im) for name, im in overlays}
    if record.get("status") not in ("ok", "partial"):
        return out
    tl = timeline_png(record) if record.get("kind") == "video" else None  # matplotlib only for videos
    if tl is not None:
        out["timeline"] = tl
    held = dict(frames or {})
    if not held and (media_path is None or not Path(media_path).exists()):
        return out
    frames = {fr["frame_index"]: fr for fr in record.get("frames") or []}
    best: dict[int, tuple[float, int]] = {}  # track → (score, frame) of its most suspicious face
    for idx, fr in frames.items():
        for face in fr["faces"]:
            cur = best.get(face["track_id"])
            if face["score"] is not None and (cur is None or face["score"] > cur[0]):
                best[face["track_id"]] = (face["score"], idx)
    thumbs = dict(sorted(best.items())[:MAX_TRACKS])
    keys = key_frames(record)
    if not thumbs and not keys:
        return out
    shown = [*keys, *(i for _, i in thumbs.values())]
    if all(i in held for i in shown):
        decoded = {i: held[i] for i in shown}
    elif media_path is None or not Path(media_path).exists():
        return out
    else:
        try:
            decoded = _decode(Path(media_path), record.get("kind", "video"), shown)
        except (MediaError, OSError, ValueError):
            return out
    from dflab.faces import crop_face
    from dflab.faces.align import crop_box, square_box

    for tid, (_, idx) in thumbs.items():
        face = next(f for f in frames[idx]["faces"] if f["track_id"] == tid)
        if idx in decoded:
            out[f"track{tid}"] = png_bytes(crop_face(decoded[idx], tuple(face["box"]), size=THUMB_SIZE).image)
    threshold, margin, band = float(record["threshold"]), float(record.get("margin") or 0.0), record.get("band")
    views = []  # (frame index, frame, faces, frame → view matrix)
    for idx in (i for i in keys if i in decoded):
        rgb, faces = decoded[idx], frames[idx]["faces"]
        decisive = next(f for f in faces if f["track_id"] == record.get("decisive_track"))
        zoom = crop_box(rgb, square_box(tuple(decisive["box"]), KEY_MARGIN), KEY_SIZE)
        out[f"key{idx:06d}"] = png_bytes(draw_boxes(zoom.image, faces, threshold, margin, zoom.matrix, band))
        views.append((idx, rgb, faces, zoom.matrix))
    if (scorer is not None or heats) and views:
        known = [{t: hm for (i, t), hm in (heats or {}).items() if i == idx} for idx, *_ in views]
        layers = heat_layers(scorer, [(rgb, faces, m) for _, rgb, faces, m in views], KEY_SIZE, known)
        for (idx, *_), layer in zip(views, layers, strict=True):
            out[f"heat{idx:06d}"] = png_bytes(layer)
    return out
