"""BiG-Arts targets of original dataset images (§3.1): zeros for a real, M_in / M_ex from the original for a fake."""

from __future__ import annotations

from dflab.synthesis.big_arts_aug import bigarts_targets


def test_targets_of_originals(astro_face, fake_face, fake_region):
    real = bigarts_targets(astro_face)
    assert not real["mask_in"].any() and not real["mask_ex"].any()
    fake = bigarts_targets(fake_face)
    m = fake["mask_in"]
    inter = (m * fake_region).sum()
    assert inter / fake_region.sum() > 0.9 and inter / m.sum() > 0.9
    assert fake["mask_ex"].sum() > 0 and (fake["mask_ex"] * fake_region).sum() < fake["mask_ex"].sum()
