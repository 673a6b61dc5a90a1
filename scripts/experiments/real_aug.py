"""Experiment (issue 11): degraded copies of the real faces as extra *real* training faces, under the LOSO protocol.

``sr_twins.py`` found that the bicubic copies of downscaled real faces, meant as the GAN twins' real counterparts,
help alone (LOSO file AUC 0.850 → 0.872). The twins teach resampling and blur as signs of a fake (SBI resizes its
source), and real footage is often soft; real faces that went through the same benign processing tell the probe
that those are not the forgery. This measures which processing, and how many faces.

Variants (``VARIANT``): ``bic`` (downscale ×2-4 by area, bicubic back), ``jpeg`` (JPEG quality 30-90), ``mix``
(one of: that resampling with a random factor ×1.5-4 and interpolation, a Gaussian blur σ 0.5-2, JPEG quality 30-90,
or resampling then JPEG).
``FACES``: ``picks`` (every still face + 4 per real video, as ``sr_twins``), ``all`` (every real face) or ``fakes``
(every labelled fake face; its copy stays labelled fake).

    VARIANT=mix FACES=all python scripts/experiments/real_aug.py make    # degrade + encode, resumable by chunk
    python scripts/experiments/real_aug.py eval bic/picks mix/all ...   # LOSO with each set added
    python scripts/experiments/real_aug.py eval bic/picks+=codec/twins  # ... "=": the copies replace their originals
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import sr_twins

td, tt = pooling.td, pooling.tt
RUN = td.RUN
CHUNK = 128


def degrade(img: np.ndarray, variant: str, rng: np.random.Generator, kind: str = "image") -> tuple[np.ndarray, dict]:
    import cv2

    def resample(x: np.ndarray, f: float, up: int) -> np.ndarray:
        n = max(8, round(x.shape[0] / f))
        return cv2.resize(cv2.resize(x, (n, n), interpolation=cv2.INTER_AREA), x.shape[:2][::-1], interpolation=up)

    from dflab.synthesis.degrade import h264, jpeg, rescale

    if variant == "codec":  # a twin encoded as a forgery is after its making: H.264 for a video's, JPEG for a still's
        if kind == "video":
            crf = int(rng.integers(18, 31))
            return h264(np.ascontiguousarray(img), crf=crf), {"op": "h264", "crf": crf}
        q = int(rng.integers(70, 96))
        return jpeg(np.ascontiguousarray(img), q), {"op": "jpeg", "q": q}
    if variant == "sharp":  # SBI's source sharpening (albumentations Sharpen) over the whole real face
        alpha, light = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.5, 1.0))
        kernel = -alpha * np.ones((3, 3), np.float32)
        kernel[1, 1] = (1.0 - alpha) + alpha * (8.0 + light)
        out = np.clip(cv2.filter2D(img.astype(np.float32), -1, kernel), 0, 255).astype(np.uint8)
        return out, {"op": "sharpen", "alpha": alpha, "lightness": light}
    if variant == "jpeg":  # JPEG at a random quality 30-90, for either class (jpeg.py: compressed training copies)
        q = int(rng.integers(30, 91))
        return jpeg(np.ascontiguousarray(img), q), {"op": "jpeg", "q": q}
    if variant == "bic":  # as train_default.resampled_real
        f = float(rng.uniform(2.0, 4.0))
        return rescale(img, 1.0 / f), {"op": "resample", "f": f}
    op = str(rng.choice(["resample", "blur", "jpeg", "resample+jpeg"]))
    interps = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
    p: dict = {"op": op}
    out = img
    if "resample" in op:
        p["f"], p["interp"] = float(rng.uniform(1.5, 4.0)), str(rng.choice(list(interps)))
        out = resample(out, p["f"], interps[p["interp"]])
    if op == "blur":
        p["sigma"] = float(rng.uniform(0.5, 2.0))
        out = cv2.GaussianBlur(out, (0, 0), p["sigma"])
    if "jpeg" in op:
        p["q"] = int(rng.integers(30, 91))
        out = jpeg(np.ascontiguousarray(out), p["q"])
    return np.ascontiguousarray(out), p


def faces(meta: list[dict], which: str) -> list[int]:
    if which == "picks":
        return sr_twins.picks(meta)
    if which == "twins":  # every synthesised twin (SBI, ADDG)
        return [i for i, m in enumerate(meta) if m["variant"] in ("sbi", "addg")]
    if which == "fakes":  # every labelled fake face (its copy keeps the label: resampling is no evidence either way)
        return [i for i, m in enumerate(meta) if m["variant"] == "orig" and m["label"] == 1]
    return [i for i, m in enumerate(meta) if m["variant"] == "orig" and m["label"] == 0]


def cmd_make() -> None:
    variant, which = os.environ.get("VARIANT", "mix"), os.environ.get("FACES", "all")
    out = RUN / "real_aug" / f"{variant}_{which}"
    out.mkdir(parents=True, exist_ok=True)
    meta = pooling.crop_meta()
    idx = faces(meta, which)
    (out / "idx.json").write_text(json.dumps(idx))
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")

    def make(start: int, stop: int) -> tuple[list, list]:
        made = [degraded(crops, meta, i, variant) for i in idx[start:stop]]
        return [m[0] for m in made], [m[1] for m in made]

    pooling.encode_chunks(out, len(idx), make, CHUNK)


def degraded(crops: np.ndarray, meta: list[dict], i: int, variant: str) -> tuple[np.ndarray, dict]:
    """Crop ``i`` degraded by ``variant``, replayed from its seed."""
    rng = np.random.default_rng([td.SEED, 7, i])
    return degrade(np.asarray(crops[i]), variant, rng, td.kind_of(meta[i]["file"]))


def shipped_set() -> tuple[np.ndarray, list[dict], dict]:
    """The shipped recipe's training faces as the experiments hold them: every crop (``tune_ln``'s order) and the
    bicubic copies of ``bic/picks`` (the resampled reals, variant ``aug``), with the still views."""
    meta = pooling.crop_meta()
    idx, fbic = load_set("bic/picks")
    x = np.concatenate([pooling.load("crops"), fbic])
    return x, meta + [meta[i] | {"variant": "aug"} for i in idx], pooling.still_views()


def load_set(name: str) -> tuple[list[int], np.ndarray]:
    return pooling.load_indexed(RUN / "real_aug" / name.replace("/", "_"))


def cmd_eval(names: list[str]) -> None:
    meta = pooling.crop_meta()
    feats = pooling.load("crops")
    views = pooling.still_views()
    td.select = pooling.select
    orig = np.array([m["variant"] == "orig" for m in meta])
    for name in names:
        x, mm = feats.copy(), list(meta)
        for part in name.split("+"):
            replace = part.startswith("=")  # "=codec/twins": the processed copies replace their originals
            idx, f = load_set(part.lstrip("="))
            if replace:
                x[idx] = f
                continue
            x = np.concatenate([x, f])
            mm += [meta[i] | {"variant": "aug", "label": meta[i]["label"]} for i in idx]
        o = np.r_[orig, np.zeros(len(x) - len(feats), bool)]
        oofs, voofs = td.loso(x, mm, tuple(range(6, 13)), ("cls", "mean"), (0.01,), labelled=True, views=views)
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    cmd_make() if sys.argv[1] == "make" else cmd_eval(sys.argv[2:])
