"""Nothing lost: resume keeps the validation log, and a checkpoint is written whole or not at all (issue 14, items
1–2). A crash between the weights and the optimiser state used to leave step-N weights beside a step-(N-1) state,
and ``--resume`` continued silently from the mix."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from dflab.cli import main
from dflab.errors import CheckpointError
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["data.size=32", "train.progress=false", "data.batch_size=4"]


def _cfg(manifest, *extra: str):
    return load_recipe("meso_inception4_tiny", [f"data.manifest={manifest}", *TINY, *extra])


def _fit(cfg, run, *, resume: bool = False) -> dict:
    tr = Trainer(cfg, run, resume=resume)
    try:
        return tr.fit()
    finally:
        tr.close()


def _val_epochs(run) -> list[int]:
    with open(run / "val.csv", newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def test_resume_keeps_the_last_completed_epochs_validation_row(supervised_manifest, tmp_path):
    cfg = _cfg(supervised_manifest, "train.epochs=1", "train.steps_per_epoch=2")
    _fit(cfg, tmp_path / "run")
    assert _val_epochs(tmp_path / "run") == [1]
    more = _cfg(supervised_manifest, "train.epochs=2", "train.steps_per_epoch=2")
    summary = _fit(more, tmp_path / "run", resume=True)
    assert _val_epochs(tmp_path / "run") == [1, 2]  # the old code truncated epoch 1's row on resume
    assert [h["epoch"] for h in summary["history"]] == [1, 2]


def test_a_crash_while_saving_leaves_the_previous_checkpoint_and_resume_matches(
    supervised_manifest, tmp_path, monkeypatch
):
    cfg = _cfg(supervised_manifest, "train.epochs=2", "train.steps_per_epoch=2", "train.ckpt_every_steps=1")
    _fit(cfg, tmp_path / "full")

    real_save = torch.save
    calls = {"n": 0}

    class Killed(BaseException):  # like SIGKILL: nothing in the loop may catch it
        pass

    def save_then_die(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the state of step 3, after its weights and card were written
            raise Killed
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(Killed):
        _fit(cfg, tmp_path / "cut")
    monkeypatch.setattr(torch, "save", real_save)

    last = tmp_path / "cut" / "last"
    card = json.loads((last / "card.json").read_text())
    state = torch.load(last / "state.pt", weights_only=True)
    assert card["training"]["steps_done"] == state["step"] == 2  # the whole step-2 checkpoint, not a mix
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".last")) == []  # no debris left

    _fit(cfg, tmp_path / "cut", resume=True)
    a, b = load_file(tmp_path / "full/last/model.safetensors"), load_file(tmp_path / "cut/last/model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_weights_and_state_from_different_saves(supervised_manifest, tmp_path, capsys):
    one = _cfg(supervised_manifest, "train.epochs=1", "train.steps_per_epoch=2")
    two = _cfg(supervised_manifest, "train.epochs=2", "train.steps_per_epoch=2")
    _fit(one, tmp_path / "early")
    _fit(two, tmp_path / "late")
    shutil.copy(tmp_path / "early/last/state.pt", tmp_path / "late/last/state.pt")  # step-4 weights, step-2 state
    with pytest.raises(CheckpointError, match="different saves"):
        Trainer(two, tmp_path / "late", resume=True)
    code = main(["train", "meso_inception4_tiny", f"data.manifest={supervised_manifest}", *TINY, "train.epochs=2",
                 "train.steps_per_epoch=2", "--run-dir", str(tmp_path / "late"), "--resume"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "different saves" in err and "Traceback" not in err


def test_resume_refuses_a_legacy_pair_whose_steps_differ(supervised_manifest, tmp_path):
    """Runs from before checkpoint ids: the card's steps_done and the state's step must agree."""
    cfg = _cfg(supervised_manifest, "train.epochs=1", "train.steps_per_epoch=2")
    _fit(cfg, tmp_path / "run")
    last = tmp_path / "run" / "last"
    card = json.loads((last / "card.json").read_text())
    del card["checkpoint_id"]
    card["training"]["steps_done"] = 3
    (last / "card.json").write_text(json.dumps(card))
    state = torch.load(last / "state.pt", weights_only=True)
    del state["checkpoint_id"]
    torch.save(state, last / "state.pt")
    with pytest.raises(CheckpointError, match=r"step 3 \(weights, card\) vs 2 \(state\)"):
        Trainer(cfg, tmp_path / "run", resume=True)


def test_a_kill_between_the_two_renames_is_recovered(supervised_manifest, tmp_path):
    cfg = _cfg(supervised_manifest, "train.epochs=1", "train.steps_per_epoch=2")
    _fit(cfg, tmp_path / "run")
    run = tmp_path / "run"
    (run / "last").rename(run / ".last.old")  # what replace_dir leaves if killed after its first rename
    tr = Trainer(cfg, run, resume=True)
    assert tr.step == 2 and (run / "last" / "state.pt").exists()
    tr.close()
