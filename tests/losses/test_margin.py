"""AM-Softmax against a hand-written reference, and its degenerate case (no margin = scaled cross-entropy)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dflab.losses.margin import AMSoftmaxLoss, am_softmax_loss


def test_zero_margin_is_cross_entropy_of_scaled_cosines() -> None:
    cos = torch.tensor([[0.2, -0.1], [0.9, 0.3], [-0.5, 0.5]])
    labels = torch.tensor([0, 1, 1])
    torch.testing.assert_close(am_softmax_loss(cos, labels, margin=0.0, scale=10.0), F.cross_entropy(10 * cos, labels))


def test_margin_is_subtracted_from_the_true_class_only() -> None:
    cos, labels, m, s = torch.tensor([[0.6, 0.1]]), torch.tensor([0]), 0.35, 30.0
    t, o = s * (0.6 - m), s * 0.1
    expected = -(t - math.log(math.exp(t) + math.exp(o)))
    assert float(am_softmax_loss(cos, labels, margin=m, scale=s)) == pytest.approx(expected, rel=1e-5)
    assert float(AMSoftmaxLoss(m, s)(cos, labels)) == pytest.approx(expected, rel=1e-5)
    assert am_softmax_loss(cos, labels, margin=m, scale=s) > am_softmax_loss(cos, labels, margin=0.0, scale=s)


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        am_softmax_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
