"""Multi-metric loss pieces against hand-computed values; AHE geometry."""

from __future__ import annotations

import math

import pytest
import torch

from dflab.losses.metric import (
    WeightCenter,
    ahe_eta,
    ahe_negatives,
    ahe_triplet_loss,
    triplet_indices,
    triplet_loss,
    weight_center_loss,
    weight_center_weights,
)


def _toy():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    labels = torch.tensor([0, 0, 1])
    return emb, labels


def test_triplet_loss_hand_computed():
    emb, labels = _toy()
    # anchor 0: S_an = 0.8, S_ap = 0.6 -> 1.2 ; anchor 1: S_an = 0.96, S_ap = 0.6 -> 1.36 ; anchor 2 has no positive
    assert triplet_indices(labels).tolist() == [[0, 1, 2], [1, 0, 2]]
    assert triplet_loss(emb, labels, margin=1.0).item() == pytest.approx((1.2 + 1.36) / 2)
    assert triplet_loss(emb, labels, margin=1.0, mining="hard").item() == pytest.approx((1.2 + 1.36) / 2)
    # a margin small enough makes anchor 0's triplet inactive: [0.8 - 0.6 - 0.3]_+ = 0, anchor 1: 0.06
    assert triplet_loss(emb, labels, margin=-0.3).item() == pytest.approx(0.06 / 2)


def test_triplet_hard_mining_picks_hardest():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.7071, 0.7071]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    # anchor 0: hardest positive = 2 (S=0), hardest negative = 4 (S=.7071) -> 1.7071
    loss_all = triplet_loss(emb, labels, 1.0, "all")
    loss_hard = triplet_loss(emb, labels, 1.0, "hard")
    assert loss_hard > loss_all


def test_triplet_no_valid_triplet_is_zero_with_grad():
    emb = torch.randn(3, 4, requires_grad=True)
    loss = triplet_loss(emb, torch.tensor([1, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None


def test_weight_center_loss_hand_computed():
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    center = torch.tensor([1.0, 0.0])
    # S = [1, 0]; 1/2 log(1 + e^{-2(1-.5)} + e^{-2(0-.5)}) = 1/2 log(1 + e^-1 + e)
    expected = 0.5 * math.log(1 + math.exp(-1) + math.exp(1))
    assert weight_center_loss(real, center, alpha=2.0, lam=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_weight_center_weights_are_minus_gradient_and_favour_deviating_samples():
    sims = torch.tensor([0.9, 0.2, -0.5], requires_grad=True)
    center = torch.tensor([1.0, 0.0])
    # build embeddings whose similarity to the centre is sims: f_k = (s_k, sqrt(1 - s_k^2))
    emb = torch.stack([sims, (1 - sims**2).sqrt()], dim=1)
    loss = weight_center_loss(emb, center, alpha=2.0, lam=0.5)
    (g,) = torch.autograd.grad(loss, sims)
    w = weight_center_weights(sims.detach(), alpha=2.0, lam=0.5)
    assert torch.allclose(-g, w, atol=1e-6)
    assert w[2] > w[1] > w[0]  # the deviating (least similar) sample gets the largest penalty weight (Fig. 3)


def test_weight_center_update_rule():
    wc = WeightCenter(2, momentum=0.5)
    wc.update(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert wc.center.tolist() == [1.0, 0.0]  # initialised to the first real mean
    wc.update(torch.tensor([[0.0, 1.0]]))
    # normalise(0.5*[1,0] + 0.5*[0,1]) = [1/sqrt2, 1/sqrt2]
    assert torch.allclose(wc.center, torch.tensor([0.7071068, 0.7071068]))
    wc.update(torch.zeros(0, 2))  # no reals: unchanged
    assert torch.allclose(wc.center, torch.tensor([0.7071068, 0.7071068]))


def test_ahe_hand_computed_and_eta():
    z, zp, zn = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]])
    # d+ = 1, d- = 3; η = .5 -> distance .5*3 + .5*1 = 2
    assert ahe_negatives(z, zp, zn, 0.5).tolist() == [[2.0, 0.0]]
    assert ahe_negatives(z, zp, zn, 0.0).tolist() == [[1.0, 0.0]]  # hardest: exactly the positive's distance
    assert ahe_negatives(z, zp, zn, 1.0).tolist() == [[3.0, 0.0]]  # easiest: the original negative
    # d- <= d+: the negative is kept as is
    assert ahe_negatives(z, torch.tensor([[5.0, 0.0]]), zn, 0.5).tolist() == [[3.0, 0.0]]
    assert ahe_eta(1.0) == pytest.approx(math.exp(-1.0))
    assert ahe_eta(0.1) < ahe_eta(1.0)  # smaller CE -> smaller η -> harder negatives


def test_ahe_never_crosses_the_positive():
    g = torch.Generator().manual_seed(0)
    z, zp, zn = (torch.randn(2000, 8, generator=g) for _ in range(3))
    eta = torch.rand(2000, generator=g)
    syn = ahe_negatives(z, zp, zn, eta)
    d_pos = (zp - z).norm(dim=1)
    d_neg = (zn - z).norm(dim=1)
    d_syn = (syn - z).norm(dim=1)
    assert (d_syn >= torch.minimum(d_pos, d_neg) - 1e-5).all()
    assert (d_syn >= d_pos - 1e-5)[d_neg > d_pos].all()  # never closer to the anchor than the positive
    assert (d_syn <= d_neg + 1e-5).all()  # never easier than the original
    # the synthetic negative stays on the ray anchor -> negative
    cos = torch.nn.functional.cosine_similarity(syn - z, zn - z, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)


def test_ahe_triplet_is_harder_than_plain():
    emb, labels = _toy()
    assert ahe_triplet_loss(emb, labels, eta=0.0).item() >= triplet_loss(emb, labels).item() - 1e-6


def test_ahe_negative_never_more_similar_than_the_positive_on_unit_embeddings():
    """Sec. 3.2, "will not cross the positive sample", in the dot-product similarity Eq. 2 uses: for unit z, z⁺, z⁻
    the (not re-normalised) synthetic negative keeps ⟨z, z̃⁻⟩ ≤ ⟨z, z⁺⟩ whenever it was moved (d⁻ > d⁺)."""
    g = torch.Generator().manual_seed(1)
    z, zp, zn = (torch.nn.functional.normalize(torch.randn(2000, 8, generator=g), dim=1) for _ in range(3))
    syn = ahe_negatives(z, zp, zn, torch.rand(2000, generator=g))
    moved = (zn - z).norm(dim=1) > (zp - z).norm(dim=1)
    s_syn, s_ap, s_an = (z * syn).sum(1), (z * zp).sum(1), (z * zn).sum(1)
    assert moved.any() and (s_syn <= s_ap + 1e-5)[moved].all()
    assert (s_syn >= s_an - 1e-5).all()  # and never easier than the original negative


def test_ahe_triplet_trains_through_the_synthetic_negative():
    """The synthetic negative is not detached (module docstring): the negatives' embeddings get a gradient."""
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]], requires_grad=True)
    ahe_triplet_loss(emb, torch.tensor([0, 0, 1]), eta=0.5).backward()
    assert emb.grad[2].abs().sum() > 0
