"""LiSiam specifics: Siamese weight sharing, L_li, the attention split, one-branch inference, the 3-phase schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dflab.models.base import build_detector
from dflab.models.detectors.lisiam import (
    CLS_MODULES,
    SEG_MODULES,
    MaskGuidedTransformer,
    localization_invariance_loss,
    split_features,
)


def _batch(b: int = 4, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(b) % 2
    mask = torch.zeros(b, 1, size, size)
    mask[label == 1, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    image = torch.randn(b, 3, size, size, generator=g)
    return {
        "image": image,
        "label": label,
        "mask": mask,
        "degraded": image + 0.3 * torch.randn(image.shape, generator=g),
    }


def _count_backbone_calls(model: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls


def test_tiny_shapes_and_targets() -> None:
    model = build_detector("lisiam_tiny").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 2)
    assert out["seg"].shape == (2, 2, 8, 8)  # output stride 8
    assert out["mask"].shape == (2, 1, 64, 64) and bool(((out["mask"] >= 0) & (out["mask"] <= 1)).all())
    assert set(model.targets) == {"mask", "degraded"}


def test_attention_split_sums_back_to_features() -> None:
    g = torch.Generator().manual_seed(1)
    xc = torch.randn(2, 8, 5, 5, generator=g)
    seg = torch.randn(2, 2, 9, 9, generator=g) * 3
    x_r, x_f = split_features(xc, seg)
    torch.testing.assert_close(x_r + x_f, xc, atol=1e-6, rtol=0)
    # a confident "all fake" map sends everything to the fake part
    x_r, x_f = split_features(xc, torch.stack([torch.full((2, 9, 9), -50.0), torch.full((2, 9, 9), 50.0)], 1))
    assert x_r.abs().max() < 1e-6
    torch.testing.assert_close(x_f, xc)


def test_mask_guided_transformer_output() -> None:
    mt = MaskGuidedTransformer(16).eval()
    z = mt(torch.randn(2, 16, 4, 4), torch.randn(2, 2, 8, 8))
    assert z.shape == (2, 32, 4, 4)


def test_li_loss_is_zero_for_identical_inputs_and_l1_otherwise() -> None:
    model = build_detector("lisiam_tiny").eval()  # eval: dropout off, BN fixed -> both branches deterministic
    batch = _batch()
    batch["degraded"] = batch["image"].clone()
    with torch.no_grad():
        loss = model.compute_loss(batch, model(batch["image"]))
    assert float(loss["li"]) == 0.0
    a, b = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(localization_invariance_loss(a, b), torch.nn.functional.l1_loss(a, b))


def test_branches_share_weights() -> None:
    """Branch 2 is the same module applied to the degraded view: L_li equals |f(x) − f(x')| of plain forwards."""
    model = build_detector("lisiam_tiny").eval()
    batch = _batch()
    with torch.no_grad():
        seg1 = model(batch["image"])["seg"]
        seg2 = model(batch["degraded"])["seg"]
        loss = model.compute_loss(batch, model(batch["image"]))
    torch.testing.assert_close(loss["li"], (seg1 - seg2).abs().mean())
    # one set of weights: the Siamese model has exactly the parameters of a one-branch configuration (a second
    # branch's own weights would add names), and L_li's gradient reaches the shared backbone
    one_branch = build_detector("lisiam_tiny", lambda_li=0.0)
    assert one_branch.targets == frozenset({"mask"})
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in one_branch.named_parameters()]
    model.train()
    li = localization_invariance_loss(model(batch["image"])["seg"], model(batch["degraded"])["seg"])
    li.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("backbone.")
    )


def test_inference_uses_one_branch_and_training_two() -> None:
    model = build_detector("lisiam_tiny")
    calls = _count_backbone_calls(model)
    batch = _batch()
    model.eval()
    with torch.no_grad():
        model.score(model(batch["image"]))
    assert calls == [4]
    model.train()
    out = model(batch["image"])
    loss = model.compute_loss(batch, out)
    assert len(calls) == 3  # forward (branch 1) + branch 2 inside compute_loss
    assert set(loss) == {"loss", "cls1", "seg1", "li"}
    loss["loss"].backward()


def test_default_loss_is_exactly_eq19() -> None:
    """Eq. 19: L = λ_li L_li + λ_cls L_cls + λ_seg L_seg, all λ = 1 — no auxiliary decoder term unless asked."""
    torch.manual_seed(0)
    model = build_detector("lisiam_tiny")
    batch = _batch()
    loss = model.compute_loss(batch, model(batch["image"]))
    assert "aux1" not in loss
    torch.testing.assert_close(loss["loss"].detach(), loss["li"] + loss["cls1"] + loss["seg1"])


def test_xc_is_13x13_at_299_px() -> None:
    """§IV-A.2: X_c is C × 13 × 13 for the 37 × 37 features of a 299 px face (official SCU: 37→19→21→11→13)."""
    model = build_detector("lisiam_tiny").eval()
    with torch.no_grad():
        assert model.scu(torch.randn(1, 32, 37, 37)).shape == (1, 32, 13, 13)
        unpadded = build_detector("lisiam_tiny", scu_padding=0).eval()
        assert unpadded.scu(torch.randn(1, 32, 37, 37)).shape == (1, 32, 10, 10)


def test_frozen_layers_keep_their_bn_statistics() -> None:
    """§IV-B phase 2 freezes the segmentation modules: their BN running statistics must not move either."""
    import dflab.train.schedules  # noqa: F401  (registers the lisiam schedule)
    from dflab.train.schedule import SCHEDULES, freeze_norm_stats

    sched = SCHEDULES.get("lisiam")(seg=1, cls=1, all=1)
    phase = sched.phase(1, 3)
    assert phase.name == "cls" and phase.freeze_norm
    model = build_detector("lisiam_tiny")
    model.train()
    frozen = freeze_norm_stats(model, phase.trainable)
    assert frozen and all(n.startswith(SEG_MODULES) for n in frozen)
    bns = dict(model.named_modules())
    seg_bn = next(n for n in frozen if n.startswith("backbone."))
    cls_bn = next(n for n, m in bns.items() if n.startswith("scu.") and isinstance(m, torch.nn.BatchNorm2d))
    before = {n: bns[n].running_mean.clone() for n in (seg_bn, cls_bn)}
    model(_batch()["image"] * 3 + 1)
    torch.testing.assert_close(bns[seg_bn].running_mean, before[seg_bn], rtol=0, atol=0)
    assert not torch.equal(bns[cls_bn].running_mean, before[cls_bn])  # the trained modules' BN still adapts
    assert sched.phase(2, 3).freeze_norm is False  # phase 3 trains everything


def test_loss_is_eq19_with_aux_weight() -> None:
    torch.manual_seed(0)
    model = build_detector("lisiam_tiny", lambda_li=2.0, lambda_cls=3.0, lambda_seg=0.5, aux_weight=0.4)
    batch = _batch()
    loss = model.compute_loss(batch, model(batch["image"]))
    expect = 2.0 * loss["li"] + 3.0 * loss["cls1"] + 0.5 * (loss["seg1"] + 0.4 * loss["aux1"])
    torch.testing.assert_close(loss["loss"].detach(), expect)


@pytest.mark.parametrize(
    ("variant", "parts", "targets"),
    [
        ("lisiam_model_b", {"cls1", "cls2", "seg1", "seg2", "li"}, {"mask", "degraded"}),
        ("lisiam_model_c", {"cls1", "li"}, {"degraded"}),
        ("lisiam_model_d", {"cls2", "seg2", "li"}, {"mask", "degraded"}),
        ("lisiam_model_e", {"cls2", "seg2"}, {"mask", "degraded"}),
        ("lisiam_model_f", {"cls1", "seg1", "li"}, {"mask", "degraded"}),
        ("lisiam_model_g", {"cls1", "cls2", "seg1", "seg2"}, {"mask", "degraded"}),
        ("lisiam_official", {"cls1", "seg1", "aux1", "li"}, {"mask", "degraded"}),
    ],
)
def test_table6_variants(variant: str, parts: set[str], targets: set[str]) -> None:
    tiny = {"backbone": "test_resnet", "width": 32, "ocr_transform": 16, "mlp_hidden": 32, "input_size": 64}
    model = build_detector(variant, **tiny)
    assert set(model.targets) == targets
    batch = _batch()
    loss = model.compute_loss(batch, model(batch["image"]))
    assert set(loss) - {"loss"} == parts
    assert torch.isfinite(loss["loss"])


def test_stages_skip_frozen_losses() -> None:
    model = build_detector("lisiam_tiny")
    calls = _count_backbone_calls(model)
    batch = _batch()
    out = model(batch["image"])
    assert set(model.compute_loss(batch, out, stage="seg")) == {"loss", "seg1", "li"}
    n = len(calls)
    assert set(model.compute_loss(batch, out, stage="cls")) == {"loss", "cls1"}
    assert len(calls) == n  # branch 2 skipped while only the classifier trains
    with pytest.raises(ValueError, match="stage"):
        model.compute_loss(batch, out, stage="bogus")
    with pytest.raises(KeyError, match="degraded"):
        model.compute_loss({k: v for k, v in batch.items() if k != "degraded"}, out)


def test_schedule_three_phases_cover_all_parameters() -> None:
    import dflab.train.schedules  # noqa: F401  (registers the lisiam schedule)
    from dflab.train.schedule import SCHEDULES

    sched = SCHEDULES.get("lisiam")()
    total = 486
    names = [sched.phase(s, total).name for s in range(total)]
    assert names[:146] == ["seg"] * 146 and names[146:162] == ["cls"] * 16 and names[162:] == ["all"] * 324
    assert sched.phase(0, total).loss_kwargs == {"stage": "seg"} and sched.phase(485, total).trainable is None
    # poly policy, power 0.9, per step (§IV-B)
    assert sched.phase(0, total).lr_scale == 1.0
    assert sched.phase(243, total).lr_scale == pytest.approx(0.5**0.9)
    model = build_detector("lisiam_tiny")
    for n in dict(model.named_parameters()):
        assert n.startswith(SEG_MODULES) != n.startswith(CLS_MODULES), f"{n} is in neither or both phase groups"


def test_lisiam_iqd_degrader_is_seeded() -> None:
    import dflab.train.schedules  # noqa: F401  (registers the lisiam schedule and degrader)
    from dflab.train.data import DEGRADERS

    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    fn = DEGRADERS.get("lisiam_iqd")
    a, b = fn(np.random.default_rng(3), img), fn(np.random.default_rng(3), img)
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    outs = [fn(np.random.default_rng(s), img) for s in range(8)]
    assert any(not np.array_equal(o, img) for o in outs)


def test_recipes_validate_and_build_their_variant() -> None:
    from dflab.models.base import VARIANTS
    from dflab.train.recipes import load_recipe

    for name in ["lisiam", *(f"lisiam_model_{m}" for m in "bcdefg")]:
        r = load_recipe(name)
        assert r.data.size == 299 and r.optim.name == "sgd" and r.optim.lr == 0.002 and r.optim.weight_decay == 5e-4
        assert r.schedule.name == "lisiam" and r.lr_schedule.name == "none"
        assert r.data.streams["default"].degrade == "lisiam_iqd" and r.data.val.degrade == "lisiam_iqd"
        default = r.data.streams["default"]
        assert default.frames_per_video == 30 and not default.resample_frames  # §IV-A.3: the same 30 frames
        assert VARIANTS.get(r.model.name)[0] == "lisiam"
    tiny = load_recipe("lisiam_tiny")
    assert tiny.data.size == 64 and tiny.model.name == "lisiam_tiny"


@pytest.mark.slow
def test_paper_recipe_forward_backward_at_299() -> None:
    from dflab.train.recipes import load_recipe

    r = load_recipe("lisiam")
    model = build_detector(r.model.name, **r.model.kwargs)
    assert r.data.size == 299 and model.input_spec.size == 299
    batch = _batch(2, 299)
    xc_shapes: list[tuple[int, ...]] = []
    model.scu.register_forward_hook(lambda m, i, o: xc_shapes.append(tuple(o.shape)))
    out = model(batch["image"])
    assert out["seg"].shape == (2, 2, 37, 37)  # 1024x37x37 backbone output, §III-E
    assert xc_shapes == [(2, 512, 13, 13)]  # X_c: C x 13 x 13 (§IV-A.2)
    low, high = model.backbone(batch["image"][:1])
    assert low.shape == (1, 728, 37, 37) and high.shape == (1, 1024, 37, 37)
    loss = model.compute_loss(batch, out)
    loss["loss"].backward()
    assert torch.isfinite(loss["loss"])
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("backbone.", "head.", "mt.")))


@pytest.mark.parametrize("recipe", ["lisiam", "lisiam_official"])
def test_input_normalisation_is_the_pretrained_weights_own(recipe: str) -> None:
    """§IV-B initialises from ImageNet Xception, whose weights take [-1, 1] inputs (mean = std = 0.5)."""
    from dflab.models.backbones import timm_pretrained_norm
    from dflab.train.recipes import load_recipe

    r = load_recipe("lisiam")
    model = build_detector(recipe, **r.model.kwargs)
    mean, std = timm_pretrained_norm(r.model.pretrained)
    assert model.input_spec.mean == pytest.approx(mean) and model.input_spec.std == pytest.approx(std)
    # the tiny stand-in (a timm ResNet) keeps ImageNet statistics
    assert build_detector("lisiam_tiny").input_spec.mean == pytest.approx((0.485, 0.456, 0.406))


def test_features_are_the_pooled_z_the_mlp_reads() -> None:
    """§IV-E Fig. 5 embeds LiSiam's features: ``dflab eval``'s t-SNE needs them in the outputs (Eq. 18's f_aap(Z))."""
    from dflab.eval.predict import _embedding

    model = build_detector("lisiam_tiny").eval()
    seen: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    emb = _embedding(out)
    assert emb is not None and emb.shape == (2, 2 * 32)  # concat(Y + X_f, X_c): 2 × width
    torch.testing.assert_close(emb, seen[0])
