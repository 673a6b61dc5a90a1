"""DADD (Algorithm 1), MML (stages) and LAE (two stages + active selection) schedules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

import dflab.train.schedules  # noqa: F401  (fills SCHEDULES)
from dflab.train.schedule import SCHEDULES


def test_dadd_schedule_follows_algorithm_1():
    s = SCHEDULES.get("dadd")(sub_streams=["a", "b"], k=2, t=3)
    names = [s.phase(i, 100).name for i in range(8)]
    assert names == ["subtask:a", "subtask:b", "subtask:a", "subtask:b", "final", "final", "final", "subtask:a"]
    p = s.phase(1, 100)
    assert p.stream == "b" and p.loss_kwargs == {"task": "sub:1"}
    assert s.phase(4, 100).loss_kwargs == {"task": "final"} and s.phase(4, 100).stream == "default"
    assert s.streams() == ["default", "a", "b"]
    blocked = SCHEDULES.get("dadd")(sub_streams=["a", "b"], k=2, t=1, order="blocked", categories=[4, 7])
    assert [blocked.phase(i, 10).stream for i in range(5)] == ["a", "a", "b", "b", "default"]
    assert blocked.phase(2, 10).loss_kwargs == {"task": "sub:1", "category": 7}
    with pytest.raises(ValueError):
        SCHEDULES.get("dadd")(sub_streams=[], k=1, t=1)


def test_mml_schedule_stages():
    s = SCHEDULES.get("mml")()
    stages = [s.phase(i, 10).loss_kwargs["stage"] for i in range(10)]
    assert stages == ["early"] * 3 + ["middle"] * 3 + ["end"] * 4
    s2 = SCHEDULES.get("mml")(middle_step=1, end_step=2)
    assert [s2.phase(i, 100).name for i in range(3)] == ["early", "middle", "end"]


@dataclass
class _Row:
    dataset: str
    video_id: str
    frame_index: int
    track_id: int
    label: int
    mask_crop: str = ""


class _Stream:
    """A FaceStream stand-in: ``rows`` and ``stream[(row, 0, seed)] -> item``."""

    def __init__(self, images, labels, masks):
        self.images, self.labels, self.masks = images, labels, masks
        self.rows = [_Row("d", f"v{i}", 0, 0, int(lab)) for i, lab in enumerate(labels)]

    def __getitem__(self, item):
        i = item[0]
        return {"image": self.images[i], "label": torch.tensor(self.labels[i]), "mask": self.masks[i][None]}

    def dataset_mask(self, i):
        return self.masks[i].numpy()


@dataclass
class _Trainer:
    model: torch.nn.Module
    streams: dict
    run_dir: Path
    logs: list = field(default_factory=list)

    def log(self, d, file="metrics.csv"):
        self.logs.append((file, d))


@pytest.mark.parametrize("selection", ["active", "random"])
def test_lae_schedule_switches_to_encoder_only_stage2_after_selection(tmp_path, selection):
    from dflab.models.base import build_detector

    torch.manual_seed(0)
    model = build_detector("lae_tiny")
    n = 12
    labels = np.array([0, 1] * (n // 2))
    images = torch.randn(n, 3, 64, 64)
    masks = torch.zeros(n, 64, 64)
    masks[:, 16:48, 16:48] = torch.from_numpy(labels).float()[:, None, None]
    src = _Stream(images, labels, masks)
    trainer = _Trainer(model, {"default": src}, tmp_path)
    s = SCHEDULES.get("lae")(stage1_epochs=2, n_active=2, selection=selection, top_k=4)
    assert s.streams() == ["default"]
    assert s.phase(0, 10).loss_kwargs == {"stage": "stage1"} and s.phase(0, 10).trainable is None
    s.on_epoch_end(trainer, 0)
    assert not s.in_stage2
    s.on_epoch_end(trainer, 1)
    assert s.in_stage2 and s.selected is not None and len(s.selected.keys) == 2
    p = s.phase(5, 10)
    assert p.trainable == ("encoder.",) and p.loss_kwargs == {"stage": "stage2"}
    assert p.lr_scale == pytest.approx(0.1)
    # Algorithm 1: L_latent over the training data D — stage 2 reads the whole stage-1 stream, reals and every fake
    assert p.stream == "default" and len(src.rows) == n
    # ... and L_attention over the N_active annotated fakes only: their masks are the stream's annotations
    assert sorted(src.annotations) == sorted(s.selected.keys)
    assert all(Path(f).exists() for f in src.annotations.values())
    file, row = trainer.logs[-1]
    assert file == "active.csv" and row["n_masks"] == 2 and row["method"] == selection
    assert (tmp_path / "active_selection.json").exists()
    for e in range(3):
        s.on_epoch_end(trainer, 2 + e)
    assert s.phase(0, 10).lr_scale == pytest.approx(0.01)  # ÷10 again after 3 stage-2 epochs
    state = s.state_dict()
    s2 = SCHEDULES.get("lae")(stage1_epochs=2, n_active=2, selection=selection)
    s2.load_state_dict(state)
    assert s2.in_stage2 and s2.selected.keys == s.selected.keys
    # a run resumed in stage 2 annotates a fresh stream again, from the masks on disk
    fresh = _Stream(images, labels, masks)
    s2.on_resume(_Trainer(model, {"default": fresh}, tmp_path))
    assert fresh.annotations == src.annotations and len(fresh.rows) == n


def test_lae_schedule_mixed_stage2_restricts_only_the_active_stream(tmp_path):
    """The selectable reading: stage 2 draws a mix of D and a stream of the annotated fakes."""
    from types import SimpleNamespace

    from dflab.models.base import build_detector

    torch.manual_seed(0)
    n = 12
    labels = np.array([0, 1] * (n // 2))
    images, masks = torch.randn(n, 3, 64, 64), torch.ones(n, 64, 64)
    src, act = _Stream(images, labels, masks), _Stream(images, labels, masks)
    trainer = _Trainer(build_detector("lae_tiny"), {"default": src, "active": act}, tmp_path)
    trainer.cfg = SimpleNamespace(data=SimpleNamespace(mixes={"stage2": {"default": 3, "active": 1}}))
    s = SCHEDULES.get("lae")(stage1_epochs=1, n_active=2, stage2_stream="stage2", active_stream="active")
    assert s.streams() == ["default", "stage2"]
    s.on_epoch_end(trainer, 0)
    assert s.phase(0, 10).stream == "stage2"
    assert len(src.rows) == n and sorted(src.annotations) == sorted(s.selected.keys)
    assert sorted(f"d:{r.video_id}:0:0" for r in act.rows) == sorted(s.selected.keys)
    with pytest.raises(ValueError, match="mix"):
        SCHEDULES.get("lae")(active_stream="active")


def test_lae_schedule_none_has_no_stage2():
    s = SCHEDULES.get("lae")(stage1_epochs=1, selection="none")
    s.on_epoch_end(None, 0)
    assert s.streams() == ["default"] and s.phase(100, 100).name == "stage1"


def test_lae_stage2_keeps_the_frozen_decoder_batch_norm_statistics():
    """Sec. 3.1.4: stage 2 freezes the decoder and the discriminator. The decoder still runs in ``forward`` (x̂), so
    its BatchNorm running statistics must not move either (``Phase.freeze_norm``), while the encoder's do."""
    from dflab.models.base import build_detector
    from dflab.train.schedule import freeze_norm_stats

    s = SCHEDULES.get("lae")(stage1_epochs=1, selection="random")
    s.in_stage2 = True  # as after the selection at the end of stage 1
    p = s.phase(0, 10)
    assert p.freeze_norm
    torch.manual_seed(0)
    model = build_detector("lae_tiny").train()
    frozen = freeze_norm_stats(model, p.trainable) if p.freeze_norm else []  # what Trainer.train_step does
    assert frozen and all(not n.startswith("encoder.") for n in frozen)
    dec_bn, enc_bn = model.decoder.net[1], model.encoder.convs[3]
    dec_before, enc_before = dec_bn.running_mean.clone(), enc_bn.running_mean.clone()
    model(torch.randn(4, 3, 64, 64))
    assert torch.equal(dec_bn.running_mean, dec_before)
    assert not torch.equal(enc_bn.running_mean, enc_before)


def test_lae_stage1_early_stop_state_survives_a_resume():
    """Stage 1's early stop (Sec. 3.1.2) is decided from the validation rows and saved with the schedule's state, so a
    run resumed after it ends where an uninterrupted one does; a NaN loss never counts as an improvement."""
    s = SCHEDULES.get("lae")(stage1_epochs=40, selection="none", stage1_patience=2)
    for epoch, loss in enumerate([1.0, float("nan"), 0.9, 0.95], start=1):
        s.on_validation(None, {"epoch": epoch, "loss": loss})
        assert s.stop_due(None) is None
    s.on_validation(None, {"epoch": 5, "loss": 0.92})
    assert s.stage1_stop == {"epoch": 5, "best_epoch": 3, "best_loss": 0.9} and "stage 1 stopped" in s.stop_due(None)
    resumed = SCHEDULES.get("lae")(stage1_epochs=40, selection="none", stage1_patience=2)
    resumed.load_state_dict(s.state_dict())
    assert resumed.stop_due(None) == s.stop_due(None)
    with pytest.raises(ValueError, match="stage1_patience"):
        SCHEDULES.get("lae")(stage1_patience=0)
