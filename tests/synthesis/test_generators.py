"""Property tests run over every registered synthesizer and category: shapes, ranges, determinism, replay from
saved params, and masks consistent with the image difference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dflab.synthesis import SYNTHESIZERS, make_fake, replay
from dflab.synthesis import masks as mk
from dflab.synthesis.addg import CATEGORIES, ADDGParams, perturb
from dflab.synthesis.base import Params
from dflab.synthesis.partial import REGIONS

# (registered name, sample_params kwargs, needs the fake face)
CASES = (
    [("addg", {"category": c}, False) for c in CATEGORIES]
    + [("partial", {"category": r}, True) for r in REGIONS]
    + [("bigarts_rr", {}, False), ("bigarts_fr", {}, True), ("bi", {}, False), ("fwa", {}, False), ("iqd", {}, False)]
    + [("sbi", {}, False)]
)
IDS = [f"{n}-{kw.get('category', '')}".rstrip("-") for n, kw, _ in CASES]


def test_every_registered_synthesizer_is_covered():
    assert sorted({n for n, _, _ in CASES}) == SYNTHESIZERS.names()


def _face(needs_fake, astro_face, fake_face):
    return fake_face if needs_fake else astro_face


@pytest.mark.parametrize(("name", "kw", "needs_fake"), CASES, ids=IDS)
def test_output_contract(name, kw, needs_fake, astro_face, fake_face, pool):
    face = _face(needs_fake, astro_face, fake_face)
    res = make_fake(name, np.random.default_rng(0), face, pool, **kw)
    h, w = face.image.shape[:2]
    assert res.image.shape == (h, w, 3) and res.image.dtype == np.uint8
    assert res.mask.shape == (h, w) and res.mask.dtype == np.float32
    assert res.mask.min() >= 0.0 and res.mask.max() <= 1.0
    for m in res.masks.values():
        assert m.shape == (h, w) and m.min() >= 0.0 and m.max() <= 1.0
    if name == "iqd":
        assert res.label == face.label and not res.mask.any()
    else:
        assert res.label == 1 and res.mask.sum() > 100
    assert res.params.method == name


@pytest.mark.parametrize(("name", "kw", "needs_fake"), CASES, ids=IDS)
def test_same_seed_same_output_and_replay(name, kw, needs_fake, astro_face, fake_face, pool):
    face = _face(needs_fake, astro_face, fake_face)
    a = make_fake(name, np.random.default_rng(7), face, pool, **kw)
    b = make_fake(name, np.random.default_rng(7), face, pool, **kw)
    assert a.params.to_dict() == b.params.to_dict()
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    # replay from params saved as JSON
    saved = json.loads(json.dumps(a.params.to_dict()))
    assert Params.from_dict(saved) == a.params
    c = replay(saved, face, pool)
    np.testing.assert_array_equal(a.image, c.image)
    np.testing.assert_array_equal(a.mask, c.mask)
    for k in a.masks:
        np.testing.assert_array_equal(a.masks[k], c.masks[k])


def test_different_seeds_give_different_samples(astro_face, pool):
    outs = [make_fake("addg", np.random.default_rng(s), astro_face, pool) for s in range(6)]
    assert len({json.dumps(o.params.to_dict()) for o in outs}) == 6


@pytest.mark.parametrize("category", CATEGORIES)
def test_addg_eq1_outside_mask_unchanged_inside_perturbed(category, astro_face, pool):
    """X_N = X_P ⊙ M + X ⊙ (1 − M): pixels with M = 0 are the input, pixels with M = 1 the perturbed frame."""
    synth = SYNTHESIZERS.get("addg")
    p = synth.sample_params(np.random.default_rng(3), astro_face, pool, category=category)
    res = synth.apply(astro_face, p, pool)
    x_p = perturb(astro_face, p, pool)
    out, inside = res.mask == 0, res.mask == 1
    assert out.any() and inside.any()
    np.testing.assert_array_equal(res.image[out], astro_face.image[out])
    np.testing.assert_array_equal(res.image[inside], x_p[inside])
    # every changed pixel lies in the mask's support
    assert not (mk.changed_region(res.image, astro_face.image) & (res.mask == 0)).any()
    # Outer- categories perturb the background: the face centre stays untouched
    cy, cx = np.round(astro_face.landmarks[30]).astype(int)[::-1]
    if category.startswith("Outer-"):
        assert res.mask[cy, cx] == 0
    assert res.masks["support"].sum() >= inside.sum()


def test_addg_soft_and_hard_masks(astro_face, pool):
    synth = SYNTHESIZERS.get("addg")
    soft = hard = None
    for s in range(20):
        p = synth.sample_params(np.random.default_rng(s), astro_face, pool, category="Inner-GaussBlur")
        if p.soft_sigma > 0 and soft is None:
            soft = synth.apply(astro_face, p, pool).mask
        if p.soft_sigma == 0 and hard is None:
            hard = synth.apply(astro_face, p, pool).mask
    assert soft is not None and hard is not None
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 200  # a smooth band at the boundary


def test_addg_sb_sim_uses_nearest_other_identity(astro_face, pool):
    p = SYNTHESIZERS.get("addg").sample_params(np.random.default_rng(0), astro_face, pool, category="SB-Sim")
    assert isinstance(p, ADDGParams)
    assert p.donor_key == pool.nearest(astro_face.landmarks, "astronaut")[0] and p.donor_key != "astronaut"


def test_pool_methods_refuse_without_pool(astro_face):
    with pytest.raises(ValueError, match="pool"):
        make_fake("addg", np.random.default_rng(0), astro_face, None, category="SB-Rand")
    with pytest.raises(ValueError, match="pool"):
        make_fake("bi", np.random.default_rng(0), astro_face, None)


def test_fake_methods_refuse_a_real(astro_face, pool):
    with pytest.raises(ValueError, match="original"):
        make_fake("bigarts_fr", np.random.default_rng(0), astro_face, pool)
    with pytest.raises(ValueError, match="original"):
        make_fake("partial", np.random.default_rng(0), astro_face, pool)


def test_wrong_params_type_is_a_clear_error(astro_face, pool):
    p = SYNTHESIZERS.get("fwa").sample_params(np.random.default_rng(0), astro_face)
    with pytest.raises(TypeError, match="ADDGParams"):
        SYNTHESIZERS.get("addg").apply(astro_face, p, pool)
    with pytest.raises(KeyError, match="unknown addg params field"):
        Params.from_dict({"method": "addg", "nonsense": 1})


def test_bigarts_rr_masks(astro_face, pool):
    res = make_fake("bigarts_rr", np.random.default_rng(1), astro_face, pool)
    assert not res.masks["mask_in"].any()  # (Real, Real): no intrinsic artifacts
    ring = res.masks["mask_ex"]
    np.testing.assert_array_equal(ring, mk.bigarts_extrinsic(res.mask, res.params.boundary))
    # A's pixels inside M̃
    inside = res.mask == 1
    np.testing.assert_array_equal(res.image[inside], astro_face.image[inside])
    cy, cx = np.round(astro_face.landmarks[30]).astype(int)[::-1]
    assert ring[cy, cx] == 0 and ring.sum() > 0


def test_bigarts_fr_mask_inside_diff_and_hull(fake_face, fake_region, pool):
    res = make_fake("bigarts_fr", np.random.default_rng(2), fake_face, pool)
    m = res.masks["mask_in"]
    hull = mk.hull_mask(fake_face.landmarks, fake_face.image.shape)
    assert (m * (1 - mk.dilate(hull, 41))).sum() == 0  # bounded by the (deformed) hull M''
    # covers most of the manipulated region
    assert (m * fake_region).sum() / fake_region.sum() > 0.8
    inside = m == 1
    np.testing.assert_array_equal(res.image[inside], fake_face.image[inside])


def test_partial_pastes_only_the_region(fake_face, pool):
    for region in REGIONS:
        res = make_fake("partial", np.random.default_rng(0), fake_face, pool, category=region)
        out, inside = res.mask == 0, res.mask == 1
        np.testing.assert_array_equal(res.image[out], fake_face.original[out])
        np.testing.assert_array_equal(res.image[inside], fake_face.image[inside])
    left = make_fake("partial", np.random.default_rng(0), fake_face, pool, category="left").mask
    right = make_fake("partial", np.random.default_rng(0), fake_face, pool, category="right").mask
    assert (left * right).sum() == 0 and np.argwhere(left)[:, 1].mean() < np.argwhere(right)[:, 1].mean()


def test_bi_boundary_and_support(astro_face, pool):
    res = make_fake("bi", np.random.default_rng(4), astro_face, pool)
    np.testing.assert_allclose(res.masks["boundary"], 4 * res.mask * (1 - res.mask), atol=1e-6)
    out = res.mask == 0
    np.testing.assert_array_equal(res.image[out], astro_face.image[out])
    assert res.params.donor_key != "astronaut"


def test_fwa_changes_only_inside_mask(astro_face):
    res = make_fake("fwa", np.random.default_rng(5), astro_face)
    changed = mk.changed_region(res.image, astro_face.image)
    assert not (changed & (res.mask == 0)).any()
    assert changed[res.mask == 1].mean() > 0.5


def test_sbi_eq1_blend_of_one_face_with_itself(astro_face):
    """SBI (Shiohara & Yamasaki 2022, Eq. 1): outside the mask the target copy, inside a blend towards the source;
    with the target untransformed and the mask's support away from the border, the result differs from the real
    face only where M > 0, and the boundary map is Face X-ray's 4·M·(1−M)."""
    from dflab.synthesis.sbi import SBIParams, sbi_mask

    synth = SYNTHESIZERS.get("sbi")
    for seed in range(6):
        p = synth.sample_params(np.random.default_rng(seed), astro_face)
        p.transform_source = True  # the target is the real face itself
        res = synth.apply(astro_face, p)
        m = sbi_mask(astro_face, p)
        assert np.array_equal(res.mask, m) and 0 < m.max() <= p.ratio + 1e-6
        diff = mk.abs_diff(res.image, astro_face.image)
        assert diff[m == 0].max() == 0, "pixels outside the SBI mask must stay the real target"
        assert diff[m >= 0.9 * m.max()].mean() > 0.5, "inside the mask the source copy must show"
        np.testing.assert_allclose(res.masks["boundary"], 4 * m * (1 - m), atol=1e-6)
    # the ratio scales the mask: r = 0.25 leaves a semi-transparent blend
    p = SBIParams.from_dict({**synth.sample_params(np.random.default_rng(0), astro_face).to_dict(), "ratio": 0.25})
    assert sbi_mask(astro_face, p).max() <= 0.25 + 1e-6


def test_sbi_source_transforms_follow_the_official_ranges(astro_face):
    """SBI's official code shifts hue/saturation/value by ±0.3 in uint8 HSV units (below one step) and RGB by ±20
    with p = 0.3: the transformed copy keeps the face's hue (the old reading, ±0.3 of 180°, turned faces green)."""
    import dataclasses

    import cv2

    from dflab.synthesis.sbi import colour_frequency

    synth = SYNTHESIZERS.get("sbi")
    x = astro_face.image
    hue = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2HSV)[..., 0].astype(float)  # noqa: E731
    skin = (hue(x) > 0) & (hue(x) < 25)  # the face's skin tones, away from the hue wrap-around at 180
    draws = [synth.sample_params(np.random.default_rng(seed), astro_face) for seed in range(60)]
    for p in draws[:12]:
        y = colour_frequency(x, dataclasses.replace(p, rgb_shift=[0.0, 0.0, 0.0]))  # the HSV shift alone
        assert abs(np.median(hue(y)[skin]) - np.median(hue(x)[skin])) <= 3, p
    shifted = np.mean([any(v != 0 for v in p.rgb_shift) for p in draws])
    assert 0.15 <= shifted <= 0.45
    assert {p.freq for p in draws} == {"downscale", "sharpen"}
    assert {p.freq_amount for p in draws if p.freq == "downscale"} == {2.0, 4.0}
    assert all(abs(p.shift[1]) <= 0.015 and 0.95 <= p.scale <= 1 / 0.95 for p in draws)
