"""BiG-Arts forgery face augmentation (Sec. 3.3, Fig. 4-5).

- ``bigarts_rr`` — (Real, Real): source A (the real face given), target B = the real face of another identity
  with the nearest landmarks; mask = convex hull of A's landmarks distorted by a random 2D piecewise-affine
  transform ``T``; image ``M̃ ⊙ A + (1 − M̃) ⊙ B``. ``M_in`` is all black (no intrinsic artifacts: both are
  real), ``M_ex = D(M̃) − E(M̃)``.
- ``bigarts_fr`` — (Fake, Real): source A is a dataset fake with its aligned original (``FaceSample.original``);
  ``M'`` = the difference ``|A − original| > γ`` expanded (dilated); ``M''`` = hull of A's landmarks; the mask
  ``M̃ = M' ⊙ T(M'')``; same blending onto B. ``M_in = M̃``, ``M_ex = D(M̃) − E(M̃)``.
- :func:`bigarts_targets` gives ``M_in``/``M_ex`` of the original images (reals: zeros; fakes:
  ``M_in = Convex(|x' − x| > γ)``, Sec. 3.1).
- The batch composition of Sec. 4.1 (50 % reals, the fakes a third each original / (Real, Real) / (Fake, Real),
  JPEG quality 75-100 as the only augmentation) is data configuration, not code here: the recipes' ``data.mixes``
  (:func:`dflab.train.data.mix_counts`) and their ``ImageCompression`` op.

Deviations: B is moved onto A by the whole-pixel translation of its landmark centroid before blending
(``donor_align="shift"``, :func:`dflab.synthesis.donors.place_donor`; the paper blends the landmark-nearest frame
directly, the shift removes a residual offset without resampling B; ``donor_align="similarity"`` is the earlier
landmark similarity warp, whose interpolation smooths the pasted region); ``T`` is the piecewise-affine warp of a
randomly displaced 4×4 control grid (:func:`dflab.synthesis.masks.deform_mask`); γ = 20 on the 0-255 scale and
the expansion / boundary element sizes (15 px / 9 px at 256 px) are our choices (the paper gives none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params
from dflab.synthesis.donors import donor_align_mode, place_donor

KINDS = ("real", "fake", "rr", "fr")


@dataclass
class BigArtsRRParams(Params):
    """(Real, Real) sample: the target's key and the mask deformation."""

    method: ClassVar[str] = "bigarts_rr"
    donor_key: str = ""
    offsets: list = field(default_factory=list)
    boundary: int = 9
    donor_align: str = "shift"


@dataclass
class BigArtsFRParams(Params):
    """(Fake, Real) sample: the target's key, difference threshold, expansion and mask deformation."""

    method: ClassVar[str] = "bigarts_fr"
    donor_key: str = ""
    gamma: float = 20.0
    expand: int = 15
    offsets: list = field(default_factory=list)
    boundary: int = 9
    donor_align: str = "shift"


def bigarts_targets(
    face: FaceSample, gamma: float = 20.0, boundary: int | None = None, open_size: int = 0, min_frac: float = 0.0
) -> dict[str, np.ndarray]:
    """``M_in``/``M_ex`` of an original dataset image (Sec. 3.1): zeros for a real; for a fake with its aligned
    original, ``M_in = Convex(|x' − x| > γ)`` (plain, as the paper; ``open_size``/``min_frac`` switch on the
    noise clean-up of :func:`dflab.synthesis.masks.bigarts_intrinsic`) and ``M_ex = D(M_in) − E(M_in)``, whose
    element (``boundary`` px; default 9 px at 256 px, scaled with the crop) is the synthesizers' (Sec. 3.3).

    Shape:
        returns {"mask_in": (H, W), "mask_ex": (H, W)} float32.
    """
    h, w = face.image.shape[:2]
    if face.label == 0:
        z = np.zeros((h, w), np.float32)
        return {"mask_in": z, "mask_ex": z.copy()}
    if face.original is None:
        raise ValueError(f"fake face {face.key!r} has no aligned original: M_in cannot be computed")
    m_in = mk.bigarts_intrinsic(face.image, face.original, gamma, open_size, min_frac)
    size = _scaled(9, face) if boundary is None else boundary
    return {"mask_in": m_in, "mask_ex": mk.bigarts_extrinsic(m_in, size)}


def _target(face: FaceSample, key: str, pool: DonorPoolLike | None, align: str) -> np.ndarray:
    if pool is None:
        raise ValueError("BiG-Arts augmentation needs a donor pool of real faces")
    donor = pool.load(key)
    return place_donor(donor.image, donor.landmarks, face.landmarks, face.image.shape[:2], align)


def _scaled(size: int, face: FaceSample) -> int:
    return max(3, round(size * face.image.shape[0] / 256))


class BigArtsRR:
    """(Real, Real) forgery augmentation (registered as ``bigarts_rr``)."""

    name = "bigarts_rr"

    def __init__(self, grid: int = 4, deform: float = 0.04, donor_align: str = "shift") -> None:
        self.grid, self.deform, self.donor_align = grid, deform, donor_align

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> BigArtsRRParams:
        if pool is None:
            raise ValueError("bigarts_rr needs a donor pool of real faces of other identities")
        return BigArtsRRParams(
            donor_key=pool.nearest(face.landmarks, face.identity, k=1)[0],
            offsets=mk.sample_grid_offsets(rng, self.grid, self.deform),
            boundary=_scaled(9, face),
            donor_align=donor_align_mode(kw.get("donor_align", self.donor_align)),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, BigArtsRRParams)
        b = _target(face, p.donor_key, pool, p.donor_align)
        m = mk.harden(mk.deform_mask(mk.hull_mask(face.landmarks, face.image.shape), p.offsets))
        image = mk.blend(face.image, b, m)
        zeros = np.zeros_like(m)
        return SynthResult(
            image=image,
            mask=m,
            label=1,
            params=p,
            masks={"mask_in": zeros, "mask_ex": mk.bigarts_extrinsic(m, p.boundary)},
        )


class BigArtsFR:
    """(Fake, Real) forgery augmentation (registered as ``bigarts_fr``); the face must be a fake with its original."""

    name = "bigarts_fr"

    def __init__(self, grid: int = 4, deform: float = 0.04, gamma: float = 20.0, donor_align: str = "shift") -> None:
        self.grid, self.deform, self.gamma, self.donor_align = grid, deform, gamma, donor_align

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> BigArtsFRParams:
        if pool is None:
            raise ValueError("bigarts_fr needs a donor pool of real faces of other identities")
        if face.original is None:
            raise ValueError("bigarts_fr needs a fake face with its aligned original (FaceSample.original)")
        return BigArtsFRParams(
            donor_key=pool.nearest(face.landmarks, face.identity, k=1)[0],
            gamma=float(kw.get("gamma", self.gamma)),
            expand=_scaled(15, face),
            offsets=mk.sample_grid_offsets(rng, self.grid, self.deform),
            boundary=_scaled(9, face),
            donor_align=donor_align_mode(kw.get("donor_align", self.donor_align)),
        )

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        p = expect_params(params, BigArtsFRParams)
        if face.original is None:
            raise ValueError("bigarts_fr needs a fake face with its aligned original (FaceSample.original)")
        b = _target(face, p.donor_key, pool, p.donor_align)
        m1 = mk.dilate((mk.abs_diff(face.image, face.original) > p.gamma).astype(np.float32), p.expand)  # M'
        m2 = mk.harden(mk.deform_mask(mk.hull_mask(face.landmarks, face.image.shape), p.offsets))  # T(M'')
        m = m1 * m2
        image = mk.blend(face.image, b, m)
        return SynthResult(
            image=image,
            mask=m,
            label=1,
            params=p,
            masks={"mask_in": m, "mask_ex": mk.bigarts_extrinsic(m, p.boundary)},
        )


SYNTHESIZERS.add("bigarts_rr", BigArtsRR())
SYNTHESIZERS.add("bigarts_fr", BigArtsFR())
