"""``dflab prepare`` throughput and peak memory on shared FF++ videos (``make bench``).

Runs the real CLI in a subprocess (so peak RSS is that process's own, from ``getrusage(RUSAGE_CHILDREN)``):
the FF++ subset with 32 frames per video (papers' sampling), and one video with every 10th frame (BiG-Arts' test
sampling). Reports frames/s and faces/s end to end (decode, detect, landmarks, track, crop, PNG write, original crops).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dflab.data.manifest import Manifest

SHARED = Path(os.environ.get("DFLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _prepare(args: list[str], out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dflab.cli", "prepare", *args, "--out", str(out), "--no-progress"],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with Manifest(out, readonly=True) as m:
        s = m.summary()
        n_orig = sum(1 for f in m.faces() if f.original_crop)
    return {
        "wall_s": round(wall, 2),
        "videos": s["videos"],
        "frames": s["frames"],
        "faces": s["faces"],
        "original_crops": n_orig,
        "frames_per_s": round(s["frames"] / wall, 2),
        "faces_per_s": round(s["faces"] / wall, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1) if peak_kib > before else "n/a (below an earlier child's peak)",
    }


def run() -> dict:
    ffpp = SHARED / "ffpp"
    if not ffpp.is_dir():
        return {"skipped": f"shared data not found at {SHARED}"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = ffpp / "original_sequences/youtube/c23/videos/519.mp4"
        stride = _prepare(["--dataset", "media", "--root", str(one), "--stride", "10"], tmp / "stride")
        ff32 = _prepare(["--dataset", "ffpp", "--root", str(ffpp), "--frames", "32", "--workers", "1"], tmp / "ff32")
        ff32_w2 = _prepare(["--dataset", "ffpp", "--root", str(ffpp), "--frames", "32"], tmp / "w2")
    return {
        "ffpp_519_640x480_stride10": stride,
        "ffpp_subset_4_videos_32_frames_1_worker": ff32,
        "ffpp_subset_4_videos_32_frames_default_workers": ff32_w2,
        "note": "2 shared CPU cores; crops 256 px PNG; fakes also crop their original's frame with the same box",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
