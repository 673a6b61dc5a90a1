"""Common losses shared by detectors: a function plus a thin ``nn.Module`` each (kornia style).

Method-specific losses (BiG-Arts, LiSiam, MML, LAE, DADD) live in their own modules of this package, added by
their authors; this file holds only the generic classification and mask losses every detector reuses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on two-class logits (class 1 = fake).

    Shape:
        logits (B, 2), labels (B,) long -> scalar.
    """
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected logits of shape (B, 2), got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"expected labels of shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    return F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)


def mask_bce(pred_logits: torch.Tensor, target: torch.Tensor, *, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise binary cross-entropy between predicted mask logits and a soft target mask in [0, 1].

    The target is resized (bilinear) to the prediction's size when they differ.

    Shape:
        pred_logits (B, 1, h, w), target (B, 1, H, W), weight broadcastable to (B, 1, h, w) -> scalar.
    """
    if pred_logits.ndim != 4 or target.ndim != 4:
        raise ValueError(
            f"expected (B, 1, h, w) prediction and (B, 1, H, W) target, got {tuple(pred_logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    if target.shape[-2:] != pred_logits.shape[-2:]:
        target = F.interpolate(target.float(), size=pred_logits.shape[-2:], mode="bilinear", align_corners=False)
    return F.binary_cross_entropy_with_logits(pred_logits.float(), target.float().clamp(0, 1), weight=weight)


class ClassificationLoss(nn.Module):
    """Module form of :func:`classification_loss`."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, labels, label_smoothing=self.label_smoothing)


class MaskBCELoss(nn.Module):
    """Module form of :func:`mask_bce`."""

    def forward(self, pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mask_bce(pred_logits, target)


__all__ = ["ClassificationLoss", "MaskBCELoss", "classification_loss", "mask_bce"]
