"""Experiment (issue 11): twins that paste *another person's* face (Face X-ray's BI, BiG-Arts' (Real, Real) blends) or
that re-render the face at a lower resolution (FWA), beside the shipped SBI / ADDG twins.

Issue 11 named five ways of making fakes from the real faces: SBI, ADDG, BI, FWA and BiG-Arts' real-real blends.
The default's twins are SBI's self-blends and five ADDG categories; the other three had not been measured as its
training fakes. A self-blend pastes a face onto itself, so it teaches a boundary and a colour or frequency mismatch
but never a second identity's texture and geometry inside the same head, which is what a face swap leaves. Here
each real face the plan twins gets one more fake, made by ``VARIANT`` (a registered synthesizer):

* ``bi``: Face X-ray (Li et al. 2020): a landmark-near donor of another identity, colour-corrected, blended
  through a deformed, blurred hull mask;
* ``bigarts_rr``: BiG-Arts' (Real, Real) augmentation: the same kind of paste, no colour correction, the mask
  warped piecewise-affinely;
* ``fwa``: Face Warping Artifacts (Li & Lyu 2019): the face shrunk, blurred, resized back and pasted.

Donors come from the same LOSO source as the face, so a held-out source's faces never enter the training folds
as part of another source's fake; a face whose source has no other identity gets no twin. Crops, seeds and
encoding are those of ``train_default`` (its 256 px crops, its encoder, all 12 blocks), the twin flipped at random
as ``synth_twin`` does. ``eval`` runs the shipped recipe (the card's candidate, and the self-supervised blocks 6-12
without labelled fakes) under the default's LOSO protocol, with and without the new twins::

    VARIANT=bi python scripts/experiments/blend_twins.py make    # synthesise + encode, resumable by chunk (DRAW=2:
                                                                 # another draw, its own seeds, read as "bi2")
    VARIANTS=bi,fwa,bi+fwa python scripts/experiments/blend_twins.py eval   # "+": several kinds together

Measured on the eleventh run's folder, before FWA joined the default (``train_default.MORE_TWINS``): on a run of
the twelfth run's code the "shipped set" already holds one FWA twin per face, and ``VARIANT=fwa`` draws the same
twins again. Results are in docs/default-weights.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import tune_tail as tt

td = tt.td
RUN = td.RUN
OUT = RUN / "blend"
CHUNK = 128
#: another draw of the same kind of twin (its own seeds): ``DRAW=2`` writes ``blend/bi2``, read as variant ``bi2``
DRAW = os.environ.get("DRAW", "")


def _faces() -> tuple[list, list[tuple[str, dict]]]:
    """(manifest rows, the real faces the plan twins: (file key, plan item)) in plan order."""
    from dflab.data.manifest import Manifest

    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    work = td.plan(rows)
    twinned = [(key, it) for key, items in sorted(work.items()) for it in items if it["variant"] in ("sbi", "addg")]
    return rows, [(key, {"row": it["row"], "variant": "orig"}) for key, it in twinned if not it.get("twin")]


def _pools(rows: list) -> dict:
    """A donor pool of the real faces of each LOSO source (keys: row index as text)."""
    import cv2

    from dflab.synthesis import DonorPool, FaceSample

    def load(key: str) -> FaceSample:
        r = rows[int(key)]
        img = cv2.imread(str(RUN / "faces" / r.crop_path))[:, :, ::-1]
        return FaceSample(np.ascontiguousarray(img), r.landmarks_array(), identity=_identity(r), key=key)

    by_src: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if not r.label:
            by_src.setdefault(td.source_of(r), []).append(i)
    pools = {}
    for src, idx in by_src.items():
        if len({_identity(rows[i]) for i in idx}) > 1:
            pools[src] = DonorPool(
                [str(i) for i in idx],
                [_identity(rows[i]) for i in idx],
                np.stack([rows[i].landmarks_array() for i in idx]),
                load,
            )
    return pools


def _identity(row) -> str:
    """A person's identity as far as the manifest tells: its ``original_id`` (FF++), else its media file."""
    return row.original_id or f"{row.dataset}/{row.video_id}"


def twin(variant: str, key: str, row, pools: dict) -> tuple[np.ndarray, dict] | None:
    """The ``variant`` fake of one real face, replayed as ``train_default.item_crop`` replays a twin (flipped at
    random, seeded by its place and the variant's name); ``None`` when it needs a donor and the face's source has
    none."""
    import cv2

    pool = pools.get(td.source_of(row)) if variant != "fwa" else None
    if variant != "fwa" and pool is None:
        return None
    place = f"{key}/{row.frame_index}/{row.track_id}/{variant}{DRAW}"
    seed = int(hashlib.sha1(place.encode()).hexdigest()[:8], 16)
    img = cv2.imread(str(RUN / "faces" / row.crop_path))[:, :, ::-1]
    return td.synth_twin(img, row.landmarks_array(), variant, seed, pool, _identity(row))


def cmd_make(variant: str) -> None:
    from dflab.models.clip import ClipOnnxEncoder, preprocess, token_features

    rows, faces = _faces()
    pools = _pools(rows)
    enc, t0, done = None, time.time(), 0
    for s, stop, path in pooling.pending_chunks(OUT / f"{variant}{DRAW}", len(faces), CHUNK):
        enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=int(os.environ.get("THREADS", "2")))
        imgs, keys = [], []
        for key, it in faces[s:stop]:
            r = rows[it["row"]]
            made = twin(variant, key, r, pools)
            if made is not None:
                imgs.append(made[0])
                keys.append([key, r.frame_index, r.track_id, made[1]])
        feats = [
            token_features(enc(preprocess(imgs[b : b + 16])), td.ALL_BLOCKS).astype(np.float16)
            for b in range(0, len(imgs), 16)
        ]
        np.savez(path.parent / "tmp.npz", feats=np.concatenate(feats), keys=json.dumps(keys, default=str))
        (path.parent / "tmp.npz").rename(path)
        done += len(imgs)
        print(
            f"{variant} {s + CHUNK}/{len(faces)} faces, {done} twins ({(time.time() - t0) / done:.2f} s/twin)",
            flush=True,
        )


def load_twins(variant: str, meta: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """The ``variant`` twins' features and their meta (the real face's, labelled fake)."""
    index = {(m["file"], m["frame"], m["track"]): m for m in meta if m["variant"] == "orig"}
    feats, tmeta = [], []
    for p in sorted((OUT / variant).glob("feats_[0-9]*.npz")):
        z = np.load(p)
        feats.append(z["feats"])
        for key, frame, track, params in json.loads(str(z["keys"])):
            tmeta.append(index[(key, frame, track)] | {"variant": variant, "label": 1, "params": params})
    return np.concatenate(feats), tmeta


def cmd_eval(variants: list[str]) -> None:
    feats, meta = td.load_features()
    views = td.load_views()
    blocks, tokens, c, _ = td.shipped_recipe()
    runs = {"shipped set": (feats, meta)}
    for spec in variants:  # "bi" or several together: "bi+fwa"
        made = [load_twins(v, meta) for v in spec.split("+")]
        print(f"{spec}: {sum(len(m) for _, m in made)} twins", flush=True)
        runs[f"+ {spec} twins"] = (
            np.concatenate([feats, *(f for f, _ in made)]),
            meta + [x for _, m in made for x in m],
        )
    for name, (x, mm) in runs.items():
        o = np.array([m["variant"] == "orig" for m in mm])
        for labelled, (bl, tk) in ((True, (blocks, tokens)), (False, td.FEATURE_SETS["b6-12_cls_mean"])):
            oofs, voofs = td.loso(x, mm, bl, tk, (c,), labelled, views, weight=td.face_weights(mm))
            tt.summary(f"{name} {'+labelled' if labelled else 'self-only'}", mm, o, oofs[c], voofs[c])


if __name__ == "__main__":
    if sys.argv[1] == "make":
        cmd_make(os.environ.get("VARIANT", "bi"))
    else:
        cmd_eval(os.environ.get("VARIANTS", "bi").split(","))
