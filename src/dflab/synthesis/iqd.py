"""LiSiam image-quality degradation (IQD), Sec. IV-A.3: JPEG compression, resizing and Gaussian blur, "performed
with a probability of 50% in random order", giving the quality-degraded view of the Siamese pair.

The paper gives no levels; these follow the authors' code (h10666/LiSiam @ 1d628b6, checked line by line:
``train`` script ``aug_opts_2`` and ``seg/modules/datasets/transforms.py``):

* JPEG (``jpegC``): quality ``randint(10, 100)`` → 10-99, OpenCV encoder;
* Gaussian blur (``GBlur``): σ uniform in [0.1, 1.0) (scipy ``gaussian_filter``; we use OpenCV with a ``6σ+1``
  kernel, the same filter up to the kernel's truncation);
* resizing (``jpegD``): to a *square* of side ``randint(100, 200)`` → 100-199 px with nearest-neighbour sampling
  (its ``randint(0, 1)`` is always 0, so the bilinear branch never runs), then back with bilinear interpolation;
* each with p = 0.5, the list shuffled per sample.

The official list also holds Gaussian noise (p = 0.1) and a colour jitter (p = 0.5) that the paper does not name;
they are left out (the paper's three operations only).

The result keeps the face's label; its ``mask`` is the all-zero "nothing synthesised" mask (IQD is a view, not a
fake); the detector's segmentation target comes from the face (SSIM mask), which IQD does not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
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
            h, w = out.shape[:2]
            small = cv2.resize(out, (p.side, p.side), interpolation=cv2.INTER_NEAREST)  # official ``jpegD``
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
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
        quality: tuple[int, int] = (10, 99),
        sigma: tuple[float, float] = (0.1, 1.0),
        side: tuple[int, int] = (100, 199),
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
