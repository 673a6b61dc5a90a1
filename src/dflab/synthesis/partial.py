"""Partial-face manipulation (BiG-Arts Sec. 4.3, Fig. 8, Table 7): paste one facial region of a fake into its real
frame — eyes, nose, mouth, lower, upper, left or right part of the face.

The face must be a dataset fake with its aligned original (``FaceSample.original``, same frame, same crop).
Regions from the fake's landmarks (our choice; the paper shows them only in Fig. 8):
- ``eyes``: hulls of each brow + eye (17-21 + 36-41, 22-26 + 42-47), dilated;
- ``nose``: hull of 27-35, dilated; ``mouth``: hull of 48-67, dilated;
- ``upper`` / ``lower``: the face hull above / below the horizontal line through the nose tip (point 30);
- ``left`` / ``right``: the face hull on the image-left / image-right of the line from the nose bridge (27) to the
  chin (8).
The dilation is 6 % of the face width (odd), the same for every region; the mask is hard unless ``soft_sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params

REGIONS: tuple[str, ...] = ("eyes", "nose", "mouth", "lower", "upper", "left", "right")


@dataclass
class PartialParams(Params):
    """Which region of the fake goes into the real frame, and the mask's softness (px)."""

    method: ClassVar[str] = "partial"
    region: str = "eyes"
    soft_sigma: float = 0.0


def region_mask(landmarks: np.ndarray, shape: tuple[int, ...], region: str) -> np.ndarray:
    """Hard mask of a facial region (see module docstring). Shape: landmarks (68, 2) -> (H, W) float32."""
    lm = np.asarray(landmarks, np.float32)
    h, w = shape[:2]
    grow = max(3, int(0.06 * float(np.ptp(lm[:, 0]))) | 1)
    if region == "eyes":
        m = np.maximum(
            mk.hull_mask(lm, shape, tuple(range(17, 22)) + mk.LEFT_EYE),
            mk.hull_mask(lm, shape, tuple(range(22, 27)) + mk.RIGHT_EYE),
        )
        return mk.dilate(m, grow)
    if region == "nose":
        return mk.dilate(mk.hull_mask(lm, shape, mk.NOSE), grow)
    if region == "mouth":
        return mk.dilate(mk.hull_mask(lm, shape, mk.MOUTH), grow)
    face = mk.hull_mask(lm, shape)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if region in ("upper", "lower"):
        above = ys < lm[30, 1]
        return face * (above if region == "upper" else ~above)
    if region in ("left", "right"):
        (ax, ay), (bx, by) = lm[27], lm[8]
        # sign of the cross product: which side of the bridge→chin line a pixel lies on
        side = (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)
        left = side > 0  # image-left when the line points downwards
        return face * (left if region == "left" else ~left)
    raise KeyError(f"unknown partial region {region!r}; known: {', '.join(REGIONS)}")


class Partial:
    """Partial-face manipulation (registered as ``partial``)."""

    name = "partial"
    categories = REGIONS

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> PartialParams:
        region = kw.get("category") or kw.get("region") or REGIONS[int(rng.integers(len(REGIONS)))]
        if region not in REGIONS:
            raise KeyError(f"unknown partial region {region!r}; known: {', '.join(REGIONS)}")
        return PartialParams(region=region, soft_sigma=float(kw.get("soft_sigma", 0.0)))

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, PartialParams)
        if face.original is None or face.label != 1:
            raise ValueError("partial needs a fake face with its aligned original (FaceSample.original)")
        m = mk.soften(region_mask(face.landmarks, face.image.shape, p.region), p.soft_sigma)
        return SynthResult(image=mk.blend(face.image, face.original, m), mask=m, label=1, params=p)


SYNTHESIZERS.add("partial", Partial())
