"""Averaged face and averaged attention map per dataset and class (BiG-Arts Fig. 6).

BiG-Arts §4.2: "we average the faces and corresponding Grad-CAM maps by sampling five frames per video"; one row
for fakes, one for reals, per dataset. :func:`sample_per_video` does the sampling, :func:`average_by_group` the
averaging over any grouping key.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import cv2
import numpy as np

from dflab.data.manifest import FaceRow


def sample_per_video(rows: Sequence[FaceRow], k: int = 5, seed: int = 0) -> list[FaceRow]:
    """``k`` frames per video (evenly spaced over its rows; all when fewer), in a reproducible order."""
    del seed  # even spacing is deterministic; kept for a future random variant
    videos: dict[tuple[str, str], list[FaceRow]] = {}
    for r in rows:
        videos.setdefault((r.dataset, r.video_id), []).append(r)
    out: list[FaceRow] = []
    for vid in sorted(videos):
        vr = sorted(videos[vid], key=lambda r: (r.frame_index, r.track_id))
        idx = np.unique(np.linspace(0, len(vr) - 1, num=min(k, len(vr))).round().astype(int))
        out.extend(vr[i] for i in idx)
    return out


def average_by_group(
    faces: Sequence[np.ndarray], maps: Sequence[np.ndarray], groups: Sequence[Hashable], size: int = 128
) -> dict[Hashable, dict[str, np.ndarray | int]]:
    """Pixel-wise mean face and mean map per group, all resized to ``size``.

    Shape:
        faces: N × (H, W, 3) uint8; maps: N × (h, w) float in [0, 1]; returns group ->
        ``{"face": (size, size, 3) uint8, "map": (size, size) float32, "n": int}``.
    """
    if not (len(faces) == len(maps) == len(groups)):
        raise ValueError("faces, maps and groups must have the same length")
    acc: dict[Hashable, list] = {}
    for f, m, g in zip(faces, maps, groups, strict=True):
        f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
        m = cv2.resize(np.asarray(m, np.float32), (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        a = acc.setdefault(g, [np.zeros((size, size, 3)), np.zeros((size, size)), 0])
        a[0] += f
        a[1] += m
        a[2] += 1
    return {
        g: {
            "face": np.clip(a[0] / a[2], 0, 255).round().astype(np.uint8),
            "map": (a[1] / a[2]).astype(np.float32),
            "n": a[2],
        }
        for g, a in acc.items()
    }
