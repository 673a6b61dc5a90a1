"""Lossless PNG encoding (dflab.media.png): every reader gets the exact pixels back, grey and RGB, any size."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from dflab.media import png


def _images(astronaut: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        np.ascontiguousarray(astronaut[100:356, 150:406]),  # a 256 px natural crop
        rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),  # noise: every Up difference, odd sizes
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
        np.full((5, 300, 3), 255, np.uint8),
        cv2.cvtColor(np.ascontiguousarray(astronaut[:64, :80]), cv2.COLOR_RGB2GRAY),  # grey (mask crops)
        rng.integers(0, 256, (9, 1), dtype=np.uint8),
        astronaut[::3, ::5],  # a strided view
    ]


def _decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The image as OpenCV and as Pillow decode it (RGB or grey)."""
    cv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if cv.ndim == 3:
        cv = cv2.cvtColor(cv, cv2.COLOR_BGR2RGB)
    return cv, np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_decodes_to_the_exact_pixels(astronaut, monkeypatch, deflate):
    if deflate == "isal":
        pytest.importorskip("isal")
        assert png._deflate is not None
    else:
        monkeypatch.setattr(png, "_deflate", None)  # no python-isal: the standard library's zlib
    for image in _images(astronaut):
        data = png.encode_png(image)
        assert data.startswith(png.PNG_SIGNATURE)
        for back in _decoded(data):
            assert back.shape == image.shape and back.dtype == np.uint8
            np.testing.assert_array_equal(back, image)


def test_png_compresses_a_crop(astronaut):
    crop = np.ascontiguousarray(astronaut[100:356, 150:406])
    assert len(png.encode_png(crop)) < 0.8 * crop.nbytes


def test_write_png_creates_the_folder(tmp_path, astronaut):
    path = tmp_path / "a" / "b" / "c.png"
    png.write_png(path, astronaut[:32, :32])
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), astronaut[:32, :32])


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.uint16), np.zeros((0, 4, 3), np.uint8)]
)
def test_encode_png_refuses_what_it_cannot_write_losslessly(bad):
    with pytest.raises(ValueError):
        png.encode_png(bad)
