"""BI baseline — Face X-ray blended images (Li et al., CVPR 2020, Sec. 3.2-3.3, Eq. 1-2), the seeds' comparison.

Given a real face (the background ``B``), pick a donor of another identity among the ``k`` nearest by landmarks
(Face X-ray: a random one of the 100 nearest), move it onto the face by a whole-pixel translation (``donor_align``,
:func:`dflab.synthesis.donors.place_donor`: no resampling, as Face X-ray pastes the nearest face), build the
mask from the face's landmark hull, deform it and blur it with a random Gaussian (soft mask ``M``), colour-correct
the donor to the target inside the mask (per-channel mean/std transfer, as Face X-ray's colour correction), and
blend ``I_B = M ⊙ F + (1 − M) ⊙ B``. The face X-ray target is ``4 · M · (1 − M)`` (``masks["boundary"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params
from dflab.synthesis.donors import donor_align_mode, place_donor


@dataclass
class BIParams(Params):
    """Donor key, mask deformation, mask blur σ (px) and whether to colour-correct."""

    method: ClassVar[str] = "bi"
    donor_key: str = ""
    offsets: list = field(default_factory=list)
    blur_sigma: float = 4.0
    color_correct: bool = True
    donor_align: str = "shift"


def color_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match ``source``'s per-channel mean and std to ``target``'s over the region ``mask > 0.5``.

    Shape:
        source, target (H, W, 3) uint8; mask (H, W); returns (H, W, 3) uint8.
    """
    region = mask > 0.5
    if region.sum() < 2:
        return source.copy()
    s = source.astype(np.float32)
    t = target.astype(np.float32)
    mu_s, sd_s = s[region].mean(0), s[region].std(0) + 1e-6
    mu_t, sd_t = t[region].mean(0), t[region].std(0)
    return np.clip(np.rint((s - mu_s) / sd_s * sd_t + mu_t), 0, 255).astype(np.uint8)


class BI:
    """Face X-ray blended images (registered as ``bi``)."""

    name = "bi"

    def __init__(self, k: int = 100, grid: int = 4, deform: float = 0.03, donor_align: str = "shift") -> None:
        self.k, self.grid, self.deform, self.donor_align = k, grid, deform, donor_align

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> BIParams:
        if pool is None:
            raise ValueError("bi needs a donor pool of real faces of other identities")
        near = pool.nearest(face.landmarks, face.identity, k=int(kw.get("k", self.k)))
        side = face.image.shape[0] / 256.0
        return BIParams(
            donor_key=near[int(rng.integers(len(near)))],
            offsets=mk.sample_grid_offsets(rng, self.grid, self.deform),
            blur_sigma=round(float(rng.uniform(2.0, 8.0)) * side, 3),
            color_correct=True,
            donor_align=donor_align_mode(kw.get("donor_align", self.donor_align)),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, BIParams)
        if pool is None:
            raise ValueError("bi needs the donor pool its params were sampled from")
        donor = pool.load(p.donor_key)
        fg = place_donor(donor.image, donor.landmarks, face.landmarks, face.image.shape[:2], p.donor_align)
        hard = mk.harden(mk.deform_mask(mk.hull_mask(face.landmarks, face.image.shape), p.offsets))
        m = mk.soften(hard, p.blur_sigma)
        if p.color_correct:
            fg = color_transfer(fg, face.image, hard)
        image = mk.blend(fg, face.image, m)  # Eq. 1: I_B = M ⊙ I_F + (1 − M) ⊙ I_B
        return SynthResult(image=image, mask=m, label=1, params=p, masks={"boundary": mk.xray_boundary(m)})


SYNTHESIZERS.add("bi", BI())
