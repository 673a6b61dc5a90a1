"""Experiment (issue 11): the stills' test-time views for video faces too, under the default's LOSO protocol.

The scanner scores a still's face as the mean P(fake) of six views (margins 1.2 / 1.3 / 1.4 of the detector's box,
each also mirrored: :func:`dflab.scan.pipeline.still_views`); out of fold the views lift the stills' file AUC from
0.90 to 0.92. A video face is scored from its one crop (margin 1.3), and only the mirror was ever measured for
videos (``flip.py``: 0.84 → 0.83 on the ninth run). This encodes the six views of every validation video face,
cut from its decoded frame exactly as ``train_default.view_crops`` cuts a still's, and scores the videos with all
six, with the three margins unmirrored, and with the centre and its mirror (the probe is the shipped recipe, trained
on single crops as shipped)::

    DFLAB_DEFAULT_RUN=runs/clip_b3 python scripts/experiments/video_views.py encode   # ~15 min here, resumable
    DFLAB_DEFAULT_RUN=runs/clip_b3 python scripts/experiments/video_views.py eval
    DFLAB_DEFAULT_RUN=runs/clip_b3 python scripts/experiments/video_views.py augment

``augment`` uses the views the other way: as more training faces (the five views beside each real or labelled fake
face's own crop, with that face's label and weight), while every file is scored as shipped.

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tune_tail
from tune_tail import Shipped

td = tune_tail.td
OUT = td.RUN / "video_views"
#: which of a face's six views (margin 1.2, mirrored, 1.3, mirrored, 1.4, mirrored) each variant averages
VARIANTS = {"six views": (0, 1, 2, 3, 4, 5), "three margins": (0, 2, 4), "centre + mirror": (2, 3)}


def cmd_encode() -> None:
    """One ``views/``-style cache per video (``train_default.load_views`` reads the folder)."""
    from dflab.data.manifest import Manifest
    from dflab.media.video import iter_frames
    from dflab.models.clip import ClipOnnxEncoder, preprocess, token_features

    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    with Manifest(td.RUN / "faces", readonly=True) as man:
        index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in man.faces()}
    OUT.mkdir(parents=True, exist_ok=True)
    enc = None
    for p in sorted(q for q in (td.RUN / "features").glob("*.npz") if not q.name.endswith(".tmp.npz")):
        if (OUT / p.name).exists():
            continue
        meta = [m for m in json.loads(str(np.load(p)["meta"])) if m["variant"] == "orig"]
        if not meta or td.kind_of(meta[0]["file"]) != "video":
            continue
        rows = [index[(m["file"], m["frame"], m["track"])] for m in meta]
        frames = dict(iter_frames(Path(paths[meta[0]["file"]]), indices=sorted({r.frame_index for r in rows})))
        crops, faces = [], []
        for m, r in zip(meta, rows, strict=True):
            if r.frame_index in frames:  # a frame the decoder does not give back keeps its single crop
                crops += td.view_crops(frames[r.frame_index], r)
                faces.append([m["frame"], m["track"]])
        enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=2)
        feats = np.concatenate(
            [token_features(enc(preprocess(crops[s : s + 12])), td.ALL_BLOCKS) for s in range(0, len(crops), 12)]
        ).astype(np.float16)
        np.savez(OUT / "tmp.npz", feats=feats, faces=np.array(faces), media=meta[0]["file"])
        (OUT / "tmp.npz").rename(OUT / p.name)
        print(f"{meta[0]['file']}: {len(faces)} of {len(meta)} faces x 6 views", flush=True)


def cmd_eval() -> None:
    run = Shipped.load()
    videos = td.load_views(OUT)
    at = {(m["file"], m["frame"], m["track"]): i for i, m in enumerate(run.meta) if m["variant"] == "orig"}
    centre = [float(np.abs(v[2].astype(np.float32) - run.feats[at[k]]).max()) for k, v in videos.items()]
    print(f"{len(videos)} video faces with views; centre view against the cached crop: max |diff| "
          f"median {np.median(centre):.3g}, max {np.max(centre):.3g}", flush=True)  # fmt: skip
    o, v = run.loso(views=run.views | videos)
    video = {i for i in v if td.kind_of(run.meta[i]["file"]) == "video"}
    run.summary("single crop (shipped)", o, {i: x for i, x in v.items() if i not in video})
    for name, pick in VARIANTS.items():
        run.summary(f"video faces: {name}", o, {i: x[list(pick)] if i in video else x for i, x in v.items()})


def cmd_augment() -> None:
    run = Shipped.load()
    videos = td.load_views(OUT)
    at = {(m["file"], m["frame"], m["track"]): i for i, m in enumerate(run.meta) if m["variant"] == "orig"}
    run.summary("shipped", *run.loso())
    for name, views in (("still views", run.views), ("video views", videos), ("both", run.views | videos)):
        extra = [(at[k], x[j]) for k, x in views.items() for j in (0, 1, 3, 4, 5)]  # every view but the crop itself
        x = np.concatenate([run.feats, np.stack([f for _, f in extra]).astype(run.feats.dtype)])
        mm = run.meta + [dict(run.meta[i], variant="view") for i, _ in extra]
        w = np.r_[run.weight, [run.weight[i] for i, _ in extra]]
        o, v = run.loso(x, mm, weight=w)
        run.summary(f"+ {name} as training faces", o, v, mm, np.r_[run.orig, np.zeros(len(extra), bool)])


if __name__ == "__main__":
    {"encode": cmd_encode, "eval": cmd_eval, "augment": cmd_augment}[sys.argv[1]]()
