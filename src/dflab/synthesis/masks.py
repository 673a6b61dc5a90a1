"""Mask makers of the five papers, all pure functions of their inputs (random parts come in as arrays/params).

- Landmark convex hulls and region hulls (iBUG-68 index sets).
- Random deformation of a mask: a regular control grid whose nodes are displaced at random (sampled by the caller)
  defines a 2D piecewise-affine transform (affine on each grid triangle), applied with ``cv2.remap`` — the "slight
  random deformation" of ADDG Sec. 3.1 and the "2D piece-wise affine transform" of BiG-Arts Sec. 3.3. The dense
  field is a cached sparse matrix of barycentric weights times the node displacements (~1 ms at 256 px).
- Hard 0-1 masks and soft-boundary masks (ADDG "hard samples", Sec. 3.1).
- ADDG's five candidate masks and their reverses (the paper shows them only in Fig. 1; see :data:`ADDG_MASKS`).
- BiG-Arts ``M_in = Convex(|x' - x| > γ)`` and ``M_ex = D(M_in) - E(M_in)`` (Sec. 3.1).
- LiSiam SSIM mask (Sec. III-E) and the DIFF mask of Dang et al. it is compared with (Table VII).
- Face X-ray boundary ``B = 4·M·(1 − M)`` (Li et al. 2020, Eq. 2) for the BI baseline.

All masks are (H, W) float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

# iBUG-68 index groups
JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
LEFT_EYE = tuple(range(36, 42))  # image-left eye (subject's right)
RIGHT_EYE = tuple(range(42, 48))
EYES = LEFT_EYE + RIGHT_EYE
MOUTH = tuple(range(48, 68))
ALL68 = tuple(range(68))

#: ADDG's five candidate masks (Sec. 3.1: "the modified area in the deepfake usually occurs on the face or the
#: mouth, we empirically select some key points and preset five candidate masks"). The paper shows them only in
#: Fig. 1; our choice, from the largest to the smallest region, each a convex hull of these landmarks:
#: 0 ``face``: all 68 points (jaw + brows) — the whole face, as a face swap replaces it;
#: 1 ``inner``: brows, eyes, nose, mouth (17-67) — the inner face without the jaw line;
#: 2 ``lower``: jaw points 2-14 and the nose (27-35) — nose to chin, where expression reenactment acts;
#: 3 ``mouth``: mouth points 48-67 and the lower nose (31-35) — the mouth region (reenactment / lip sync);
#: 4 ``eyes_nose``: brows, eyes, nose (17-47) — the upper-central face.
#: Their reverses (``1 - M``) are the ``Outer-`` categories' masks.
ADDG_MASKS: dict[str, tuple[int, ...]] = {
    "face": ALL68,
    "inner": tuple(range(17, 68)),
    "lower": tuple(range(2, 15)) + NOSE,
    "mouth": MOUTH + tuple(range(31, 36)),
    "eyes_nose": tuple(range(17, 48)),
}
ADDG_MASK_NAMES: tuple[str, ...] = tuple(ADDG_MASKS)


def hull_mask(landmarks: np.ndarray, shape: Sequence[int], indices: Sequence[int] | None = None) -> np.ndarray:
    """Filled convex hull of (a subset of) the landmarks.

    Shape:
        landmarks (N, 2) x, y pixels; returns (H, W) float32 in {0, 1} for ``shape`` = (H, W[, C]).
    """
    pts = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if indices is not None:
        pts = pts[list(indices)]
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(np.float32)


def sample_grid_offsets(rng: np.random.Generator, grid: int = 4, scale: float = 0.04) -> list[list[list[float]]]:
    """Random control-grid displacements for :func:`deform_mask` (JSON-able nested list).

    Shape:
        returns (grid + 1, grid + 1, 2) displacements as fractions of the image side, uniform in ±``scale``.
    """
    off = rng.uniform(-scale, scale, size=(grid + 1, grid + 1, 2))
    return np.round(off, 6).tolist()


@lru_cache(maxsize=16)
def _pwa_weights(g: int, h: int, w: int):
    """Sparse (H·W, (G+1)²) matrix of barycentric weights of every pixel in its grid triangle, and the identity map."""
    from scipy.sparse import csr_matrix

    xs = np.arange(w, dtype=np.float64) * (g / max(w - 1, 1))
    ys = np.arange(h, dtype=np.float64) * (g / max(h - 1, 1))
    j = np.clip(np.floor(xs).astype(np.int64), 0, g - 1)
    i = np.clip(np.floor(ys).astype(np.int64), 0, g - 1)
    u = np.broadcast_to((xs - j)[None, :], (h, w)).ravel()  # along x within the cell
    v = np.broadcast_to((ys - i)[:, None], (h, w)).ravel()  # along y within the cell
    ii = np.broadcast_to(i[:, None], (h, w)).ravel()
    jj = np.broadcast_to(j[None, :], (h, w)).ravel()
    n00, n01, n10, n11 = ii * (g + 1) + jj, ii * (g + 1) + jj + 1, (ii + 1) * (g + 1) + jj, (ii + 1) * (g + 1) + jj + 1
    lower = u + v <= 1.0
    # lower triangle (00, 01, 10): weights 1-u-v, u, v; upper triangle (11, 10, 01): u+v-1, 1-u, 1-v
    nodes = np.stack([np.where(lower, n00, n11), np.where(lower, n01, n10), np.where(lower, n10, n01)], 1)
    weights = np.stack([np.where(lower, 1 - u - v, u + v - 1), np.where(lower, u, 1 - u), np.where(lower, v, 1 - v)], 1)
    rows = np.repeat(np.arange(h * w), 3)
    mat = csr_matrix((weights.ravel(), (rows, nodes.ravel())), shape=(h * w, (g + 1) ** 2))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return mat, gx, gy


def piecewise_affine_field(offsets: np.ndarray, h: int, w: int) -> np.ndarray:
    """Dense displacement field that is affine on each triangle of a regular control grid.

    The grid's (G+1)×(G+1) nodes span the image corner to corner; each cell is split into two triangles along its
    anti-diagonal, and the displacement is interpolated linearly (barycentrically) inside each triangle, so the map
    from output to source pixels is a 2D piecewise-affine transform (BiG-Arts Sec. 3.3) — continuous across edges.
    The barycentric weights are a sparse matrix cached per (G, H, W).

    Shape:
        offsets (G+1, G+1, 2) fractions of (W, H); returns (H, W, 2) float32 displacements in pixels.
    """
    off = np.asarray(offsets, dtype=np.float64)
    g = off.shape[0] - 1
    mat, _, _ = _pwa_weights(g, h, w)
    field = (mat @ off.reshape(-1, 2)).reshape(h, w, 2) * np.array([w, h], np.float64)
    return field.astype(np.float32)


def deform_mask(mask: np.ndarray, offsets: Sequence | np.ndarray | None) -> np.ndarray:
    """Warp a mask by the piecewise-affine transform of a randomly displaced control grid
    (:func:`piecewise_affine_field`, ``cv2.remap``; bilinear sampling).

    Shape:
        mask (H, W) float32; offsets (G+1, G+1, 2) fractions of (W, H); returns (H, W) float32.
    """
    if offsets is None:
        return mask.astype(np.float32, copy=False)
    off = np.asarray(offsets, dtype=np.float32)
    if off.size == 0:
        return mask.astype(np.float32, copy=False)
    h, w = mask.shape[:2]
    field = piecewise_affine_field(off, h, w)
    _, gx, gy = _pwa_weights(off.shape[0] - 1, h, w)
    out = cv2.remap(
        mask.astype(np.float32),
        gx + field[..., 0],
        gy + field[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return np.clip(out, 0.0, 1.0)


def soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soft boundary by Gaussian blur (ADDG "hard samples": values smooth near the boundary); ``sigma`` in px.

    Shape:
        mask (H, W); returns (H, W) float32 in [0, 1].
    """
    m = mask.astype(np.float32)
    if sigma <= 0:
        return m
    out = cv2.GaussianBlur(m, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma))
    # snap float residue so that "M = 0" / "M = 1" hold exactly where the blur has (numerically) not reached
    out[out < 1e-3] = 0.0
    out[out > 1.0 - 1e-3] = 1.0
    return out


def harden(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary 0-1 version of a mask. Shape: (H, W) -> (H, W) float32."""
    return (mask > threshold).astype(np.float32)


def addg_mask(landmarks: np.ndarray, shape: Sequence[int], name: str, reverse: bool = False) -> np.ndarray:
    """One of ADDG's five candidate masks (:data:`ADDG_MASKS`) or its reverse, hard 0-1.

    Shape:
        landmarks (68, 2); returns (H, W) float32.
    """
    if name not in ADDG_MASKS:
        raise KeyError(f"unknown ADDG mask {name!r}; known: {', '.join(ADDG_MASK_NAMES)}")
    m = hull_mask(landmarks, shape, ADDG_MASKS[name])
    return 1.0 - m if reverse else m


def _kernel(size: int) -> np.ndarray:
    size = max(1, int(size))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """Morphological dilation with an elliptic ``size`` × ``size`` element. Shape: (H, W) -> (H, W) float32."""
    return cv2.dilate(mask.astype(np.float32), _kernel(size))


def erode(mask: np.ndarray, size: int) -> np.ndarray:
    """Morphological erosion with an elliptic ``size`` × ``size`` element. Shape: (H, W) -> (H, W) float32."""
    return cv2.erode(mask.astype(np.float32), _kernel(size))


def abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel max-over-channels absolute difference of two uint8 images. Shape: (H, W, 3) x2 -> (H, W) float32."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return (d.max(axis=2) if d.ndim == 3 else d).astype(np.float32)


def convex_of(binary: np.ndarray) -> np.ndarray:
    """Filled convex hull of the foreground pixels of a binary mask (empty stays empty).

    Shape:
        (H, W) -> (H, W) float32 in {0, 1}.
    """
    ys, xs = np.nonzero(binary > 0.5)
    out = np.zeros(binary.shape[:2], np.uint8)
    if xs.size >= 3:
        hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
        cv2.fillConvexPoly(out, hull, 1)
    elif xs.size:
        out[ys, xs] = 1
    return out.astype(np.float32)


def largest_component(binary: np.ndarray, min_frac: float = 1.0) -> np.ndarray:
    """Keep the 8-connected components whose area is at least ``min_frac`` × the largest one's (1: the largest).

    Shape:
        (H, W) -> (H, W) float32 in {0, 1}.
    """
    b = (binary > 0.5).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
    if n <= 2:
        return b.astype(np.float32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= areas.max() * min_frac)
    return np.isin(lab, keep).astype(np.float32)


def bigarts_intrinsic(
    fake: np.ndarray, original: np.ndarray, gamma: float = 20.0, open_size: int = 0, min_frac: float = 0.0
) -> np.ndarray:
    """BiG-Arts intrinsic mask ``M_in = Convex(|x' - x| > γ)`` (Sec. 3.1), by default exactly the paper's form.

    ``γ`` is on the 0-255 scale of the max-over-channels difference (the paper gives no value). Optional clean-up
    the paper does not have (off by default): a morphological opening of side ``open_size`` and dropping the
    components smaller than ``min_frac`` of the largest before the hull, e.g. ``open_size=5, min_frac=0.05`` to keep
    isolated compression-noise pixels of c23 pairs from stretching the hull towards the frame corners (measured on
    the shared NeuralTextures 004_982 c23 pair at γ = 20: the plain hull covers 76-87 % of the crop, the cleaned one
    13-66 %; Deepfakes 519_515: 23-47 % vs 16-20 %).

    Shape:
        fake, original (H, W, 3) uint8; returns (H, W) float32 in {0, 1}; all zero when nothing exceeds γ.
    """
    binary = (abs_diff(fake, original) > gamma).astype(np.float32)
    if open_size > 1:
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, _kernel(open_size))
    if min_frac > 0 and binary.any():
        binary = largest_component(binary, min_frac=min_frac)
    return convex_of(binary)


def bigarts_extrinsic(mask_in: np.ndarray, size: int = 9) -> np.ndarray:
    """BiG-Arts extrinsic boundary ``M_ex = D(M_in) - E(M_in)`` (Sec. 3.1), on the binarised mask.

    Shape:
        (H, W) -> (H, W) float32 in {0, 1}; ``size`` is the structuring element side in px.
    """
    m = harden(mask_in)
    return np.clip(dilate(m, size) - erode(m, size), 0.0, 1.0)


def ssim_map(fake: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM index of Wang et al. (IEEE TIP 2004, LiSiam's [40]) between grey versions of two images.

    As defined in [40] (Sec. III-C): local statistics under an 11×11 circular-symmetric Gaussian window of σ = 1.5,
    population (not sample) covariances, K1 = 0.01, K2 = 0.03, L = 255 — skimage's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``, the settings its documentation gives for
    matching [40] (its defaults, a 7×7 uniform window with sample covariances, are not [40]'s index). Grey, because
    [40] defines SSIM on one intensity channel and LiSiam (§III-E, Fig. 3) shows a single-channel SSIM map.

    Shape:
        (H, W, 3) uint8 x2 (or (H, W) grey) -> (H, W) float32 in [-1, 1].
    """
    from skimage.metrics import structural_similarity

    a = cv2.cvtColor(fake, cv2.COLOR_RGB2GRAY) if fake.ndim == 3 else fake
    b = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY) if original.ndim == 3 else original
    _, smap = structural_similarity(
        a, b, data_range=255, full=True, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    return smap.astype(np.float32)


def ssim_mask(fake: np.ndarray, original: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    """LiSiam ground-truth segmentation mask (Sec. III-E).

    The paper: "the original SSIM map multiplied by 255 is converted into a binary mask by empirically applying a
    threshold of 20", and the mask marks the *forged* region. Forged pixels are those where the fake is
    dissimilar to its original, so we threshold the dissimilarity ``(1 - SSIM) · 255 > 20`` (i.e. SSIM < 0.92):
    mask = 1 where the two images differ structurally. (Reading it as ``SSIM · 255 < 20`` would keep only
    pixels with SSIM < 0.08, a few speckles on c23 pairs, not the face region shown in the paper's Fig. 3.)

    Shape:
        (H, W, 3) uint8 x2 -> (H, W) float32 in {0, 1}.
    """
    dissim = (1.0 - np.clip(ssim_map(fake, original), 0.0, 1.0)) * 255.0
    return (dissim > threshold).astype(np.float32)


def diff_mask(fake: np.ndarray, original: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """DIFF mask of Dang et al. (CVPR 2020), LiSiam Table VII's comparison: |fake − original| per RGB channel,
    converted to grey, divided by 255, thresholded at 0.1.

    Shape:
        (H, W, 3) uint8 x2 -> (H, W) float32 in {0, 1}.
    """
    d = np.abs(fake.astype(np.int16) - original.astype(np.int16)).astype(np.uint8)
    grey = cv2.cvtColor(d, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return (grey > threshold).astype(np.float32)


def xray_boundary(mask: np.ndarray) -> np.ndarray:
    """Face X-ray boundary ``B = 4 · M · (1 − M)`` (Li et al. CVPR 2020, Eq. 2); zero where M is 0 or 1.

    Shape:
        (H, W) -> (H, W) float32 in [0, 1].
    """
    m = mask.astype(np.float32)
    return np.clip(4.0 * m * (1.0 - m), 0.0, 1.0)


def blend(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``M ⊙ F + (1 − M) ⊙ B`` rounded to uint8 (ADDG Eq. 1, BiG-Arts Sec. 3.3, Face X-ray Eq. 1).

    Shape:
        foreground, background (H, W, 3) uint8; mask (H, W); returns (H, W, 3) uint8.
    """
    m = mask.astype(np.float32)[..., None]
    out = m * foreground.astype(np.float32) + (1.0 - m) * background.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def changed_region(a: np.ndarray, b: np.ndarray, tol: int = 0) -> np.ndarray:
    """Pixels where two uint8 images differ by more than ``tol`` in any channel. Shape: -> (H, W) bool."""
    return abs_diff(a, b) > tol
