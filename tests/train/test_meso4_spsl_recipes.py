"""Meso-4 and SPSL through the normal training engine: each tiny recipe trains a couple of steps on the synthetic
manifest, moves the weights and writes a checkpoint whose card names the detector."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["train.progress=false", "data.num_workers=0", "train.log_every=1", "data.unsplit_val_fraction=0",
        "train.epochs=1", "train.steps_per_epoch=2", "data.batch_size=4"]  # fmt: skip
# the tiny recipes read the base's datasets; the synthetic manifest is one dataset with train/val splits
ANY_ROWS = ["data.streams.default.datasets=null", "data.val.datasets=null"]


@pytest.mark.parametrize(("recipe", "detector"), [("meso4_tiny", "meso4"), ("spsl_tiny", "spsl")])
def test_tiny_recipe_trains_through_the_engine(recipe, detector, supervised_manifest, tmp_path):
    cfg = load_recipe(recipe, [f"data.manifest={supervised_manifest}", *TINY, *ANY_ROWS])
    tr = Trainer(cfg, tmp_path / "run")
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 2
    assert any(not torch.equal(p.detach(), before[n]) for n, p in tr.model.named_parameters())
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {"loss", "ce"} <= set(rows[0])
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["detector"] == detector
