"""LiSiam image-quality degradation (IQD), Sec. IV-A.3: JPEG compression, resizing and Gaussian blur, "performed
with a probability of 50% in random order", giving the quality-degraded view of the Siamese pair.

Ranges follow the official code (the paper gives none): JPEG quality 10-100, blur σ 0.1-1.0, resize the longer
side to 100-200 px and back. Blur kernel: OpenCV's size for σ (``6σ+1`` rounded to odd, at least 3).

The result keeps the face's label; its ``mask`` is the all-zero "nothing synthesised" mask (IQD is a view, not a
fake); the detector's segmentation target comes from the face (SSIM mask), which IQD does not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dflab.synthesis import degrade
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params

OPS = ("jpeg", "resize", "blur")


@dataclass
class IQDParams(Params):
    """Which degradations run, in which order, at which levels (levels of ops not in ``order`` are unused)."""

    method: ClassVar[str] = "iqd"
    order: list[str] = field(default_factory=list)
    quality: int = 100
    sigma: float = 0.0
    side: int = 0


def iqd_apply(image: np.ndarray, p: IQDParams) -> np.ndarray:
    """Apply the degradations of ``p`` in order. Shape: (H, W, 3) uint8 -> same."""
    out = image
    for op in p.order:
        if op == "jpeg":
            out = degrade.jpeg(out, p.quality)
        elif op == "resize":
            out = degrade.resize_to_side(out, p.side)
        elif op == "blur":
            k = max(3, round(6 * p.sigma + 1) | 1)
            out = degrade.gaussian_blur(out, p.sigma, ksize=k)
        else:
            raise ValueError(f"unknown IQD op {op!r}; known: {OPS}")
    return out if out is not image else image.copy()


class IQD:
    """LiSiam IQD as a synthesizer-like sample/apply pair (registered as ``iqd``)."""

    name = "iqd"

    def __init__(
        self,
        p: float = 0.5,
        quality: tuple[int, int] = (10, 100),
        sigma: tuple[float, float] = (0.1, 1.0),
        side: tuple[int, int] = (100, 200),
    ) -> None:
        self.p, self.quality, self.sigma, self.side = p, quality, sigma, side

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> IQDParams:
        order = [OPS[i] for i in rng.permutation(len(OPS))]
        keep = rng.random(len(OPS)) < kw.get("p", self.p)
        return IQDParams(
            order=[op for op, k in zip(order, keep, strict=True) if k],
            quality=int(rng.integers(self.quality[0], self.quality[1] + 1)),
            sigma=round(float(rng.uniform(*self.sigma)), 4),
            side=int(rng.integers(self.side[0], self.side[1] + 1)),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        params = expect_params(params, IQDParams)
        image = iqd_apply(face.image, params)
        h, w = image.shape[:2]
        return SynthResult(image=image, mask=np.zeros((h, w), np.float32), label=int(face.label), params=params)


SYNTHESIZERS.add("iqd", IQD())
