"""SBI — Self-Blended Images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

A fake is made from ONE real face: two copies of it, source ``I_s`` and target ``I_t``, are made to differ
(Sec. 3.2, "source-target generator"), and the source is blended back into the target inside a deformed landmark
hull (Sec. 3.3, "mask generator"): ``I_SB = I_s ⊙ M + I_t ⊙ (1 − M)`` (Eq. 1). Every fake has its real twin, and
the artifacts are the generic ones of face forgery — a blending boundary, a colour/frequency mismatch, a slight
misalignment of landmarks — with no generator's fingerprint to overfit (Sec. 3.1).

Source-target generator (Sec. 3.2): one of the two copies, chosen at random, gets
  * colour transforms: an RGB shift (with probability 0.3), a hue/saturation/value shift, a brightness/contrast
    change;
  * a frequency transform: downsample-upsample or sharpening;
and the source is then resized and translated slightly (the "landmark mismatch" of the paper).

Mask generator (Sec. 3.3): the convex hull of the landmarks (here one of :data:`HULLS`, from the whole face to the
inner components, as the official code's ``dfl_full``/``extended``/``components``/``facehull`` choices), deformed
by a random piecewise-affine grid (the paper's elastic deformation), blurred twice with random Gaussian kernels,
then multiplied by a blending ratio ``r`` drawn from {0.25, 0.5, 0.75, 1, 1, 1} (Sec. 3.3).

Ranges: the paper names the transforms, the official code (``get_source_transforms``, ``randaffine``) fixes them,
and we follow it: RGB shift ±20 with p = 0.3; hue/saturation/value shifts of ±0.3 *in the uint8 HSV units the
official albumentations call works in* (OpenCV hue 0-180, saturation and value 0-255 — so they are below one
quantisation step and change almost nothing; an earlier version of ours read them as ±0.3 of the full range, which
turned faces green or purple and taught a detector colour, not blending); brightness/contrast ±0.1 (contrast scales
about 0, as albumentations does for uint8); one of a downscale by 2 or 4 (nearest down, linear up) or a sharpening
(albumentations ``Sharpen``, α 0.2-0.5, lightness 0.5-1.0); source scale 0.95-1/0.95 and translation ±3 % of the
width, ±1.5 % of the height. Choices of ours: mask deformation grid 4×4 with displacements up to 3 % (for the
official elastic transform); hull blurs σ 2-8 px at 256 px (for its random kernel sizes).
All randomness is in :class:`SBIParams`, so a sample replays exactly (:func:`dflab.synthesis.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params

#: hull choices (landmark index sets in :data:`dflab.synthesis.masks.ADDG_MASKS`)
HULLS: tuple[str, ...] = ("face", "face", "inner", "lower", "eyes_nose")
BLEND_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
FREQ_KINDS: tuple[str, ...] = ("downscale", "sharpen")
RGB_SHIFT_P = 0.3  # official code: RGBShift(p=0.3)


@dataclass
class SBIParams(Params):
    """One self-blended sample (all of Sec. 3.2-3.3's random choices)."""

    method: ClassVar[str] = "sbi"
    transform_source: bool = True  # which copy gets the colour/frequency transforms (source or target)
    rgb_shift: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    hsv_shift: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    brightness: float = 0.0
    contrast: float = 0.0
    freq: str = "downscale"
    freq_amount: float = 2.0
    lightness: float = 1.0
    scale: float = 1.0
    shift: list = field(default_factory=lambda: [0.0, 0.0])
    hull: str = "face"
    offsets: list = field(default_factory=list)
    blur_sigmas: list = field(default_factory=lambda: [4.0, 4.0])
    ratio: float = 1.0


def colour_frequency(x: np.ndarray, p: SBIParams) -> np.ndarray:
    """Sec. 3.2's colour and frequency transforms of one copy, in the official code's units (module docstring).

    Shape: (H, W, 3) uint8 -> same.
    """
    h, w = x.shape[:2]
    y = np.clip(x.astype(np.float32) + np.asarray(p.rgb_shift, np.float32), 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(y, cv2.COLOR_RGB2HSV).astype(np.float32)
    dh, ds, dv = p.hsv_shift
    hsv[..., 0] = np.mod(hsv[..., 0] + dh, 180.0)
    hsv[..., 1] = np.clip(hsv[..., 1] + ds, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + dv, 0, 255)
    y = cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    y = np.clip(y * (1.0 + p.contrast) + 255.0 * p.brightness, 0, 255).astype(np.uint8)
    if p.freq == "downscale":
        r = p.freq_amount
        small = cv2.resize(y, (max(1, int(w / r)), max(1, int(h / r))), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if p.freq == "sharpen":
        identity = np.zeros((3, 3), np.float32)
        identity[1, 1] = 1.0
        effect = -np.ones((3, 3), np.float32)
        effect[1, 1] = 8.0 + p.lightness
        kernel = (1.0 - p.freq_amount) * identity + p.freq_amount * effect
        return np.clip(cv2.filter2D(y.astype(np.float32), -1, kernel), 0, 255).astype(np.uint8)
    raise KeyError(f"unknown SBI frequency transform {p.freq!r}; known: {', '.join(FREQ_KINDS)}")


def sbi_mask(face: FaceSample, p: SBIParams) -> np.ndarray:
    """Sec. 3.3: deformed hull, blurred twice, times the blending ratio. Shape: -> (H, W) float32 in [0, r]."""
    m = mk.deform_mask(mk.addg_mask(face.landmarks, face.image.shape, p.hull), p.offsets)
    m = mk.harden(m)
    side = face.image.shape[0] / 256.0
    for s in p.blur_sigmas:
        m = mk.soften(m, s * side)
        m = np.where(m < 1.0, m, 1.0)  # the official code re-saturates the interior between the two blurs
    return (m * p.ratio).astype(np.float32)


class SBI:
    """Self-blended images (see module docstring)."""

    name = "sbi"

    def __init__(self, grid: int = 4, deform: float = 0.03) -> None:
        self.grid, self.deform = grid, deform

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> SBIParams:
        freq = FREQ_KINDS[int(rng.integers(len(FREQ_KINDS)))]
        r3 = lambda lo, hi, n: [round(float(v), 4) for v in rng.uniform(lo, hi, n)]  # noqa: E731
        rgb = r3(-20, 20, 3)
        return SBIParams(
            transform_source=bool(rng.random() < 0.5),
            rgb_shift=rgb if rng.random() < RGB_SHIFT_P else [0.0, 0.0, 0.0],
            hsv_shift=r3(-0.3, 0.3, 3),
            brightness=round(float(rng.uniform(-0.1, 0.1)), 4),
            contrast=round(float(rng.uniform(-0.1, 0.1)), 4),
            freq=freq,
            freq_amount=float(rng.choice([2, 4])) if freq == "downscale" else round(float(rng.uniform(0.2, 0.5)), 4),
            lightness=round(float(rng.uniform(0.5, 1.0)), 4),
            scale=round(float(rng.uniform(0.95, 1 / 0.95)), 4),
            shift=r3(-0.03, 0.03, 1) + r3(-0.015, 0.015, 1),
            hull=HULLS[int(rng.integers(len(HULLS)))],
            offsets=mk.sample_grid_offsets(rng, self.grid, self.deform),
            blur_sigmas=r3(2.0, 8.0, 2),
            ratio=float(BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))]),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, SBIParams)
        x = face.image
        h, w = x.shape[:2]
        source, target = (colour_frequency(x, p), x) if p.transform_source else (x, colour_frequency(x, p))
        # landmark mismatch: scale about the centre and translate the source (Sec. 3.2)
        m_aff = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), 0.0, p.scale)
        m_aff[:, 2] += (p.shift[0] * w, p.shift[1] * h)
        source = cv2.warpAffine(source, m_aff, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        m = sbi_mask(face, p)
        # Eq. 1: I_SB = I_s ⊙ M + I_t ⊙ (1 − M)
        fake = mk.blend(source, target, m)
        return SynthResult(image=fake, mask=m, label=1, params=p, masks={"boundary": mk.xray_boundary(m)})


SYNTHESIZERS.add("sbi", SBI())
