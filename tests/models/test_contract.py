"""THE detector contract test: every registered ``*_tiny`` variant, at 64 px.

Forward gives (B, 2) logits, ``compute_loss`` a finite scalar ``loss`` whose backward reaches the parameters,
``score`` a probability, ``validation_loss`` a finite scalar (named when it is the detector's own), and save → load
rebuilds the detector from its card alone with identical outputs. Detectors of other files join automatically when
they register a tiny variant.
"""

from __future__ import annotations

import pytest
import torch

import dflab.models.detectors  # noqa: F401
from dflab.models.base import TARGET_KEYS, VARIANTS, Detector, build_detector
from dflab.models.checkpoint import load_detector, read_card, save_detector

TINY = [n for n in VARIANTS.names() if n.endswith("_tiny")]
SIZE = 64


def make_batch(targets: frozenset[str], b: int = 4, size: int = SIZE) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, 1] * (b // 2))
    mask = torch.zeros(b, 1, size, size)
    mask[label == 1, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    batch = {
        "image": torch.randn(b, 3, size, size, generator=g),
        "label": label,
        "video_id": [f"v{i}" for i in range(b)],
    }
    extra = {
        "mask": mask,
        "mask_in": mask * 0.5,
        "mask_ex": mask,
        "boundary": 4 * mask * (1 - mask),
        "degraded": torch.randn(b, 3, size, size, generator=g),
        "category": torch.where(label == 1, torch.zeros_like(label), torch.full_like(label, -1)),
        "identity": torch.arange(b),
    }
    assert set(extra) == set(TARGET_KEYS)
    batch.update({k: extra[k] for k in targets})
    return batch


def test_registry_has_tiny_variants():
    for name in (
        "xception_tiny",
        "resnet18_tiny",
        "resnet34_tiny",
        "resnet50_tiny",
        "vgg16_tiny",
        "alexnet_tiny",
        "densenet121_tiny",
        "meso_inception4_tiny",
    ):
        assert name in TINY


@pytest.mark.parametrize("name", TINY)
def test_detector_contract(name, tmp_path):
    torch.manual_seed(0)
    model = build_detector(name)
    assert set(model.targets) <= TARGET_KEYS, f"{name} declares unknown targets {set(model.targets) - TARGET_KEYS}"
    batch = make_batch(frozenset(model.targets))
    model.train()
    out = model(batch["image"])
    assert isinstance(out, dict) and "logits" in out
    assert out["logits"].shape == (4, 2), f"{name}: logits {tuple(out['logits'].shape)}, expected (4, 2)"
    losses = model.compute_loss(batch, out)
    loss = losses["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), f"{name}: loss {loss}"
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name}: no gradient reached the parameters"

    model.eval()
    with torch.no_grad():
        ref_out = model(batch["image"])
        ref = model.score(ref_out)
        val_loss = model.validation_loss({"image": batch["image"], "label": batch["label"]}, ref_out)
    assert ref.shape == (4,) and bool(((ref >= 0) & (ref <= 1)).all())
    assert val_loss.ndim == 0 and torch.isfinite(val_loss), f"{name}: validation loss {val_loss}"
    own = type(model).validation_loss is not Detector.validation_loss
    assert own == (model.validation_loss_name != "cross_entropy"), f"{name}: an own validation loss needs its name"

    save_detector(model, tmp_path / "ckpt", {"metrics": {"auc": 0.5}})
    card = read_card(tmp_path / "ckpt")
    assert card["variant"] == name and card["input_spec"]["size"] == model.input_spec.size
    loaded = load_detector(tmp_path / "ckpt")
    assert type(loaded.model) is type(model)
    with torch.no_grad():
        again = loaded.model.score(loaded.model(batch["image"]))
        logits_again = loaded.model(batch["image"])["logits"]
    torch.testing.assert_close(again, ref, rtol=0, atol=0)
    torch.testing.assert_close(logits_again, ref_out["logits"], rtol=0, atol=0)


def test_building_a_variant_leaves_its_registered_kwargs_and_the_card_untouched():
    # timm's xception edits its nested block_cfg dicts in place (adds drop_path / dilation); before the copy in
    # build_detector, the first build changed xception_tiny's registered kwargs and every later card's
    import copy

    registered = copy.deepcopy(VARIANTS.get("xception_tiny")[1])
    first = build_detector("xception_tiny")
    second = build_detector("xception_tiny")
    assert VARIANTS.get("xception_tiny")[1] == registered
    assert first.config()["kwargs"] == second.config()["kwargs"] == registered
