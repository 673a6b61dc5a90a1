"""Experiment (issue 11): the default on held-out *videos re-encoded* with H.264, under the LOSO protocol.

The still rule (``verdict.min_jpeg_quality``) came from measuring what JPEG does to held-out stills: forgeries
slide into the `real` zone. Videos met by analysts are re-encoded too (messengers, platforms), and that was never
measured. This re-encodes every validation video whole with libx264 at ``CRF`` (preset veryfast, PyAV; frames cropped
to even sizes), decodes the prepared frames again and cuts each face with its prepared box (``crop_face``, margin
1.3), as the scanner would from the re-encoded file. The probes are trained on the clean faces as shipped and score
the re-encoded ones; the clean video band then says how many fakes it calls real.

    CRF=35 python scripts/experiments/video_codec.py make   # re-encode + cut + CLIP-encode, resumable by chunk
    CRFS=28,35 python scripts/experiments/video_codec.py qp     # each video's H.264 QP, as it is and re-encoded
    CRFS=28,35 python scripts/experiments/video_codec.py eval   # LOSO: clean videos, and each CRF
    TRAIN_CRFS=23,28 python scripts/experiments/video_codec.py train   # + re-encoded training copies

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jpeg
import pooling
import real_aug
from compression import reencode

td, tt = pooling.td, pooling.tt
RUN = td.RUN
CRF = int(os.environ.get("CRF", "35"))


def _video_faces() -> list[int]:
    """Indices (``crop_meta`` order) of the original faces of videos."""
    return [i for i, m in enumerate(pooling.crop_meta()) if m["variant"] == "orig" and td.kind_of(m["file"]) == "video"]


def cmd_make() -> None:
    from dflab.data.manifest import Manifest
    from dflab.faces.align import crop_face
    from dflab.media.video import h264_qp, iter_frames

    meta = pooling.crop_meta()
    idx = _video_faces()
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    with Manifest(RUN / "faces", readonly=True) as man:
        index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in man.faces()}
    files = sorted({meta[i]["file"] for i in idx})
    out = RUN / f"h264_{CRF}"
    out.mkdir(parents=True, exist_ok=True)
    # chunk by file: one chunk holds a whole number of files, so a re-encode is never split
    order = [i for f in files for i in idx if meta[i]["file"] == f]
    (out / "idx.json").write_text(json.dumps(order))
    starts = [k for k in range(len(order)) if k == 0 or meta[order[k]]["file"] != meta[order[k - 1]]["file"]]

    def make(start: int, stop: int) -> tuple[list, list]:
        crops, params = [], []
        for f in dict.fromkeys(meta[i]["file"] for i in order[start:stop]):
            mine = [i for i in order[start:stop] if meta[i]["file"] == f]
            rows = [(i, index[(f, meta[i]["frame"], meta[i]["track"])]) for i in mine]
            with tempfile.TemporaryDirectory() as tmp:
                dst = Path(tmp) / "re.mp4"
                p = reencode(Path(paths[f]), dst, CRF, max(r.frame_index for _, r in rows))
                p["qp"] = h264_qp(dst)
                frames = dict(iter_frames(dst, indices=sorted({r.frame_index for _, r in rows})))
            for _, r in rows:
                c = crop_face(frames[r.frame_index], tuple(r.det_box), size=td.CROP_SIZE, margin=1.3).image
                crops.append(pooling.tune_ln._resized(c))
                params.append(p)
            print(f"{f}: {len(rows)} faces, {p}", flush=True)
        return crops, params

    # one chunk per ~8 files (chunk boundaries at file starts)
    from dflab.models.clip import ClipOnnxEncoder, preprocess

    enc = None
    for c, (s, e) in enumerate(itertools.pairwise([*starts[::8], len(order)])):
        path = out / f"feats_{c:04d}.npz"
        if path.exists():
            continue
        imgs, params = make(s, e)
        enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=int(os.environ.get("THREADS", "2")))
        np.savez(out / "tmp.npz", feats=pooling.pooled(enc(preprocess(imgs))), params=json.dumps(params))
        (out / "tmp.npz").rename(path)
        print(f"chunk {c}: {e}/{len(order)} faces", flush=True)


def cmd_qp() -> None:
    """``h264_qp.json``: each validation video's quantiser (:func:`dflab.media.video.h264_qp`) as it is, and
    re-encoded at each of ``CRFS`` (its first :data:`~dflab.media.video.QP_FRAMES` frames, which is all the measure
    reads; the full re-encodes of ``make`` before it recorded the QP may differ by the rate control's look-ahead)."""
    from dflab.media.video import QP_FRAMES, h264_qp

    meta = pooling.crop_meta()
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    out = RUN / "h264_qp.json"
    done = json.loads(out.read_text()) if out.exists() else {}
    for f in sorted({meta[i]["file"] for i in _video_faces()}):
        if f in done:
            continue
        rec = {"orig": h264_qp(paths[f])}
        for crf in os.environ.get("CRFS", str(CRF)).split(","):
            with tempfile.TemporaryDirectory() as tmp:
                dst = Path(tmp) / "re.mp4"
                reencode(Path(paths[f]), dst, int(crf), QP_FRAMES - 1)
                rec[crf] = h264_qp(dst)
        done[f] = rec
        out.write_text(json.dumps(done))
        print(f, rec, flush=True)


def scored_at(x: np.ndarray, crf: str) -> np.ndarray:
    """``x`` with every video face's features replaced by those of its re-encoding at ``crf`` (:func:`cmd_make`)."""
    d = RUN / f"h264_{crf}"
    f = pooling.load_chunks(d)
    order = json.loads((d / "idx.json").read_text())
    if len(f) != len(order):
        raise SystemExit(f"{d}: {len(f)} of {len(order)} faces encoded; run make with CRF={crf}")
    bpp = [p["bpp"] for c in sorted(d.glob("feats_*.npz")) for p in json.loads(str(np.load(c)["params"]))]
    print(f"crf {crf}: median bits per pixel of the re-encoded videos {np.median(bpp):.3f}", flush=True)
    s = x.copy()
    s[order] = f
    return s


def cmd_eval() -> None:
    """The calibrated file AUCs (clean, each CRF), then the clean video band's verdicts on the re-encoded videos."""
    x, mm, views = real_aug.shipped_set()
    td.select = pooling.select
    o = np.array([m["variant"] == "orig" for m in mm])
    video = o & np.array([td.kind_of(m["file"]) == "video" for m in mm])
    w = td.face_weights(mm)
    scored = {None: None} | {crf: scored_at(x, crf) for crf in os.environ.get("CRFS", str(CRF)).split(",")}
    runs = {}
    for crf, s in scored.items():
        oofs, voofs = td.loso(x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.1,), True, views, weight=w, scored=s)
        tt.summary("clean" if crf is None else f"crf {crf}", mm, o, oofs[0.1], voofs[0.1])
        runs[crf] = td.file_scores(mm, oofs[0.1], video, voofs[0.1])
    jpeg.band_table("videos", runs.get, {f"crf {c}": c for c in scored if c is not None})
    by_qp(runs)


def cmd_train() -> None:
    """LOSO with re-encoded training copies: every video face of the training folds also enters the fit re-encoded
    at each CRF of ``TRAIN_CRFS`` (its label and weight kept), scored clean and at each of ``CRFS``."""
    x, mm, views = real_aug.shipped_set()
    td.select = pooling.select
    w = td.face_weights(mm)
    xs, ms, ws = [x], list(mm), [w]
    for crf in os.environ.get("TRAIN_CRFS", "23,28").split(","):
        d = RUN / f"h264_{crf}"
        order = json.loads((d / "idx.json").read_text())
        xs.append(pooling.load_chunks(d))
        ms += [mm[i] | {"variant": "aug"} for i in order]
        ws.append(w[order])
    xx, ww = np.concatenate(xs), np.concatenate(ws)
    o = np.array([m["variant"] == "orig" for m in ms])
    for crf in [None, *os.environ.get("CRFS", "23,28,35").split(",")]:
        s = None if crf is None else np.concatenate([scored_at(x, crf), xx[len(x) :]])
        oofs, voofs = td.loso(xx, ms, tuple(range(4, 13)), ("cls", "mean"), (0.1,), True, views, weight=ww, scored=s)
        tt.summary(f"re-encoded copies, {'clean' if crf is None else f'crf {crf}'}", ms, o, oofs[0.1], voofs[0.1])


#: H.264 quantiser bins of :func:`by_qp` (left edges)
QP_BINS = (0, 24, 27, 30, 33, 36, 40)


def by_qp(runs: dict) -> None:
    """Every (video, encoding) pooled and binned by its quantiser (``h264_qp.json``): the share of fakes the clean
    video band calls real, and of reals it calls fake, per bin."""
    clean = runs[None]
    names = sorted(clean)
    a, b = td.platt_of(clean, names)
    lo, hi, _, _ = td.choose_band(clean, names, a, b)
    qps = json.loads((RUN / "h264_qp.json").read_text())
    rows = []  # (qp, label, p)
    for crf, files in runs.items():
        for n in names:
            qp = qps.get(n, {}).get("orig" if crf is None else crf)
            if qp is not None:
                rows.append((qp, files[n]["label"], float(td.file_probs(files, [n], a, b)[0])))
    qp, y, p = (np.array(v) for v in zip(*rows, strict=True))
    edges = [*QP_BINS, 52]
    for left, right in itertools.pairwise(edges):
        m = (qp >= left) & (qp < right)
        f, r = m & (y == 1), m & (y == 0)
        if m.any():
            print(
                f"QP {left}-{right}: {f.sum()} fake / {r.sum()} real files; fakes called real "
                f"{np.mean(p[f] < lo) if f.any() else float('nan'):.2f}, reals called fake "
                f"{np.mean(p[r] >= hi) if r.any() else float('nan'):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    {"make": cmd_make, "qp": cmd_qp, "eval": cmd_eval, "train": cmd_train}[sys.argv[1]]()
