"""Experiment (issue 11): twins that *warp* a real face into a new expression, beside SBI's blends.

The twins of the default teach blending: a boundary, a colour or frequency mismatch. Talking-head and image-animation
generators (LIA, FOMM / TPSMM, LivePortrait, and the warping stage of many diffusion animators) move the face
instead: its texture is resampled along a smooth motion field into a new mouth, jaw and eye shape, with stretched
lips and teeth that were never there. This twin does that crudely and without any blending boundary: its 68
landmarks move into a random expression (:func:`expression`: jaw, mouth corners, eyelids, brows) and the crop is
warped piecewise-affinely onto them, its border fixed. (A first draft took another face's aligned landmarks: pose
differences tore the faces apart.)
Labelled fake, one per real face; measured under the LOSO protocol beside the shipped set (resampled reals).

    python scripts/experiments/warp_twins.py make    # warp + encode, resumable by chunk
    python scripts/experiments/warp_twins.py eval    # LOSO: shipped set, + warp twins

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
OUT = RUN / "warp"
CHUNK = 128


def expression(lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``lm`` (68, 2) moved into a new expression in the face's own frame: the jaw drops or closes, the mouth corners
    widen or narrow, the eyelids close part-way, the brows rise or fall (fractions of the nose-bridge-to-chin
    height)."""
    down = lm[8] - lm[27]
    h = float(np.linalg.norm(down)) + 1e-6
    down = down / h
    right = lm[45] - lm[36]
    right = right / (np.linalg.norm(right) + 1e-6)
    p = {
        "open": float(rng.uniform(-0.03, 0.12)),
        "smile": float(rng.uniform(-0.03, 0.06)),
        "lids": float(rng.uniform(0.0, 0.6)) if rng.random() < 0.4 else 0.0,
        "brows": float(rng.uniform(-0.03, 0.05)) if rng.random() < 0.5 else 0.0,
    }
    out = lm.astype(np.float64).copy()
    for idx, w in (([65, 66, 67], 1.0), ([55, 56, 57, 58, 59], 0.9), ([6, 7, 8, 9, 10], 0.7), ([4, 5, 11, 12], 0.35)):
        out[idx] += p["open"] * w * h * down
    for idx, side in (([48, 60], -1.0), ([54, 64], 1.0)):
        out[idx] += p["smile"] * h * (side * right - 0.6 * down)
    for up, low in (([37, 38], [41, 40]), ([43, 44], [47, 46])):
        out[up] += p["lids"] * (lm[low] - lm[up])
    out[17:27] -= p["brows"] * h * down
    return out, p


def warp_face(img: np.ndarray, lm: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``img`` (H, W, 3) with landmarks ``lm`` (68, 2: x, y) warped piecewise-affinely so that they land on
    ``target``; the crop's border stays fixed."""
    from skimage.transform import PiecewiseAffineTransform, warp

    h, w = img.shape[:2]
    t = np.linspace(0, 1, 9)
    x, y, zero = t * (w - 1), t * (h - 1), np.zeros(9)
    border = np.concatenate([np.c_[x, zero], np.c_[x, zero + h - 1], np.c_[zero, y], np.c_[zero + w - 1, y]])
    # output coords -> input coords (warp's inverse map)
    pa = PiecewiseAffineTransform.from_estimate(np.r_[target, border], np.r_[lm, border])
    out = warp(img, pa, output_shape=(h, w), order=1, preserve_range=True, mode="edge")
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _landmarks(meta: list[dict], idx: list[int]) -> dict[int, np.ndarray]:
    from dflab.data.manifest import Manifest

    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in rows}
    scale = 224 / td.CROP_SIZE
    return {i: index[(meta[i]["file"], meta[i]["frame"], meta[i]["track"])].landmarks_array() * scale for i in idx}


def cmd_make() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = pooling.crop_meta()
    idx = [i for i, m in enumerate(meta) if m["variant"] == "orig" and m["label"] == 0]
    (OUT / "idx.json").write_text(json.dumps(idx))
    lms = _landmarks(meta, idx)
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")

    def make(start: int, stop: int) -> tuple[list, list]:
        imgs, params = [], []
        for i in idx[start:stop]:
            target, p = expression(lms[i], np.random.default_rng([td.SEED, 11, i]))
            imgs.append(warp_face(np.asarray(crops[i]), lms[i], target))
            params.append(p)
        return imgs, params

    pooling.encode_chunks(OUT, len(idx), make, CHUNK)


def cmd_eval() -> None:
    meta = pooling.crop_meta()
    base_x, base_m, views = real_aug.shipped_set()
    td.select = pooling.select
    widx, fw = pooling.load_indexed(OUT)
    runs = {
        "shipped set (resampled reals)": (base_x, base_m),
        "+ warp twins": (
            np.concatenate([base_x, fw]),
            base_m + [meta[i] | {"variant": "warp", "label": 1} for i in widx],
        ),
    }
    blocks = tuple(range(int(os.environ.get("FIRST", "4")), 13))
    for name, (x, mm) in runs.items():
        o = np.array([m["variant"] == "orig" for m in mm])
        for lab in (True, False):
            oofs, voofs = td.loso(x, mm, blocks, ("cls", "mean"), (0.01,), labelled=lab, views=views)
            tt.summary(f"{name} {'+labelled' if lab else 'self-only'}", mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
