from __future__ import annotations

import cv2
import numpy as np
import pytest

from dflab.synthesis import SYNTHESIZERS, degrade
from dflab.synthesis.iqd import OPS, IQDParams, iqd_apply


@pytest.fixture(scope="module")
def img(astronaut):
    return np.ascontiguousarray(cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)[:, :126])


def _err(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", sorted(degrade.DEGRADATIONS))
def test_identity_levels_and_shapes(name, img):
    ident = degrade.IDENTITY_LEVEL[name]
    if ident is not None:
        np.testing.assert_array_equal(degrade.degrade(name, img, ident), img)
    level = {"jpeg": 30, "blur": 1.0, "rescale": 0.5, "noise": 8.0, "h264_qp": 30, "h264_crf": 30}[name]
    out = degrade.degrade(name, img, level)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert _err(out, img) > 0.3
    np.testing.assert_array_equal(out, degrade.degrade(name, img, level))  # pure: same level, same output


def test_stronger_levels_degrade_more(img):
    assert _err(degrade.jpeg(img, 10), img) > _err(degrade.jpeg(img, 90), img)
    assert _err(degrade.gaussian_blur(img, 0.5), img) > _err(degrade.gaussian_blur(img, 0.2), img)
    assert _err(degrade.rescale(img, 0.25), img) > _err(degrade.rescale(img, 0.75), img)
    assert _err(degrade.h264(img, qp=40), img) > _err(degrade.h264(img, qp=23), img) > 0
    assert _err(degrade.h264(img, crf=35), img) > _err(degrade.h264(img, crf=5), img)


def test_blur_is_a_3x3_gaussian(img):
    ref = cv2.filter2D(
        img.astype(np.float32), -1, np.outer(*[cv2.getGaussianKernel(3, 0.5)] * 2), borderType=cv2.BORDER_REFLECT_101
    )
    assert np.abs(degrade.gaussian_blur(img, 0.5).astype(np.float32) - ref).max() <= 1.0


def test_noise_is_seeded_with_the_right_sigma(img):
    a, b = degrade.gaussian_noise(img, 10, seed=1), degrade.gaussian_noise(img, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, degrade.gaussian_noise(img, 10, seed=2))
    mid = (img > 40) & (img < 215)  # away from clipping
    d = a.astype(np.float32) - img.astype(np.float32)
    assert 9.0 < d[mid].std() < 11.0


def test_h264_clip_round_trip(img):
    frames = [np.roll(img, i, axis=1) for i in range(4)]
    out = degrade.h264(frames, qp=23)
    assert isinstance(out, list) and len(out) == 4 and out[0].shape == img.shape
    with pytest.raises(ValueError, match="exactly one"):
        degrade.h264(img, qp=23, crf=23)
    with pytest.raises(KeyError, match="unknown degradation"):
        degrade.degrade("sepia", img, 1)


def test_iqd_levels_are_the_official_codes():
    """h10666/LiSiam: jpegC randint(10, 100), GBlur U(0.1, 1.0), jpegD randint(100, 200) — upper bounds exclusive."""
    from dflab.synthesis.iqd import IQD

    iqd = IQD()
    assert iqd.quality == (10, 99) and iqd.sigma == (0.1, 1.0) and iqd.side == (100, 199) and iqd.p == 0.5


def test_iqd_sampling_and_replay(astro_face):
    synth = SYNTHESIZERS.get("iqd")
    seen_orders, n_ops = set(), []
    for s in range(200):
        p = synth.sample_params(np.random.default_rng(s), astro_face)
        assert set(p.order) <= set(OPS) and len(set(p.order)) == len(p.order)
        assert 10 <= p.quality <= 99 and 0.1 <= p.sigma <= 1.0 and 100 <= p.side <= 199
        seen_orders.add(tuple(p.order))
        n_ops.append(len(p.order))
    assert 0.35 < np.mean(n_ops) / 3 < 0.65  # each op with p = 0.5
    assert len([o for o in seen_orders if len(o) == 3]) >= 4  # random order
    p = IQDParams(order=["resize", "jpeg"], quality=20, side=100)
    # official jpegD: square of the sampled side, nearest-neighbour down, bilinear back
    small = cv2.resize(astro_face.image, (100, 100), interpolation=cv2.INTER_NEAREST)
    ref = degrade.jpeg(cv2.resize(small, (256, 256), interpolation=cv2.INTER_LINEAR), 20)
    np.testing.assert_array_equal(iqd_apply(astro_face.image, p), ref)
    np.testing.assert_array_equal(iqd_apply(astro_face.image, IQDParams(order=[])), astro_face.image)
