"""Experiment (issue 11): a horizontally flipped view of each video face, as stills already have test-time views.

The scanner scores a still's face under six views (flip × three crop margins) and a video's faces once each; videos
are the default's weak side. This measures, under the LOSO protocol, whether scoring each video face as the mean of
itself and its mirror image helps the file AUC (the probe is unchanged: flips are test-time only).

    python scripts/experiments/flip.py make    # flip + encode every original video face, resumable by chunk
    python scripts/experiments/flip.py eval    # LOSO of the shipped recipe: stills' views only, and + video flips

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / "flip"


def _video_faces() -> list[int]:
    return [i for i, m in enumerate(pooling.crop_meta()) if m["variant"] == "orig" and td.kind_of(m["file"]) == "video"]


def cmd_make() -> None:
    idx = _video_faces()
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")

    def make(start: int, stop: int) -> tuple[list, list]:
        return [np.ascontiguousarray(crops[idx[k]][:, ::-1]) for k in range(start, stop)], [{}] * (stop - start)

    pooling.encode_chunks(OUT, len(idx), make)


def cmd_eval() -> None:
    x, mm, views = real_aug.shipped_set()
    td.select = pooling.select
    idx = _video_faces()
    flipped = pooling.load_chunks(OUT)
    o = np.array([m["variant"] == "orig" for m in mm])
    with_flips = dict(views)
    for k, i in enumerate(idx):
        m = mm[i]
        with_flips[(m["file"], m["frame"], m["track"])] = np.stack([x[i], flipped[k]])
    for name, v in (("stills' views", views), ("+ video flips", with_flips)):
        oofs, voofs = td.loso(x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.01,), True, v, weight=td.face_weights(mm))
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
