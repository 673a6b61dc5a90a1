"""SPSL specifics: the phase-only image is numpy's phase reconstruction and ignores the amplitude, the 4-channel stem
reads [RGB, phase], the network is shallow, ImageNet Xception weights load into the 4-channel stem, and training
steps fit a separable batch. (Forward/backward/save-load: the contract test; the engine run:
tests/train/test_meso4_spsl_recipes.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from dflab.models.backbones import create_backbone
from dflab.models.base import build_detector
from dflab.models.detectors.spsl import SPSL, phase_only_image
from dflab.train.recipes import load_recipe
from tests.models.detectors.separable import fit_steps, patch_batch


def _numpy_phase_only(grey: np.ndarray) -> np.ndarray:
    """Reference: keep the DFT's phase, amplitude 1, orthonormal inverse, real part (float64)."""
    return np.real(np.fft.ifft2(np.exp(1j * np.angle(np.fft.fft2(grey))), norm="ortho"))


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    img = data.astronaut()[::4, ::4].astype(np.float32) / 255.0  # (128, 128, 3)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def test_phase_only_image_matches_numpy(astronaut):
    out = phase_only_image(astronaut)
    assert out.shape == (1, 1, 128, 128) and out.dtype == torch.float32
    grey = astronaut[0].double().mean(dim=0).numpy()
    ref = _numpy_phase_only(grey)
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-5)
    assert abs(float(out.pow(2).mean()) - 1.0) < 1e-4  # unit RMS (Parseval, unit amplitude, orthonormal inverse)
    # it is not the image itself, nor its grey version: the amplitude really went
    assert np.abs(ref - grey).max() > 0.5


def test_amplitude_is_discarded(astronaut):
    grey = astronaut[0].double().mean(dim=0).numpy()
    spectrum = np.fft.fft2(grey)
    fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    gain = 1.0 + 40.0 * np.hypot(fy, fx)  # positive and symmetric in ±f: a real image with the same phase
    other = np.real(np.fft.ifft2(spectrum * gain))
    assert np.abs(other - grey).max() > 0.5  # a visibly different image (a strong high-frequency boost)

    def as_rgb(g: np.ndarray) -> torch.Tensor:  # grey in all three channels: its channel mean is g again
        return torch.from_numpy(np.repeat(g[None, None], 3, axis=1).astype(np.float32))

    a, b = phase_only_image(as_rgb(grey)), phase_only_image(as_rgb(other))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    torch.testing.assert_close(phase_only_image(as_rgb(3.0 * grey)), a, atol=1e-4, rtol=0)  # a global gain too
    # ... while a different image gives a different phase channel
    assert (phase_only_image(as_rgb(grey.T.copy())) - a).abs().max() > 0.5


def test_phase_channel_is_per_image_and_carries_no_gradient(astronaut):
    batch = torch.cat([astronaut, torch.rand(3, 3, 128, 128)]).requires_grad_(True)
    out = phase_only_image(batch)
    torch.testing.assert_close(out[:1], phase_only_image(astronaut))  # the batch companions do not change it
    assert not out.requires_grad


def test_stem_reads_rgb_and_phase(astronaut):
    model = build_detector("spsl_tiny").eval()
    assert model.backbone.conv1.in_channels == 4
    seen = []
    handle = model.backbone.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    images = astronaut[..., :64, :64] * 2 - 1
    with torch.no_grad():
        out = model(images)
    handle.remove()
    x = seen[0]
    assert x.shape == (1, 4, 64, 64)
    assert torch.equal(x[:, :3], images) and torch.equal(x[:, 3:], phase_only_image(images))
    assert torch.equal(out["phase"], x[:, 3:])


def test_network_is_shallow():
    model = build_detector("spsl")
    block = type(model.backbone.block1)  # timm's Xception Block (imported by dflab after its torchvision fix)
    blocks = [n for n, m in model.backbone.named_children() if isinstance(m, block)]
    assert blocks == ["block1", "block2", "block3", "block12"]  # Xception's middle flow (blocks 4-11) removed
    full = SPSL(middle_blocks=8)
    assert len([m for m in full.backbone.children() if isinstance(m, block)]) == 12
    with torch.no_grad():
        fmap = model.backbone(torch.randn(1, 4, 256, 256))
    assert fmap.shape == (1, 2048, 8, 8)  # the output stride (32) and width stay Xception's
    assert sum(p.numel() for p in model.parameters()) < 0.4 * sum(p.numel() for p in full.parameters())
    with pytest.raises(ValueError, match="middle_blocks"):
        SPSL(middle_blocks=9)


def test_imagenet_xception_loads_into_the_4_channel_stem():
    torch.manual_seed(0)
    xception = create_backbone("xception").state_dict()  # timm legacy_xception's key layout, random weights
    xception["fc.weight"], xception["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)  # an ImageNet head
    model = build_detector("spsl")
    report = model.load_pretrained_part("backbone.", xception)
    w = model.backbone.conv1.weight
    assert w.shape == (32, 4, 3, 3)
    torch.testing.assert_close(w[:, :3], xception["conv1.weight"], rtol=0, atol=0)  # RGB filters kept
    torch.testing.assert_close(w[:, 3], xception["conv1.weight"].mean(dim=1), rtol=0, atol=0)  # phase: their mean
    for key in ("block12.rep.1.pointwise.weight", "conv4.pointwise.weight", "bn4.running_var", "block3.skip.weight"):
        torch.testing.assert_close(model.backbone.state_dict()[key], xception[key], rtol=0, atol=0)
    assert report["missing"] == []
    assert {k.split(".")[0] for k in report["unexpected"]} == {"fc", *(f"block{i}" for i in range(4, 12))}
    assert model.pretrained_parts() == {"backbone.": ("backbone_pretrained", None)}  # unset: the trainer stops


def test_recipe_asks_for_imagenet_xception_and_the_tiny_one_for_none():
    paper, tiny = load_recipe("spsl"), load_recipe("spsl_tiny")
    assert (
        paper.model.pretrained is None and paper.model.kwargs["backbone_pretrained"] == "timm:legacy_xception.tf_in1k"
    )
    assert (paper.data.size, paper.data.batch_size, paper.optim.lr, paper.optim.weight_decay) == (256, 32, 2e-4, 5e-4)
    assert build_detector(tiny.model.name, **tiny.model.kwargs).pretrained_parts()["backbone."][1] == "none"


def test_training_steps_fit_a_separable_batch():
    torch.manual_seed(0)
    losses = fit_steps(build_detector("spsl_tiny"), patch_batch(-0.8, -0.2, 1.2), steps=12, lr=2e-3)
    assert losses[-1] < 0.5 * losses[0], losses
