"""GSRM specifics: the fixed SRM kernels, the two streams' shapes, RSA and DCMA, that the high-frequency path reaches
the logits, learning on a separable batch, and the tiny recipe (with both streams' weights) through the engine."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dflab.losses.margin import am_softmax_loss
from dflab.models.base import build_detector
from dflab.models.detectors.gsrm import (
    GSRM,
    DualCrossModalityAttention,
    FeatureSRM,
    ResidualGuidedAttention,
    SRMFilter,
    srm_kernels,
)
from dflab.models.xception import XceptionTrunk
from tests.train.conftest import build_manifest

SIZE = 64


def _tiny(**kw) -> GSRM:
    torch.manual_seed(0)
    return build_detector("gsrm_tiny", **kw)


# ------------------------------------------------------------------------------------------------- SRM filters
def test_srm_kernels_are_the_three_fixed_rich_model_filters() -> None:
    k = srm_kernels()
    assert k.shape == (3, 5, 5)
    kb = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
    torch.testing.assert_close(k[0, 1:4, 1:4], kb.float())
    assert float(k[0].abs().sum() - k[0, 1:4, 1:4].abs().sum()) == 0.0  # KB is 3x3 inside the 5x5
    torch.testing.assert_close(k[1, 2], torch.tensor([-2.0, 8, -12, 8, -2]) / 12)  # KV's middle row
    torch.testing.assert_close(k[1, 0], torch.tensor([-1.0, 2, -2, 2, -1]) / 12)
    h2 = torch.zeros(5, 5)
    h2[2, 1:4] = torch.tensor([1.0, -2, 1]) / 2
    torch.testing.assert_close(k[2], h2)
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.zeros(3))  # high-pass: no DC response


def test_srm_filters_are_not_trained_and_not_checkpointed() -> None:
    model = _tiny().train()
    fixed = [model.srm, model.srm_stem_a, model.srm_stem_b]
    param_ids = {id(p) for p in model.parameters()}
    assert all(id(m.weight) not in param_ids and not m.weight.requires_grad for m in fixed)
    assert not any(k.endswith(("srm.weight", "srm_stem_a.weight", "srm_stem_b.weight")) for k in model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = {"image": torch.randn(4, 3, SIZE, SIZE), "label": torch.tensor([0, 1, 0, 1])}
    model.compute_loss(batch, model(batch["image"]))["loss"].backward()
    opt.step()
    torch.testing.assert_close(model.srm.weight[:, 0], srm_kernels())
    torch.testing.assert_close(model.srm_stem_b.weight[:3, 0], srm_kernels())


def test_srm_response_zero_on_constant_and_ramp_images_and_kernel_on_an_impulse() -> None:
    srm = SRMFilter(3)
    const = torch.full((1, 3, 20, 20), 0.7)
    ramp = torch.linspace(-1, 1, 20).view(1, 1, 1, 20).expand(1, 3, 20, 20) * 0.3  # first-order content only
    for img in (const, ramp):
        out = srm(img)
        assert out.shape == (1, 3, 20, 20)
        assert out[..., 2:-2, 2:-2].abs().max() < 1e-6  # interior (zero padding acts at the 2 px border)
    impulse = torch.zeros(1, 3, 11, 11)
    impulse[0, 1, 5, 5] = 1.0  # one colour channel: kernels act on the channel sum
    torch.testing.assert_close(srm(impulse)[0, :, 3:8, 3:8], srm_kernels())  # symmetric kernels: no flip
    assert srm(impulse * 100).abs().max() == 3.0  # truncated to [-3, 3]


def test_feature_srm_gives_every_channel_all_three_kernels() -> None:
    f = FeatureSRM(4, 6)
    k = srm_kernels()
    for c in range(4):
        torch.testing.assert_close(f.weight[3 * c : 3 * c + 3, 0], k)
    assert f(torch.randn(2, 4, 9, 9)).shape == (2, 6, 9, 9)


# ------------------------------------------------------------------------------------------------------ shapes
def test_tiny_shapes_through_both_streams() -> None:
    model = _tiny().eval()
    seen: dict[str, tuple[int, ...]] = {}
    for name in ("rgb", "hf"):
        stream = getattr(model, name)
        stream.block3.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(f"{n}.entry", tuple(o.shape)))
        stream.bn4.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(f"{n}.exit", tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE))
    assert out["logits"].shape == (2, 2) and out["features"].shape == (2, 64)
    # 64 -> conv1 (3x3 /2, no pad) 31 -> conv2 29 -> 15 -> 8 -> 4 (entry) -> 2 (exit)
    assert out["attention"].shape == (2, 1, 29, 29)
    assert bool(((out["attention"] > 0) & (out["attention"] < 1)).all())
    assert float((out["attention"] - 0.5).abs().max()) < 0.05  # released code's init: near-uniform at the start
    assert seen == {"rgb.entry": (2, 32, 4, 4), "hf.entry": (2, 32, 4, 4), "rgb.exit": (2, 64, 2, 2),
                    "hf.exit": (2, 64, 2, 2)}  # fmt: skip
    assert model.explain_maps(out)["rsa"] is out["attention"]


def test_full_streams_have_timm_legacy_xception_layout() -> None:
    """Both streams take ImageNet Xception weights in timm's key layout (only the ImageNet ``fc`` is dropped)."""
    from dflab.models.backbones import create_backbone

    ref = {k: v.shape for k, v in create_backbone("xception").state_dict().items()}
    own = {k: v.shape for k, v in XceptionTrunk().state_dict().items()}
    assert own == ref


@pytest.mark.parametrize("side", [48, 64, 77])
def test_rsa_map_matches_the_stem_output(side: int) -> None:
    stream = XceptionTrunk(3, (8, 16, 16, 24, 32, 48, 48, 64), 2)
    img = torch.randn(1, 3, side, side)
    stem = stream.stem_b(stream.stem_a(img))
    att = ResidualGuidedAttention((8, 16))(SRMFilter()(img))
    assert att.shape[-2:] == stem.shape[-2:]


def test_dcma_shapes_identity_at_init_and_cross_modal_mixing() -> None:
    torch.manual_seed(0)
    dcma = DualCrossModalityAttention(16, reduction=4)
    x, y = torch.randn(2, 16, 5, 6), torch.randn(2, 16, 5, 6)
    a_yx, a_xy = dcma.attention(x, y)
    assert a_yx.shape == a_xy.shape == (2, 30, 30)
    torch.testing.assert_close(a_yx.sum(-1), torch.ones(2, 30))
    ox, oy = dcma(x, y)
    torch.testing.assert_close(ox, x)  # gamma = 0 at init: the plain two-stream net
    torch.testing.assert_close(oy, y)
    with torch.no_grad():
        dcma.gamma_x.fill_(1.0)
        dcma.gamma_y.fill_(1.0)
    ox, oy = dcma(x, y)
    ox2, _ = dcma(x, y + torch.randn_like(y))
    assert not torch.allclose(ox, ox2)  # the RGB output reads the high-frequency stream
    _, oy3 = dcma(x + torch.randn_like(x), y)
    assert not torch.allclose(oy, oy3)  # and the converse
    with pytest.raises(ValueError, match="one shape"):
        dcma(x, y[..., :5])


# ------------------------------------------------------------------------------- the high-frequency path matters
def _perturb_srm(model: GSRM, delta: torch.Tensor):
    return model.srm.register_forward_hook(lambda m, i, o: o + delta)


def test_high_frequency_residuals_change_the_logits() -> None:
    """Same RGB input, different SRM residuals (the only change): the logits move."""
    model = _tiny().eval()
    img = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        base = model(img)["logits"]
        h = _perturb_srm(model, torch.randn(2, 3, SIZE, SIZE))
        moved = model(img)["logits"]
        h.remove()
        again = model(img)["logits"]
    torch.testing.assert_close(again, base)
    assert (moved - base).abs().max() > 1e-4


def test_rgb_stream_reads_the_residuals_through_rsa_and_then_dcma() -> None:
    """The RGB stream sees the SRM residuals through RSA and DCMA only: with γ = 0 an SRM change moves it through
    RSA; with RSA held constant it stays untouched until DCMA's γ ≠ 0."""
    model = _tiny().eval()
    rgb_exit: list[torch.Tensor] = []
    model.rgb.bn4.register_forward_hook(lambda m, i, o: rgb_exit.append(o.detach().clone()))
    img, delta = torch.randn(2, 3, SIZE, SIZE), 3 * torch.randn(2, 3, SIZE, SIZE)

    def rgb_change() -> float:
        rgb_exit.clear()
        with torch.no_grad():
            model(img)
            h = _perturb_srm(model, delta)
            model(img)
            h.remove()
        return float((rgb_exit[0] - rgb_exit[1]).abs().max())

    assert rgb_change() > 1e-7  # via RSA (exactly 0 without a path)
    model.rsa.forward = lambda srm: torch.full((srm.shape[0], 1, 29, 29), 0.5)  # neutral, constant RSA
    assert rgb_change() == 0.0
    with torch.no_grad():
        for dcma in (model.dcma_entry, model.dcma_middle):
            dcma.gamma_x.fill_(1.0)
    assert rgb_change() > 1e-7  # via DCMA


def test_multi_scale_srm_feeds_rgb_stem_residuals_into_the_high_frequency_stream() -> None:
    """With the image-level residuals fixed (zero), the high-frequency stem still differs between two images: it
    receives the SRM of the RGB stream's stem features at both scales; without those it would not."""
    model = _tiny().eval()
    model.srm.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    hf_stem: list[torch.Tensor] = []
    model.hf.block1.register_forward_pre_hook(lambda m, i: hf_stem.append(i[0].detach().clone()))  # stem output
    imgs = torch.randn(2, 1, 3, SIZE, SIZE)

    def hf_change() -> float:
        hf_stem.clear()
        with torch.no_grad():
            model(imgs[0])
            model(imgs[1])
        return float((hf_stem[0] - hf_stem[1]).abs().max())

    assert hf_change() > 1e-7
    model.srm_stem_a.forward = lambda x: torch.zeros(x.shape[0], 8, 31, 31)
    assert hf_change() > 1e-7  # the second scale alone
    model.srm_stem_b.forward = lambda x: torch.zeros(x.shape[0], 16, 29, 29)
    assert hf_change() == 0.0


# ---------------------------------------------------------------------------------------------------- training
def test_loss_decreases_on_a_separable_batch() -> None:
    torch.manual_seed(0)
    model = _tiny().train()
    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, 1] * 4)
    img = torch.randn(8, 3, 32, 32, generator=g) * 0.2  # 32 px keeps it quick; the net runs at any size
    img[label == 1, :, 8:24, 8:24] += torch.randn(4, 3, 16, 16, generator=g)  # fakes: a noisy (high-freq) patch
    batch = {"image": img, "label": label}
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        out = model.compute_loss(batch, model(img))
        assert set(out) == {"loss", "ce"}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["ce"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_am_softmax_option_uses_a_cosine_head() -> None:
    model = _tiny(loss="am_softmax").train()
    assert model.head.fc.bias is None
    batch = {"image": torch.randn(4, 3, SIZE, SIZE), "label": torch.tensor([0, 1, 0, 1])}
    out = model(batch["image"])
    assert out["logits"].abs().max() <= 30.0 + 1e-4  # s · cos θ
    parts = model.compute_loss(batch, out)
    assert set(parts) == {"loss", "am_softmax"}
    # m = 0.45, s = 30: DeepfakeBench's srm_detector.py, "params are specified by the author" (the old 0.35 fails)
    ref = am_softmax_loss(out["logits"] / 30.0, batch["label"], margin=0.45, scale=30.0)
    torch.testing.assert_close(parts["loss"], ref)
    parts["loss"].backward()
    assert model.head.fc.weight.grad is not None and model.rgb.conv1.weight.grad is not None
    with pytest.raises(ValueError, match="am_softmax"):
        _tiny(loss="focal")


@pytest.fixture
def manifest(tmp_path):
    vids = {f"r{i}": (0, "train") for i in range(3)} | {f"f{i}": (1, "train") for i in range(3)}
    vids |= {"rv0": (0, "val"), "fv0": (1, "val")}
    return build_manifest(tmp_path / "prep", videos=vids, frames=2, size=SIZE)


def test_tiny_recipe_trains_through_the_engine_with_both_streams_loaded(manifest, tmp_path, monkeypatch) -> None:
    """``gsrm_tiny`` end to end: ``timm:`` Xception weights (stubbed: no network in tests) reach the RGB stream by
    ``model.pretrained`` and the high-frequency stream by ``hf_pretrained``, then two training steps run."""
    import dflab.models.backbones as B
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    src = XceptionTrunk(3, (8, 16, 16, 24, 32, 48, 48, 64), 2)
    torch.nn.init.constant_(src.conv1.weight, 0.125)
    state = {**src.state_dict(), "fc.weight": torch.zeros(1000, 64), "fc.bias": torch.zeros(1000)}  # ImageNet head
    asked: list[str] = []
    monkeypatch.setattr(B, "timm_pretrained_state", lambda arch: asked.append(arch) or dict(state))
    spec = "timm:legacy_xception.tf_in1k"
    cfg = load_recipe("gsrm_tiny", [f"data.manifest={manifest}", "train.progress=false", "data.batch_size=4",
                                    "train.epochs=1", "train.steps_per_epoch=2", "train.log_every=1",
                                    "data.unsplit_val_fraction=0", f"model.pretrained={spec}",
                                    f"model.kwargs.hf_pretrained={spec}"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    assert asked == ["legacy_xception.tf_in1k"] * 2
    for stream in (tr.model.rgb, tr.model.hf):
        assert torch.all(stream.conv1.weight == 0.125)
    assert {k: v["loaded"] for k, v in tr.pretrained_report.items()} == {"rgb.": len(src.state_dict()),
                                                                        "hf.": len(src.state_dict())}  # fmt: skip
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 2
    assert not torch.all(tr.model.rgb.conv1.weight == 0.125)  # trained
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(info["pretrained"]) == {"rgb.", "hf."}
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "ce" in rows[0]


def test_paper_recipe_asks_for_imagenet_xception_in_both_streams() -> None:
    from dflab.train.recipes import load_recipe

    cfg = load_recipe("gsrm")
    assert cfg.model.pretrained == "timm:legacy_xception.tf_in1k" and cfg.model.pretrained_prefix == "rgb."
    assert cfg.model.kwargs["hf_pretrained"] == "timm:legacy_xception.tf_in1k"
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.name, cfg.optim.lr) == (256, 32, "adam", 2e-4)
    # DeepfakeBench's srm.yaml, the recipe's stated source for the optimiser, decays the weights by 5e-4
    assert (cfg.optim.betas, cfg.optim.weight_decay, cfg.train.epochs) == ((0.9, 0.999), 5e-4, 10)
