"""Experiment (issue 11): a second CLIP view of each face, zoomed on the mouth and chin, beside the whole-face view.

The default's probe sees the whole face at 224 px, the mouth at about 60 px. Talking-head generators re-render the
mouth (lip sync) or the whole face, and their best-known traces are there: smeared teeth, a lip interior without
structure, a chin that slides (LipForensics, CVPR 2021, reads only the mouth and generalises across manipulations).
This measures whether the same frozen int8 encoder on the lower-central half of each crop (nose tip to chin,
upsampled ×2), concatenated to the whole-face features, helps the linear probe under the LOSO protocol.

Stages (same ``DFLAB_DEFAULT_RUN`` as ``train_default``; needs ``tune_ln.py crops`` and ``real_aug.py`` bic/picks)::

    python scripts/experiments/mouth.py encode    # crops, the bicubic reals, the still views; resumable by chunk
    python scripts/experiments/mouth.py eval      # LOSO: whole face alone, mouth alone, both

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / "mouth"
CHUNK = 256
#: the mouth box in a 224 px crop at margin 1.3 (rows, cols): nose tip to chin, the central half of the width
BOX = (slice(100, 212), slice(56, 168))


def mouth(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(img[BOX]), (224, 224), interpolation=cv2.INTER_CUBIC)


def _bicubic_reals() -> np.ndarray:
    """The 224 px bicubic copies of ``real_aug``'s bic/picks, redrawn with its seeds."""
    idx, _ = real_aug.load_set("bic/picks")
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    meta = pooling.crop_meta()
    return np.stack([real_aug.degraded(crops, meta, i, "bic")[0] for i in idx])


def cmd_encode() -> None:
    sources = {
        "crops": lambda: np.load(RUN / "ln" / "crops.npy", mmap_mode="r"),
        "bic": _bicubic_reals,
        "views": lambda: np.load(RUN / "ln" / "views.npy", mmap_mode="r"),
    }
    for name, get in sources.items():
        arr = get()

        def make(start: int, stop: int, arr=arr) -> tuple[list, list]:
            return [mouth(np.asarray(x)) for x in arr[start:stop]], [{}] * (stop - start)

        pooling.encode_chunks(OUT / name, len(arr), make, CHUNK)


def load(name: str) -> np.ndarray:
    return pooling.load_chunks(OUT / name)


def cmd_eval() -> None:
    meta = pooling.crop_meta()
    idx, fbic = real_aug.load_set("bic/picks")
    face = np.concatenate([pooling.load("crops"), fbic])
    mth = np.concatenate([load("crops"), load("bic")])
    assert len(face) == len(mth) == len(meta) + len(idx), (len(face), len(mth))
    meta = meta + [meta[i] | {"variant": "aug"} for i in idx]
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    both = np.concatenate([face[:, :, :2], mth[:, :, :2]], axis=2)  # (N, 12, 4, 768): face cls, mean, mouth cls, mean
    vboth = np.concatenate([pooling.load("views")[:, :, :2], load("views")[:, :, :2]], axis=2)
    views = {k: vboth[6 * j : 6 * j + 6] for j, k in enumerate(vkeys)}
    orig = np.array([m["variant"] == "orig" for m in meta])
    toks = ("cls", "mean", "m_cls", "m_mean")
    td.select = pooling.selector(toks)
    sets = {
        "face b4-12 (shipped)": (range(4, 13), ("cls", "mean")),
        "mouth b4-12": (range(4, 13), ("m_cls", "m_mean")),
        "face+mouth b4-12": (range(4, 13), toks),
        "face+mouth b6-12": (range(6, 13), toks),
    }
    only = os.environ.get("SETS")
    for name, (blocks, tokens) in sets.items():
        if only and not any(s in name for s in only.split(",")):
            continue
        for c in [float(x) for x in os.environ.get("CS", "0.01").split(",")]:
            oofs, voofs = td.loso(both, meta, tuple(blocks), tokens, (c,), labelled=True, views=views)
            tt.summary(f"{name} C={c}", meta, orig, oofs[c], voofs[c])


if __name__ == "__main__":
    {"encode": cmd_encode, "eval": cmd_eval}[sys.argv[1]]()
