"""The loop end to end on a synthetic manifest: run directory, validation-chosen best, SIGKILL + resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dflab.errors import ConfigError
from dflab.models.checkpoint import load_detector
from dflab.train.loop import Trainer, lr_factor
from dflab.train.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.size=32", "train.progress=false", "data.batch_size=4"]


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dflab.cli", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_train_in_process(supervised_manifest, tmp_path):
    cfg = load_recipe("meso_inception4_tiny", [f"data.manifest={supervised_manifest}", *TINY, "train.epochs=2",
                                               "train.steps_per_epoch=4", "train.log_every=1"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    summary = tr.fit()
    tr.close()
    run = tmp_path / "run"
    for f in ("config.yaml", "run.json", "metrics.csv", "val.csv", "summary.json", "last/state.pt", "best/card.json"):
        assert (run / f).exists(), f
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 0 and "torch" in info["versions"] and info["git_sha"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 8
    assert summary["steps"] == 8 and len(summary["history"]) == 2
    best = json.loads((run / "best/card.json").read_text())
    assert best["training"]["val"]["split"] == "val"  # chosen on the validation split
    assert best["metrics"]["auc"] == max(h["auc"] for h in summary["history"])
    loaded = load_detector(run / "best")
    assert loaded.spec.size == 32 and loaded.card["detector"] == "meso_inception4"
    # trained on 48 px prepared crops resized to 32: the scanner must cut faces at 48 and resize them the same way
    assert loaded.spec.crop_size == 48 and loaded.card["input_spec"]["crop_size"] == 48


def test_refuses_to_overwrite_a_run(supervised_manifest, tmp_path):
    cfg = load_recipe("meso_inception4_tiny", [f"data.manifest={supervised_manifest}", *TINY, "train.epochs=1",
                                               "train.steps_per_epoch=1"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    tr.fit()
    tr.close()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg, tmp_path / "run")


def test_lr_schedule_cosine_matches_torch():
    cfg = load_recipe("resnet18", ["train.epochs=100"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    for epoch in range(60):
        assert abs(opt.param_groups[0]["lr"] - cfg.optim.lr * lr_factor(cfg, epoch)) < 1e-9
        opt.step()
        sched.step()


def test_sigkill_and_resume_gives_identical_weights(supervised_manifest, tmp_path):
    args = ["meso_inception4_tiny", f"--data.manifest={supervised_manifest}", *TINY, "train.epochs=2",
            "train.steps_per_epoch=5", "train.ckpt_every_steps=2"]  # fmt: skip
    full = _cli(["train", *args, "--run-dir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-2000:]

    killed = _cli(["train", *args, "--run-dir", str(tmp_path / "cut")], env={"DFLAB_TEST_SIGKILL_AT_STEP": "7"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL after step 7; last checkpoint is step 6
    state = torch.load(tmp_path / "cut/last/state.pt", weights_only=True)
    assert state["step"] == 6
    resumed = _cli(["train", *args, "--run-dir", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stderr

    a, b = load_file(tmp_path / "full/last/model.safetensors"), load_file(tmp_path / "cut/last/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows_full = (tmp_path / "full/metrics.csv").read_text().splitlines()
    rows_cut = (tmp_path / "cut/metrics.csv").read_text().splitlines()
    assert len(rows_full) == len(rows_cut)


def test_ddp_two_processes_gloo(supervised_manifest, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "dflab.cli", "train", "meso_inception4_tiny",
           f"--data.manifest={supervised_manifest}", *TINY, "train.epochs=1", "train.steps_per_epoch=3",
           "--run-dir", str(tmp_path / "ddp")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp/run.json").read_text())
    assert info["world_size"] == 2
    summary = json.loads((tmp_path / "ddp/summary.json").read_text())
    # validation gathered from both ranks: every val item once (4 videos x 4 frames)
    assert summary["history"][-1]["n_val"] == 16
    assert load_detector(tmp_path / "ddp/last").card["training"]["steps_done"] == 3
