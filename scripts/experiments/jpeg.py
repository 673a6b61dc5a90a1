"""Experiment (issue 11): the default's file AUC when the held-out faces are JPEG-compressed, per labelled-fake weight.

The ninth run weighs each labelled fake 8 against a twin (``train_default.LABELLED_FAKE_WEIGHT``); a spot check found
the demo's face swap called `real` at JPEG quality 30. This measures JPEG robustness under the LOSO protocol instead
of on one image: every probe is trained on the clean faces as shipped, and scores its held-out faces (and still
views) after JPEG compression of the 224 px face crop at quality ``Q`` (harsher than compressing a whole frame whose
face is larger than 224 px, milder than one whose face is smaller).

    Q=50 python scripts/experiments/jpeg.py make    # compress + encode the original faces and the views, resumable
    Q=50 python scripts/experiments/jpeg.py eval    # LOSO per weight (WEIGHTS="1,4,8"), clean and compressed

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug

td, tt = pooling.td, pooling.tt
RUN = td.RUN
Q = int(os.environ.get("Q", "50"))
OUT = RUN / f"jpeg{Q}"


def _orig_index() -> list[int]:
    return [i for i, m in enumerate(pooling.crop_meta()) if m["variant"] == "orig"]


def cmd_make() -> None:
    from dflab.synthesis.degrade import jpeg

    idx = _orig_index()
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    views = np.load(RUN / "ln" / "views.npy", mmap_mode="r")
    for name, arr, n in (("crops", lambda k: crops[idx[k]], len(idx)), ("views", lambda k: views[k], len(views))):

        def make(start: int, stop: int, arr=arr) -> tuple[list, list]:
            return [jpeg(np.ascontiguousarray(arr(k)), Q) for k in range(start, stop)], [{"q": Q}] * (stop - start)

        pooling.encode_chunks(OUT / name, n, make)


def cmd_eval() -> None:
    x, mm, clean_views = real_aug.shipped_set()
    td.select = pooling.select
    idx = _orig_index()
    scored = x.copy()
    scored[idx] = pooling.load_chunks(OUT / "crops")
    jpeg_views = pooling.still_views(pooling.load_chunks(OUT / "views"))
    o = np.array([m["variant"] == "orig" for m in mm])
    fakes = np.array([m["variant"] == "orig" and m["label"] == 1 for m in mm])
    for w in [float(v) for v in os.environ.get("WEIGHTS", "1,4,8").split(",")]:
        weight = np.where(fakes, w, 1.0)
        for name, sc, views in (("clean", None, clean_views), (f"JPEG q{Q}", scored, jpeg_views)):
            oofs, voofs = td.loso(
                x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.01,), True, views, weight=weight, scored=sc
            )
            tt.summary(f"weight {w:g}, {name}", mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
