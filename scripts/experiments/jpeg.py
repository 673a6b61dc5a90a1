"""Experiment (issue 11): the default's file AUC when the held-out faces are JPEG-compressed, per labelled-fake weight.

The ninth run weighs each labelled fake 8 against a twin (``train_default.LABELLED_FAKE_WEIGHT``); a spot check found
the demo's face swap called `real` at JPEG quality 30. This measures JPEG robustness under the LOSO protocol instead
of on one image: every probe is trained on the clean faces as shipped, and scores its held-out faces (and still
views) after JPEG compression of the 224 px face crop at quality ``Q`` (harsher than compressing a whole frame whose
face is larger than 224 px, milder than one whose face is smaller).

    Q=50 python scripts/experiments/jpeg.py make    # compress + encode the original faces and the views, resumable
    Q=50 python scripts/experiments/jpeg.py eval    # LOSO per weight (WEIGHTS="1,4,8"), clean and compressed
    python scripts/experiments/jpeg.py train        # LOSO with compressed training copies, clean and at Q=50, 30

``train`` adds JPEG copies (quality 30-90, ``real_aug.py`` ``VARIANT=jpeg``) of the faces named by ``SETS`` (default
``jpeg/all+jpeg/twins+jpeg/fakes``: every real face, every twin and every labelled fake, each copy keeping its face's
label and weight; ``KIND=image`` / ``video``: of those faces only), so that compression is seen on both sides of
the fit and stops being evidence either way.

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
Q = int(os.environ.get("Q", "50"))
OUT = RUN / f"jpeg{Q}"
KIND = os.environ.get("KIND", "all")  # train: copies of every face ("all"), or of still ("image") / video faces only


def _orig_index() -> list[int]:
    return [i for i, m in enumerate(pooling.crop_meta()) if m["variant"] == "orig"]


def cmd_make() -> None:
    from dflab.synthesis.degrade import jpeg

    idx = _orig_index()
    crops = np.load(RUN / "ln" / "crops.npy", mmap_mode="r")
    views = np.load(RUN / "ln" / "views.npy", mmap_mode="r")
    for name, arr, n in (("crops", lambda k: crops[idx[k]], len(idx)), ("views", lambda k: views[k], len(views))):

        def make(start: int, stop: int, arr=arr) -> tuple[list, list]:
            return [jpeg(np.ascontiguousarray(arr(k)), Q) for k in range(start, stop)], [{"q": Q}] * (stop - start)

        pooling.encode_chunks(OUT / name, n, make)


def cmd_make_file() -> None:
    """The still views cut from the whole image re-saved at quality ``Q`` (the analyst's case: a re-saved photo),
    in the order of ``tune_ln``'s views, resumable by chunk."""
    import io

    from PIL import Image

    from dflab.data.manifest import Manifest
    from dflab.media import read_image

    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    with Manifest(RUN / "faces", readonly=True) as man:
        index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in man.faces()}
    vkeys = [tuple(k) for k in json.loads((RUN / "ln" / "view_keys.json").read_text())]

    def saved(key: str) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(read_image(paths[key])).save(buf, "JPEG", quality=Q)
        return np.asarray(Image.open(buf).convert("RGB"))

    def make(start: int, stop: int) -> tuple[list, list]:
        imgs: dict[str, np.ndarray] = {}
        crops = []
        for k in range(start // 6, stop // 6):
            f = vkeys[k][0]
            imgs[f] = imgs[f] if f in imgs else saved(f)
            crops += [pooling.tune_ln._resized(v) for v in td.view_crops(imgs[f], index[vkeys[k]])]
        return crops, [{"q": Q}] * len(crops)

    pooling.encode_chunks(RUN / f"jpegfile{Q}", 6 * len(vkeys), make, chunk=6 * 32)


def compressed(x: np.ndarray, q: int | str | None, clean_views: dict) -> tuple[np.ndarray | None, dict]:
    """(features to score, still views): the original faces and the views as compressed at quality ``q`` by
    :func:`cmd_make` (``None``: clean, ``loso``'s default); ``"f50"``: the still views of the whole image re-saved
    at 50 (:func:`cmd_make_file`; videos clean)."""
    if q is None:
        return None, clean_views
    if str(q).startswith("f"):
        return None, pooling.still_views(pooling.load_chunks(RUN / f"jpegfile{str(q)[1:]}"))
    scored = x.copy()
    scored[_orig_index()] = pooling.load_chunks(RUN / f"jpeg{q}" / "crops")
    return scored, pooling.still_views(pooling.load_chunks(RUN / f"jpeg{q}" / "views"))


def cmd_eval() -> None:
    x, mm, clean_views = real_aug.shipped_set()
    td.select = pooling.select
    scored, jpeg_views = compressed(x, Q, clean_views)
    o = np.array([m["variant"] == "orig" for m in mm])
    fakes = np.array([m["variant"] == "orig" and m["label"] == 1 for m in mm])
    for w in [float(v) for v in os.environ.get("WEIGHTS", "1,4,8").split(",")]:
        weight = np.where(fakes, w, 1.0)
        for name, sc, views in (("clean", None, clean_views), (f"JPEG q{Q}", scored, jpeg_views)):
            oofs, voofs = td.loso(
                x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.01,), True, views, weight=weight, scored=sc
            )
            tt.summary(f"weight {w:g}, {name}", mm, o, oofs[0.01], voofs[0.01])


def cmd_train() -> None:
    x, mm, clean_views = real_aug.shipped_set()
    td.select = pooling.select
    base = td.face_weights(mm)
    for sets in os.environ.get("SETS", "jpeg/all+jpeg/twins+jpeg/fakes").split(","):
        parts = [real_aug.load_set(part) for part in sets.split("+")]
        keep = [
            (j, f)
            for part_idx, feats in parts
            for j, f in zip(part_idx, feats, strict=True)
            if KIND in ("all", td.kind_of(mm[j]["file"]))
        ]
        src = [j for j, _ in keep]
        xx = np.concatenate([x, np.stack([f for _, f in keep])])
        m2 = mm + [mm[i] | {"variant": "aug"} for i in src]
        weight = np.r_[base, base[src]]
        o = np.array([m["variant"] == "orig" for m in m2])
        for q in (None, 50, 30):
            scored, views = compressed(xx, q, clean_views)
            oofs, voofs = td.loso(
                xx, m2, tuple(range(4, 13)), ("cls", "mean"), (0.01, 0.1), True, views, weight=weight, scored=scored
            )
            for c in (0.01, 0.1):
                tt.summary(f"{sets} C={c} {'clean' if q is None else f'JPEG q{q}'}", m2, o, oofs[c], voofs[c])


def cmd_bands() -> None:
    """What the clean verdict bands do to compressed stills, and what bands chosen on compressed stills give.

    Out-of-fold scores of the shipped recipe; stills only (the JPEG of the face crop models a re-saved photo)."""
    x, mm, clean_views = real_aug.shipped_set()
    td.select = pooling.select
    o = np.array([m["variant"] == "orig" for m in mm])
    still = o & np.array([td.kind_of(m["file"]) == "image" for m in mm])

    def files_at(q: int | str | None) -> dict:
        scored, views = compressed(x, q, clean_views)
        oofs, voofs = td.loso(
            x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.1,), True, views, weight=td.face_weights(mm), scored=scored
        )
        return td.file_scores(mm, oofs[0.1], still, voofs[0.1])

    qs = [v if v.startswith("f") else int(v) for v in os.environ.get("QS", "70,50,30").split(",")]
    band_table("stills", files_at, {f"q{q}": q for q in qs})


def band_table(what: str, files_at, variants: dict) -> None:
    """Print the clean band (Platt and split-conformal band chosen on ``files_at(None)``, the out-of-fold file
    scores of one media kind) and, for each degraded variant ``files_at(v)``: its verdicts under the clean band and
    the bands that variant's own scores would choose."""
    from dflab.eval.calibration import conformal_band, verdict_stats

    clean = files_at(None)
    names = sorted(clean)
    a, b = td.platt_of(clean, names)
    lo, hi, alpha, _ = td.choose_band(clean, names, a, b)
    y = np.array([clean[n]["label"] for n in names])
    p = td.file_probs(clean, names, a, b)
    print(
        f"clean {what}: Platt ({a:.3f}, {b:.3f}), band {lo:.3f}-{hi:.3f} at alpha {alpha}; in sample: fakes called "
        f"real {np.mean(p[y == 1] < lo):.2f}, reals called fake {np.mean(p[y == 0] >= hi):.2f} auc {td.auc(y, p):.3f}",
        flush=True,
    )
    for tag, v in variants.items():
        files = files_at(v)
        y = np.array([files[n]["label"] for n in names])
        p = td.file_probs(files, names, a, b)
        st = verdict_stats(p, y, lo, hi)
        print(
            f"{tag} under the clean band: uncertain {st['uncertain']:.2f} right {st['decisive_accuracy']:.2f} "
            f"fakes called real {np.mean(p[y == 1] < lo):.2f} reals called fake {np.mean(p[y == 0] >= hi):.2f} "
            f"auc {td.auc(y, p):.3f}",
            flush=True,
        )
        for al in (0.05, 0.1):
            held = td.band_check(files, al)
            qa, qb = td.platt_of(files, names)
            qlo, qhi = conformal_band(td.file_probs(files, names, qa, qb), y, al)
            print(f"{tag} own band alpha {al}: {qlo:.3f}-{qhi:.3f} held-out {held}", flush=True)


if __name__ == "__main__":
    cmds = {"make": cmd_make, "make-file": cmd_make_file, "eval": cmd_eval, "train": cmd_train, "bands": cmd_bands}
    cmds[sys.argv[1]]()
