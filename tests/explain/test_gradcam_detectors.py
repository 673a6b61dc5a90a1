"""Grad-CAM works on the registered detectors and targets their last stage feeding the classifier."""

from __future__ import annotations

import pytest
import torch

from dflab.explain.gradcam import cam_layer_of, detector_maps, gradcam

FAST = {"resnet18_tiny": "backbone.layer4", "lae_tiny": "encoder.convs", "big_arts_xray_tiny": "cls_block.1"}


def _tiny_variants() -> list[str]:
    import dflab.models.detectors  # noqa: F401
    from dflab.models.base import VARIANTS

    return [n for n in VARIANTS.names() if n.endswith("_tiny")]


def _check(name: str) -> str:
    from dflab.models.base import build_detector

    model = build_detector(name)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    if not getattr(model, "gradcam", True):  # a frozen encoder outside autograd: its own maps or none, said so
        assert model.frozen_prefixes, f"{name} opts out of Grad-CAM without a frozen encoder"
        return "(own maps only)"
    layer = cam_layer_of(model, x)
    cam = gradcam(model, x, layer=layer)
    assert cam.shape == (1, 64, 64) and cam.min() >= 0 and cam.max() <= 1
    for m in detector_maps(model, x).values():
        assert m.shape == (1, 64, 64)
    return next(n for n, mod in model.named_modules() if mod is layer)


@pytest.mark.parametrize("name", sorted(FAST))
def test_gradcam_layer_choice(name: str) -> None:
    assert _check(name) == FAST[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", _tiny_variants())
def test_gradcam_every_tiny_variant(name: str) -> None:
    assert _check(name)
