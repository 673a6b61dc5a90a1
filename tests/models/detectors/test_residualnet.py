"""ResidualNet specifics: the fixed third-order residual filters (untrained, zero on constant and smooth images), the
soft quantiser against the hard one, the co-occurrence layer against a direct count, shapes, learning on a
separable batch, and the tiny recipe through the engine."""

from __future__ import annotations

import itertools

import pytest
import torch

from dflab.models.base import build_detector
from dflab.models.detectors.residualnet import CooccurrenceConv, ResidualFilter, ResidualNet, SoftQuantizer
from tests.models.detectors.conftest import fit_and_read_metrics, fit_batch, tiny_recipe_trainer

SIZE = 64


def _tiny(**kw) -> ResidualNet:
    torch.manual_seed(0)
    return build_detector("residualnet_tiny", **kw)


# ---------------------------------------------------------------------------------------------- residual filters
def test_residual_filters_are_third_order_and_zero_on_constant_and_quadratic_images() -> None:
    f = ResidualFilter()
    const = torch.full((1, 3, 16, 16), 0.4)
    ramp = torch.linspace(0, 1, 16)
    quad = (ramp[None, :] ** 2 + ramp[:, None] ** 2) / 2  # second-order content: a third derivative ignores it
    for img in (const, quad.expand(1, 3, 16, 16)):
        assert f(img).abs().max() < 1e-3  # grey levels (0-255)
    impulse = torch.zeros(1, 3, 9, 9)
    impulse[:, :, 4, 4] = 1.0 / 255  # one grey level in every channel: luminance 1
    r = f(impulse)[0]
    assert r.shape == (2, 6, 6)
    # cross-correlation: the impulse at column 4 meets tap t at output column 4 − t (taps −1, 3, −3, 1)
    torch.testing.assert_close(r[0, 3, 1:5].flip(0), torch.tensor([-1.0, 3.0, -3.0, 1.0]))
    torch.testing.assert_close(r[1, 1:5, 3].flip(0), torch.tensor([-1.0, 3.0, -3.0, 1.0]))


def test_fixed_residual_filters_are_not_trained_and_not_checkpointed() -> None:
    model = _tiny().train()
    assert not any(p is model.residual.weight for p in model.parameters())
    assert "residual.weight" not in model.state_dict()
    before = model.residual.weight.clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-1)
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}
    model.compute_loss(batch, model(batch["image"]))["loss"].backward()
    opt.step()
    torch.testing.assert_close(model.residual.weight, before)
    relaxed = _tiny(train_residual=True)
    assert any(p is relaxed.residual.weight for p in relaxed.parameters())


# ---------------------------------------------------------------------------------------------------- quantiser
def test_soft_quantiser_approximates_round_and_truncate() -> None:
    q = SoftQuantizer(step=2.0, trunc=2, beta=50.0)
    r = torch.tensor([-9.0, -2.2, -0.7, 0.3, 1.6, 3.9, 40.0]).view(1, 1, 7, 1)
    hard = torch.clamp(torch.round(r.flatten() / 2.0), -2, 2).long() + 2
    with torch.no_grad():
        p = q(r)
    assert p.shape == (1, 1, 5, 7, 1)
    torch.testing.assert_close(p.sum(2), torch.ones(1, 1, 7, 1))
    assert p[0, 0, :, :, 0].argmax(0).tolist() == hard.tolist()
    assert float(p.max(2).values.min()) > 0.99  # sharp at β = 50: nearly one-hot


# ------------------------------------------------------------------------------------------------- co-occurrence
@pytest.mark.parametrize("horizontal", [True, False])
def test_cooccurrence_counts_four_pixel_patterns(horizontal: bool) -> None:
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 3, (5, 7), generator=g)
    onehot = torch.nn.functional.one_hot(levels, 3).permute(2, 0, 1)[None].float()
    lv = levels if horizontal else levels.t()
    counts = torch.zeros(81)
    for row in lv:
        for j in range(len(row) - 3):
            a, b, c, d = row[j : j + 4].tolist()
            counts[((a * 3 + b) * 3 + c) * 3 + d] += 1
    out = CooccurrenceConv(3, horizontal)(onehot)
    assert out.shape == ((1, 81, 5, 4) if horizontal else (1, 81, 2, 7))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.sum(dim=(2, 3))[0], counts)
    assert list(itertools.product(range(3), repeat=4))[5] == (0, 0, 1, 2)  # pattern order = the counting above


# ------------------------------------------------------------------------------------------------------- model
def test_shapes_and_histograms_of_a_constant_image() -> None:
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.full((2, 3, SIZE, SIZE), 0.5))
    assert out["logits"].shape == (2, 2) and out["features"].shape == (2, 162)  # 2 directions x 3^4 patterns
    # zero residual -> level 0 (index 1 of {−1, 0, 1}) with soft probability p0 = 1 / (1 + 2 e^−β) everywhere; the
    # pattern (0, 0, 0, 0) (index 40) scores ReLU(4·p0 − 3), every other pattern ReLU(3·p0 + p± − 3) = 0
    p0 = 1 / (1 + 2 * torch.exp(torch.tensor(-4.0)))
    expected = torch.zeros(2, 162)
    expected[:, 40] = expected[:, 81 + 40] = 4 * p0 - 3
    torch.testing.assert_close(out["features"], expected)
    full = build_detector("residualnet")
    assert full.input_spec.size == 256 and full.input_spec.std == (1.0, 1.0, 1.0)
    with torch.no_grad():
        assert full(torch.rand(1, 3, 24, 24))["features"].shape == (1, 1250)  # T = 2: 2 x 5^4


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        _tiny()(torch.rand(2, 1, SIZE, SIZE))


def test_loss_decreases_on_a_separable_batch() -> None:
    model = _tiny().train()
    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, 1] * 4)
    base = torch.linspace(0.2, 0.8, 32)
    img = (base[None, :] + base[:, None]).div(2).expand(8, 3, 32, 32).clone()  # smooth: zero residual
    img[label == 1] += torch.rand(4, 1, 32, 32, generator=g) * 8 / 255  # fakes: a few grey levels of noise
    batch = {"image": img, "label": label}
    assert set(model.compute_loss(batch, model(img))) == {"loss", "ce"}
    losses = fit_batch(model, batch, steps=15, lr=1e-2, part="ce")
    assert losses[-1] < 0.5 * losses[0], losses


def test_tiny_recipe_trains_through_the_engine(tiny_manifest, tmp_path) -> None:
    tr = tiny_recipe_trainer("residualnet_tiny", tiny_manifest, tmp_path / "run", "optim.lr=1e-2")
    before = tr.model.fc.weight.detach().clone()
    fixed = tr.model.residual.weight.clone()
    summary, rows = fit_and_read_metrics(tr)
    assert summary["steps"] == 2
    assert not torch.equal(before, tr.model.fc.weight)
    torch.testing.assert_close(tr.model.residual.weight, fixed)
    assert rows and "ce" in rows[0]


def test_paper_recipe_values() -> None:
    from dflab.train.recipes import load_recipe

    cfg = load_recipe("residualnet")
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.name, cfg.optim.lr) == (256, 16, "adam", 1e-5)
    assert cfg.model.pretrained == "none"
    # LAE §3.1.2: "a maximum of 40 epochs with early stopping (patience=10). Validation loss is used as criteria"
    assert (cfg.train.epochs, cfg.train.early_stop_patience, cfg.train.select_metric) == (40, 10, "-loss")
    # the recipe's own description says the same (it said "validation AUC" while the recipe watched the loss)
    assert "validation loss" in cfg.description and "AUC" not in cfg.description
