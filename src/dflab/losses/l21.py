"""ℓ2,1 norm (DADD, Hong & Du 2021, Sec. 3.3, Eq. 3): the sum of the Euclidean norms of a matrix's rows.

Used as a feature-selection regulariser: it drives whole rows of the final task's weight matrix to zero, i.e.
switches off entire private-feature inputs (Fig. 4 of the paper shows the row-norm map).
"""

from __future__ import annotations

import torch
from torch import nn


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every row, ``sqrt(sum_j W_ij^2)``.

    Shape:
        weight (d, n) -> (d,)
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a (d, n) matrix, got shape {tuple(weight.shape)}")
    return weight.pow(2).sum(dim=1).sqrt()


def l21_norm(weight: torch.Tensor) -> torch.Tensor:
    """``||W||_{2,1} = sum_i sqrt(sum_j |W_ij|^2)`` (Eq. 3), rows = the d features, columns = the n outputs.

    Note that ``torch.nn.Linear.weight`` is stored (out, in); pass ``linear.weight.t()`` so that rows are inputs.

    Shape:
        weight (d, n) -> scalar
    """
    return row_norms(weight).sum()


class L21Norm(nn.Module):
    """Module form of :func:`l21_norm` (rows = inputs of a ``nn.Linear``, i.e. applied to ``weight.t()``)."""

    def forward(self, linear_weight: torch.Tensor) -> torch.Tensor:
        return l21_norm(linear_weight.t())
