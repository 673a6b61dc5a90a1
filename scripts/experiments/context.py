"""Experiment (issue 11): a wide context view of each face (head, hair, background) beside the face crop.

Talking-head generators (EMO, VASA-1, V-Express, AniPortrait) synthesise the whole frame, not just the face: their
backgrounds, hair and shoulders are generated too, while a face swap leaves them real. The default's probe sees the
face at margin 1.3 only, and the videos (mostly talking heads) are its weak side. This measures whether the same
frozen int8 encoder on a window 3× the face box (clipped to the frame, ≈ 4× the face), concatenated to the face
features, helps the linear probe under the LOSO protocol. A twin (or a resampled copy) of a real face shares that
face's context, since a self-blend changes the face only, as a face swap does.

Stages (same ``DFLAB_DEFAULT_RUN`` as ``train_default``; needs ``tune_ln.py crops`` and ``real_aug.py`` bic/picks)::

    python scripts/experiments/context.py make    # decode each original face's frame, crop and encode, resumable
    python scripts/experiments/context.py eval    # LOSO: face alone, context alone, both

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
OUT = RUN / "context"
#: the context window's side, in face-box sides (the box is the prepared crop's, at margin 1.3)
WIDTH = 3.0


def context_crop(rgb: np.ndarray, box) -> np.ndarray:
    """The square window ``WIDTH`` × the box's side around its centre, shifted (and shrunk) to stay inside the
    frame, resized to CLIP's 224 px."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side = int(min(round(WIDTH * max(x1 - x0, y1 - y0)), h, w))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    win = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > 224 else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(win), (224, 224), interpolation=interp)


def _orig_rows() -> list[tuple[int, str, int, int]]:
    """(crop index, file key, frame, track) of every original face, in crop order."""
    return [(i, m["file"], m["frame"], m["track"]) for i, m in enumerate(pooling.crop_meta()) if m["variant"] == "orig"]


def cmd_make() -> None:

    from dflab.data.manifest import Manifest
    from dflab.media import iter_frames

    origs = _orig_rows()
    with Manifest(RUN / "faces", readonly=True) as man:
        boxes = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r.box for r in man.faces()}
        paths = {f"{v['dataset']}/{v['video_id']}": v["path"] for v in man.videos()}
    by_file: dict[str, list[int]] = {}
    for k, (_, key, _, _) in enumerate(origs):
        by_file.setdefault(key, []).append(k)
    order = [k for key in by_file for k in by_file[key]]  # grouped by file, so a chunk decodes few files

    def make(start: int, stop: int) -> tuple[list, list]:
        todo = order[start:stop]
        frames: dict[str, dict[int, np.ndarray]] = {}
        for key in dict.fromkeys(origs[k][1] for k in todo):
            wanted = sorted({origs[k][2] for k in todo if origs[k][1] == key})
            frames[key] = dict(iter_frames(paths[key], indices=wanted))
        crops = [context_crop(frames[origs[k][1]][origs[k][2]], boxes[origs[k][1:]]) for k in todo]
        return crops, [{"orig": k} for k in todo]

    pooling.encode_chunks(OUT, len(order), make)


def context_features() -> np.ndarray:
    """(crops, 12, 2, 768): each crop's context features (its real face's, for a twin), in crop order."""
    import json

    meta = pooling.crop_meta()
    origs = _orig_rows()
    feats = pooling.load_chunks(OUT)
    params = [
        json.loads(str(np.load(p)["params"]))
        for p in sorted(OUT.glob("feats_[0-9]*.npz"))  # the chunk files of pooling.encode_chunks
    ]
    where = {origs[p["orig"]][1:]: j for j, p in enumerate(q for ps in params for q in ps)}
    return np.stack([feats[where[(m["file"], m["frame"], m["track"])]][:, :2] for m in meta])


def cmd_eval() -> None:
    import json
    import os

    meta = pooling.crop_meta()
    idx, fbic = real_aug.load_set("bic/picks")
    face = np.concatenate([pooling.load("crops"), fbic])[:, :, :2]
    ctx = context_features()
    ctx = np.concatenate([ctx, ctx[idx]])  # a resampled real keeps its frame's context
    meta = meta + [meta[i] | {"variant": "aug"} for i in idx]
    both = np.concatenate([face, ctx], axis=2)  # (N, 12, 4, 768): face cls, mean, context cls, mean
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    vface = pooling.load("views")[:, :, :2]
    at = {(m["file"], m["frame"], m["track"]): i for i, m in enumerate(meta) if m["variant"] == "orig"}
    views = {
        k: np.concatenate([vface[6 * j : 6 * j + 6], np.repeat(ctx[at[k]][None], 6, 0)], axis=2)
        for j, k in enumerate(vkeys)
    }
    orig = np.array([m["variant"] == "orig" for m in meta])
    toks = ("cls", "mean", "c_cls", "c_mean")
    td.select = pooling.selector(toks)
    sets = {
        "face b4-12 (shipped)": (range(4, 13), ("cls", "mean")),
        "context b4-12": (range(4, 13), ("c_cls", "c_mean")),
        "face+context b4-12": (range(4, 13), toks),
    }
    weight = td.face_weights(meta)
    only = os.environ.get("SETS")
    for name, spec in sets.items():
        if only and not any(s in name for s in only.split(",")):
            continue
        blocks, tokens = spec
        oofs, voofs = td.loso(both, meta, tuple(blocks), tokens, (0.01, 0.1), True, views, weight=weight)
        for c in (0.01, 0.1):
            tt.summary(f"{name} C={c}", meta, orig, oofs[c], voofs[c])


def cmd_fuse() -> None:
    """Late fusion: the shipped face probe, and a context probe fitted on real and labelled fake faces only (a
    twin's context is its real face's), their out-of-fold logits added with a weight on the context's."""
    import json

    meta = pooling.crop_meta()
    idx, fbic = real_aug.load_set("bic/picks")
    face = np.concatenate([pooling.load("crops"), fbic])
    ctx = context_features()
    ctx = np.concatenate([ctx, ctx[idx]])
    meta = meta + [meta[i] | {"variant": "aug"} for i in idx]
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]
    at = {(m["file"], m["frame"], m["track"]): i for i, m in enumerate(meta) if m["variant"] == "orig"}
    fviews = pooling.still_views()
    cviews = {k: np.repeat(ctx[at[k]][None], 6, 0) for k in vkeys}
    orig = np.array([m["variant"] == "orig" for m in meta])
    blocks, tokens = tuple(range(4, 13)), ("cls", "mean")
    td.select = pooling.select
    f_oof, f_v = td.loso(face, meta, blocks, tokens, (0.01,), True, fviews, weight=td.face_weights(meta))
    td.select = pooling.selector(("cls", "mean"))
    c_oof, c_v = td.loso(ctx, meta, blocks, tokens, (0.01,), True, cviews, weight=orig.astype(float))
    f, c = f_oof[0.01], c_oof[0.01]
    sf, sc = np.nanstd(f[orig]), np.nanstd(c[orig])
    for w in (0.0, 0.1, 0.25, 0.5):
        oof = f + w * c * sf / sc
        voof = {i: f_v[0.01][i] + w * c_v[0.01][i] * sf / sc for i in f_v[0.01]}
        tt.summary(f"face + {w:g} context", meta, orig, oof, voof)


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval, "fuse": cmd_fuse}[sys.argv[1]]()
