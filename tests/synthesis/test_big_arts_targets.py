"""BiG-Arts targets of original dataset images (§3.1): zeros for a real, M_in / M_ex from the original for a fake."""

from __future__ import annotations

import cv2
import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.base import FaceSample
from dflab.synthesis.big_arts_aug import bigarts_targets


def test_targets_of_originals(astro_face, fake_face, fake_region):
    real = bigarts_targets(astro_face)
    assert not real["mask_in"].any() and not real["mask_ex"].any()
    fake = bigarts_targets(fake_face)
    m = fake["mask_in"]
    inter = (m * fake_region).sum()
    assert inter / fake_region.sum() > 0.9 and inter / m.sum() > 0.9
    assert fake["mask_ex"].sum() > 0 and (fake["mask_ex"] * fake_region).sum() < fake["mask_ex"].sum()


def test_boundary_element_scales_with_the_crop_as_the_synthesizers(fake_face):
    """One M_Ex definition (§3.1) for dataset fakes and §3.3 augmentations: 9 px at 256 px, scaled with the crop."""
    half = FaceSample(
        cv2.resize(fake_face.image, (128, 128), interpolation=cv2.INTER_AREA),
        fake_face.landmarks / 2, identity="astronaut", key="half", label=1,
        original=cv2.resize(fake_face.original, (128, 128), interpolation=cv2.INTER_AREA),
    )  # fmt: skip
    t = bigarts_targets(half)
    np.testing.assert_array_equal(t["mask_ex"], mk.bigarts_extrinsic(t["mask_in"], 4))  # round(9 · 128 / 256)
    assert t["mask_ex"].sum() < mk.bigarts_extrinsic(t["mask_in"], 9).sum()
