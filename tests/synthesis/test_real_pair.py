"""On the real FF++ pair (519 vs Deepfakes/519_515, same frame) the LiSiam SSIM mask and BiG-Arts M_in must cover
the swapped face and not the background."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.synthesis import masks as mk
from dflab.synthesis.big_arts_aug import bigarts_targets

pytestmark = pytest.mark.slow

FRAMES = (0, 100, 400)


@pytest.fixture(scope="module")
def pairs(shared_data):
    from dflab.synthesis._faces import face_sample, read_frame

    ff = shared_data / "ffpp"
    orig = ff / "original_sequences/youtube/c23/videos/519.mp4"
    fake = ff / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    return [face_sample(read_frame(fake, i), original=read_frame(orig, i), identity="519") for i in FRAMES]


def _regions(face):
    shape = face.image.shape
    inner = mk.hull_mask(face.landmarks, shape, range(17, 68))  # brows, eyes, nose, mouth: the swapped face
    face_hull = mk.hull_mask(face.landmarks, shape)
    near = mk.dilate(face_hull, 31)  # the hull plus ~15 px for landmark error and the blend margin
    return inner, near


@pytest.mark.parametrize("which", ["ssim", "m_in", "diff"])
def test_masks_cover_the_swapped_face_not_the_background(pairs, which):
    for face in pairs:
        if which == "ssim":
            m = mk.ssim_mask(face.image, face.original)
        elif which == "m_in":
            m = bigarts_targets(face)["mask_in"]
        else:
            m = mk.diff_mask(face.image, face.original)
        inner, near = _regions(face)
        background = 1 - near
        cover = (m * inner).sum() / inner.sum()
        inside = (m * near).sum() / m.sum()
        bg_rate = (m * background).sum() / background.sum()
        # the DIFF mask is the sparse one (LiSiam Fig. 3): it only has to stay on the face
        assert cover > (0.4 if which == "diff" else 0.75), f"{which}: covers {cover:.2f} of the inner face"
        assert inside > 0.85, f"{which}: only {inside:.2f} of the mask lies on the face"
        assert bg_rate < 0.08, f"{which}: {bg_rate:.2f} of the background is marked"


def test_real_fake_generators_on_the_pair(pairs):
    from dflab.synthesis import make_fake

    face = pairs[1]
    for region in ("eyes", "mouth", "left"):
        res = make_fake("partial", np.random.default_rng(0), face, None, category=region)
        changed = mk.changed_region(res.image, face.original, tol=0)
        assert not (changed & (res.mask == 0)).any()
        # the swapped region does differ from the original, so the pasted part shows
        assert changed[res.mask == 1].mean() > 0.5
