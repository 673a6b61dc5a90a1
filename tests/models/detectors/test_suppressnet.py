"""SuppressNet specifics: the constrained convolution holds (centre −1, the rest summing to 1) at initialisation and
after optimiser steps — by itself and through the engine's ``after_optimizer_step`` hook —, Fig. 1's shapes, learning on
a separable batch, and the tiny recipe through the normal engine."""

from __future__ import annotations

import pytest
import torch

from dflab.models.base import Detector, build_detector
from dflab.models.detectors.suppressnet import ConstrainedConv2d, SuppressNet
from tests.models.detectors.conftest import fit_and_read_metrics, tiny_recipe_trainer


def _tiny(**kw) -> SuppressNet:
    torch.manual_seed(0)
    return build_detector("suppressnet_tiny", **kw)


def assert_constrained(weight: torch.Tensor) -> None:
    """Bayar & Stamm §3: every 2-D kernel has w(0,0) = −1 and its other weights sum to 1."""
    c = weight.shape[-1] // 2
    centre = weight[:, :, c, c]
    torch.testing.assert_close(centre, torch.full_like(centre, -1.0))
    off = weight.sum(dim=(2, 3)) - centre
    torch.testing.assert_close(off, torch.ones_like(off), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- the constraint
@pytest.mark.parametrize("in_ch", [1, 3])
def test_constraint_holds_at_initialisation(in_ch: int) -> None:
    torch.manual_seed(0)
    conv = ConstrainedConv2d(in_ch, 6, 5)
    assert conv.bias is None and conv.weight.shape == (6, in_ch, 5, 5)
    assert_constrained(conv.weight)
    assert_constrained(_tiny().constrained.weight)


def test_projection_follows_the_papers_three_steps_on_a_known_kernel() -> None:
    conv = ConstrainedConv2d(1, 1, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9.0).view(1, 1, 3, 3))  # centre 4, off-centre sum 32
    conv.project_()
    expect = torch.arange(9.0) / 32
    expect[4] = -1.0
    torch.testing.assert_close(conv.weight.view(-1), expect)
    # a constant image has no prediction error: the constrained layer suppresses the content
    assert conv(torch.full((1, 1, 7, 7), 0.6)).abs().max() < 1e-6


def test_projection_is_idempotent_and_survives_a_zero_sum() -> None:
    conv = ConstrainedConv2d(1, 2, 5)
    before = conv.weight.detach().clone()
    conv.project_()
    torch.testing.assert_close(conv.weight, before)
    with torch.no_grad():
        conv.weight.zero_()
    conv.project_()
    assert torch.isfinite(conv.weight).all()  # the off-centre sum 0 is replaced by 1e-6: no division by zero
    torch.testing.assert_close(conv.weight[:, :, 2, 2], torch.full((2, 1), -1.0))


def test_an_optimiser_step_breaks_the_constraint_and_the_hook_restores_it() -> None:
    model = _tiny().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = {"image": torch.rand(4, 3, 64, 64), "label": torch.tensor([0, 1, 0, 1])}
    model.compute_loss(batch, model(batch["image"]))["loss"].backward()
    opt.step()
    with pytest.raises(AssertionError):
        assert_constrained(model.constrained.weight)  # the plain update leaves the constraint set
    with torch.no_grad():
        model.after_optimizer_step()
    assert_constrained(model.constrained.weight)


def test_the_base_detector_hook_is_a_no_op() -> None:
    lin = torch.nn.Linear(2, 2)
    det = Detector()
    det.lin = lin
    before = {k: v.clone() for k, v in det.state_dict().items()}
    det.after_optimizer_step()
    assert all(torch.equal(before[k], v) for k, v in det.state_dict().items())


# ------------------------------------------------------------------------------------------------------ shapes
def test_paper_shapes_at_227() -> None:
    """Fig. 1 with valid convolutions: 227 → 223 → 109 → 54 → 50 → 24, FC 4096, 4096, 2."""
    torch.manual_seed(0)
    model = SuppressNet(widths=(12, 64, 48), hidden=64)  # the paper's convs; narrow FCs keep the test light
    seen: list[tuple[int, ...]] = []
    for m in model.features:
        m.register_forward_hook(lambda _m, _i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 227, 227))
    assert out["residual"].shape == (1, 12, 223, 223)
    assert [s for s in seen if len(s) == 4][::2] == [(1, 64, 109, 109), (1, 64, 54, 54), (1, 48, 50, 50)]
    assert seen[-1] == (1, 48, 24, 24)
    assert model.fc[1].in_features == 48 * 24 * 24 and out["logits"].shape == (1, 2)
    assert isinstance(model.pool, torch.nn.AdaptiveAvgPool2d) and model.pool.output_size == 24  # identity at 227
    full = build_detector("suppressnet")
    assert (full.constrained.out_channels, full.fc[1].out_features, full.fc[4].out_features) == (12, 4096, 4096)
    assert full.constrained.in_channels == 1 and full.input_spec.size == 227


def test_gray_input_is_the_luma_and_rgb_option_constrains_each_channel() -> None:
    model = _tiny().eval()
    img = torch.rand(2, 3, 64, 64)
    luma = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(model(img)["residual"], model.constrained(luma))
    rgb = _tiny(channels="rgb")
    assert rgb.constrained.weight.shape[1] == 3
    assert_constrained(rgb.constrained.weight)
    with pytest.raises(ValueError, match="channels"):
        _tiny(channels="green")
    with pytest.raises(ValueError, match="39 px"):
        _tiny(size=32)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 64, 64))


# ---------------------------------------------------------------------------------------------------- learning
def test_loss_decreases_on_a_separable_batch() -> None:
    """Fakes carry a high-frequency checkerboard the constrained layer passes; reals are smooth."""
    model = _tiny(dropout=0.0)
    torch.manual_seed(1)
    smooth = torch.rand(8, 3, 8, 8)
    smooth = torch.nn.functional.interpolate(smooth, size=64, mode="bilinear", align_corners=False)
    checker = ((torch.arange(64).view(-1, 1) + torch.arange(64)) % 2).float() * 0.2
    images = smooth.clone()
    images[4:] += checker
    batch = {"image": images, "label": torch.tensor([0] * 4 + [1] * 4)}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.compute_loss(batch, model(batch["image"]))["loss"]
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.after_optimizer_step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert_constrained(model.constrained.weight)


# ---------------------------------------------------------------------------------------- the normal engine
def test_tiny_recipe_keeps_the_constraint_in_the_engine(tiny_manifest, tmp_path) -> None:
    # a large lr so an unprojected step would visibly leave the constraint set
    tr = tiny_recipe_trainer("suppressnet_tiny", tiny_manifest, tmp_path / "run", "train.steps_per_epoch=3",
                             "optim.lr=0.5")  # fmt: skip
    assert tr.cfg.model.pretrained == "none"
    before = tr.model.constrained.weight.detach().clone()
    calls: list[int] = []
    real = tr.model.after_optimizer_step
    tr.model.after_optimizer_step = lambda: (calls.append(1), real())[1]  # instance attribute: the loop calls it
    summary, rows = fit_and_read_metrics(tr)
    assert summary["steps"] == 3 and len(calls) == 3
    assert not torch.equal(tr.model.constrained.weight, before)  # trained ...
    assert_constrained(tr.model.constrained.weight)  # ... and still constrained
    assert len(rows) == 3 and {"loss", "ce"} <= set(rows[0])
    assert (tmp_path / "run" / "best" / "card.json").exists()


def test_paper_recipe_values() -> None:
    from dflab.train.recipes import load_recipe

    cfg = load_recipe("suppressnet")
    assert cfg.model.pretrained == "none"
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.name, cfg.optim.lr) == (227, 64, "sgd", 1e-5)
    assert (cfg.optim.momentum, cfg.optim.weight_decay) == (0.9, 5e-4)
    assert (cfg.train.epochs, cfg.train.select_metric) == (40, "-loss")
