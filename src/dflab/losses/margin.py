"""Additive-margin softmax (AM-Softmax; Wang, Cheng, Liu, Liu, "Additive Margin Softmax for Face Verification",
IEEE SPL 2018, Eq. 6): cross-entropy of ``s·(cos θ_y − m)`` for the true class against ``s·cos θ_j`` for the others.

Used by the GSRM detector as an option (DeepfakeBench trains its GSRM re-implementation with this loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def am_softmax_loss(cos: torch.Tensor, labels: torch.Tensor, *, margin: float = 0.35, scale: float = 30.0):
    """AM-Softmax on cosine similarities between normalised features and normalised class weights.

    Shape:
        cos (B, K) in [-1, 1], labels (B,) long -> scalar.
    """
    if cos.ndim != 2 or labels.shape != cos.shape[:1]:
        raise ValueError(f"expected cos (B, K) and labels (B,), got {tuple(cos.shape)} and {tuple(labels.shape)}")
    onehot = F.one_hot(labels.long(), cos.shape[1]).to(cos.dtype)
    return F.cross_entropy(scale * (cos.float() - margin * onehot.float()), labels.long())


class AMSoftmaxLoss(nn.Module):
    """Module form of :func:`am_softmax_loss`."""

    def __init__(self, margin: float = 0.35, scale: float = 30.0) -> None:
        super().__init__()
        self.margin, self.scale = margin, scale

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return am_softmax_loss(cos, labels, margin=self.margin, scale=self.scale)
