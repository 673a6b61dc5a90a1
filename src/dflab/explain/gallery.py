"""Explanation galleries: the most confident right and wrong cases, each with its face, Grad-CAM, the detector's
own maps and the Grad-CAM mapped back onto the original frame (issue 7 "Reports")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dflab.data.manifest import FaceRow
from dflab.eval.predict import Predictions, read_rgb, to_tensor
from dflab.explain.gradcam import detector_maps, gradcam
from dflab.explain.overlay import box_matrix, overlay, overlay_on_frame
from dflab.models.base import Detector, InputSpec


def pick_cases(pred: Predictions, k: int = 4, threshold: float = 0.5) -> dict[str, list[int]]:
    """Row indices of the ``k`` most confident cases per outcome, at most one face per video.

    Outcomes: ``fake, detected`` (highest-scoring true fakes), ``real, passed`` (lowest-scoring reals),
    ``real, flagged`` (false positives, highest first), ``fake, missed`` (false negatives, lowest first).
    """
    y, s = pred.labels, pred.scores
    vids = [(r.dataset, r.video_id) for r in pred.rows]
    cases = {
        "fake, detected": (np.where((y == 1) & (s >= threshold))[0], -s),
        "real, passed": (np.where((y == 0) & (s < threshold))[0], s),
        "real, flagged": (np.where((y == 0) & (s >= threshold))[0], -s),
        "fake, missed": (np.where((y == 1) & (s < threshold))[0], s),
    }
    out: dict[str, list[int]] = {}
    for name, (idx, key) in cases.items():
        chosen: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i in sorted(idx.tolist(), key=lambda i: key[i]):
            if vids[i] in seen:
                continue
            seen.add(vids[i])
            chosen.append(i)
            if len(chosen) == k:
                break
        out[name] = chosen
    return out


def read_frames(path: str, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Frames ``indices`` of a video (or the image itself) as RGB, by one sequential decode up to the last one.

    Sequential rather than seeking: the result must be exactly the frame the crop came from, whatever the keyframe
    layout. Undecodable media give an empty dict (the gallery then omits the frame panel).
    """
    from dflab.errors import MediaError
    from dflab.media import iter_frames

    want = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not want:
        return out
    last = max(want)
    try:
        for i, rgb in iter_frames(path):
            if i in want:
                out[i] = rgb
            if i >= last:
                break
    except (MediaError, OSError):
        return out
    return out


def explain_rows(
    model: Detector,
    rows: Sequence[FaceRow],
    *,
    spec: InputSpec | None = None,
    media: dict[tuple[str, str], str] | None = None,
    use_gradcam: bool = True,
) -> list[dict[str, Any]]:
    """Explanation panels for each row.

    Returns:
        one dict per row: ``row``, ``panels`` (list of ``(title, rgb uint8)``), ``gradcam`` ((h, w) map in crop px
        or ``None``), ``maps`` (name -> (h, w) map in crop px).
    """
    spec = spec or model.input_spec
    frames: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for key in {(r.dataset, r.video_id) for r in rows}:
        if (media or {}).get(key):
            frames[key] = read_frames(media[key], [r.frame_index for r in rows if (r.dataset, r.video_id) == key])
    out = []
    for r in rows:
        face = read_rgb(r.crop_path)
        x = to_tensor([face], spec)
        panels: list[tuple[str, np.ndarray]] = [("face", face)]
        cam = None
        if use_gradcam:
            cam = _resize(gradcam(model, x)[0], face.shape[:2])
            panels.append(("Grad-CAM (fake)", overlay(face, cam)))
        maps = {k: _resize(v[0], face.shape[:2]) for k, v in detector_maps(model, x).items()}
        panels.extend((f"map: {k}", overlay(face, v)) for k, v in maps.items())
        heat = cam if cam is not None else next(iter(maps.values()), None)
        frame = frames.get((r.dataset, r.video_id), {}).get(r.frame_index)
        if heat is not None and frame is not None and len(r.box) == 4:
            m = box_matrix(r.box, (face.shape[1], face.shape[0]))
            panels.append(("on frame", overlay_on_frame(frame, heat, m, box=r.box)))
        out.append({"row": r, "panels": panels, "gradcam": cam, "maps": maps})
    return out


def _resize(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return m if m.shape == hw else cv2.resize(m.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
