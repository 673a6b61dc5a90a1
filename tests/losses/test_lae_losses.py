"""LAE losses (Eqs. 3–9) on hand-made inputs."""

from __future__ import annotations

import pytest
import torch

from dflab.losses.lae import (
    attention_loss,
    cam_attention,
    discriminator_loss,
    generator_adv_loss,
    latent_activations,
    latent_logits,
    latent_loss,
)


def test_latent_activations_loss_and_decision_on_hand_made_z():
    z = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.5, 2.0, 0.0]])
    a_t, a_f = latent_activations(z)
    assert a_t.tolist() == [1.0, 0.25] and a_f.tolist() == [0.0, 1.0]
    labels = torch.tensor([0, 1])  # 0 real, 1 fake
    # row 0 (real): |1 - 1| + |0 - 0| = 0 ; row 1 (fake): |0.25 - 0| + |1 - 1| = 0.25 ; mean 0.125
    assert latent_loss(z, labels).item() == pytest.approx(0.125)
    # with swapped labels: row 0 |1-0|+|0-1| = 2 ; row 1 |0.25-1|+|1-0| = 1.75
    assert latent_loss(z, 1 - labels).item() == pytest.approx(1.875)
    assert latent_logits(z).argmax(1).tolist() == [0, 1]  # real iff a_T > a_F


def test_latent_needs_even_size():
    with pytest.raises(ValueError, match="even"):
        latent_activations(torch.zeros(1, 3))


def test_cam_attention_eq8_hand_computed():
    feat = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, K=2, 1, 2)
    weight = torch.tensor([[9.0, 9.0], [9.0, 9.0], [1.0, 0.0], [0.0, 1.0]])  # (d_z=4, K=2); units 2,3 = fake half
    z = torch.tensor([[5.0, 5.0, -2.0, 3.0]])
    # coeff_k = Σ_c |z_c| w_k^c over c ∈ {2,3} = [2, 3]; M = 2*f_0 + 3*f_1 = [2, 6]
    raw = cam_attention(feat, weight, z, normalise=False)
    assert raw.flatten().tolist() == [2.0, 6.0]
    norm = cam_attention(feat, weight, z)
    assert norm.flatten().tolist() == pytest.approx([0.0, 1.0], abs=1e-5)


def test_cam_gradients_flow_to_features_weights_and_z():
    feat = torch.rand(2, 6, 4, 4, requires_grad=True)
    weight = torch.randn(8, 6, requires_grad=True)
    z = torch.randn(2, 8, requires_grad=True)
    cam = cam_attention(feat, weight, z, size=(16, 16))
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    attention_loss(cam, mask, torch.tensor([1, 1])).backward()
    for t in (feat, weight, z):
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert weight.grad[:4].abs().sum() == 0  # the true half does not enter Eq. 8


def test_attention_loss_only_on_valid_fakes():
    cam = torch.zeros(3, 1, 2, 2)
    mask = torch.ones(3, 1, 2, 2)
    labels = torch.tensor([0, 1, 1])
    assert attention_loss(cam, mask, labels).item() == pytest.approx(1.0)
    assert attention_loss(cam, mask, labels, valid=torch.tensor([True, False, False])).item() == 0.0


def test_adversarial_losses_match_log_forms():
    d = torch.tensor([0.0, 2.0])
    assert generator_adv_loss(d).item() == pytest.approx(-torch.log(torch.sigmoid(d)).mean().item(), rel=1e-6)
    expected = -torch.log(torch.sigmoid(d)).mean() - torch.log(1 - torch.sigmoid(-d)).mean()
    assert discriminator_loss(d, -d).item() == pytest.approx(expected.item(), rel=1e-6)
