"""Alignment and uniformity of L2-normalised embeddings (Wang & Isola, ICML 2020, "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the Hypersphere", Eqs. 4–5), in the label-aware form
GenD (Yermakov et al., WACV 2026) adds to its cross-entropy.

* :func:`alignment_loss` — ``E_{(x,y) same label} ||z_x − z_y||^α`` over the batch's distinct same-label pairs
  (Wang & Isola pair two views of one image; GenD pairs samples of one class, which pulls each class together).
* :func:`uniformity_loss` — ``log E_{(x,y)} exp(−t ||z_x − z_y||²)`` over all distinct pairs (lower = more uniform).

Both take unit-norm embeddings; a batch without a pair (one sample, or no two samples of one label) gives 0.
"""

from __future__ import annotations

import torch
from torch import nn


def alignment_loss(z: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean ``||z_i − z_j||^alpha`` over pairs i < j with ``labels[i] == labels[j]``.

    Shape:
        z (B, D) unit-norm, labels (B,) -> scalar.
    """
    if z.ndim != 2 or labels.shape != z.shape[:1]:
        raise ValueError(f"expected z (B, D) and labels (B,), got {tuple(z.shape)} and {tuple(labels.shape)}")
    same = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    i, j = same.nonzero(as_tuple=True)
    if i.numel() == 0:
        return z.sum() * 0.0  # keeps the graph (and dtype/device) for a batch without positive pairs
    return (z[i] - z[j]).norm(dim=1).pow(alpha).mean()


def uniformity_loss(z: torch.Tensor, t: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """``log mean_{i<j} exp(−t ||z_i − z_j||²)``; the mean is clamped at ``eps`` (a fully spread batch stays finite).

    Shape:
        z (B, D) unit-norm -> scalar.
    """
    if z.ndim != 2:
        raise ValueError(f"expected z of shape (B, D), got {tuple(z.shape)}")
    if z.shape[0] < 2:
        return z.sum() * 0.0
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().clamp(min=eps).log()


class AlignmentUniformityLoss(nn.Module):
    """``w_align · alignment_loss + w_unif · uniformity_loss`` (GenD's weights: 0.1 and 0.5)."""

    def __init__(self, w_align: float = 0.1, w_unif: float = 0.5, alpha: float = 2.0, t: float = 2.0) -> None:
        super().__init__()
        self.w_align, self.w_unif, self.alpha, self.t = w_align, w_unif, alpha, t

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.w_align * alignment_loss(z, labels, self.alpha) + self.w_unif * uniformity_loss(z, self.t)
