"""The validation ``loss`` is the detector's own (``Detector.validation_loss``): cross-entropy of the logits by
default, ForensicTransfer's ``γ·L_act + L_rec`` for the ``forensic_transfer`` recipe, whose early stop and best
checkpoint watch it (LAE §3.1.2: "Validation loss is used as criteria for early stopping"); the card says so."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dflab.models.detectors.forensic_transfer import select_half
from dflab.train.data import collate
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe

TINY = ["data.size=64", "train.progress=false", "data.batch_size=3", "train.epochs=1", "train.steps_per_epoch=1"]


def _val_batch(tr: Trainer) -> dict:
    """Every validation item in one batch (the stream's own order; the mean does not depend on it)."""
    return collate([tr.val_stream[(i, 0, 0)] for i in range(len(tr.val_stream.rows))])


def _ft_loss_by_hand(model, batch: dict) -> float:
    """FT §3 on each item: |a_1 − y| + |a_0 − (1 − y)| + mean |x − dec(h with the true class's half)|, averaged."""
    x, y = batch["image"], batch["label"]
    with torch.no_grad():
        h = model.encoder(x)
        half = h.shape[1] // 2
        a0, a1 = h[:, :half].abs().flatten(1).mean(1), h[:, half:].abs().flatten(1).mean(1)
        act = (a1 - y.float()).abs() + (a0 - (1 - y.float())).abs()
        rec = (x - model.decoder(select_half(h, y.bool()))).abs().flatten(1).mean(1)
    return float((model.gamma * act + rec).mean())


def _validated(recipe: str, manifest, run_dir) -> tuple:
    """The recipe's untrained model, all its validation items as one batch, their cross-entropy, and ``validate()``."""
    tr = Trainer(load_recipe(recipe, [f"data.manifest={manifest}", *TINY]), run_dir)
    try:
        tr.model.eval()
        batch = _val_batch(tr)
        with torch.no_grad():
            ce = float(F.cross_entropy(tr.model(batch["image"])["logits"], batch["label"]))
        metrics = tr.validate()
    finally:
        tr.close()
    return tr.model, batch, ce, metrics


def test_forensic_transfer_validates_on_its_own_loss(supervised_manifest, tmp_path):
    model, batch, ce, metrics = _validated("forensic_transfer_tiny", supervised_manifest, tmp_path / "run")
    expected = _ft_loss_by_hand(model, batch)
    assert metrics["n_val"] == len(batch["label"]) == 16
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - ce) > 1e-3  # the two losses differ: the test tells them apart


def test_other_detectors_keep_cross_entropy(supervised_manifest, tmp_path):
    model, _, ce, metrics = _validated("meso_inception4_tiny", supervised_manifest, tmp_path / "run")
    assert metrics["loss"] == pytest.approx(ce, rel=1e-5)
    assert model.validation_loss_name == "cross_entropy"


def test_forensic_transfer_recipe_watches_the_loss_and_the_card_says_so(supervised_manifest, tmp_path):
    cfg = load_recipe("forensic_transfer")
    assert (cfg.train.select_metric, cfg.train.early_stop_patience, cfg.train.epochs) == ("-loss", 10, 40)

    cfg = load_recipe("forensic_transfer_tiny", [f"data.manifest={supervised_manifest}", *TINY])
    tr = Trainer(cfg, tmp_path / "run")
    try:
        summary = tr.fit()
    finally:
        tr.close()
    assert summary["best"]["name"] == "-loss" and summary["best"]["value"] == summary["history"][0]["loss"]
    for ckpt in ("best", "last"):
        training = json.loads((tmp_path / "run" / ckpt / "card.json").read_text())["training"]
        assert training["select_metric"] == "-loss" and training["early_stop_patience"] == 10
        assert training["val_loss"].startswith("forensic_transfer")
