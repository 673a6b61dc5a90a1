"""ADDG — Artifact-Discrepant Data Generator (DADD paper, Sec. 3.1, Eq. 1, Fig. 1-2).

Three modules: frame perturbation (the whole frame, still "pristine": ``X_P``), mask generation (one of five
landmark masks or its reverse, slightly deformed, hard or soft), and synthesis ``X_N = X_P ⊙ M + X ⊙ (1 − M)``.

Registered once as ``addg``; the category is a keyword (``sample_params(rng, face, pool, category="SB-Sim")``,
``dflab synth --method addg --category SB-Sim``); without it a category is drawn uniformly from the nine:
Inner/Outer-GaussBlur, Inner/Outer-Scaling, Inner/Outer-ISONoise, Rotation, SB-Rand, SB-Sim. ``Inner-`` blends with
the mask, ``Outer-`` with its reverse; the others with the mask (Sec. 3.1). :data:`CATEGORIES` keeps the paper's
order, which is also its sub-task order: Sec. 4.5 names ST_3, ST_7 and ST_9 of Fig. 4 Inner-Scaling, Rotation and
Sim-Swap (SB-Sim).

Choices the paper leaves open (documented deviations), with the reason:
- the five masks: :data:`dflab.synthesis.masks.ADDG_MASKS` (face, inner, lower, mouth, eyes_nose), drawn uniformly;
  the paper shows them only in Fig. 1 ("the face or the mouth").
- perturbation strengths. The paper gives none and says the perturbations leave the frame "pristine" and that some
  samples show no visible difference "due to the small degree of modification" (Sec. 3.1, Fig. 2), so all are mild.
  They are in pixels of the crop the synthesizer sees, like the library operations the paper uses (a texture's
  fingerprint lives at the pixel scale); only the soft-mask width, a geometric quantity, scales with the crop.
  - GaussBlur σ 0.5-2.5 px (kernel 6σ+1): contains the σ 0.8-1.4 of albumentations' GaussianBlur defaults of the
    time (kernel 3-7) and reaches a little further either side.
  - Scaling factor 0.25-0.75, area down, cubic up ("zooming out and then zooming in", Sec. 3.1): 0.25 is
    albumentations' Downscale default; a range instead of one value, and area/cubic instead of its nearest/nearest,
    so the category is a loss of resolution, not a blocky mosaic that would be an easier, different cue.
  - ISONoise: the paper takes it from albumentations, so albumentations' ISONoise default ranges (colour shift
    0.01-0.05, intensity 0.1-0.5) with the library's definition of the time (:func:`iso_noise`: albumentations 2.x
    changed its units) and a stored seed.
  - Rotation ±2-8° about the landmark centroid: "slightly adjust the face to produce artifacts in the form of a
    boundary" (Sec. 3.1); on the 256 px astronaut crop 2° moves the jaw line by ~3.5 px, 8° by ~14 px.
- SB-Sim: the landmark-nearest face of another identity (k = 1; "the landmarks of the faces in these two frames are
  close", Sec. 3.1); SB-Rand: a uniformly random face of another identity. Diversity of SB-Sim samples of one face
  comes from the mask, its deformation and softness.
- SB-Rand / SB-Sim: the donor frame is moved onto the face by the whole-pixel translation of its landmark centroid
  (``donor_align="shift"``, :func:`dflab.synthesis.donors.place_donor`): the paper blends "the frames of somebody
  else's" as they are; the shift only removes a residual offset between crops and, unlike a similarity warp
  (``donor_align="similarity"``, the earlier default), resamples nothing, so the pasted region carries no
  interpolation blur the paper's samples do not have;
- deformation ("a slight random deformation of the mask"): a piecewise-affine warp of a 4×4 control grid whose nodes
  move by up to 3 % of the side (~8 px at 256 px, the order of a landmark detector's error, which the paper gives as
  the reason); soft masks (the paper's "hard samples") with p = 0.5, a Gaussian of σ 2-6 px at 256 px (scaled with
  the crop) on the deformed 0-1 mask, after the reversal of ``Outer-``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult, expect_params
from dflab.synthesis.donors import donor_align_mode, place_donor

CATEGORIES: tuple[str, ...] = (
    "Inner-GaussBlur",
    "Outer-GaussBlur",
    "Inner-Scaling",
    "Outer-Scaling",
    "Inner-ISONoise",
    "Outer-ISONoise",
    "Rotation",
    "SB-Rand",
    "SB-Sim",
)


@dataclass
class ADDGParams(Params):
    """One ADDG sample. Fields of perturbations other than the category's are left at their defaults."""

    method: ClassVar[str] = "addg"
    category: str = "Inner-GaussBlur"
    mask_name: str = "face"
    offsets: list = field(default_factory=list)
    soft_sigma: float = 0.0
    blur_sigma: float = 0.0
    scale: float = 1.0
    color_shift: float = 0.0
    intensity: float = 0.0
    noise_seed: int = 0
    angle: float = 0.0
    donor_key: str = ""
    donor_align: str = "shift"

    @property
    def reverse(self) -> bool:
        return self.category.startswith("Outer-")


def iso_noise(image: np.ndarray, color_shift: float, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Camera-sensor noise, albumentations' ``ISONoise`` as the library defined it when the paper used it (Sec. 3.1:
    "we can obtain it by accessing the Albumentations library"; albumentations 0.4-1.4, 2019-2024).

    In HLS of the image scaled to [0, 1] (hue in degrees): hue += N(0, σ_h) with σ_h = ``color_shift`` · 360 ·
    ``intensity`` degrees, wrapped to [0, 360); lightness L += k / 255 · (1 − L) per pixel with k ~ Poisson(s_L ·
    ``intensity`` · 255), s_L the image's lightness standard deviation. ``color_shift`` is thus a fraction of the
    hue circle (the library's own doc). albumentations 2.x dropped the ·360 and ·255 (and multiplies the luminance
    term by ``intensity`` again), which shrinks the hue noise 360-fold and turns the dense luminance noise into a
    few sparse specks: on the 256 px astronaut face at (0.01, 0.1) it touches 2.5 % of the pixels (mean absolute
    change 0.3 levels), this definition 99 % (3.0 levels); at (0.05, 0.5) 12 % (7.3) against 100 % (15.1). We keep
    the paper-era definition and round to uint8 (the library truncated, which also darkens every pixel by half a
    level on average: a cue that is not sensor noise).

    Shape:
        image (H, W, 3) uint8 RGB -> (H, W, 3) uint8.
    """
    hls = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HLS)
    lightness_std = float(cv2.meanStdDev(hls)[1][1, 0])
    luminance = rng.poisson(lightness_std * intensity * 255.0, size=hls.shape[:2])
    hue_noise = rng.normal(0.0, color_shift * 360.0 * intensity, size=hls.shape[:2])
    hls[..., 0] = np.mod(hls[..., 0] + hue_noise, 360.0)
    hls[..., 1] += (luminance / 255.0) * (1.0 - hls[..., 1])
    rgb = cv2.cvtColor(hls, cv2.COLOR_HLS2RGB) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def perturb(face: FaceSample, p: ADDGParams, pool: DonorPoolLike | None = None) -> np.ndarray:
    """Frame perturbation: the whole frame ``X_P`` (Sec. 3.1). Shape: (H, W, 3) uint8 -> same."""
    x = face.image
    h, w = x.shape[:2]
    kind = p.category.split("-", 1)[-1] if p.category.startswith(("Inner-", "Outer-")) else p.category
    if kind == "GaussBlur":
        k = max(3, round(6 * p.blur_sigma + 1) | 1)
        return cv2.GaussianBlur(x, (k, k), sigmaX=p.blur_sigma, sigmaY=p.blur_sigma)
    if kind == "Scaling":
        small = cv2.resize(x, (max(1, round(w * p.scale)), max(1, round(h * p.scale))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if kind == "ISONoise":
        return iso_noise(x, p.color_shift, p.intensity, np.random.default_rng(p.noise_seed))
    if kind == "Rotation":
        cx, cy = np.asarray(face.landmarks, np.float32).mean(0)
        rot = cv2.getRotationMatrix2D((float(cx), float(cy)), p.angle, 1.0)
        return cv2.warpAffine(x, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if kind in ("SB-Rand", "SB-Sim"):
        if pool is None:
            raise ValueError(f"ADDG {p.category} needs a donor pool")
        donor = pool.load(p.donor_key)
        return place_donor(donor.image, donor.landmarks, face.landmarks, (h, w), p.donor_align)
    raise KeyError(f"unknown ADDG category {p.category!r}; known: {', '.join(CATEGORIES)}")


def addg_mask(face: FaceSample, p: ADDGParams) -> np.ndarray:
    """Mask generation (Sec. 3.1): candidate mask, deformed, reversed for ``Outer-``, hard or soft. Shape: (H, W)."""
    m = mk.deform_mask(mk.addg_mask(face.landmarks, face.image.shape, p.mask_name), p.offsets)
    m = mk.harden(m)
    if p.reverse:
        m = 1.0 - m
    return mk.soften(m, p.soft_sigma)


class ADDG:
    """ADDG's nine categories (see module docstring)."""

    name = "addg"
    categories = CATEGORIES

    def __init__(self, p_soft: float = 0.5, grid: int = 4, deform: float = 0.03, donor_align: str = "shift") -> None:
        self.p_soft, self.grid, self.deform, self.donor_align = p_soft, grid, deform, donor_align

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> ADDGParams:
        category = kw.get("category") or CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        if category not in CATEGORIES:
            raise KeyError(f"unknown ADDG category {category!r}; known: {', '.join(CATEGORIES)}")
        side = face.image.shape[0] / 256.0
        p = ADDGParams(
            category=category,
            mask_name=mk.ADDG_MASK_NAMES[int(rng.integers(len(mk.ADDG_MASK_NAMES)))],
            offsets=mk.sample_grid_offsets(rng, self.grid, self.deform),
            soft_sigma=round(float(rng.uniform(2.0, 6.0)) * side, 3) if rng.random() < self.p_soft else 0.0,
        )
        if "GaussBlur" in category:
            p.blur_sigma = round(float(rng.uniform(0.5, 2.5)), 4)
        elif "Scaling" in category:
            p.scale = round(float(rng.uniform(0.25, 0.75)), 4)
        elif "ISONoise" in category:
            p.color_shift = round(float(rng.uniform(0.01, 0.05)), 5)
            p.intensity = round(float(rng.uniform(0.1, 0.5)), 5)
            p.noise_seed = int(rng.integers(2**31 - 1))
        elif category == "Rotation":
            p.angle = round(float(rng.uniform(2.0, 8.0) * rng.choice([-1.0, 1.0])), 4)
        else:
            if pool is None:
                raise ValueError(f"ADDG {category} needs a donor pool of other identities")
            p.donor_align = donor_align_mode(kw.get("donor_align", self.donor_align))
            if category == "SB-Sim":
                p.donor_key = pool.nearest(face.landmarks, face.identity, k=1)[0]
            else:
                p.donor_key = pool.random_key(rng, face.identity)
        return p

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult:
        params = expect_params(params, ADDGParams)
        x_p = perturb(face, params, pool)
        m = addg_mask(face, params)
        # Eq. 1: X_N = X_P ⊙ M + X ⊙ (1 − M)
        x_n = mk.blend(x_p, face.image, m)
        return SynthResult(image=x_n, mask=m, label=1, params=params, masks={"support": mk.harden(m, 0.0)})


SYNTHESIZERS.add("addg", ADDG())
