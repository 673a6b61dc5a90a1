"""Grad-CAM on any detector: target-layer choice, shapes, and that the map follows the evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dflab.explain.gradcam import cam_layer_of, detector_maps, gradcam
from dflab.models.base import Detector, InputSpec


def test_auto_layer_skips_a_decoder_that_does_not_feed_the_logits(encdec) -> None:
    assert cam_layer_of(encdec) is encdec.enc2


def test_cam_layer_attribute_wins(encdec) -> None:
    encdec.cam_layer = "enc1"
    assert cam_layer_of(encdec) is encdec.enc1
    encdec.cam_layer = "enc9"
    with pytest.raises(AttributeError, match="enc9"):
        cam_layer_of(encdec)


def test_gradcam_shape_range_and_mode_restored(encdec) -> None:
    encdec.train()
    x = torch.randn(2, 3, 64, 64)
    maps = gradcam(encdec, x)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert encdec.training  # mode restored


class _Spot(Detector):
    """Fake logit = mean of a 1×1 conv response: the evidence is wherever the input is bright."""

    def __init__(self) -> None:
        super().__init__(InputSpec(size=32))
        self.conv = nn.Conv2d(3, 1, 1)
        nn.init.constant_(self.conv.weight, 1.0)
        nn.init.zeros_(self.conv.bias)
        self.pool = nn.Conv2d(1, 1, 4, stride=4, bias=False)  # 32 -> 8 px feature map
        nn.init.constant_(self.pool.weight, 1 / 16)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.pool(self.conv(images)))
        z = f.mean(dim=(1, 2, 3))
        return {"logits": torch.stack([-z, z], dim=1)}


def test_gradcam_points_at_the_evidence() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 4:12, 20:28] = 1.0  # bright patch top-right
    cam = gradcam(_Spot(), x)[0]
    assert cam[4:12, 20:28].mean() > 0.6 and cam[20:, :12].mean() < 0.1  # bilinear upsampling softens edges


def test_detector_maps_are_resized_to_input(encdec) -> None:
    maps = detector_maps(encdec, torch.randn(3, 3, 64, 64))
    assert set(maps) == {"mask"} and maps["mask"].shape == (3, 64, 64)
    assert maps["mask"].min() >= 0 and maps["mask"].max() <= 1


@pytest.mark.parametrize("name", ["mml_tiny", "lisiam_tiny"])
def test_gradcam_equals_pytorch_grad_cam(name: str) -> None:
    """Our few-line Grad-CAM against the reference implementation (pytorch-grad-cam's GradCAM, fake class)."""
    from dflab.compat import ensure_torchvision
    from dflab.models.base import build_detector

    ensure_torchvision()
    ref = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = build_detector(name).eval()
    x = torch.randn(3, 3, model.input_spec.size, model.input_spec.size)
    layer = cam_layer_of(model, x[:1])

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.m(t)["logits"]

    with ref.GradCAM(model=Logits(), target_layers=[layer]) as cam:
        want = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(1)] * 3)
    np.testing.assert_allclose(gradcam(model, x, layer=layer), want, atol=1e-4)
