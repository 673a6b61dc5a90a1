"""Speed as ratios against the reference scripts of ../shared/bench, measured in the same run (``make bench``).

The machines are shared and noisy, so absolute seconds say little; each ratio compares two whole processes run
one after the other on the same inputs (``DFLAB_BENCH_REPEATS`` rounds, default 1, alternating which goes first;
the median ratio is kept). Wall-clock and CPU (user + system of the child process) ratios are both reported: under
contention from other users the CPU ratio is the steadier one.

* ``prepare``: ``dflab prepare --dataset media --frames 32`` (default face detector, and ``--face-detector dlib``)
  against ``dfb_reference_prepare.py`` (DeepfakeBench's loop) on the README's three reference videos.
  Goal ≤ 0.1.
* ``scan``: a whole ``dflab scan --every 10`` process (start-up, model load, report) against ``decode_floor.py`` (PyAV
  decoding and converting the same frames, nothing else) on the reference 1080p clip. Goal ≤ 2.

``DFLAB_BENCH_RATIOS`` (comma-separated ``prepare,prepare_dlib,scan``) picks the comparisons.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
REFERENCE = Path(os.environ.get("DFLAB_SHARED_BENCH", SHARED.parent / "bench"))
PREPARE_VIDEOS = [
    "ffpp/original_sequences/youtube/c23/videos/519.mp4",
    "ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4",
    "real_videos/liveportrait_d0.mp4",
]
SCAN_CLIP = "dfdc/dfdc_train_part_10/widuwuoiur.mp4"


#: exit codes that mean a finished run: ``dflab scan`` exits 1 when it calls a file fake (docs/guide/exit-codes.md)
DONE_CODES = (0, 1)


def _timed(cmd: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of one child process (CPU from ``RUSAGE_CHILDREN`` before/after)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, env=env)
    if done.returncode not in DONE_CODES:
        raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout, done.stderr)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def _ratio(ours: Callable[[], list[str]], ref: Callable[[], list[str]], repeats: int) -> dict:
    """Median ratios over ``repeats`` rounds; the commands are built per round (fresh output folders)."""
    rounds = []
    for r in range(repeats):
        pair = [("ref", ref), ("ours", ours)] if r % 2 == 0 else [("ours", ours), ("ref", ref)]
        got = {name: _timed(cmd()) for name, cmd in pair}
        rounds.append(
            {
                **{f"{k}_{m}": v for k, d in got.items() for m, v in d.items()},
                "ratio_wall": round(got["ours"]["wall_s"] / got["ref"]["wall_s"], 3),
                "ratio_cpu": round(got["ours"]["cpu_s"] / max(got["ref"]["cpu_s"], 1e-6), 3),
            }
        )
    return {
        "ratio_wall": statistics.median(r["ratio_wall"] for r in rounds),
        "ratio_cpu": statistics.median(r["ratio_cpu"] for r in rounds),
        "rounds": rounds,
    }


def run(repeats: int | None = None) -> dict:
    repeats = repeats or int(os.environ.get("DFLAB_BENCH_REPEATS", "1"))
    videos = [SHARED / v for v in PREPARE_VIDEOS]
    clip = SHARED / SCAN_CLIP
    missing = [str(p) for p in [*videos, clip, REFERENCE / "dfb_reference_prepare.py"] if not p.exists()]
    if missing:
        return {"skipped": f"reference data or scripts missing: {missing}"}
    py = sys.executable
    out: dict = {"repeats": repeats, "note": "ratio = dflab / reference, same inputs, same run; lower is faster"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = 0

        def fresh() -> str:
            nonlocal n
            n += 1
            return str(tmp / f"out{n}")

        def prepare(*extra: str) -> Callable[[], list[str]]:
            return lambda: [py, "-m", "dflab.cli", "prepare", "--dataset", "media", "--root", *map(str, videos),
                            "--frames", "32", "--out", fresh(), "--no-progress", *extra]  # fmt: skip

        def reference() -> list[str]:
            return [py, str(REFERENCE / "dfb_reference_prepare.py"), fresh(), *map(str, videos)]

        def scan() -> list[str]:
            return [py, "-m", "dflab.cli", "scan", str(clip), "--every", "10", "--out", fresh(), "--no-progress"]

        def floor() -> list[str]:
            return [py, str(REFERENCE / "decode_floor.py"), str(clip), "10"]

        only = os.environ.get("DFLAB_BENCH_RATIOS", "prepare,prepare_dlib,scan").split(",")
        if "prepare" in only:
            out["prepare_32_frames_vs_deepfakebench"] = _ratio(prepare(), reference, repeats)
        if "prepare_dlib" in only:
            out["prepare_32_frames_dlib_hog_vs_deepfakebench"] = _ratio(
                prepare("--face-detector", "dlib"), reference, repeats
            )
        if "scan" in only:
            out["scan_every_10th_vs_decode_floor"] = _ratio(scan, floor, repeats)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
