from __future__ import annotations

from collections import Counter

import numpy as np

from dflab.synthesis.big_arts_aug import BatchPolicy, bigarts_targets


def test_batch_composition_is_half_real_and_thirds_of_fakes():
    pol = BatchPolicy()
    kinds = pol.kinds(np.random.default_rng(0), 12)
    assert Counter(kinds) == {"real": 6, "fake": 2, "rr": 2, "fr": 2}
    assert kinds != sorted(kinds) or kinds != pol.kinds(np.random.default_rng(1), 12)  # shuffled
    big = Counter(k for s in range(50) for k in pol.kinds(np.random.default_rng(s), 32))
    total = sum(big.values())
    assert big["real"] == total // 2
    for k in ("fake", "rr", "fr"):
        assert abs(big[k] / (total / 2) - 1 / 3) < 0.05
    assert pol.kinds(np.random.default_rng(5), 16) == pol.kinds(np.random.default_rng(5), 16)


def test_jpeg_quality_range():
    pol = BatchPolicy()
    qs = [pol.jpeg_quality(np.random.default_rng(s)) for s in range(300)]
    assert min(qs) >= 75 and max(qs) <= 100 and len(set(qs)) > 15
    never = BatchPolicy(p_jpeg=0.0)
    assert all(never.jpeg_quality(np.random.default_rng(s)) == 100 for s in range(20))


def test_targets_of_originals(astro_face, fake_face, fake_region):
    real = bigarts_targets(astro_face)
    assert not real["mask_in"].any() and not real["mask_ex"].any()
    fake = bigarts_targets(fake_face)
    m = fake["mask_in"]
    inter = (m * fake_region).sum()
    assert inter / fake_region.sum() > 0.9 and inter / m.sum() > 0.9
    assert fake["mask_ex"].sum() > 0 and (fake["mask_ex"] * fake_region).sum() < fake["mask_ex"].sum()
