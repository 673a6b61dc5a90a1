"""RFM through the real training loop: the engine calls ``Detector.prepare_batch`` once per step, and the training
forward (train mode) sees the erased batch it returns, not the clean one; the tiny recipe trains end to end."""

from __future__ import annotations

import csv

import torch

from dflab.compat import ensure_torchvision
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["train.progress=false", "data.num_workers=0", "train.log_every=1", "data.unsplit_val_fraction=0"]
# the tiny recipe reads the base's datasets; the synthetic manifest is one dataset with train/val splits
ANY_ROWS = ["data.streams.default.datasets=null", "data.val.datasets=null"]


def test_rfm_tiny_trains_on_the_erased_batch(supervised_manifest, tmp_path):
    ensure_torchvision()  # the loop's versions() imports timm
    cfg = load_recipe("rfm_tiny", [f"data.manifest={supervised_manifest}", *TINY, *ANY_ROWS, "train.epochs=1",
                                   "train.steps_per_epoch=2", "data.batch_size=4"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    model = tr.model
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_prepare = model.prepare_batch

    def spy(batch, **phase):
        out = real_prepare(batch, **phase)
        calls.append((batch["image"].clone(), out["image"].clone()))
        return out

    model.prepare_batch = spy  # instance attribute: the loop's call goes through it
    seen: list[tuple[bool, torch.Tensor]] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].detach().clone())))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    summary = tr.fit()
    handle.remove()
    tr.close()

    assert summary["steps"] == 2 and len(calls) == 2
    train_inputs = [x for training, x in seen if training]
    assert len(train_inputs) == 2  # one training forward per step (the FAM forwards run in eval mode)
    for (clean, erased), x in zip(calls, train_inputs, strict=True):
        assert not torch.equal(clean, erased)  # SFE changed the batch
        assert torch.equal(x, erased)  # ... and the training forward saw the erased one
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {"loss", "ce"} <= set(rows[0])
    assert all(float(r["loss"]) >= 0.04 for r in rows)  # flooded: never below the flood level b
    assert (tmp_path / "run" / "best" / "card.json").exists()
