"""ℓ2,1 norm (DADD, Hong & Du 2021, Sec. 3.3, Eq. 3): the sum of the Euclidean norms of a matrix's rows.

Used as a feature-selection regulariser: it drives whole rows of the final task's weight matrix to zero. In DADD a
"row" is one sub-task's block of weights ("each row's parameters represent the weights corresponding to the feature
vectors extracted by each sub-task", Sec. 3.3), so :func:`grouped_l21_norm` groups consecutive inputs into blocks
and switches off whole sub-tasks (Fig. 4 shows one row per sub-task, ST_1 … ST_9).
"""

from __future__ import annotations

import torch
from torch import nn


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every row, ``sqrt(sum_j W_ij^2)``.

    ``torch.linalg.vector_norm`` rather than ``pow(2).sum().sqrt()``: at a zero row (the sparse solution ℓ2,1
    drives towards) its gradient is 0, a subgradient of the norm, where ``sqrt``'s is 0·∞ = NaN and would poison
    every weight at the next optimiser step.

    Shape:
        weight (d, n) -> (d,)
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a (d, n) matrix, got shape {tuple(weight.shape)}")
    return torch.linalg.vector_norm(weight, dim=1)


def l21_norm(weight: torch.Tensor) -> torch.Tensor:
    """``||W||_{2,1} = sum_i sqrt(sum_j |W_ij|^2)`` (Eq. 3), rows = the d features, columns = the n outputs.

    Note that ``torch.nn.Linear.weight`` is stored (out, in); pass ``linear.weight.t()`` so that rows are inputs.

    Shape:
        weight (d, n) -> scalar
    """
    return row_norms(weight).sum()


def grouped_l21_norm(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """ℓ2,1 over ``groups`` equal blocks of consecutive rows: ``sum_g ||W_g||_F`` (Eq. 3 with one row per block).

    With ``groups == d`` this is :func:`l21_norm`. DADD: rows = the N·F inputs of the final head, one block of F
    per sub-task, so each "row" of Eq. 3 holds all weights reading one sub-task's private feature vector.

    Shape:
        weight (d, n) with d divisible by ``groups`` -> scalar
    """
    if weight.dim() != 2 or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"expected a (d, n) matrix with d divisible by {groups} groups, got {tuple(weight.shape)}")
    return row_norms(weight.reshape(groups, -1)).sum()


class L21Norm(nn.Module):
    """Module form of :func:`l21_norm` (rows = inputs of a ``nn.Linear``, i.e. applied to ``weight.t()``)."""

    def forward(self, linear_weight: torch.Tensor) -> torch.Tensor:
        return l21_norm(linear_weight.t())
