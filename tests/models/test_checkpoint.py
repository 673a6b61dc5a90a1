"""Checkpoints: the card rebuilds the detector; unknown detectors and mismatched weights are errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import dflab
from dflab.errors import CheckpointError
from dflab.models.base import build_detector
from dflab.models.checkpoint import load_detector, read_card, save_detector


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = build_detector("meso_inception4_tiny").eval()
    save_detector(model, tmp_path / "c", {"metrics": {"auc": 0.9}, "training": {"recipe": "x"}})
    return model, tmp_path / "c"


def test_card_contents_and_loading_paths(ckpt):
    model, path = ckpt
    card = read_card(path)
    for key in ("detector", "variant", "kwargs", "input_spec", "training", "metrics", "dflab_version", "git_sha"):
        assert key in card
    assert card["metrics"]["auc"] == 0.9 and card["input_spec"]["size"] == 64
    x = torch.randn(2, 3, 64, 64)
    for p in (path, path / "model.safetensors", path / "card.json"):
        loaded = dflab.load_detector(p)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x)["logits"], model(x)["logits"], rtol=0, atol=0)
    crop = np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8)
    assert loaded.transform(crop).shape == (3, 64, 64)


def test_unknown_detector(ckpt):
    _, path = ckpt
    card = json.loads((path / "card.json").read_text())
    card["detector"] = "no_such_detector"
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="not registered"):
        load_detector(path)


def test_missing_and_unexpected_weights(ckpt, tmp_path):
    model, path = ckpt
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    first = next(iter(sd))
    del sd[first]
    sd["bogus"] = torch.zeros(1)
    save_file(sd, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_detector(path)


def test_no_card(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint card"):
        load_detector(tmp_path)
