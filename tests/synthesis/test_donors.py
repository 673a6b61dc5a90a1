from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from dflab.synthesis.donors import DonorPool, align_to, normalise_landmarks, similarity_matrix


def _random_pool(n, n_ids, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (68, 2)).astype(np.float32)
    lms = base + rng.normal(0, 6, (n, 68, 2)).astype(np.float32)
    lms = lms * rng.uniform(0.8, 1.2, (n, 1, 1)) + rng.uniform(-20, 20, (n, 1, 2))
    ids = [f"id{i % n_ids}" for i in range(n)]
    return DonorPool([f"k{i}" for i in range(n)], ids, lms.astype(np.float32), lambda k: None), lms, ids


def test_normalisation_removes_translation_and_scale():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 100, (68, 2))
    np.testing.assert_allclose(normalise_landmarks(lm), normalise_landmarks(lm * 2.5 + 40), atol=1e-5)


def test_nearest_matches_brute_force_and_excludes_identity():
    pool, lms, ids = _random_pool(3000, 50)
    rng = np.random.default_rng(1)
    vec = normalise_landmarks(lms)
    for _ in range(20):
        q = int(rng.integers(len(ids)))
        d = np.linalg.norm(vec - vec[q], axis=1)
        d[np.asarray(ids) == ids[q]] = np.inf
        got = pool.nearest(lms[q], ids[q], k=3)
        assert got == [f"k{i}" for i in np.argsort(d)[:3]]
        assert all(ids[int(k[1:])] != ids[q] for k in got)


def test_nearest_when_neighbours_share_the_identity():
    # 200 near-identical faces of one identity, one far face of another: the search must widen until it finds it
    base = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
    lms = np.stack(
        [base + i * 1e-3 for i in range(200)] + [base * 1.3 + np.random.default_rng(1).normal(0, 9, (68, 2))]
    )
    pool = DonorPool([f"k{i}" for i in range(201)], ["a"] * 200 + ["b"], lms.astype(np.float32), lambda k: None)
    assert pool.nearest(base, "a") == ["k200"]
    with pytest.raises(LookupError):
        DonorPool(["x"], ["a"], base[None], lambda k: None).nearest(base, "a")


def test_random_key_is_seeded_and_other_identity():
    pool, _, ids = _random_pool(500, 5)
    a = [pool.random_key(np.random.default_rng(3), "id0") for _ in range(3)]
    assert len(set(a)) == 1
    keys = [pool.random_key(np.random.default_rng(s), "id0") for s in range(100)]
    assert all(ids[int(k[1:])] != "id0" for k in keys) and len(set(keys)) > 50


def _shape_model_pool(n, n_ids, seed=0):
    """Landmarks as real ones vary: a mean shape, a few deformation modes (expression), in-plane rotation, scale,
    translation and ~1 px detector noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (68, 2))
    modes = rng.normal(0, 4, (8, 68, 2))
    lms = base + np.tensordot(rng.normal(0, 1, (n, 8)), modes, axes=1)
    ang = rng.normal(0, 0.15, n)
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    x, y = lms[..., 0] - 128, lms[..., 1] - 128
    lms = np.stack([c * x - s * y, s * x + c * y], -1) + 128
    lms = lms * rng.uniform(0.8, 1.2, (n, 1, 1)) + rng.uniform(-20, 20, (n, 1, 2)) + rng.normal(0, 1, (n, 68, 2))
    ids = [f"id{i % n_ids}" for i in range(n)]
    return DonorPool([f"k{i}" for i in range(n)], ids, lms.astype(np.float32), lambda k: None), lms, ids


def test_search_is_fast_and_exact_on_100k_faces():
    pool, lms, ids = _shape_model_pool(100_000, 5_000)
    t0 = time.perf_counter()
    for i in range(100):
        pool.nearest(lms[i], ids[i], k=1)
    per_query = (time.perf_counter() - t0) / 100
    # a Python loop over 100k faces takes ~1 s; a brute-force numpy scan ~50-90 ms here
    assert per_query < 0.02, f"{per_query * 1e3:.2f} ms per nearest-landmark query over 100k faces"
    vec = normalise_landmarks(lms)
    for q in range(5):
        d = np.linalg.norm(vec - vec[q], axis=1)
        d[np.asarray(ids) == ids[q]] = np.inf
        assert pool.nearest(lms[q], ids[q], k=2) == [f"k{i}" for i in np.argsort(d)[:2]]


def test_pool_validation():
    lm = np.zeros((2, 68, 2), np.float32)
    with pytest.raises(ValueError, match="unique"):
        DonorPool(["a", "a"], ["x", "y"], lm, lambda k: None)
    with pytest.raises(ValueError, match="68, 2"):
        DonorPool(["a"], ["x"], np.zeros((1, 5, 2)), lambda k: None)
    with pytest.raises(KeyError):
        DonorPool(["a", "b"], ["x", "y"], lm + np.arange(68)[None, :, None], lambda k: None).load("zzz")


def test_similarity_and_alignment():
    rng = np.random.default_rng(0)
    src = rng.uniform(50, 150, (68, 2))
    m_true = cv2.getRotationMatrix2D((100, 100), 12, 1.2)
    dst = src @ m_true[:, :2].T + m_true[:, 2]
    np.testing.assert_allclose(similarity_matrix(src, dst), m_true, atol=1e-8)
    img = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    warped, pts, _ = align_to(img, src, dst, (200, 200))
    assert warped.shape == (200, 200, 3)
    np.testing.assert_allclose(pts, dst, atol=1e-3)


def test_pool_from_manifest(tmp_path, astro_face):
    from dflab.data.manifest import FaceRow, Manifest, VideoRecord

    rows = []
    for i in range(3):
        crop = tmp_path / f"crop{i}.png"
        cv2.imwrite(str(crop), cv2.cvtColor(astro_face.image, cv2.COLOR_RGB2BGR))
        rows.append(
            FaceRow(
                "folder",
                f"v{i}",
                0,
                0,
                0,
                "real",
                "train",
                "",
                crop.name,
                [0, 0, 256, 256],
                [0, 0, 256, 256],
                (astro_face.landmarks + i).tolist(),
            )
        )
    with Manifest(tmp_path) as m:
        for i, r in enumerate(rows):
            m.commit_video(VideoRecord("folder", f"v{i}", str(tmp_path / f"v{i}.mp4"), 0), [r])
    pool = DonorPool.from_manifest(tmp_path)
    assert len(pool) == 3
    key = pool.nearest(astro_face.landmarks, "v0")[0]
    assert key.startswith("folder:v") and not key.startswith("folder:v0:")
    face = pool.load(key)
    assert face.image.shape == (256, 256, 3) and face.identity != "v0"
    np.testing.assert_array_equal(face.image, astro_face.image)


def _is_integer_shift_of(region_pixels: np.ndarray, where: np.ndarray, donor: np.ndarray, radius: int = 24) -> bool:
    """True when the pixels at ``where`` are a whole-pixel translation of ``donor`` (no value was interpolated)."""
    ys, xs = np.nonzero(where)
    h, w = donor.shape[:2]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            sy, sx = ys - dy, xs - dx
            if sy.min() < 0 or sx.min() < 0 or sy.max() >= h or sx.max() >= w:
                continue
            if np.array_equal(donor[sy, sx], region_pixels):
                return True
    return False


@pytest.mark.parametrize(
    ("method", "kw", "donor_side"),
    [("addg", {"category": "SB-Sim"}, 1.0), ("addg", {"category": "SB-Rand"}, 1.0), ("bigarts_rr", {}, 0.0)],
)
def test_pasted_donor_carries_no_resampling(method, kw, donor_side, astro_face, pool):
    """Issue 13 item 5: the donor's part of the blend is its own pixels, moved by whole pixels (the papers paste the
    landmark-nearest frame as it is); a similarity warp would interpolate (low-pass) it. ADDG pastes the donor
    inside the mask, BiG-Arts (Real, Real) outside it (M̃ ⊙ A + (1 − M̃) ⊙ B)."""
    from dflab.synthesis import SYNTHESIZERS

    synth = SYNTHESIZERS.get(method)
    p = synth.sample_params(np.random.default_rng(3), astro_face, pool, **kw)
    res = synth.apply(astro_face, p, pool)
    inside = res.mask == donor_side
    inside[:40], inside[-40:], inside[:, :40], inside[:, -40:] = False, False, False, False  # away from the border
    assert inside.sum() > 1000
    donor = pool.load(p.donor_key).image
    assert _is_integer_shift_of(res.image[inside], inside, donor)
    p.donor_align = "similarity"  # the other reading stays selectable
    warped = synth.apply(astro_face, p, pool).image
    assert not _is_integer_shift_of(warped[inside], inside, donor)


def test_bi_pastes_the_donor_unresampled(astro_face, pool):
    from dflab.synthesis import SYNTHESIZERS

    synth = SYNTHESIZERS.get("bi")
    p = synth.sample_params(np.random.default_rng(1), astro_face, pool)
    p.color_correct = False  # colour transfer changes values by design; the placement is what is tested
    res = synth.apply(astro_face, p, pool)
    inside = res.mask >= 1.0
    assert _is_integer_shift_of(res.image[inside], inside, pool.load(p.donor_key).image)


def test_place_donor_modes(astro_face):
    from dflab.synthesis.donors import place_donor, shift_to

    img = astro_face.image
    lm = astro_face.landmarks
    out, pts, matrix = shift_to(img, lm, lm + np.array([5.4, -3.2], np.float32), (256, 256))
    assert np.array_equal(out[:253, 5:], img[3:, :251])  # out[y, x] = img[y + 3, x - 5]: copied, not resampled
    assert matrix[0, 2] == 5 and matrix[1, 2] == -3 and np.allclose(pts, lm + np.array([5, -3]))
    assert place_donor(img, lm, lm, (256, 256), "none") is img
    with pytest.raises(ValueError, match="donor_align"):
        place_donor(img, lm, lm, (256, 256), "affine")
