"""RFM specifics: the Forgery Attention Map is the input gradient of the fake-real logit difference (checked against
closed forms), Suspicious Forgery Erasing erases exactly around the Top-N FAM locations, and the FAM pass leaves the
model as it found it. (Forward/backward/save-load: the contract test; the engine run: tests/train/test_rfm_recipe.py.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dflab.models.base import Detector, build_detector
from dflab.models.detectors.rfm import (
    RFM,
    ErasingParams,
    apply_erasing,
    erasing_mask,
    forgery_attention_map,
    sample_erasing,
)


class LinearDetector(nn.Module):
    """logits = flatten(x) @ W: the FAM has the closed form max_c |W[:, 1] − W[:, 0]| (reshaped)."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * size * size, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.lin(x.flatten(1))}


class LeftHalfDetector(nn.Module):
    """Looks only at the left half of the image, through a non-linear net with dropout and batch-norm."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(4, 2)
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen_training.append(self.training)
        half = x[..., : x.shape[-1] // 2]
        return {"logits": self.head(self.net(half).mean(dim=(2, 3)))}


def test_fam_matches_closed_form_of_a_linear_model():
    torch.manual_seed(0)
    model = LinearDetector(8)
    x = torch.randn(3, 3, 8, 8)
    w = model.lin.weight  # (2, 3·8·8)
    expected = (w[1] - w[0]).abs().view(3, 8, 8).amax(dim=0)
    fam = forgery_attention_map(model, x)
    assert fam.shape == (3, 1, 8, 8)
    for i in range(3):  # the same map for every image (the gradient of a linear model does not depend on x)
        torch.testing.assert_close(fam[i, 0], expected.detach())


def test_fam_is_zero_where_the_model_ignores_the_input_and_runs_in_eval_mode():
    torch.manual_seed(0)
    model = LeftHalfDetector().train()
    model.net[1].eval()  # a frozen batch-norm (a phase's freeze_norm) must stay in eval mode afterwards
    modes = {name: m.training for name, m in model.named_modules()}
    fam = forgery_attention_map(model, torch.randn(2, 3, 16, 16))
    assert (fam >= 0).all() and fam.shape == (2, 1, 16, 16)
    assert torch.count_nonzero(fam[..., 8:]) == 0  # ignored right half: no gradient
    assert torch.count_nonzero(fam[..., :8]) > 0
    assert model.seen_training == [False]  # the FAM forward ran in eval mode (no dropout, running BN statistics)
    assert {name: m.training for name, m in model.named_modules()} == modes  # every flag restored


def test_fam_pass_leaves_parameters_gradients_and_statistics_unchanged():
    torch.manual_seed(0)
    det = build_detector("rfm_tiny").train()
    state = {k: v.clone() for k, v in det.state_dict().items()}  # parameters and BN running statistics
    images = torch.randn(2, 3, 64, 64)
    out = det.prepare_batch({"image": images, "label": torch.tensor([0, 1])})
    assert all(p.grad is None for p in det.parameters())  # no gradient written (nothing for an optimiser to step)
    for k, v in det.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert det.training
    assert out["image"].shape == images.shape and not torch.equal(out["image"], images)
    assert torch.equal(out["label"], torch.tensor([0, 1]))


def test_rfm_fam_is_non_negative_input_sized():
    torch.manual_seed(0)
    det = build_detector("rfm_tiny")
    fam = det.fam(torch.randn(2, 3, 64, 64))
    assert fam.shape == (2, 1, 64, 64) and (fam >= 0).all() and fam.sum() > 0


def _peaks(h: int = 64, w: int = 64) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    fam = torch.rand(1, 1, h, w) * 0.1
    pts = [(10, 12), (50, 40), (30, 55)]
    for v, (r, c) in zip((3.0, 2.0, 1.0), pts, strict=True):
        fam[0, 0, r, c] = v
    return fam, pts


def test_sfe_blocks_cover_the_top_fam_locations_in_order_and_nothing_else_changes():
    fam, pts = _peaks()
    g = torch.Generator().manual_seed(1)
    params = sample_erasing(fam, top_n=3, max_size=(6, 6), generator=g)
    assert [tuple(p) for p in params.points[0].tolist()] == pts
    for (t, b, lf, rt), (r, c) in zip(params.boxes[0].tolist(), pts, strict=True):
        assert t <= r < b and lf <= c < rt  # the block covers its FAM location
        assert 1 <= b - t <= 6 and 1 <= rt - lf <= 6
    images = torch.randn(1, 3, 64, 64)
    fill = torch.full_like(images, 7.0)
    out = apply_erasing(images, params, fill)
    mask = erasing_mask(params, (64, 64))[0, 0]
    expected = torch.zeros(64, 64, dtype=torch.bool)
    for t, b, lf, rt in params.boxes[0].tolist():
        expected[t:b, lf:rt] = True
    assert torch.equal(mask, expected)
    assert torch.equal(out[:, :, ~mask], images[:, :, ~mask])  # untouched outside the blocks
    assert (out[:, :, mask] == 7.0).all()


def test_sfe_next_location_is_outside_the_blocks_already_erased():
    h = w = 32
    ramp = torch.arange(h * w, dtype=torch.float32).flip(0).view(1, 1, h, w)  # highest at the top-left, descending
    for seed in range(20):
        params = sample_erasing(ramp, top_n=3, max_size=(12, 12), generator=torch.Generator().manual_seed(seed))
        boxes, points = params.boxes[0].tolist(), params.points[0].tolist()
        for n, (r, c) in enumerate(points):
            for t, b, lf, rt in boxes[:n]:
                assert not (t <= r < b and lf <= c < rt)
            # it is the highest pixel left: every pixel above it in the ramp order is in an earlier block
            earlier = erasing_mask(ErasingParams(params.boxes[:, :n], params.points[:, :n]), (h, w))[0, 0]
            assert earlier.flatten()[: r * w + c].all()


def test_sfe_block_sizes_span_the_range():
    b, size, top = 400, 101, 20
    fam = torch.zeros(b, 1, size, size)
    fam[:, 0, 50, 50] = 1.0  # the first location at the centre: blocks up to 20 px are never clipped
    params = sample_erasing(fam, top_n=1, max_size=(top, top), generator=torch.Generator().manual_seed(0))
    hs = params.boxes[:, 0, 1] - params.boxes[:, 0, 0]
    ws = params.boxes[:, 0, 3] - params.boxes[:, 0, 2]
    for s in (hs, ws):
        assert int(s.min()) == 1 and int(s.max()) == top
    # the offset is uniform too: the point sits anywhere inside the block, first row/column included
    assert (params.boxes[:, 0, 0] == 50).any() and (params.boxes[:, 0, 1] == 51).any()


def test_sfe_probability_zero_erases_nothing():
    fam, _ = _peaks()
    params = sample_erasing(fam.repeat(4, 1, 1, 1), top_n=3, max_size=(6, 6), prob=0.0)
    assert not erasing_mask(params, (64, 64)).any()


def test_prepare_batch_fills_with_uniform_pixel_noise_in_the_detectors_normalisation():
    torch.manual_seed(0)
    det = build_detector("rfm_tiny", fill_range=(0.25, 0.75))
    images = torch.full((2, 3, 64, 64), 10.0)  # far outside the fill's range: erased pixels are easy to find
    out = det.prepare_batch({"image": images, "label": torch.tensor([0, 1])})["image"]
    erased = out != 10.0
    assert erased.any()
    pixels = out[erased] * 0.25 + 0.5  # rfm's mean 0.5, std 0.25
    assert pixels.min() >= 0.25 and pixels.max() <= 0.75
    # at most 3 blocks of ≤ round(120/224·64) = 34 px per side per image
    assert erased[:, 0].flatten(1).sum(1).max() <= 3 * 34 * 34


def test_flooded_loss_ascends_below_the_flood_level():
    det: RFM = build_detector("rfm_tiny", flood_level=0.5)
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0]], requires_grad=True)  # confident and right: CE ≈ 0 < b
    parts = det.compute_loss({"label": torch.tensor([0, 1])}, {"logits": logits})
    assert parts["loss"].item() == pytest.approx(1.0 - parts["ce"].item(), abs=1e-6)
    parts["loss"].backward()
    assert logits.grad[0, 0] > 0 and logits.grad[1, 1] > 0  # descent on |CE − b| + b lowers the right logits
    plain_det = build_detector("rfm_tiny", flood_level=0.0)
    plain = plain_det.compute_loss({"label": torch.tensor([0, 1])}, {"logits": logits})
    assert torch.equal(plain["loss"], plain["ce"])


def test_default_prepare_batch_is_identity():
    batch = {"image": torch.zeros(1, 3, 4, 4), "label": torch.tensor([0])}
    assert Detector.prepare_batch(build_detector("xception_tiny"), batch) is batch


@pytest.mark.parametrize("kw", [{"top_n": -1}, {"erase_max_frac": 0.0}, {"erase_prob": 1.5}, {"flood_level": -0.1}])
def test_bad_arguments_are_refused(kw):
    with pytest.raises(ValueError, match="RFM needs"):
        build_detector("rfm_tiny", **kw)
