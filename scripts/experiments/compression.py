"""Experiment (issue 11): what re-saving a photo or re-encoding a video does to the *shipped* default's verdicts.

The card's compression rules (``verdict.min_jpeg_quality``, ``verdict.max_video_qp``) and the evidence a `real`
verdict quotes (:func:`dflab.scan.pipeline.compression_caution`) must describe the probe that is shipped. This
measures it on ``train_default``'s own caches, with the recipe the card names (``train_default.shipped_recipe``):

* stills: each validation photo re-saved whole as JPEG at quality Q (PIL), its faces' six test-time views cut from
  it as the scanner cuts them (``train_default.encode_views``);
* videos: each validation video re-encoded whole with libx264 at CRF c (preset veryfast, :func:`reencode`),
  the prepared frames decoded from it and each face cut again with its prepared box; the file's H.264 quantiser
  (:func:`dflab.media.video.h264_qp`) as the scanner reads it, before and after.

The leave-one-source-out probes are trained on the clean faces as shipped and score the degraded ones; verdicts use
the card's own calibration and bands. ``eval`` prints the card's evidence tables as JSON (``JPEG_EVIDENCE`` /
``VIDEO_QP_EVIDENCE`` in ``train_default.py``)::

    QS=90,80,70,50 python scripts/experiments/compression.py stills    # ~3 min per quality here, resumable
    CRFS=23,28,35 python scripts/experiments/compression.py videos     # ~5 min per CRF here, resumable by video
    QS=90,80,70,50 CRFS=23,28,35 python scripts/experiments/compression.py eval

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_default as td

OUT = td.RUN / "compression"
QS = [int(q) for q in os.environ.get("QS", "90,80,70,50").split(",") if q]
CRFS = [int(c) for c in os.environ.get("CRFS", "23,28,35").split(",") if c]
#: H.264 quantiser bins (left edges) of the pooled table
QP_BINS = (0, 24, 27, 30, 33, 36, 40)


def resaved(quality: int):
    """The whole image saved as JPEG at ``quality`` and read back."""
    from PIL import Image

    def apply(rgb: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
        return np.asarray(Image.open(buf).convert("RGB"))

    return apply


def reencode(src: Path, dst: Path, crf: int, last: int) -> dict:
    """``src``'s frames 0..``last`` written to ``dst`` with libx264 at ``crf``; returns bits per pixel per frame."""
    import av

    from dflab.media.video import iter_frames, probe

    info = probe(src)
    fps = round(info.fps) if info.fps and info.fps > 0 else 25
    with av.open(str(dst), mode="w") as out:
        stream = None
        for i, rgb in iter_frames(src):
            if i > last:
                break
            h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {"crf": crf, "bpp": round(8 * dst.stat().st_size / (w * h * (last + 1)), 4)}


def cmd_stills() -> None:
    for q in QS:
        td.encode_views(OUT / f"jpeg{q}", transform=resaved(q), threads=2)


def video_faces(meta: list[dict]) -> dict[str, list[int]]:
    """Video file -> indices (``load_features`` order) of its original faces."""
    out: dict[str, list[int]] = {}
    for i, m in enumerate(meta):
        if m["variant"] == "orig" and td.kind_of(m["file"]) == "video":
            out.setdefault(m["file"], []).append(i)
    return out


def cmd_videos() -> None:
    from dflab.data.manifest import Manifest
    from dflab.faces.align import crop_face
    from dflab.media.video import h264_qp, iter_frames
    from dflab.models.clip import ClipOnnxEncoder, preprocess, token_features

    _, meta = td.load_features()
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    with Manifest(td.RUN / "faces", readonly=True) as man:
        index = {(f"{r.dataset}/{r.video_id}", r.frame_index, r.track_id): r for r in man.faces()}
    enc = None
    for crf in CRFS:
        out = OUT / f"h264_{crf}"
        out.mkdir(parents=True, exist_ok=True)
        for f, idx in sorted(video_faces(meta).items()):
            dst = out / f"{td._fid(f)}.npz"
            if dst.exists():
                continue
            rows = [index[(f, meta[i]["frame"], meta[i]["track"])] for i in idx]
            with tempfile.TemporaryDirectory() as tmp:
                video = Path(tmp) / "re.mp4"
                reencode(Path(paths[f]), video, crf, max(r.frame_index for r in rows))
                qp = h264_qp(video)
                frames = dict(iter_frames(video, indices=sorted({r.frame_index for r in rows})))
            # a frame the decoder does not give back from the source (a broken tail) is not in the re-encode: that
            # face keeps its clean features (counted by reencoded)
            kept = [k for k, r in enumerate(rows) if r.frame_index in frames]
            idx, rows = [idx[k] for k in kept], [rows[k] for k in kept]
            if not rows:
                continue
            crops = [
                crop_face(frames[r.frame_index], tuple(r.det_box), size=td.CROP_SIZE, margin=1.3).image for r in rows
            ]
            enc = enc or ClipOnnxEncoder(td.ALL_BLOCKS, threads=2)
            feats = np.concatenate(
                [token_features(enc(preprocess(crops[s : s + 16])), td.ALL_BLOCKS) for s in range(0, len(crops), 16)]
            ).astype(np.float16)
            faces = np.array([(r.frame_index, r.track_id) for r in rows], np.int64)  # the faces, not their positions
            np.savez(out / "tmp.npz", feats=feats, faces=faces, qp=np.float64(np.nan if qp is None else qp))
            (out / "tmp.npz").rename(dst)
            print(f"crf {crf} {f}: {len(idx)} faces, QP {qp}", flush=True)


def reencoded(feats: np.ndarray, crf: int) -> tuple[np.ndarray, dict[str, float]]:
    """``feats`` with every video face replaced by its re-encoding at ``crf``, and each video's quantiser."""
    _, meta = td.load_features()
    scored, qps = feats.copy(), {}
    for f, idx in video_faces(meta).items():
        path = OUT / f"h264_{crf}" / f"{td._fid(f)}.npz"
        if not path.exists():
            print(f"crf {crf} {f}: no re-encoded face, scored clean", flush=True)
            continue
        z = np.load(path)
        at = {(meta[i]["frame"], meta[i]["track"]): i for i in idx}
        if "faces" in z:  # keyed by (frame, track): valid whatever the order of the feature cache
            keys = [tuple(int(v) for v in k) for k in z["faces"]]
            if not set(keys) <= set(at):
                raise SystemExit(f"{f}: re-encoded faces are not among its features; run videos again")
            where = np.array([at[k] for k in keys], np.int64)
        else:  # caches written before 2026-12-01 hold positions in the feature cache of their time
            where = z["idx"]
            if not set(where.tolist()) <= set(idx):
                raise SystemExit(f"{f}: re-encoded faces do not match the features; run videos again")
        if len(where) < len(idx):
            print(f"crf {crf} {f}: {len(idx) - len(where)} of {len(idx)} faces scored clean", flush=True)
        scored[where] = z["feats"]
        qps[f] = float(z["qp"])
    return scored, qps


def cmd_eval() -> None:
    """Out-of-fold scores of the shipped recipe, clean and degraded, judged by the card's calibration and bands."""
    from dflab.media.video import h264_qp

    card = json.loads(td.WEIGHTS.with_suffix(".json").read_text())
    blocks, tokens, c, labelled = td.shipped_recipe(card)
    feats, meta = td.load_features()
    orig = np.array([m["variant"] == "orig" for m in meta])
    weight = td.face_weights(meta)
    platts = {k: (f["scale"], f["bias"]) for k, f in card["calibration"]["by_kind"].items()}
    fits = {k: (f["scale"], f["bias"]) for k, f in card["calibration"]["file"]["by_kind"].items()}
    bands = {k: (b["real_below"], b["fake_at"]) for k, b in card["verdict"]["by_kind"].items()}

    def judged(kind: str, views: dict, scored: np.ndarray | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        oofs, voofs = td.loso(feats, meta, blocks, tokens, (c,), labelled, views, weight=weight, scored=scored)
        files = td.file_scores(meta, oofs[c], orig, voofs[c])
        names = sorted(n for n in files if td.kind_of(n) == kind)
        y = np.array([files[n]["label"] for n in names])
        return names, y, td.scanner_probs(files, names, platts, fits)

    def row(kind: str, y: np.ndarray, p: np.ndarray) -> dict:
        lo, hi = bands[kind]
        return {
            "fakes_called_real": round(float(np.mean(p[y == 1] < lo)), 2),
            "reals_called_fake": round(float(np.mean(p[y == 0] >= hi)), 2),
            "auc": round(float(td.auc(y, p)), 2),
        }

    clean_views = td.load_views()
    stills = {"clean": row("image", *judged("image", clean_views)[1:])}
    for q in QS:
        stills[str(q)] = row("image", *judged("image", td.load_views(OUT / f"jpeg{q}"))[1:])
        print(f"stills q{q}: {stills[str(q)]}", flush=True)
    names, y, p = judged("video", clean_views)
    paths = {f"{r.dataset}/{r.video_id}": r.path for r in td.build_records()}
    pooled = [(h264_qp(paths[n]), t, s) for n, t, s in zip(names, y, p, strict=True)]
    videos = {"clean": row("video", y, p)}
    median_qp = {"clean": round(float(np.nanmedian([q for q, _, _ in pooled if q is not None])), 1)}
    for crf in CRFS:
        scored, qps = reencoded(feats, crf)
        _, y2, p2 = judged("video", clean_views, scored)
        videos[f"crf{crf}"] = row("video", y2, p2)
        median_qp[f"crf{crf}"] = round(float(np.nanmedian([qps[n] for n in names if n in qps])), 1)
        pooled += [(qps[n], t, s) for n, t, s in zip(names, y2, p2, strict=True) if n in qps]
        print(f"videos crf {crf}: {videos[f'crf{crf}']}, median QP {median_qp[f'crf{crf}']}", flush=True)
    lo = bands["video"][0]
    by_qp = {}
    for left, right in itertools.pairwise([*QP_BINS, 52]):
        fakes = [s for q, t, s in pooled if q is not None and np.isfinite(q) and left <= q < right and t == 1]
        if fakes:
            label = f"<{right}" if left == 0 else (f">={left}" if right == 52 else f"{left}-{right}")
            by_qp[label] = round(float(np.mean(np.array(fakes) < lo)), 2)
    evidence = {
        "recipe": card["training"]["candidate"],
        "stills": stills,
        "videos": videos,
        "median_qp": median_qp,
        "fakes_called_real_by_qp": by_qp,
    }
    (OUT / f"evidence_q{'-'.join(map(str, QS))}_crf{'-'.join(map(str, CRFS))}.json").write_text(
        json.dumps(evidence, indent=1)
    )
    print(json.dumps(evidence, indent=1))


if __name__ == "__main__":
    {"stills": cmd_stills, "videos": cmd_videos, "eval": cmd_eval}[sys.argv[1]]()
