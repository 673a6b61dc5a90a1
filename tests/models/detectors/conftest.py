"""Helpers shared by the detector-specific tests: a few optimisation steps on one batch, and a tiny recipe run
through the normal engine on a small synthetic manifest."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.train.conftest import build_manifest


def fit_batch(
    model: torch.nn.Module, batch: dict[str, Any], *, steps: int, lr: float, part: str = "loss"
) -> list[float]:
    """``steps`` Adam steps of ``model.compute_loss`` on one batch (train mode); the logged ``part`` of each step."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        parts = model.compute_loss(batch, model(batch["image"]))
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(float(parts[part].detach()))
    return losses


@pytest.fixture
def tiny_manifest(tmp_path: Path) -> Path:
    """3 real + 3 fake training videos, 1 + 1 validation videos, 2 frames each, 64 px crops."""
    vids = {f"r{i}": (0, "train") for i in range(3)} | {f"f{i}": (1, "train") for i in range(3)}
    vids |= {"rv0": (0, "val"), "fv0": (1, "val")}
    return build_manifest(tmp_path / "prep", videos=vids, frames=2, size=64)


def tiny_recipe_trainer(name: str, manifest: Path, run_dir: Path, *overrides: str):
    """The :class:`~dflab.train.loop.Trainer` of recipe ``name`` set to 1 epoch of 2 steps of 4 images (not run yet:
    the caller may inspect the model first, then :func:`fit_and_read_metrics`)."""
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    cfg = load_recipe(name, [f"data.manifest={manifest}", "train.progress=false", "data.batch_size=4",
                             "train.epochs=1", "train.steps_per_epoch=2", "train.log_every=1", *overrides])  # fmt: skip
    return Trainer(cfg, run_dir)


def fit_and_read_metrics(trainer) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Run ``trainer.fit()``, close it, and return its summary and the rows of its ``metrics.csv``."""
    summary = trainer.fit()
    trainer.close()
    with open(trainer.run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return summary, rows
