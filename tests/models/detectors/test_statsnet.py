"""StatsNet specifics: the statistical pooling layer equals numpy's mean/var/max/min on a known tensor, Stats-2L's
shapes and channel choice, the released code's initialisation, learning on a separable batch, and the tiny recipe
through the normal engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dflab.models.base import build_detector
from dflab.models.detectors.statsnet import StatsNet, statistical_pooling
from tests.models.detectors.conftest import fit_and_read_metrics, tiny_recipe_trainer


def _tiny(**kw) -> StatsNet:
    torch.manual_seed(0)
    return build_detector("statsnet_tiny", **kw)


# ---------------------------------------------------------------------------------------- statistical pooling
def test_statistical_pooling_equals_numpy_on_a_known_tensor() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 7)).astype(np.float32) * np.array([1.0, 3.0, 0.1], np.float32).reshape(1, 3, 1, 1)
    x[1, 2] = 4.0  # a constant map: variance 0, max = min = mean
    got = statistical_pooling(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 3, 4)
    flat = x.reshape(2, 3, -1)
    expect = np.stack([flat.mean(-1), flat.var(-1), flat.max(-1), flat.min(-1)], axis=-1)  # numpy var: ddof=0
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1, 2], [4.0, 0.0, 4.0, 4.0])


def test_statistical_pooling_by_hand_and_its_gradient() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]], requires_grad=True)  # mean 3, var (4+1+0+9)/4 = 3.5
    out = statistical_pooling(x)
    torch.testing.assert_close(out, torch.tensor([[[3.0, 3.5, 6.0, 1.0]]]))
    out[0, 0, 2].backward()  # d max / dx: one at the arg-max
    torch.testing.assert_close(x.grad, torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]]))
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        statistical_pooling(torch.rand(2, 3, 4))


# ------------------------------------------------------------------------------------------------------ shapes
def test_stats_2l_layout_and_shapes() -> None:
    model = build_detector("statsnet")
    convs = [m for m in model.filtering if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1), (1, 1)),
        (32, 64, (3, 3), (1, 1), (1, 1)),
    ]
    assert (model.fc[0].in_features, model.fc[0].out_features, model.fc[2].p) == (4 * 64, 1024, 0.35)
    assert model.input_spec.size == 100
    with torch.no_grad():
        for side in (100, 64, 77):  # global statistics: any input side
            out = model.eval()(torch.rand(2, 3, side, side))
            assert out["logits"].shape == (2, 2) and out["stats"].shape == (2, 64, 4)
            assert out["features"].shape == (2, 1024)


def test_the_stats_are_those_of_the_last_convolution_maps() -> None:
    model = _tiny().eval()
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.filtering(img[:, 1:2])  # green channel, as the released code
        out = model(img)
    np.testing.assert_allclose(out["stats"].numpy(), statistical_pooling(maps).numpy(), rtol=1e-6)
    with torch.no_grad():
        changed = img.clone()
        changed[:, [0, 2]] = torch.rand(2, 2, 64, 64)
        torch.testing.assert_close(model(changed)["logits"], out["logits"])  # red/blue are not read


def test_channel_options_and_errors() -> None:
    img = torch.rand(1, 3, 32, 32)
    gray = _tiny(channels="gray").eval()
    luma = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(gray(img)["stats"], statistical_pooling(gray.filtering(luma)))
    assert _tiny(channels="rgb").filtering[0].in_channels == 3
    with pytest.raises(ValueError, match="channels"):
        _tiny(channels="ycbcr")
    with pytest.raises(ValueError, match="at least one"):
        _tiny(filters=())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        _tiny()(torch.rand(1, 1, 32, 32))


def test_released_code_initialisation() -> None:
    torch.manual_seed(0)
    model = StatsNet(hidden=256).requires_grad_(False)
    for m in (*[m for m in model.filtering if isinstance(m, torch.nn.Conv2d)], model.fc[0], model.head):
        std = (2.0 / m.weight[0].numel()) ** 0.5
        assert float(m.weight.abs().max()) <= 2 * std + 1e-6  # truncated at 2 std
        assert float(m.bias.min()) >= 0.3 and float(m.bias.max()) <= 0.7  # biases around 0.5
    big = model.fc[0].weight
    assert abs(float(big.std()) - 0.88 * (2.0 / big.shape[1]) ** 0.5) < 0.1 * (2.0 / big.shape[1]) ** 0.5


# ---------------------------------------------------------------------------------------------------- learning
def test_loss_decreases_on_a_separable_batch() -> None:
    """Fakes are noisier (higher variance after the filters) than reals of the same mean."""
    model = _tiny(dropout=0.0)
    g = torch.Generator().manual_seed(1)
    images = 0.5 + 0.02 * torch.randn(8, 3, 32, 32, generator=g)
    images[4:] = 0.5 + 0.2 * torch.randn(4, 3, 32, 32, generator=g)
    batch = {"image": images, "label": torch.tensor([0] * 4 + [1] * 4)}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.compute_loss(batch, model(batch["image"]))["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------------------------------- the normal engine
def test_tiny_recipe_trains_through_the_engine(tiny_manifest, tmp_path) -> None:
    tr = tiny_recipe_trainer("statsnet_tiny", tiny_manifest, tmp_path / "run")
    assert tr.cfg.model.pretrained == "none"
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    summary, rows = fit_and_read_metrics(tr)
    assert summary["steps"] == 2
    assert all(not torch.equal(p.detach(), before[n]) for n, p in tr.model.named_parameters())
    assert len(rows) == 2 and {"loss", "ce"} <= set(rows[0])
    assert (tmp_path / "run" / "best" / "card.json").exists()


def test_paper_recipe_values() -> None:
    from dflab.train.recipes import load_recipe

    cfg = load_recipe("statsnet")
    assert cfg.model.pretrained == "none"
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.name, cfg.optim.lr) == (100, 64, "adam", 1e-4)
    assert (cfg.train.epochs, cfg.train.select_metric) == (40, "-loss")
