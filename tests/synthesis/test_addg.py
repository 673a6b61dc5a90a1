"""ADDG specifics against the paper (DADD Sec. 3.1): the ISONoise perturbation's units."""

from __future__ import annotations

import cv2
import numpy as np

from dflab.synthesis.addg import ADDGParams, perturb
from dflab.synthesis.base import FaceSample


def _isonoise(image: np.ndarray, color_shift: float, intensity: float) -> np.ndarray:
    face = FaceSample(image=image, landmarks=np.zeros((68, 2), np.float32))
    p = ADDGParams(category="Inner-ISONoise", color_shift=color_shift, intensity=intensity, noise_seed=11)
    return perturb(face, p)


def test_isonoise_hue_noise_is_a_fraction_of_the_hue_circle():
    """Albumentations' ISONoise (the library the paper names): hue std = color_shift · 360 · intensity degrees.

    A flat colour has no lightness spread, so only the hue moves. albumentations 2.x drops the ·360: its 0.025°
    leaves every uint8 pixel as it was.
    """
    flat = np.full((64, 64, 3), (200, 60, 60), np.uint8)
    out = _isonoise(flat, color_shift=0.05, intensity=0.5)  # σ_h = 9°
    hue = cv2.cvtColor(out.astype(np.float32) / 255.0, cv2.COLOR_RGB2HLS)[..., 0]
    base = cv2.cvtColor(flat[:1, :1].astype(np.float32) / 255.0, cv2.COLOR_RGB2HLS)[0, 0, 0]
    delta = (hue - base + 180.0) % 360.0 - 180.0
    assert 7.5 < float(delta.std()) < 10.5
    assert abs(float(delta.mean())) < 1.0


def test_isonoise_luminance_noise_is_poisson_in_levels():
    """Lightness gains k/255 · (1 − L), k ~ Poisson(s_L · intensity · 255): black pixels of a half-black half-white
    image (s_L = 0.5) become grey of mean 0.5 · 0.5 · 255 ≈ 64 levels and std √64 = 8; white ones stay white."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    out = _isonoise(img, color_shift=0.0, intensity=0.5).astype(np.float64)
    black = out[:, :32]
    assert 60.0 < black.mean() < 68.0
    assert 6.0 < black[..., 0].std() < 10.0
    np.testing.assert_array_equal(out[:, 32:], 255.0)
