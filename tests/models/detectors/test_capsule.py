"""Capsule-Forensics v2: squash and routing as Sabour et al. define them, v2's output and loss, the frozen VGG-19
extractor, and the recipes through the real training loop (the shared contract test covers forward/backward/save/load
of ``capsule_tiny``)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dflab.compat import ensure_torchvision
from dflab.models.base import build_detector
from dflab.models.checkpoint import load_detector
from dflab.models.detectors.capsule import DynamicRouting, StatsPool, squash
from dflab.train.loop import Trainer
from dflab.train.recipes import load_recipe
from tests.train.conftest import build_manifest


def test_squash_keeps_direction_and_maps_lengths_into_unit_interval():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(6, 8, generator=gen) * torch.tensor([0.0, 1e-3, 0.5, 1.0, 10.0, 1e4])[:, None]
    v = squash(s)
    n_s, n_v = s.norm(dim=-1), v.norm(dim=-1)
    assert torch.isfinite(v).all() and (n_v >= 0).all() and (n_v[:5] < 1).all()
    # 1 - 1e-8 rounds to 1 in float32, and the norm of the rescaled vector can land one ulp above it
    assert n_v[5] <= 1 + 1e-6
    torch.testing.assert_close(n_v, n_s**2 / (1 + n_s**2), rtol=1e-4, atol=1e-7)  # Sabour et al. Eq. 1
    cos = F.cosine_similarity(v[1:], s[1:], dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    assert v[0].abs().sum() == 0  # a zero vector stays zero (no NaN)


def test_stats_pool_is_mean_and_population_variance_per_filter():
    x = torch.randn(2, 5, 7, 3)
    out = StatsPool()(x)
    assert out.shape == (2, 2, 5)
    torch.testing.assert_close(out[:, 0], x.mean(dim=(2, 3)))
    torch.testing.assert_close(out[:, 1], x.var(dim=(2, 3), unbiased=False))
    assert torch.isfinite(StatsPool()(torch.randn(2, 5, 1, 1))).all()  # a 1×1 grid is still defined


def _reference_routing(w: torch.Tensor, u: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sabour et al. Procedure 1 written with explicit loops (one sample)."""
    n_out, n_in = w.shape[:2]
    u_hat = [[w[j, i] @ u[i] for j in range(n_out)] for i in range(n_in)]
    b = torch.zeros(n_in, n_out)
    for it in range(iterations):
        c = torch.stack([torch.softmax(b[i], dim=0) for i in range(n_in)])
        v = []
        for j in range(n_out):
            s = sum(c[i, j] * u_hat[i][j] for i in range(n_in))
            v.append(s.norm() ** 2 / (1 + s.norm() ** 2) * s / s.norm())
        if it < iterations - 1:
            for i in range(n_in):
                for j in range(n_out):
                    b[i, j] = b[i, j] + u_hat[i][j] @ v[j]
    return torch.stack(v), c


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_matches_the_procedure_and_couplings_sum_to_one_over_outputs(iterations):
    torch.manual_seed(0)
    r = DynamicRouting(n_in=5, n_out=2, d_in=8, d_out=4, iterations=iterations).eval()
    u = squash(torch.randn(3, 5, 8))
    v, c = r(u)
    assert v.shape == (3, 2, 4) and c.shape == (3, 5, 2)
    torch.testing.assert_close(c.sum(dim=-1), torch.ones(3, 5))  # c_ij = softmax over the output capsules j
    assert (v.norm(dim=-1) < 1).all()  # output capsules are squashed
    for k in range(3):
        v_ref, c_ref = _reference_routing(r.weight.detach(), u[k], iterations)
        torch.testing.assert_close(v[k], v_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c[k], c_ref, rtol=1e-4, atol=1e-5)
    if iterations == 1:
        torch.testing.assert_close(c, torch.full_like(c, 0.5))  # no agreement step yet: uniform couplings
    else:
        assert not torch.allclose(c, torch.full_like(c, 0.5))


def test_routing_noise_and_dropout_only_while_training():
    torch.manual_seed(0)
    u = squash(torch.randn(4, 10, 8))
    noisy = DynamicRouting(10, 2, 8, 4, noise_std=0.01, dropout=0.0)
    noisy.eval()
    with torch.no_grad():
        ref = noisy(u)[0]
        torch.testing.assert_close(noisy(u)[0], ref, rtol=0, atol=0)
        noisy.train()
        a, b = noisy(u)[0], noisy(u)[0]
    assert not torch.equal(a, b) and not torch.equal(a, ref)  # noise on W while training
    assert (a - ref).abs().max() < 0.1  # ... small: std 0.01 on N(0, 1) weights
    clean = DynamicRouting(10, 2, 8, 4, noise_std=0.0, dropout=0.0)
    clean.load_state_dict(noisy.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clean.train()(u)[0], ref, rtol=0, atol=0)
    dropped = DynamicRouting(10, 2, 8, 4, noise_std=0.0, dropout=0.5)
    dropped.load_state_dict(noisy.state_dict())
    with torch.no_grad():
        assert not torch.equal(dropped.train()(u)[0], ref)
        torch.testing.assert_close(dropped.eval()(u)[0], ref, rtol=0, atol=0)


def test_tiny_outputs_scores_and_loss_follow_v2():
    torch.manual_seed(0)
    model = build_detector("capsule_tiny").train()
    x = _separable_batch(4)["image"]  # iid-noise images would all have the same statistics
    # BN running statistics = this batch's: their initial var 1 would dwarf the N(0, 0.02)-initialised convs
    for bn in model.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model(x)
        model.eval()
        out = model(x)
        again = model(x)
    v = out["capsules"]
    assert out["logits"].shape == (4, 2) and v.shape == (4, 2, 4) and out["coupling"].shape == (4, 3, 2)
    assert out["features"].shape == (4, 3 * 4)
    assert (v.norm(dim=-1) < 1).all() and v.norm(dim=-1).max() > 0.1
    assert (out["features"].view(4, 3, 4).norm(dim=-1) < 1).all()
    torch.testing.assert_close(out["coupling"].sum(-1), torch.ones(4, 3))
    # ŷ = 1/m Σ_d softmax(v_real,d, v_fake,d): the contract's softmax(logits) is exactly that
    y_hat = torch.stack([v[:, :, d].softmax(dim=1) for d in range(4)]).mean(0)
    torch.testing.assert_close(out["logits"].softmax(dim=1), y_hat)
    torch.testing.assert_close(model.score(out), y_hat[:, 1])
    torch.testing.assert_close(again["logits"], out["logits"], rtol=0, atol=0)  # eval: no noise
    labels = torch.tensor([0, 1, 1, 0])
    loss = model.compute_loss({"label": labels}, out)["loss"]
    assert loss < 4 * torch.log(torch.tensor(2.0)) + 0.5
    expected = sum(-torch.log_softmax(v[:, :, d], dim=1)[torch.arange(4), labels].mean() for d in range(4))
    torch.testing.assert_close(loss, expected)
    official = build_detector("capsule_tiny", official_loss=True)
    double = sum(F.cross_entropy(v[:, :, d].softmax(dim=1), labels) for d in range(4))  # the release's CE
    torch.testing.assert_close(official.compute_loss({"label": labels}, out)["loss"], double)
    assert not torch.allclose(loss, double)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x)["logits"], model(x)["logits"])  # training noise + dropout


def test_input_size_independent_thanks_to_statistical_pooling():
    model = build_detector("capsule_tiny").eval()
    with torch.no_grad():
        for s in (48, 64, 100):
            assert model(torch.randn(2, 3, s, s))["logits"].shape == (2, 2)


def test_paper_extractor_is_frozen_vgg19_up_to_the_third_pool():
    model = build_detector("capsule")
    convs = [m for m in model.backbone.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 256]  # VGG-19 blocks 1-3
    assert len(model.primary) == 10 and model.routing.weight.shape == (2, 10, 4, 8) and model.routing.iterations == 2
    assert (model.routing.noise_std, model.routing.dropout, model.input_spec.size) == (0.01, 0.05, 300)
    x = torch.randn(2, 3, 64, 64)
    assert model.pool(model.backbone.forward_features(x)).shape == (2, 256, 8, 8)  # stride 8 after pool 3
    out = model(x)
    model.compute_loss({"label": torch.tensor([0, 1])}, out)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    assert model.primary[0].conv[0].weight.grad.abs().sum() > 0 and model.routing.weight.grad.abs().sum() > 0
    assert model.frozen_prefixes == ("backbone.",)


def _separable_batch(n: int = 8, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, 1] * (n // 2))
    image = torch.randn(n, 3, size, size, generator=g) * 0.3
    image[label == 1, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += 2.0  # fakes carry a bright patch
    return {"image": image, "label": label}


def test_loss_decreases_on_a_separable_batch():
    torch.manual_seed(0)
    model = build_detector("capsule_tiny").train()
    batch = _separable_batch()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = model.compute_loss(batch, model(batch["image"]))["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    with torch.no_grad():  # still train mode: 12 steps leave the BN running statistics near their init
        pred = model(batch["image"])["logits"].argmax(1)
    assert torch.equal(pred, batch["label"])


def test_recipes_state_the_release_hyper_parameters():
    cfg = load_recipe("capsule")
    assert (cfg.model.name, cfg.model.pretrained) == ("capsule", "timm:vgg19.tv_in1k")
    assert (cfg.data.size, cfg.data.batch_size, cfg.train.epochs) == (300, 32, 25)
    assert (cfg.optim.name, cfg.optim.lr, tuple(cfg.optim.betas)) == ("adam", 5e-4, (0.9, 0.999))
    assert cfg.lr_schedule.name == "none" and cfg.data.streams["default"].augment.ops == []
    tiny = load_recipe("capsule_tiny")
    assert (tiny.model.name, tiny.model.pretrained, tiny.data.size) == ("capsule_tiny", "none", 64)


@pytest.fixture
def manifest(tmp_path):
    vids = {f"r{i}": (0, "train") for i in range(3)} | {f"f{i}": (1, "train") for i in range(3)}
    vids |= {"rv0": (0, "val"), "fv0": (1, "val")}
    return build_manifest(tmp_path / "prep", videos=vids, frames=4)


# the tiny recipe reads FF++/Celeb-DF rows; the synthetic manifest is one dataset with train/val splits
ANY_ROWS = ["data.streams.default.datasets=null", "data.val.datasets=null", "data.val_from_train={}"]
FAST = ["train.progress=false", "data.batch_size=4", "train.log_every=1", "data.num_workers=0"]


def test_tiny_recipe_trains_end_to_end(manifest, tmp_path):
    ensure_torchvision()  # the loop's versions() imports timm
    steps = ["train.epochs=1", "train.steps_per_epoch=2", "train.ckpt_every_steps=1"]
    cfg = load_recipe("capsule_tiny", [f"data.manifest={manifest}", *FAST, *ANY_ROWS, *steps])
    tr = Trainer(cfg, tmp_path / "run")
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 2 and tr.pretrained_report == {"backbone.": {"spec": "none", "loaded": 0}}
    assert len((tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["detector"] == "capsule" and card["variant"] == "capsule_tiny"
    loaded = load_detector(tmp_path / "run" / "best")
    assert isinstance(loaded.model, type(tr.model)) and loaded.spec.size == 64


def test_paper_recipe_loads_a_local_vgg19_file_into_the_frozen_extractor(manifest, tmp_path):
    """A VGG-19 ImageNet-layout file (here timm's own layout, random values) loads blocks 1-3 and drops the rest;
    nothing is fetched."""
    from safetensors.torch import save_file

    from dflab.models.backbones import create_backbone

    ensure_torchvision()
    full = create_backbone("vgg19", mlp_ratio=1 / 4096)  # the file's keys: features.0-34, pre_logits.*, head.*
    path = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    cfg = load_recipe("capsule", [f"data.manifest={manifest}", *FAST, *ANY_ROWS, f"model.pretrained={path}"])
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    report = tr.pretrained_report["backbone."]
    assert report["loaded"] == 16 and report["missing"] == 0  # the 8 convs of blocks 1-3, weight + bias
    torch.testing.assert_close(tr.model.backbone.features[16].weight, full.features[16].weight, rtol=0, atol=0)


def test_v1_variant_and_recipe_are_the_icassp_release():
    model = build_detector("capsule_v1")
    assert len(model.primary) == 3 and model.routing.dropout == 0.0 and model.routing.noise_std == 0.01
    assert model.input_spec.size == 128 and model.routing.weight.shape == (2, 3, 4, 8)
    cfg = load_recipe("capsule_v1")
    assert (cfg.model.name, cfg.model.pretrained, cfg.data.size, cfg.data.batch_size) == (
        "capsule_v1", "timm:vgg19.tv_in1k", 128, 100,
    )  # fmt: skip
    assert (cfg.train.epochs, cfg.optim.lr) == (100, 5e-4)


def test_gradcam_reads_the_map_shared_by_all_primary_capsules():
    from dflab.explain.gradcam import cam_layer_of, gradcam

    model = build_detector("capsule_tiny")
    x = _separable_batch(2)["image"]
    assert cam_layer_of(model, x[:1]) is model.pool
    cam = gradcam(model, x)
    assert cam.shape == (2, 64, 64) and cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0


def test_scores_stay_inside_the_bound_squashed_capsules_allow():
    """Each output capsule has length < 1, so a component gap v_fake,d - v_real,d is below 2 and Σ_d gap² < 4; the
    mean of m = 4 sigmoids is largest for equal gaps of 1: ŷ_fake < sigmoid(1) ≈ 0.731 even when saturated."""
    torch.manual_seed(0)
    model = build_detector("capsule_tiny").eval()
    with torch.no_grad():
        model.routing.weight.mul_(1e3)  # saturate the capsules
        out = model(_separable_batch(8)["image"])
        score = model.score(out)
    assert (out["capsules"].norm(dim=-1) > 0.99).all()
    bound = torch.sigmoid(torch.tensor(1.0))
    assert ((score < bound) & (score > 1 - bound)).all()
