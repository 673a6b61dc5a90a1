"""BiG-Arts specifics (the shared contract test covers forward/score/targets of every variant)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dflab.models.base import build_detector


def _batch(b: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(b, 3, size, size, generator=g),
        "label": torch.arange(b) % 2,
        "mask_in": (torch.rand(b, 1, size, size, generator=g) > 0.5).float(),
        "mask_ex": torch.rand(b, 1, size, size, generator=g),
    }


@pytest.mark.parametrize("size", [64, 72])
def test_decoder_maps_match_input_resolution(size: int) -> None:
    model = build_detector("big_arts_tiny").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out["logits"].shape == (2, 2)
    assert out["map_in"].shape == (2, 1, size, size)
    assert out["map_ex"].shape == (2, 1, size, size)
    assert len(model.decoders["in"].blocks) == 5


def test_loss_is_lambda_weighted_sum_of_bce_and_ce() -> None:
    torch.manual_seed(0)
    model = build_detector("big_arts_tiny", lambda_in=15.0, lambda_ex=15.0, lambda_cls=1.0)
    batch = _batch(2, 64)
    out = model(batch["image"])
    loss = model.compute_loss(batch, out)
    ref_in = F.binary_cross_entropy(out["map_in"].sigmoid(), batch["mask_in"])
    ref_ex = F.binary_cross_entropy(out["map_ex"].sigmoid(), batch["mask_ex"])
    ref_cls = -out["logits"].log_softmax(1)[torch.arange(2), batch["label"]].mean()
    assert torch.allclose(loss["in"], ref_in, atol=1e-5)
    assert torch.allclose(loss["ex"], ref_ex, atol=1e-5)
    assert torch.allclose(loss["cls"], ref_cls, atol=1e-5)
    assert torch.allclose(loss["loss"], 15 * ref_in + 15 * ref_ex + ref_cls, atol=1e-4)
    # changing a λ changes only its term
    model.lambdas["ex"] = 2.0
    loss2 = model.compute_loss(batch, out)
    assert torch.allclose(loss2["loss"], 15 * ref_in + 2 * ref_ex + ref_cls, atol=1e-4)


def test_perfect_maps_give_near_zero_pixel_loss() -> None:
    model = build_detector("big_arts_tiny")
    batch = _batch(2, 64)
    out = {
        "logits": torch.tensor([[20.0, -20.0], [-20.0, 20.0]]),
        "map_in": (batch["mask_in"] * 2 - 1) * 30.0,
        "map_ex": torch.zeros(2, 1, 64, 64),
    }
    batch["mask_ex"] = torch.zeros(2, 1, 64, 64)
    loss = model.compute_loss(batch, out)
    assert loss["in"] < 1e-6 and loss["cls"] < 1e-6
    assert torch.isclose(loss["ex"], torch.tensor(0.6931), atol=1e-3)  # logit 0 on target 0: log 2


def test_ablation_variants_select_branches_and_targets() -> None:
    cases = {
        "big_arts_tiny": ({"map_in", "map_ex"}, {"mask_in", "mask_ex"}),
        "big_arts_xray_tiny": ({"map_ex"}, {"mask_ex"}),
        "big_arts_tiny:in": ({"map_in"}, {"mask_in"}),
        "big_arts_tiny:none": (set(), set()),
    }
    for name, (maps, targets) in cases.items():
        base, _, br = name.partition(":")
        kw = {} if not br else {"branches": () if br == "none" else (br,)}
        model = build_detector(base, **kw).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 64))
        assert {k for k in out if k.startswith("map_")} == maps, name
        assert set(model.targets) == targets, name
        batch = _batch(1, 64)
        loss = model.compute_loss({k: v for k, v in batch.items() if k in targets | {"label"}}, out)
        assert set(loss) == {"loss", "cls"} | {m[4:] for m in maps}
        assert set(model.explain_maps(out)) == {f"mask_{m[4:]}" for m in maps}


def test_unknown_branch_and_bad_mask_shape_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown BiG-Arts branches"):
        build_detector("big_arts_tiny", branches=("boundary",))
    model = build_detector("big_arts_tiny")
    batch = _batch(2, 64)
    out = model(batch["image"])
    batch["mask_in"] = batch["mask_in"][:, :, :32, :32]
    with pytest.raises(ValueError, match=r"\(B,1,H,W\)"):
        model.compute_loss(batch, out)


def test_maps_learn_a_synthetic_region() -> None:
    """A few Adam steps on a fixed batch with a square M_In and its ring M_Ex cut both pixel losses."""
    torch.manual_seed(0)
    model = build_detector("big_arts_tiny")
    batch = _batch(4, 32)
    m_in = torch.zeros(4, 1, 32, 32)
    m_in[:, :, 8:24, 8:24] = 1.0
    batch["mask_in"] = m_in * batch["label"].view(4, 1, 1, 1)
    batch["mask_ex"] = (F.max_pool2d(batch["mask_in"], 3, 1, 1) + F.max_pool2d(-batch["mask_in"], 3, 1, 1)).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = model.compute_loss(batch, model(batch["image"]))
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        losses.append({k: float(v.detach()) for k, v in loss.items()})
    assert losses[-1]["in"] < 0.85 * losses[0]["in"]
    assert losses[-1]["ex"] < 0.85 * losses[0]["ex"]


def test_recipes_validate_and_build_their_variant() -> None:
    from dflab.train.recipes import load_recipe

    expect = {"big_arts": ("in", "ex"), "big_arts_in": ("in",), "big_arts_ex": ("ex",), "big_arts_none": ()}
    expect |= {"big_arts_xray": ("ex",), "big_arts_aug_none": ("in", "ex")}
    for name, branches in expect.items():
        r = load_recipe(name)
        assert r.data.size == 256 and r.optim.name == "adam" and r.optim.lr == 1e-3 and r.lr_schedule.t_max == 40
        from dflab.models.base import VARIANTS

        det, kw = VARIANTS.get(r.model.name)
        assert det == "big_arts"
        assert tuple({**kw, **r.model.kwargs}.get("branches", ("in", "ex"))) == branches, name
    rr = load_recipe("big_arts_tiny_rr")
    assert rr.data.size == 64 and rr.data.streams["default"].synthesizers == ["bigarts_rr"]
    tiny = load_recipe("big_arts_tiny")  # the intrinsic branch needs dataset fakes: the §4.1 mix, not (R,R) only
    assert tiny.data.size == 64 and tiny.data.mixes["default"] == {"real": 3, "orig": 1, "rr": 1, "fr": 1}
    assert {tiny.data.streams[s].mode for s in ("orig", "fr")} == {"fake_source"}


def test_stream_mix_schedule_keeps_the_batch_composition() -> None:
    import dflab.train.schedules  # noqa: F401  (registers stream_mix)
    from dflab.train.schedule import SCHEDULES

    sched = SCHEDULES.get("stream_mix")(weights={"default": 4, "rr": 1, "fr": 1})
    names = [sched.phase(s, 600).stream for s in range(600)]
    assert names.count("default") == 400 and names.count("rr") == 100 and names.count("fr") == 100
    assert all(names[i : i + 6].count("default") == 4 for i in range(0, 600, 6))  # spread within every cycle
    assert names[:6] == ["default", "default", "rr", "default", "fr", "default"]
    assert sched.streams() == ["default", "rr", "fr"]
    assert SCHEDULES.get("stream_mix")(weights={"default": 1, "rr": 0}).streams() == ["default"]
    with pytest.raises(ValueError, match="non-negative integers"):
        SCHEDULES.get("stream_mix")(weights={"default": 1.5})


@pytest.mark.slow
def test_paper_recipe_forward_backward_at_256() -> None:
    from dflab.train.recipes import load_recipe

    r = load_recipe("big_arts")
    model = build_detector(r.model.name, **r.model.kwargs)
    size = r.data.size
    assert size == 256 and model.input_spec.size == 256
    batch = _batch(2, size)
    out = model(batch["image"])
    assert out["map_in"].shape == (2, 1, size, size) and out["map_ex"].shape == (2, 1, size, size)
    model.compute_loss(batch, out)["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith(("backbone.", "decoders.", "fc."))]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
