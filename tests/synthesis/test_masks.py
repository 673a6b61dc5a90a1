from __future__ import annotations

import cv2
import numpy as np
import pytest

from dflab.synthesis import masks as mk


def _square(h=64, x0=20, x1=44):
    m = np.zeros((h, h), np.float32)
    m[x0:x1, x0:x1] = 1
    return m


def test_hull_mask_fills_the_hull_only():
    pts = np.array([[10, 10], [50, 10], [50, 40], [10, 40], [30, 25]], np.float32)
    m = mk.hull_mask(pts, (64, 64))
    assert m.dtype == np.float32 and m[25, 30] == 1 and m[5, 5] == 0 and m[45, 30] == 0
    assert abs(m.sum() - 41 * 31) < 100
    sub = mk.hull_mask(pts, (64, 64), indices=[0, 1, 4])
    assert sub.sum() < m.sum() / 2


def test_deform_mask_identity_and_determinism():
    m = _square()
    np.testing.assert_array_equal(mk.deform_mask(m, None), m)
    zero = np.zeros((5, 5, 2)).tolist()
    np.testing.assert_allclose(mk.deform_mask(m, zero), m, atol=1e-6)
    off = mk.sample_grid_offsets(np.random.default_rng(0), 4, 0.05)
    a, b = mk.deform_mask(m, off), mk.deform_mask(m, off)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - m).sum() > 10  # it moves the boundary …
    assert 0.6 < a.sum() / m.sum() < 1.4  # … slightly
    assert off == mk.sample_grid_offsets(np.random.default_rng(0), 4, 0.05)


def test_soften_makes_a_smooth_band():
    m = _square()
    s = mk.soften(m, 3)
    assert s[32, 32] == 1 and s[0, 0] == 0
    assert ((s > 0) & (s < 1)).sum() > 100
    np.testing.assert_array_equal(mk.soften(m, 0), m)
    np.testing.assert_array_equal(mk.harden(s), (s > 0.5).astype(np.float32))


def test_addg_masks_and_reverses(astro_face):
    shape = astro_face.image.shape
    face = mk.addg_mask(astro_face.landmarks, shape, "face")
    areas = {}
    for name in mk.ADDG_MASK_NAMES:
        m = mk.addg_mask(astro_face.landmarks, shape, name)
        r = mk.addg_mask(astro_face.landmarks, shape, name, reverse=True)
        np.testing.assert_array_equal(m + r, np.ones_like(m))
        assert m.sum() > 300
        assert (m * (1 - face)).sum() / m.sum() < 0.05  # each region lies in the face
        areas[name] = m.sum()
    assert areas["face"] == max(areas.values()) and areas["mouth"] == min(areas.values())
    mouth = mk.addg_mask(astro_face.landmarks, shape, "mouth")
    assert mouth[tuple(np.round(astro_face.landmarks[62]).astype(int)[::-1])] == 1  # inner-lip point
    with pytest.raises(KeyError, match="unknown ADDG mask"):
        mk.addg_mask(astro_face.landmarks, shape, "ears")


def test_bigarts_intrinsic_is_the_plain_convex_hull_by_default():
    """§3.1: M_in = Convex(p_in > γ) — an isolated pixel above γ belongs to the hull unless the clean-up is asked."""
    orig = np.zeros((96, 96, 3), np.uint8)
    fake = orig.copy()
    fake[30:60, 40:70] = 200
    fake[2, 2] = 200
    m_in = mk.bigarts_intrinsic(fake, orig, gamma=20)
    assert m_in[2, 2] == 1 and m_in[20, 30] == 1  # the hull spans from (2, 2) to the block
    cleaned = mk.bigarts_intrinsic(fake, orig, gamma=20, open_size=5, min_frac=0.05)
    assert cleaned[2, 2] == 0 and cleaned[20, 30] == 0 and cleaned[45, 55] == 1


def test_bigarts_intrinsic_and_extrinsic():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    fake = orig.copy()
    fake[30:60, 40:70] = 255 - fake[30:60, 40:70]
    m_in = mk.bigarts_intrinsic(fake, orig, gamma=20)
    assert m_in[45, 55] == 1 and m_in[10, 10] == 0
    assert 0.8 < m_in.sum() / (30 * 30) < 1.1
    assert not mk.bigarts_intrinsic(orig, orig).any()
    ring = mk.bigarts_extrinsic(m_in, 5)
    assert ring[45, 55] == 0 and ring[10, 10] == 0 and ring[30, 55] == 1 and ring[45, 40] == 1


def test_ssim_and_diff_masks_locate_the_change(astronaut):
    orig = cv2.resize(astronaut, (128, 128))
    fake = orig.copy()
    fake[40:80, 40:80] = 255 - orig[40:80, 40:80]
    for fn in (mk.ssim_mask, mk.diff_mask):
        m = fn(fake, orig)
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert m[50:70, 50:70].mean() > 0.9
        far = np.ones_like(m, bool)
        far[30:90, 30:90] = False
        assert m[far].mean() < 0.01
        assert not fn(orig, orig).any()  # identical images: all-zero mask (as for reals)
    # the SSIM mask marks dissimilar pixels: lower threshold → larger mask
    assert mk.ssim_mask(fake, orig, 5).sum() >= mk.ssim_mask(fake, orig, 20).sum() >= mk.ssim_mask(fake, orig, 60).sum()


def test_xray_boundary_and_blend():
    m = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_allclose(mk.xray_boundary(m), [[0.0, 1.0, 0.0]])
    fg = np.full((1, 3, 3), 200, np.uint8)
    bg = np.full((1, 3, 3), 100, np.uint8)
    np.testing.assert_array_equal(mk.blend(fg, bg, m)[0, :, 0], [100, 150, 200])


def test_piecewise_affine_field_is_affine_per_triangle_and_exact_at_nodes():
    off = np.random.default_rng(0).uniform(-0.05, 0.05, (5, 5, 2))
    f = mk.piecewise_affine_field(off, 257, 257)
    for a in range(5):
        for b in range(5):
            np.testing.assert_allclose(f[a * 64, b * 64], off[a, b] * 257, atol=1e-3)
    # inside one triangle (below the anti-diagonal of cell (0, 0)) the field is affine: zero second differences
    tri = f[2:30, 2:30][np.add.outer(np.arange(28), np.arange(28)) < 28]
    ys, xs = np.nonzero(np.add.outer(np.arange(28), np.arange(28)) < 28)
    design = np.stack([np.ones_like(xs), xs, ys], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, tri, rcond=None)
    assert np.abs(design @ coef - tri).max() < 1e-3
    assert np.abs(np.diff(f, axis=0)).max() < 1.0 and np.abs(np.diff(f, axis=1)).max() < 1.0  # continuous


def _wang2004_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference SSIM map of Wang et al. 2004 (Sec. III-C): 11×11 Gaussian window σ = 1.5, K1 = .01, K2 = .03."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def w(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = w(a), w(b)
    var_a, var_b, cov = w(a * a) - mu_a**2, w(b * b) - mu_b**2, w(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def test_ssim_map_is_the_index_of_wang_et_al_2004():
    """LiSiam §III-E builds its mask from "the SSIM map" of [40] (Wang et al. 2004): Gaussian 11×11, σ = 1.5."""
    rng = np.random.default_rng(0)
    orig = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 1.0)
    fake = orig.copy()
    fake[20:28, 20:28] = 255 - fake[20:28, 20:28]
    fake[24, 5] = 255 - fake[24, 5]  # one pixel: [40]'s window reaches 5 px from it, a 7×7 window 3
    ref = _wang2004_ssim(fake, orig)
    got = mk.ssim_map(fake, orig)
    np.testing.assert_allclose(got[6:-6, 6:-6], ref[6:-6, 6:-6], atol=2e-3)
    assert got[24, 9] < 1.0 - 1e-4  # 4 px from the changed pixel: inside [40]'s window, outside 7×7
