"""Seconds to scan a 10 s, 30 fps clip with the default detector (``dflab scan`` defaults and denser sampling).

The clip is the first 300 frames of ``real_videos/liveportrait_d13.mp4`` (720×1280, 30 fps) from ../shared/data,
re-encoded in process; without the shared data, 300 frames of the astronaut photo drifting (512×512). Without
shipped default weights the untrained ``lisiam_tiny`` stands in and the result says so.

Each setting reports its faces found and scored (``faces_per_track``, default 8); ``every_5th_frame_all_faces``
scores every face, to show what the per-track budget saves. ``runtime`` says whether the detector ran on ONNX
Runtime + numpy (the default clip_probe: no torch) or in torch. The whole-process comparison against the decode
floor is ``bench/bench_ratios.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


def make_clip(out: Path, seconds: float = 10.0, fps: int = 30) -> tuple[Path, str]:
    from dflab.media import iter_frames, write_video

    n = int(seconds * fps)
    src = SHARED / "real_videos" / "liveportrait_d13.mp4"
    if src.exists():
        frames = [rgb for _i, rgb in iter_frames(src, indices=range(n))]
        name = f"{src.name} first {n} frames"
    else:
        from skimage import data

        img = data.astronaut()
        frames = [np.roll(img, i, axis=1) for i in range(n)]
        name = f"astronaut drifting, {n} frames"
    return write_video(out, np.stack(frames), fps=fps), name


def _scorers():
    from dflab.scan.pipeline import DEFAULT_WEIGHTS, load_scorer, scorer_from_model

    if DEFAULT_WEIGHTS.exists():
        return [load_scorer(None)], "default"
    import torch

    from dflab.models.base import build_detector

    torch.manual_seed(0)
    return [scorer_from_model(build_detector("lisiam_tiny"))], "lisiam_tiny (untrained stand-in: no default weights)"


def run() -> dict:
    from dflab.scan.pipeline import ScanOptions, scan_file

    scorers, det = _scorers()
    with tempfile.TemporaryDirectory() as tmp:
        clip, clip_name = make_clip(Path(tmp) / "clip10s.mp4")
        scan_file(clip, scorers, ScanOptions(max_frames=2, overlays=0))  # warm-up (model, dlib)
        runtime = "onnxruntime+numpy" if scorers[0].array_io else "torch"
        out: dict = {"clip": clip_name, "detector": det, "runtime": runtime, "cpus": os.cpu_count()}
        for label, opts in [
            ("default_32_frames", ScanOptions()),
            ("every_5th_frame_60_frames", ScanOptions(every=5, max_frames=60)),
            ("every_5th_frame_all_faces", ScanOptions(every=5, max_frames=60, faces_per_track=0)),
            ("every_frame_300_frames", ScanOptions(every=1, max_frames=300, overlays=0)),
        ]:
            t0 = time.perf_counter()
            rec = scan_file(clip, scorers, opts).record
            dt = time.perf_counter() - t0
            out[f"{label}_s"] = round(dt, 2)
            out[f"{label}_faces"] = rec.get("n_faces", 0)
            out[f"{label}_scored"] = rec.get("n_scored", 0)
            out[f"{label}_verdict"] = rec["verdict"]
            out[f"{label}_score"] = None if rec.get("score") is None else round(rec["score"], 4)
    return out


if __name__ == "__main__":
    print(run())
