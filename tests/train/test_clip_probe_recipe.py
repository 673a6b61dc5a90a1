"""The clip_probe recipe through the real engine: reals only in, SBI/ADDG twins made on the fly, the head learns."""

from __future__ import annotations

import json

from dflab.models.checkpoint import load_detector
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe


def test_clip_probe_tiny_trains_on_reals_and_their_synthesised_twins(supervised_manifest, tmp_path):
    cfg = load_recipe("clip_probe_tiny", [f"data.manifest={supervised_manifest}", "train.progress=false"])
    assert cfg.data.streams["default"].synthesizers == ["sbi", "addg"]
    tr = Trainer(cfg, tmp_path / "run")
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 10
    model = tr.model.module if hasattr(tr.model, "module") else tr.model
    # the frozen encoder stays frozen; only the head (and the standardisation statistics) moved
    assert all(not p.requires_grad for p in model.tiny.parameters())
    assert float(model.norm.running_var.mean()) != 1.0, "the feature statistics are the training set's"
    assert 0 < len(model._cache) <= model.cache_size or model.cache_size == 0
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["detector"] == "clip_probe"
    loaded = load_detector(tmp_path / "run" / "best")
    assert loaded.spec.mean[0] == 0.48145466 and loaded.spec.size == 64
