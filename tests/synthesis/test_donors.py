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
