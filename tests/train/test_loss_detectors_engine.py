"""MML, LAE and DADD tiny recipes through the real training loop on a synthetic manifest: the schedules' phases
switch in ``metrics.csv`` and LAE's active selection restricts its stage-2 stream."""

from __future__ import annotations

import csv
import json
import sqlite3

import cv2
import numpy as np
import pytest
import torch

from dflab.compat import ensure_torchvision
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["data.size=32", "train.progress=false", "data.batch_size=8", "train.log_every=1", "data.num_workers=0"]
# the tiny recipes read FF++ + real_videos rows; the synthetic manifest is one dataset with train/val splits
ANY_ROWS = ["data.streams.default.datasets=null", "data.streams.default.split=train", "data.val.datasets=null"]


def _rows(run):
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _train(name, manifest, tmp_path, extra):
    ensure_torchvision()  # the loop's versions() imports timm
    cfg = load_recipe(name, [f"data.manifest={manifest}", *TINY, *ANY_ROWS, *extra])
    tr = Trainer(cfg, tmp_path / name)
    summary = tr.fit()
    tr.close()
    return tmp_path / name, summary


def test_mml_tiny_stages_switch(supervised_manifest, tmp_path):
    run, summary = _train("mml_tiny", supervised_manifest, tmp_path, ["train.epochs=2", "train.steps_per_epoch=5"])
    rows = _rows(run)
    assert [r["phase"] for r in rows] == ["early"] * 3 + ["middle"] * 3 + ["end"] * 4
    assert all(float(r["weight_center"]) >= 0 for r in rows) and summary["steps"] == 10


def test_lae_tiny_two_stages_with_active_selection(supervised_manifest, tmp_path):
    _patch_masks(supervised_manifest)  # the bright patch of the synthetic fakes = the manipulated region
    run, _ = _train(
        "lae_tiny",
        supervised_manifest,
        tmp_path,
        ["train.epochs=3", "train.steps_per_epoch=null", "schedule.kwargs.stage1_epochs=2",
         "schedule.kwargs.n_active=2", "data.size=64"],  # the decoder's output size is the model's input_size
    )  # fmt: skip
    rows = _rows(run)
    # Algorithm 1: stage 2 reads the training data D (L_latent) for epochs of one pass over D, like stage 1: 16
    # reals + 12 fakes balanced to 16 = 32 items = 4 batches of 8 per epoch, in both stages
    assert [r["phase"] for r in rows] == ["stage1"] * 8 + ["stage2"] * 4
    assert {r["stream"] for r in rows} == {"default"}
    assert all(np.isnan(float(r["attention"])) for r in rows[:8])
    assert all(not np.isnan(float(r["attention"])) for r in rows[8:])
    assert float(rows[-1]["lr"]) == pytest.approx(float(rows[0]["lr"]) / 10)
    sel = json.loads((run / "active_selection.json").read_text())
    assert sel["method"] == "active" and len(sel["keys"]) == 2 and len(sel["channels"]) == 10
    assert len(list((run / "active_masks").glob("*.png"))) == 2


def test_dadd_tiny_alternates_subtasks_and_final(supervised_manifest, tmp_path):
    # reals-only streams; the engine's test synthesizer stands in for the ADDG categories (one stream per sub-task)
    subs = ["addg_inner_gaussblur", "addg_outer_gaussblur", "addg_inner_scaling"]
    extra = ["train.epochs=1", "train.steps_per_epoch=8", "model.kwargs.n_tasks=3", "data.val.datasets=null"]
    extra += [f"schedule.kwargs.sub_streams=[{','.join(subs)}]", "schedule.kwargs.t=2"]
    for s in ["default", *subs]:
        extra += [f"data.streams.{s}.synthesizers=[test_patch]", f"data.streams.{s}.synth_kwargs={{}}"]
        extra += [
            f"data.streams.{s}.split=train",
            f"data.streams.{s}.datasets=null",
            f"data.streams.{s}.donor_pool=false",
        ]
    run, _ = _train("dadd_tiny", supervised_manifest, tmp_path, extra)
    rows = _rows(run)
    assert [r["phase"] for r in rows] == [f"subtask:{s}" for s in subs] + ["final"] * 2 + [f"subtask:{s}" for s in subs]
    assert [r["stream"] for r in rows][3:5] == ["default", "default"]
    # the ℓ2,1 term enters only the final steps: there loss = ce + 0.1·l21
    for r in rows:
        reg = 0.1 * float(r["l21"]) if r["phase"] == "final" else 0.0
        assert float(r["loss"]) == pytest.approx(float(r["ce"]) + reg, rel=1e-4)


def test_dadd_tiny_with_the_real_addg_synthesizer(supervised_manifest, tmp_path):
    """ADDG itself through the engine: each sub-task stream yields its own category's negatives (blends of a real
    face with its perturbed copy or a donor of another identity), the final stream all categories."""
    from dflab.synthesis.addg import CATEGORIES

    subs = ["addg_inner_gaussblur", "addg_rotation", "addg_sb_sim"]
    cats = [CATEGORIES.index(c) for c in ("Inner-GaussBlur", "Rotation", "SB-Sim")]
    extra = ["train.epochs=1", "train.steps_per_epoch=5", "model.kwargs.n_tasks=3", "data.val.datasets=null"]
    extra += [f"schedule.kwargs.sub_streams=[{','.join(subs)}]", "schedule.kwargs.t=2"]
    extra += [f"schedule.kwargs.categories=[{','.join(map(str, cats))}]"]
    for s in ["default", *subs]:
        extra += [f"data.streams.{s}.split=train", f"data.streams.{s}.datasets=null"]
    ensure_torchvision()
    cfg = load_recipe("dadd_tiny", [f"data.manifest={supervised_manifest}", *TINY, *ANY_ROWS, *extra])
    tr = Trainer(cfg, tmp_path / "dadd_addg")
    for name, cat in zip(subs, cats, strict=True):
        stream = tr.streams[name]
        items = [stream[it] for it in stream.plan(0)]
        fakes = [b for b in items if int(b["label"]) == 1]
        assert fakes and {int(b["category"]) for b in fakes} == {cat}
        assert {int(b["category"]) for b in items if int(b["label"]) == 0} == {-1}
    final = tr.streams["default"]
    assert len({int(final[it]["category"]) for it in final.plan(0)} - {-1}) >= 2  # a mix of categories
    summary = tr.fit()
    tr.close()
    rows = _rows(tmp_path / "dadd_addg")
    assert summary["steps"] == 5 and [r["phase"] for r in rows] == [f"subtask:{s}" for s in subs] + ["final"] * 2
    assert all(np.isfinite(float(r["loss"])) for r in rows)


def test_face_xray_tiny_trains_on_bi_fakes_with_xray_targets(supervised_manifest, tmp_path):
    """Face X-ray through the engine: reals + on-the-fly BI fakes, the ``boundary`` target is 4·M·(1−M) of the
    BI mask (non-zero only on the blend's soft edge, all zero for reals)."""
    extra = ["train.epochs=1", "train.steps_per_epoch=2", "data.size=64", "data.streams.default.exclude_videos=[]"]
    extra += ["data.unsplit_val_fraction=0.0", "data.val.split=[val]", "data.val.exclude_videos=[]"]
    extra += ["data.streams.default.frames_per_video=4", "data.val.frames_per_video=2"]
    ensure_torchvision()
    cfg = load_recipe("face_xray_tiny", [f"data.manifest={supervised_manifest}", *TINY, *extra])
    tr = Trainer(cfg, tmp_path / "fx")
    stream = tr.streams["default"]
    items = [stream[it] for it in stream.plan(0)]
    for b in items:
        bd = b["boundary"]
        assert bd.shape == (1, 64, 64)
        if int(b["label"]) == 0:
            assert float(bd.max()) == 0.0
    fake_b = [b["boundary"] for b in items if int(b["label"]) == 1]
    # a soft band around the blended region (peak 1 where M = 1/2; narrower, lower peaks for small blur σ at 48 px)
    assert fake_b and all(0.25 < float(bd.max()) <= 1.0 for bd in fake_b)
    assert all(0.0 < float((bd > 0).float().mean()) < 0.6 for bd in fake_b)
    summary = tr.fit()
    tr.close()
    rows = _rows(tmp_path / "fx")
    assert summary["steps"] == 2 and {"xray", "cls"} <= set(rows[0])
    assert all(float(r["loss"]) == pytest.approx(100 * float(r["xray"]) + float(r["cls"]), rel=1e-4) for r in rows)


def test_lae_stage1_needs_no_forgery_mask(supervised_manifest, tmp_path):
    """Algorithm 1 / Sec. 2.4: masks are requested for the N_active selected fakes only, so stage 1 (L1 = α1·L_rec +
    α2·L_latent) must train on fakes that have neither a mask file nor an original crop (this manifest's fakes)."""
    run, summary = _train(
        "lae_tiny", supervised_manifest, tmp_path,
        ["train.epochs=1", "train.steps_per_epoch=2", "schedule.kwargs.selection=none", "data.size=64"],
    )  # fmt: skip
    rows = _rows(run)
    assert [r["phase"] for r in rows] == ["stage1"] * 2 and summary["steps"] == 2


def _patch_masks(manifest):
    """Every fake of the synthetic manifest gets a mask file (its bright patch), for LAE's mask oracle."""
    root = manifest.parent
    mask = np.zeros((48, 48), np.uint8)
    mask[12:36, 12:36] = 255
    cv2.imwrite(str(root / "patch_mask.png"), mask)
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE faces SET mask_crop='patch_mask.png' WHERE label=1")


# validation loss after epoch 1, 2, ...: the lowest at epoch 2, never lower afterwards
LAE_VAL_LOSSES = [0.9, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.fixture
def scripted_lae_val(monkeypatch):
    def validate(self):
        loss = LAE_VAL_LOSSES[self.epoch - 1]
        return {"auc": 0.5, "video_auc": 0.5, "acc": 0.5, "loss": loss, "n_val": 16, "n_val_fake": 8}

    monkeypatch.setattr(Trainer, "validate", validate)


@pytest.mark.parametrize("selection", ["active", "none"])
def test_lae_stage1_stops_early_on_the_validation_loss(supervised_manifest, tmp_path, scripted_lae_val, selection):
    """LAE §3.1.2: "a maximum of 40 epochs with early stopping (patience=10). Validation loss is used as criteria for
    early stopping", read as stage 1's rule: stage 1 (at most 10 epochs here) ends 2 epochs after its lowest
    validation loss (epoch 2), the selection runs, stage 2 trains its 2 epochs and the run ends (of 20). Without a
    stage 2 (``selection: none``, Table 4's ablations) the stage-1 stop ends the run."""
    _patch_masks(supervised_manifest)
    extra = ["train.epochs=20", "train.steps_per_epoch=1", "schedule.kwargs.stage1_epochs=10",
             "schedule.kwargs.stage1_patience=2", "schedule.kwargs.stage2_epochs=2", "schedule.kwargs.n_active=2",
             f"schedule.kwargs.selection={selection}", "data.size=64"]  # fmt: skip
    run, summary = _train("lae_tiny", supervised_manifest, tmp_path, extra)
    phases = [r["phase"] for r in _rows(run)]
    stop = summary["early_stop"]
    state = torch.load(run / "last/state.pt", weights_only=True)["schedule"]
    assert state["stage1_stop"] == {"epoch": 4, "best_epoch": 2, "best_loss": 0.8}
    if selection == "active":
        assert phases == ["stage1"] * 4 + ["stage2"] * 2
        assert stop["epoch"] == 6 and stop["schedule"] == "lae" and "stage 2 done" in stop["reason"]
        assert len(json.loads((run / "active_selection.json").read_text())["keys"]) == 2
    else:
        assert phases == ["stage1"] * 4
        assert stop["epoch"] == 4 and "stage 1 stopped early" in stop["reason"]
    assert json.loads((run / "run.json").read_text())["early_stop"] == stop


def test_lae_recipe_follows_the_papers_stopping_rule():
    kw = load_recipe("lae").schedule.kwargs
    assert (kw["stage1_epochs"], kw["stage1_patience"], kw["stage2_epochs"]) == (40, 10, 4)
    assert load_recipe("lae").train.epochs == 44 and load_recipe("lae").train.early_stop_patience is None
    for ablation in ("lae_ae_rec", "lae_ae_latent", "lae_ae_latent_pixel", "lae_ae_latent_rec"):
        cfg = load_recipe(ablation)
        assert cfg.schedule.kwargs["selection"] == "none" and cfg.train.epochs == 40, ablation
