"""Alignment / uniformity (Wang & Isola 2020, label-aware as in GenD) against hand-computed degenerate cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dflab.losses.hypersphere import AlignmentUniformityLoss, alignment_loss, uniformity_loss


def test_alignment_is_zero_for_identical_classes_and_uses_only_same_label_pairs():
    e = torch.eye(2)
    z = torch.stack([e[0], e[0], e[1], e[1]])
    assert alignment_loss(z, torch.tensor([0, 0, 1, 1])).item() == 0.0
    # labels crossing the clusters: pairs (0,2) and (1,3) are orthogonal, ||a - b||^2 = 2
    assert alignment_loss(z, torch.tensor([0, 1, 0, 1])).item() == pytest.approx(2.0)
    # no same-label pair: 0, still differentiable
    zz = z[:2].clone().requires_grad_(True)
    out = alignment_loss(zz, torch.tensor([0, 1]))
    assert out.item() == 0.0 and out.requires_grad


def test_uniformity_matches_the_definition():
    z = F.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    d2 = torch.cdist(z, z).pow(2)
    i, j = torch.triu_indices(5, 5, offset=1)
    ref = torch.log(torch.exp(-2.0 * d2[i, j]).mean())
    torch.testing.assert_close(uniformity_loss(z), ref)
    # collapsed embeddings: every distance 0, log(1) = 0 (the maximum); antipodal pair: log(exp(-8)) = -8
    assert uniformity_loss(torch.ones(4, 3) / math.sqrt(3)).item() == pytest.approx(0.0, abs=1e-6)
    assert uniformity_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(-8.0)
    assert uniformity_loss(torch.ones(1, 3)).item() == 0.0


def test_module_weights_the_two_terms():
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    ref = 0.1 * alignment_loss(z, y) + 0.5 * uniformity_loss(z)
    torch.testing.assert_close(AlignmentUniformityLoss()(z, y), ref)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        alignment_loss(z, y[:3])
