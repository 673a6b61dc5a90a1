"""FWA baseline — Face Warping Artifacts (Li & Lyu, CVPRW 2019, Sec. 3), used by the DADD paper (Sec. 4.2) as a
self-supervised comparison.

The paper simulates the resolution mismatch of face swapping on real faces only: the face region is scaled to a
random lower resolution, Gaussian-blurred, warped back to the original size and pasted into the frame through a
face mask whose shape is varied. Our steps: the landmark bounding box (plus a margin) is shrunk by ``shrink``,
blurred with a ``ksize`` kernel (the paper's {1, 3, 5, 7, 9} without 1), resized back (bicubic); the mask is the
landmark hull grown or shrunk by ``grow`` px (the "ROI variation") and softened by ``soft_sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params


@dataclass
class FWAParams(Params):
    """Shrink factor of the face region, blur kernel, mask growth (px, negative = erode) and softness."""

    method: ClassVar[str] = "fwa"
    shrink: float = 0.5
    ksize: int = 5
    grow: int = 0
    soft_sigma: float = 0.0


def _box(landmarks: np.ndarray, shape: tuple[int, ...], margin: float = 0.15) -> tuple[int, int, int, int]:
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape[:2]
    return (
        int(max(0, np.floor(x0 - mx))),
        int(max(0, np.floor(y0 - my))),
        int(min(w, np.ceil(x1 + mx))),
        int(min(h, np.ceil(y1 + my))),
    )


class FWA:
    """Face warping artifacts (registered as ``fwa``)."""

    name = "fwa"

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> FWAParams:
        side = face.image.shape[0] / 256.0
        return FWAParams(
            shrink=round(float(rng.uniform(0.2, 0.6)), 4),
            ksize=int(rng.choice([3, 5, 7, 9])),
            grow=int(rng.integers(-8, 9) * side),
            soft_sigma=round(float(rng.uniform(0.0, 4.0)) * side, 3),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, FWAParams)
        x = face.image
        lm = np.asarray(face.landmarks, np.float32)
        x0, y0, x1, y1 = _box(lm, x.shape)
        region = x[y0:y1, x0:x1]
        rh, rw = region.shape[:2]
        small = cv2.resize(
            region, (max(1, round(rw * p.shrink)), max(1, round(rh * p.shrink))), interpolation=cv2.INTER_AREA
        )
        small = cv2.GaussianBlur(small, (p.ksize | 1, p.ksize | 1), 0)
        warped = x.copy()
        warped[y0:y1, x0:x1] = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_CUBIC)
        m = mk.hull_mask(lm, x.shape)
        if p.grow > 0:
            m = mk.dilate(m, 2 * p.grow + 1)
        elif p.grow < 0:
            m = mk.erode(m, -2 * p.grow + 1)
        m = mk.soften(m, p.soft_sigma)
        # the warped content exists only inside the box: keep the mask there
        box = np.zeros_like(m)
        box[y0:y1, x0:x1] = 1.0
        m = m * box
        return SynthResult(image=mk.blend(warped, x, m), mask=m, label=1, params=p)


SYNTHESIZERS.add("fwa", FWA())
