"""ℓ2,1 norm (DADD Eq. 3) against a hand-made matrix."""

from __future__ import annotations

import pytest
import torch

from dflab.losses.l21 import L21Norm, l21_norm, row_norms


def test_l21_is_sum_of_row_norms_on_hand_made_matrix():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, -2.0]])
    assert row_norms(w).tolist() == [5.0, 0.0, 1.0, 2.0]
    assert l21_norm(w).item() == pytest.approx(8.0)


def test_l21_module_uses_linear_inputs_as_rows():
    lin = torch.nn.Linear(3, 2, bias=False)  # weight (out=2, in=3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0, 1.0], [4.0, 0.0, 0.0]]))
    # rows = the 3 inputs: norms 5, 0, 1
    assert L21Norm()(lin.weight).item() == pytest.approx(6.0)


def test_l21_rejects_non_matrix():
    with pytest.raises(ValueError, match=r"\(d, n\)"):
        l21_norm(torch.zeros(2, 2, 2))


def test_l21_gradient_is_finite_at_zero_rows():
    """ℓ2,1 drives rows to exactly zero; its gradient there must be a subgradient (0), not NaN (sqrt'(0) · 0)."""
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    l21_norm(w).backward()
    assert torch.isfinite(w.grad).all()
    assert w.grad[1].tolist() == [0.0, 0.0]
    assert w.grad[0].tolist() == pytest.approx([0.6, 0.8])  # W_i / ||W_i|| on a non-zero row
