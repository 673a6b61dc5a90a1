"""Experiment (issue 11): other poolings of CLIP's patch tokens than their mean, under the default's LOSO protocol.

The shipped probe reads, per block, the class token and the *mean* of the 196 patch tokens. A blending boundary or
a re-rendered mouth is local: averaged over the whole crop it is diluted by the patches that carry no trace. This
measures what richer but still cheap poolings give the same linear probe: the per-channel standard deviation of
the patch tokens, and the mean over the inner face (the centre 3 × 3 ... 8 × 8 patches) against the ring around it
(boundary and context), from the same frozen int8 encoder.

Stages (same ``DFLAB_DEFAULT_RUN`` as ``train_default``; needs ``tune_ln.py crops``)::

    python scripts/experiments/pooling.py encode     # every crop and still view, ~12 min here, resumable by chunk
    python scripts/experiments/pooling.py eval       # LOSO probes per token set, as train_default's candidates

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tune_ln

tt, td = tune_ln.tt, tune_ln.td
RUN = td.RUN
OUT = RUN / "pool"
CHUNK = 256
#: pooled tokens per block: class, mean of all patches, their std, the inner face's mean, the ring's mean
TOKENS = ("cls", "mean", "std", "inner", "ring")
GRID = 14
INNER = tuple(range(3, 11))  # patch rows/cols 3-10 of 14: the central 8 × 8 patches (the face at margin 1.3)


def pooled(hidden: dict[int | str, np.ndarray]) -> np.ndarray:
    """(B, 12, len(TOKENS), 768) float16 from the encoder's block outputs."""
    inner = np.zeros((GRID, GRID), bool)
    inner[np.ix_(INNER, INNER)] = True
    inner = inner.ravel()
    out = []
    for b in td.ALL_BLOCKS:
        h = hidden[b]
        p = h[:, 1:]
        out.append(np.stack([h[:, 0], p.mean(1), p.std(1), p[:, inner].mean(1), p[:, ~inner].mean(1)], axis=1))
    return np.stack(out, axis=1).astype(np.float16)


def cmd_encode() -> None:
    """Crops then views, one chunk file each :data:`CHUNK` images (a kill loses the chunk in progress only)."""
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    OUT.mkdir(parents=True, exist_ok=True)
    enc = ClipOnnxEncoder(td.ALL_BLOCKS, threads=int(os.environ.get("THREADS", "2")))
    t0, n = time.time(), 0
    for name in ("crops", "views"):
        arr = np.load(RUN / "ln" / f"{name}.npy", mmap_mode="r")
        for s, stop, path in pending_chunks(OUT, len(arr), CHUNK, name, "npy"):
            feats = pooled(enc(preprocess(list(arr[s:stop]))))
            np.save(OUT / f"{name}_tmp.npy", feats)
            (OUT / f"{name}_tmp.npy").rename(path)
            n += len(feats)
            print(f"{name} {s + len(feats)}/{len(arr)} ({(time.time() - t0) / n:.3f} s/image)", flush=True)


def crop_meta() -> list[dict]:
    """``train_default``'s meta of the crops in ``tune_ln``'s ``crops.npy``: the plan before the resampled reals
    (their items are merged into the feature cache in plan order, so dropping them gives the crops' order)."""
    return [m for m in td.load_features()[1] if m["variant"] != "resampled"]


def load(name: str) -> np.ndarray:
    return np.concatenate([np.load(p) for p in sorted(OUT.glob(f"{name}_[0-9]*.npy"))])


def still_views(vfeats: np.ndarray | None = None) -> dict[tuple, np.ndarray]:
    """The pooled features of the scanner's six test-time views of each still face, by (file, frame, track):
    ``vfeats`` in ``views.npy``'s order, or those of :func:`cmd_encode`."""
    vfeats = load("views") if vfeats is None else vfeats
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    return {k: vfeats[6 * j : 6 * j + 6] for j, k in enumerate(vkeys)}


def pending_chunks(out: Path, n: int, chunk: int, name: str = "feats", ext: str = "npz"):
    """The experiments' resumable loop over ``n`` items: (start, stop, path) of each ``chunk`` whose file
    ``out/{name}_XXXX.{ext}`` is not written yet. The caller writes a temporary file and renames it to ``path``,
    so a kill loses only the chunk in progress."""
    out.mkdir(parents=True, exist_ok=True)
    for s in range(0, n, chunk):
        path = out / f"{name}_{s // chunk:04d}.{ext}"
        if not path.exists():
            yield s, min(n, s + chunk), path


def encode_chunks(out: Path, n: int, make, chunk: int = 128) -> None:
    """Encode ``n`` images into ``out/feats_XXXX.npz`` (pooled features and the images' parameters), one file per
    ``chunk``: ``make(start, stop)`` gives (images, parameters). Resumable: a kill loses the chunk in progress."""
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    enc, t0, done = None, time.time(), 0
    for s, stop, path in pending_chunks(out, n, chunk):
        enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=int(os.environ.get("THREADS", "2")))
        imgs, params = make(s, stop)
        np.savez(out / "tmp.npz", feats=pooled(enc(preprocess(imgs))), params=json.dumps(params))
        (out / "tmp.npz").rename(path)
        done += len(imgs)
        print(f"{out.name} {s + len(imgs)}/{n} ({(time.time() - t0) / done:.2f} s/image)", flush=True)


def load_chunks(out: Path) -> np.ndarray:
    """The features :func:`encode_chunks` wrote, in order."""
    return np.concatenate([np.load(p)["feats"] for p in sorted(out.glob("feats_[0-9]*.npz"))])


def load_indexed(out: Path) -> tuple[list[int], np.ndarray]:
    """(the source faces' indices in ``out/idx.json``, their features) as :func:`encode_chunks` wrote them, cut to
    the chunks encoded so far."""
    f = load_chunks(out)
    return json.loads((out / "idx.json").read_text())[: len(f)], f


def selector(names: tuple[str, ...]):
    """A :func:`train_default.select` for features whose token axis holds ``names`` (``loso`` selects through
    ``train_default.select``, which an experiment replaces with this)."""

    def select(feats: np.ndarray, blocks, tokens) -> np.ndarray:
        t_idx = [names.index(t) for t in tokens]
        return feats[:, [b - 1 for b in blocks]][:, :, t_idx].reshape(len(feats), -1).astype(np.float32)

    return select


#: :func:`train_default.select` over :data:`TOKENS`
select = selector(TOKENS)


#: candidates: (blocks, tokens); all with the labelled fakes of the other sources, as the shipped probe
SETS = {
    "b6-12 cls+mean (shipped)": (range(6, 13), ("cls", "mean")),
    "b6-12 cls+mean+std": (range(6, 13), ("cls", "mean", "std")),
    "b6-12 cls+inner+ring": (range(6, 13), ("cls", "inner", "ring")),
    "b6-12 cls+mean+inner+ring": (range(6, 13), ("cls", "mean", "inner", "ring")),
    "b6-12 all five": (range(6, 13), TOKENS),
    "b4-12 cls+mean+std": (range(4, 13), ("cls", "mean", "std")),
}


def cmd_eval() -> None:
    meta = crop_meta()
    feats = load("crops")
    assert len(feats) == len(meta), (len(feats), len(meta))
    views = still_views()
    orig = np.array([m["variant"] == "orig" for m in meta])
    td.select = select  # loso() selects through the module's global
    only = os.environ.get("SETS")
    for name, (blocks, tokens) in SETS.items():
        if only and not any(s in name for s in only.split(",")):
            continue
        oofs, voofs = td.loso(feats, meta, tuple(blocks), tokens, (0.01,), labelled=True, views=views)
        tt.summary(name, meta, orig, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"encode": cmd_encode, "eval": cmd_eval}[sys.argv[1]]()
