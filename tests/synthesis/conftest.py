"""Fixtures for synthesis tests: the astronaut's face with landmarks (detected once), a donor pool of other
"identities" (jittered, recoloured copies of it — no second real face ships with skimage) and a dataset-style fake
with a known manipulated region."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dflab.synthesis import DonorPool, FaceSample
from dflab.synthesis import masks as mk


@pytest.fixture(scope="session")
def astro_face(astronaut) -> FaceSample:
    from dflab.synthesis._faces import face_sample

    return face_sample(astronaut, size=256, identity="astronaut", key="astronaut")


def _jitter(face: FaceSample, rng: np.random.Generator, ident: str) -> FaceSample:
    angle, scale = rng.uniform(-8, 8), rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((128 + rng.uniform(-6, 6), 128 + rng.uniform(-6, 6)), angle, scale)
    img = cv2.warpAffine(face.image, m, (256, 256), borderMode=cv2.BORDER_REFLECT101)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.integers(10, 170))) % 180
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    lm = (face.landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return FaceSample(img, lm, identity=ident, key=ident)


@pytest.fixture(scope="session")
def donors(astro_face) -> list[FaceSample]:
    rng = np.random.default_rng(123)
    return [_jitter(astro_face, rng, f"donor{i}") for i in range(6)]


@pytest.fixture(scope="session")
def pool(donors, astro_face) -> DonorPool:
    # the face itself is in the pool too: it must never be its own donor
    return DonorPool.from_samples([*donors, astro_face])


@pytest.fixture(scope="session")
def fake_face(astro_face) -> FaceSample:
    """A dataset-style fake: the inner face (landmarks 17-67) replaced by a blurred, recoloured version; the
    manipulated region is known exactly (``fake_region``)."""
    region = mk.hull_mask(astro_face.landmarks, astro_face.image.shape, range(17, 68))
    altered = cv2.GaussianBlur(astro_face.image, (0, 0), 3)
    altered = np.clip(altered.astype(int) + np.array([40, -30, 25]), 0, 255).astype(np.uint8)
    image = mk.blend(altered, astro_face.image, region)
    return FaceSample(
        image, astro_face.landmarks, identity="astronaut", key="astro_fake", original=astro_face.image, label=1
    )


@pytest.fixture(scope="session")
def fake_region(astro_face) -> np.ndarray:
    return mk.hull_mask(astro_face.landmarks, astro_face.image.shape, range(17, 68))
