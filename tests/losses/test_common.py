"""Common losses against torch references in degenerate cases, and their shape errors."""

from __future__ import annotations

import math

import pytest
import torch

from dflab.losses import ClassificationLoss, MaskBCELoss, classification_loss, mask_bce


def test_classification_loss_uniform_logits_is_log2():
    loss = classification_loss(torch.zeros(5, 2), torch.tensor([0, 1, 1, 0, 1]))
    assert abs(loss.item() - math.log(2)) < 1e-6


def test_classification_loss_matches_torch():
    logits, labels = torch.randn(7, 2), torch.randint(0, 2, (7,))
    ref = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(ClassificationLoss(0.1)(logits, labels), ref)


def test_mask_bce_resizes_target_and_matches_reference():
    pred = torch.zeros(2, 1, 8, 8)
    target = torch.ones(2, 1, 32, 32)
    assert abs(mask_bce(pred, target).item() - math.log(2)) < 1e-6  # logit 0 vs any target in [0,1]: log 2
    p, t = torch.randn(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    assert torch.allclose(MaskBCELoss()(p, t), torch.nn.functional.binary_cross_entropy_with_logits(p, t))


def test_shape_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        classification_loss(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        mask_bce(torch.zeros(2, 8, 8), torch.zeros(2, 1, 8, 8))
