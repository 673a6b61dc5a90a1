"""Meso-4 and SPSL through the normal training engine: each tiny recipe trains a couple of steps on the synthetic
manifest, moves the weights and writes a checkpoint whose card names the detector; SPSL's backbone weights load
through the trainer into its 4-channel stem, and unset weights stop the run with the ways out."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dflab.errors import CheckpointError
from dflab.models.base import build_detector
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


def test_spsl_backbone_weights_load_through_the_trainer(supervised_manifest, tmp_path):
    """A local file in timm's legacy_xception layout (3-channel conv1, all 8 middle blocks, an ImageNet fc) loads
    into the shallow 4-channel backbone; the run records what was dropped."""
    from safetensors.torch import save_file

    from dflab.models.xception import XceptionTrunk

    torch.manual_seed(0)
    widths = build_detector("spsl_tiny").config()["kwargs"]["widths"]
    src = XceptionTrunk(in_chans=3, widths=widths, middle_blocks=8).state_dict()
    src |= {"fc.weight": torch.randn(1000, widths[-1]), "fc.bias": torch.randn(1000)}
    save_file({k: v.contiguous() for k, v in src.items()}, str(tmp_path / "x.safetensors"))
    cfg = load_recipe("spsl_tiny", [f"data.manifest={supervised_manifest}", *TINY, *ANY_ROWS,
                                    f"model.kwargs.backbone_pretrained={tmp_path / 'x.safetensors'}"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    w = tr.model.backbone.conv1.weight
    assert torch.equal(w[:, :3], src["conv1.weight"]) and torch.equal(w[:, 3], src["conv1.weight"].mean(dim=1))
    assert torch.equal(tr.model.backbone.block12.skip.weight, src["block12.skip.weight"])
    report = tr.pretrained_report["backbone."]
    assert report["missing"] == 0 and report["loaded"] == len(tr.model.backbone.state_dict())
    assert report["unexpected"] == len([k for k in src if k.startswith(("fc.", *(f"block{i}." for i in range(4, 12))))])


def test_spsl_without_backbone_weights_stops_with_the_ways_out(supervised_manifest, tmp_path):
    cfg = load_recipe(
        "spsl_tiny", [f"data.manifest={supervised_manifest}", *TINY, *ANY_ROWS, "model.kwargs.backbone_pretrained=null"]
    )
    with pytest.raises(CheckpointError, match=r"model\.kwargs\.backbone_pretrained"):
        Trainer(cfg, tmp_path / "run")
