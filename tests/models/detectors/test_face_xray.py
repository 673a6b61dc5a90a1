"""Face X-ray specifics: the X-ray map and its loss (Eqs. 2-5), NN_c reading the X-ray, the BI target, the recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dflab.models.base import build_detector


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector("face_xray_tiny").eval()


def test_outputs_are_an_xray_at_input_size_and_two_logits(model):
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 2)
    assert out["xray"].shape == (2, 1, 64, 64) and out["xray_logits"].shape == (2, 1, 64, 64)
    assert bool(((out["xray"] >= 0) & (out["xray"] <= 1)).all())
    assert set(model.targets) == {"boundary"}
    assert model.explain_maps(out)["boundary"] is out["xray"]


def test_backbone_is_timm_hrnet_with_four_branches(model):
    assert type(model.backbone).__module__.startswith("timm.") and "HighResolution" in type(model.backbone).__name__
    assert model.backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert model.xray_head.in_channels == sum(model.backbone.feature_info.channels())


def test_classifier_reads_only_the_predicted_xray(model):
    """NN_c : B̂ → c (§3.4): the logits are an affine function of the mean of B̂, nothing else."""
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 64))
        mean = out["xray"].mean(dim=(1, 2, 3))
        expect = mean[:, None] * model.fc.weight[:, 0] + model.fc.bias
    torch.testing.assert_close(out["logits"], expect)
    feats = build_detector("face_xray_tiny", cls_input="features")
    assert feats.fc.in_features == model.xray_head.in_channels
    with pytest.raises(ValueError, match="cls_input"):
        build_detector("face_xray_tiny", cls_input="pixels")


def test_loss_is_eq5_lambda_100(model):
    batch = {"label": torch.tensor([0, 1]), "boundary": torch.zeros(2, 1, 64, 64)}
    batch["boundary"][1, :, 20:40, 20:40] = 0.75
    out = model(torch.randn(2, 3, 64, 64))
    parts = model.compute_loss(batch, out)
    # Eq. 3 (as a mean) on the map; the logits form is the same quantity without the probability clamp
    l_b = torch.nn.functional.binary_cross_entropy_with_logits(out["xray_logits"], batch["boundary"])
    l_c = torch.nn.functional.cross_entropy(out["logits"], batch["label"])
    torch.testing.assert_close(parts["xray"], l_b.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts["loss"].detach(), 100 * l_b.detach() + l_c.detach(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="boundary"):
        model.compute_loss({"label": batch["label"], "boundary": torch.zeros(2, 1, 32, 32)}, out)


def test_bi_sample_carries_the_xray_target(astronaut):
    """Eq. 2 on the BI mask: B = 4 M (1 - M) is zero where M is 0 or 1 and peaks (1) where M = 1/2."""
    from dflab.synthesis import DonorPool, FaceSample, make_fake
    from dflab.synthesis._faces import face_sample

    face = face_sample(astronaut, size=128, identity="a", key="a")
    flipped = FaceSample(face.image[:, ::-1].copy(), face.landmarks * [-1, 1] + [127, 0], identity="b", key="b")
    res = make_fake("bi", np.random.default_rng(0), face, DonorPool.from_samples([face, flipped]))
    m, b = res.mask, res.masks["boundary"]
    np.testing.assert_allclose(b, 4 * m * (1 - m), atol=1e-6)
    assert b[m == 0].max() == 0 and b[m == 1].max() == 0 and b.max() > 0.9


def test_recipes_name_what_they_are():
    from dflab.train.recipes import load_recipe

    xray = load_recipe("face_xray")
    assert xray.model.name == "face_xray" and xray.data.size == 256
    assert xray.data.streams["default"].synthesizers == ["bi"] and xray.data.streams["default"].mode == "real_only"
    tiny = load_recipe("face_xray_tiny")
    assert tiny.model.name == "face_xray_tiny" and tiny.data.size == 64
    assert load_recipe("big_arts_xray").model.name == "big_arts_xray"  # BiG-Arts' pruned stand-in, renamed
    assert load_recipe("fwa_xception").model.name == "xception"


@pytest.mark.slow
def test_paper_recipe_forward_backward_at_256():
    """§4: HRNet at 256 px, the four resolutions joined at 64 x 64, the X-ray map at 256 x 256."""
    from dflab.train.recipes import load_recipe

    r = load_recipe("face_xray")
    m = build_detector(r.model.name, **r.model.kwargs)
    assert r.data.size == 256 and m.input_spec.size == 256 and m.lambda_b == 100.0
    x = torch.randn(2, 3, 256, 256)
    assert m.backbone(x)[0].shape[-2:] == (64, 64)
    out = m(x)
    assert out["xray"].shape == (2, 1, 256, 256)
    batch = {"label": torch.tensor([0, 1]), "boundary": torch.zeros(2, 1, 256, 256)}
    loss = m.compute_loss(batch, out)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and m.xray_head.weight.grad is not None
