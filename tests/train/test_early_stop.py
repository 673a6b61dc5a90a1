"""Early stopping (``train.early_stop_patience``, LAE §3.1.2 "early stopping (patience=10)" on the validation loss):
the run ends ``patience`` epochs after the selection metric last improved, says so, and resumes to the same end."""

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
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.size=32", "train.progress=false", "data.batch_size=4", "train.steps_per_epoch=2"]
# validation loss after epoch 1, 2, ...: best at epoch 3, never better afterwards (ties do not count as better)
LOSSES = [0.9, 0.8, 0.7, 0.75, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0, 1.0, 1.0]


class Killed(BaseException):  # like SIGKILL: nothing in the loop may catch it
    pass


def _scripted_validate(self: Trainer) -> dict[str, float]:
    """Validation returning ``LOSSES[epoch - 1]`` as the loss, so the test controls when ``-loss`` improves."""
    return {"auc": 0.5, "video_auc": 0.5, "acc": 0.5, "loss": LOSSES[self.epoch - 1], "n_val": 16, "n_val_fake": 8}


@pytest.fixture
def scripted_val(monkeypatch):
    monkeypatch.setattr(Trainer, "validate", _scripted_validate)


def _cfg(manifest, *extra: str):
    return load_recipe(
        "meso_inception4_tiny", [f"data.manifest={manifest}", *TINY, "train.select_metric=-loss", *extra]
    )


def _fit(cfg, run: Path, *, resume: bool = False) -> dict:
    tr = Trainer(cfg, run, resume=resume)
    try:
        return tr.fit()
    finally:
        tr.close()


def test_stops_patience_epochs_after_the_best_and_says_so(supervised_manifest, tmp_path, scripted_val, capsys):
    summary = _fit(_cfg(supervised_manifest, "train.epochs=10", "train.early_stop_patience=3"), tmp_path / "run")
    assert summary["best"]["epoch"] == 3
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4, 5, 6]  # epochs 4, 5, 6 without improvement
    assert summary["steps"] == 6 * 2
    stop = summary["early_stop"]
    assert stop["epoch"] == 6 and stop["best_epoch"] == 3 and stop["patience"] == 3 and stop["metric"] == "-loss"
    on_disk = json.loads((tmp_path / "run/summary.json").read_text())
    assert on_disk["early_stop"] == stop
    assert json.loads((tmp_path / "run/run.json").read_text())["early_stop"] == stop
    err = capsys.readouterr().err
    assert err.count("[train] early stop after epoch 6/10") == 1 and "-loss" in err
    assert torch.load(tmp_path / "run/last/state.pt", weights_only=True)["epoch"] == 6


@pytest.mark.parametrize("kill", ["mid_epoch", "before_the_stop"])
def test_a_killed_and_resumed_run_stops_at_the_same_epoch(
    supervised_manifest, tmp_path, scripted_val, monkeypatch, kill
):
    cfg = _cfg(supervised_manifest, "train.epochs=10", "train.early_stop_patience=3", "train.ckpt_every_steps=1")
    full = _fit(cfg, tmp_path / "full")

    if kill == "mid_epoch":  # during epoch 5: the epochs since the best must come back from last/
        real_step = Trainer.train_step

        def step_then_die(self, phase, scaler):
            if self.step == 9:
                raise Killed
            return real_step(self, phase, scaler)

        monkeypatch.setattr(Trainer, "train_step", step_then_die)
    else:  # epoch 6 saved, the stop not yet recorded: the resumed run must stop without another epoch

        def die(self, stop):
            raise Killed

        monkeypatch.setattr(Trainer, "_record_early_stop", die)
    with pytest.raises(Killed):
        _fit(cfg, tmp_path / "cut")
    monkeypatch.undo()
    monkeypatch.setattr(Trainer, "validate", _scripted_validate)

    state = torch.load(tmp_path / "cut/last/state.pt", weights_only=True)
    assert (state["step"], state["epoch"]) == ((9, 4) if kill == "mid_epoch" else (12, 6))
    resumed = _fit(cfg, tmp_path / "cut", resume=True)
    assert resumed["early_stop"] == full["early_stop"] and resumed["early_stop"]["epoch"] == 6
    assert resumed["steps"] == full["steps"] == 12
    assert [h["epoch"] for h in resumed["history"]] == [h["epoch"] for h in full["history"]]
    a, b = load_file(tmp_path / "full/last/model.safetensors"), load_file(tmp_path / "cut/last/model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_no_patience_changes_nothing(supervised_manifest, tmp_path, scripted_val):
    off = _fit(_cfg(supervised_manifest, "train.epochs=7"), tmp_path / "off")
    assert off["early_stop"] is None and len(off["history"]) == 7 and off["steps"] == 14
    assert "early_stop" not in json.loads((tmp_path / "off/run.json").read_text())
    # a patience that never runs out: the same run, bit for bit
    late = _fit(_cfg(supervised_manifest, "train.epochs=7", "train.early_stop_patience=5"), tmp_path / "late")
    assert late["early_stop"] is None and late["history"] == off["history"]
    a, b = load_file(tmp_path / "off/last/model.safetensors"), load_file(tmp_path / "late/last/model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "ten"])
def test_invalid_patience_is_refused(supervised_manifest, value):
    with pytest.raises(ConfigError, match="early_stop_patience"):
        _cfg(supervised_manifest, f"train.early_stop_patience={value}")


def test_patience_without_a_validation_stream_is_refused(supervised_manifest):
    with pytest.raises(ConfigError, match="needs a validation stream"):
        _cfg(supervised_manifest, "train.early_stop_patience=2", "data.val=null")


def test_ddp_ranks_stop_at_the_same_epoch(supervised_manifest, tmp_path):
    """Real validation gathered over two ranks under torchrun. The selection metric is the gathered item count
    ``n_val`` (constant, so never better after epoch 1): both ranks must leave the loop after epoch 2 (a rank that
    went on would hang the other in its next collective)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "dflab.cli", "train", "meso_inception4_tiny",
           f"--data.manifest={supervised_manifest}", *TINY, "train.steps_per_epoch=1", "train.epochs=5",
           "train.select_metric=n_val", "train.early_stop_patience=1",
           "--run-dir", str(tmp_path / "ddp")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp/summary.json").read_text())
    assert [h["n_val"] for h in summary["history"]] == [16, 16]  # every val item once, from both ranks
    assert summary["early_stop"]["epoch"] == 2 and summary["best"]["epoch"] == 1 and summary["steps"] == 2
    assert proc.stderr.count("[train] early stop after epoch 2/5") == 1  # rank 0 only


@pytest.mark.parametrize(
    "recipe, patience",
    [("suppressnet", 10), ("statsnet", 10), ("forensic_transfer", 10), ("residualnet", 10), ("xception", None)],
)
def test_lae_table3_baselines_stop_early_as_lae_does(recipe, patience):
    """LAE §3.1.2 trains its Table 3 baselines "for a maximum of 40 epochs with early stopping (patience=10)"; the
    BiG-Arts baselines (``xception``) say nothing of it."""
    assert load_recipe(recipe).train.early_stop_patience == patience
