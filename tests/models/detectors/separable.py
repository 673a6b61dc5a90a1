"""A tiny separable batch and a few plain Adam steps on it: what a detector's "it can learn" test needs."""

from __future__ import annotations

import torch

from dflab.models.base import Detector


def patch_batch(low: float, high: float, patch: float, n: int = 8, size: int = 64) -> dict[str, torch.Tensor]:
    """``n`` images uniform in [low, high); the fakes (every second one) carry a bright central patch (+``patch``)."""
    label = torch.tensor([0, 1] * (n // 2))
    images = torch.rand(n, 3, size, size) * (high - low) + low
    q = size // 4
    images[label == 1, :, q : 3 * q, q : 3 * q] += patch
    return {"image": images, "label": label}


def fit_steps(model: Detector, batch: dict[str, torch.Tensor], steps: int, lr: float) -> list[float]:
    """Train ``model`` on ``batch`` for ``steps`` Adam steps; the cross-entropy of each step."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        parts = model.compute_loss(batch, model(batch["image"]))
        assert set(parts) >= {"loss", "ce"}
        parts["loss"].backward()
        opt.step()
        losses.append(float(parts["ce"]))
    return losses
