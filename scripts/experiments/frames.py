"""Experiment (issue 11): all 32 prepared frames of each real video in training, not 12.

The default encodes :data:`train_default.REAL_FRAMES` = 12 of the 32 prepared frames of a real video (each with
its twin). Issue 11 asked for many frames per video (≥ 32): more of a real video's motion blur, compression and
expressions, each with a twin. This encodes the other frames of every real video (and their SBI / ADDG twins,
replayed by ``train_default.item_crop`` with the seeds of a 32-frame plan) and adds them to training only: the
validation still scores the same faces of each file, so the numbers compare with the shipped set's.

    python scripts/experiments/frames.py make    # crops + encode, resumable by chunk
    python scripts/experiments/frames.py eval    # LOSO: shipped set, + the extra frames (and twins)

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
import pooling
import real_aug
import tune_ln

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / "frames"
CHUNK = 128


def extra_items() -> list[tuple[str, dict, object]]:
    """(file, item, row) of the 32-frame plan of the real videos that the shipped 12-frame plan does not hold."""
    from dflab.data.manifest import Manifest

    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    shipped = td.plan(rows)
    real_frames, td.REAL_FRAMES = td.REAL_FRAMES, td.PREPARE_FRAMES
    try:
        wide = td.plan(rows)
    finally:
        td.REAL_FRAMES = real_frames
    out = []
    for key, items in wide.items():
        have = {(it["row"], it["variant"]) for it in shipped[key]}
        out += [
            (key, it, rows[it["row"]])
            for it in items
            if it["variant"] != "resampled" and (it["row"], it["variant"]) not in have
        ]
    return out


def _meta(key: str, item: dict, row) -> dict:
    variant = "extra" if item["variant"] == "orig" else item["variant"]
    return {
        "variant": variant,
        "file": key,
        "frame": row.frame_index,
        "track": row.track_id,
        "label": td.item_label(item["variant"], row.label),
        "source": td.source_of(row),
    }


def cmd_make() -> None:
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    OUT.mkdir(parents=True, exist_ok=True)
    items = extra_items()
    (OUT / "meta.json").write_text(json.dumps([_meta(*x) for x in items]))
    enc, t0, n = None, time.time(), 0
    for s in range(0, len(items), CHUNK):
        path = OUT / f"feats_{s // CHUNK:04d}.npy"
        if path.exists():
            continue
        enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=2)
        imgs = [tune_ln._resized(td.item_crop(key, it, row)[0]) for key, it, row in items[s : s + CHUNK]]
        np.save(OUT / "tmp.npy", pooling.pooled(enc(preprocess(imgs))))
        (OUT / "tmp.npy").rename(path)
        n += len(imgs)
        print(f"{s + len(imgs)}/{len(items)} ({(time.time() - t0) / n:.2f} s/face)", flush=True)


def cmd_eval() -> None:
    meta = pooling.crop_meta()
    feats = pooling.load("crops")
    vfeats = pooling.load("views")
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    views = {k: vfeats[6 * j : 6 * j + 6] for j, k in enumerate(vkeys)}
    td.select = pooling.select
    bidx, fbic = real_aug.load_set("bic/picks")
    base_x = np.concatenate([feats, fbic])
    base_m = meta + [meta[i] | {"variant": "aug"} for i in bidx]
    src = {m["file"]: m for m in meta}
    em = [src[m["file"]] | m for m in json.loads((OUT / "meta.json").read_text())]
    ef = np.concatenate([np.load(p) for p in sorted(OUT.glob("feats_[0-9]*.npy"))])
    em = em[: len(ef)]
    runs = {
        "shipped set (resampled reals)": (base_x, base_m),
        "+ the other 20 frames of each real video": (np.concatenate([base_x, ef]), base_m + em),
        "+ their reals only (no twins)": (
            np.concatenate([base_x, ef[[m["variant"] == "extra" for m in em]]]),
            base_m + [m for m in em if m["variant"] == "extra"],
        ),
    }
    blocks = tuple(range(int(os.environ.get("FIRST", "4")), 13))
    for name, (x, mm) in runs.items():
        o = np.array([m["variant"] == "orig" for m in mm])
        oofs, voofs = td.loso(x, mm, blocks, ("cls", "mean"), (0.01,), labelled=True, views=views)
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
