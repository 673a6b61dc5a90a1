"""Integration on ../shared/data: prepare real faces → train a baseline on reals + on-the-fly BI fakes → validate →
save → reload; and supervised plumbing on the FF++ pair (masks from the original crops)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dflab.data.manifest import Manifest
from dflab.models.checkpoint import load_detector
from dflab.train.config import DataConfig, StreamConfig
from dflab.train.data import build_stream, collate

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _train(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dflab.cli", "train", *args, "train.progress=false"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def test_real_videos_bi_end_to_end(shared_data, tmp_path):
    from dflab.data.prepare import prepare_dataset

    videos = {"train": ["retalking_1", "retalking_2", "liveportrait_d0"], "val": ["retalking_4", "liveportrait_d9"]}
    for split, names in videos.items():
        (tmp_path / "media" / split / "real").mkdir(parents=True)
        for n in names:
            (tmp_path / "media" / split / "real" / f"{n}.mp4").symlink_to(shared_data / "real_videos" / f"{n}.mp4")
    summary = prepare_dataset("folder", tmp_path / "media", tmp_path / "prep", frames=6, size=96, progress=False)
    assert summary["faces"] >= 20
    run = tmp_path / "run"
    args = ["bi_tiny", f"--data.manifest={tmp_path / 'prep'}", "data.unsplit_val_fraction=0", "train.epochs=1"]
    proc = _train([*args, "train.steps_per_epoch=6", "data.batch_size=8", "--run-dir", str(run)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation" in proc.stderr and "auc" in proc.stdout
    hist = json.loads((run / "summary.json").read_text())["history"]
    assert hist[-1]["n_val_fake"] == hist[-1]["n_val"] / 2 > 0  # held-out reals and their BI fakes
    loaded = load_detector(run / "best")
    assert loaded.card["training"]["streams"]["default"]["synthesizers"] == ["bi"]
    import numpy as np

    scores = loaded.predict([np.zeros((96, 96, 3), np.uint8), np.full((80, 80, 3), 128, np.uint8)])
    assert loaded.spec.size == 64 and scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_ffpp_pair_supervised_with_masks(shared_data, tmp_path):
    from dflab.data.prepare import prepare_dataset

    # dlib HOG: the papers' preprocessing, whose face counts this test pins (YuNet also finds a background face)
    prepare_dataset("ffpp", shared_data / "ffpp", tmp_path / "prep", frames=6, size=96, progress=False, detector="dlib")
    with Manifest(tmp_path / "prep", readonly=True) as m:
        data = DataConfig(size=64, streams={"default": StreamConfig(mode="supervised", split="train")})
        stream = build_stream(m, data.streams["default"], data, targets=frozenset({"mask", "boundary"}),
                              mean=(0.5,) * 3, std=(0.5,) * 3, seed=0, name="default")  # fmt: skip
        batch = collate([stream[it] for it in stream.plan(0)[:8]])
    fake = batch["label"] == 1
    assert fake.any() and (~fake).any()
    assert batch["mask"][fake].flatten(1).sum(1).min() > 0  # DIFF masks from the original crops
    assert batch["mask"][~fake].abs().sum() == 0
    torch.testing.assert_close(batch["boundary"], 4 * batch["mask"] * (1 - batch["mask"]))
    run = tmp_path / "run"
    proc = _train(["supervised_tiny", f"--data.manifest={tmp_path / 'prep'}", "train.epochs=1",
                   "train.steps_per_epoch=4", "data.batch_size=8", "--run-dir", str(run)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    hist = json.loads((run / "summary.json").read_text())["history"]
    assert hist[-1]["n_val"] == 12 and hist[-1]["n_val_fake"] == 6  # val split: 004 + NeuralTextures/004_982
