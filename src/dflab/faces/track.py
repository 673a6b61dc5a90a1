"""Stable track ids for every face across the sampled frames of a video.

Faces in consecutive *sampled* frames are matched by an optimal assignment (Hungarian) on a cost mixing box IoU and
the distance between landmark centres relative to face size: with sparse sampling (8–32 frames over a video) a face
can move further than its own width, where IoU alone is zero. Unmatched faces start new tracks; a track survives
``max_gap`` sampled frames without a match. Keeping every face (not the largest) matters: cropping only the largest
face picks the wrong person when two are present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dflab.faces.detect import DetectedFace


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    face: DetectedFace
    last_seen: int  # position in the sampled-frame sequence


def _centre(face: DetectedFace) -> np.ndarray:
    return (
        face.landmarks.mean(axis=0)
        if face.landmarks is not None and len(face.landmarks)
        else np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
    )


def _match_cost(track: DetectedFace, face: DetectedFace, max_shift: float) -> float:
    """0 is a perfect match; ≥ 1 means "do not match"."""
    iou = box_iou(track.box, face.box)
    size = max(track.width, track.height, face.width, face.height, 1.0)
    shift = float(np.linalg.norm(_centre(track) - _centre(face))) / size
    ratio = max(face.width, track.width) / max(min(face.width, track.width), 1.0)
    if shift > max_shift or ratio > 2.0:
        return 1.0
    return min(1.0 - iou, shift / max_shift)


def _assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching (Hungarian). With one track or one face it is the cheapest entry, found without
    importing SciPy's optimiser (a third of a second of start-up, for the common one-face video)."""
    if min(cost.shape) == 1:
        r, c = np.unravel_index(int(np.argmin(cost)), cost.shape)
        return np.array([r]), np.array([c])
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


def track_faces(
    frames: Sequence[tuple[int, Sequence[DetectedFace]]], *, max_shift: float = 1.0, max_gap: int = 2
) -> list[tuple[int, list[tuple[int, DetectedFace]]]]:
    """Give every face of every sampled frame a track id.

    Args:
        frames: ``(frame_index, faces)`` in increasing frame order.
        max_shift: largest landmark-centre move between matched faces, in face sizes.
        max_gap: sampled frames a track may miss before it ends.

    Returns:
        ``(frame_index, [(track_id, face), …])`` per input frame, faces in the input order. Track ids start at 0 and
        are numbered in order of first appearance (left to right within a frame), so they are deterministic.
    """
    tracks: list[_Track] = []
    next_id = 0
    out = []
    for pos, (frame_index, faces) in enumerate(frames):
        live = [t for t in tracks if pos - t.last_seen <= max_gap + 1]
        assigned: dict[int, int] = {}
        if live and faces:
            cost = np.array([[_match_cost(t.face, f, max_shift) for f in faces] for t in live])
            rows, cols = _assign(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] < 1.0:
                    assigned[c] = r
        labelled = []
        for j, face in enumerate(faces):
            if j in assigned:
                t = live[assigned[j]]
                t.face, t.last_seen = face, pos
            else:
                t = _Track(next_id, face, pos)
                next_id += 1
                tracks.append(t)
            labelled.append((t.track_id, face))
        out.append((frame_index, labelled))
    return out
