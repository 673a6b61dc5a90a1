"""The synthesis CLI's frame reader reads frames as ``dflab prepare`` does."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.synthesis._faces import read_frame


@pytest.mark.parametrize("rotation", [90, 180])
def test_read_frame_turns_a_phone_video_upright(phone_video, rotation):
    # it decoded the stored, sideways frame while prepare (and so the manifest's landmarks) saw it upright
    path, upright = phone_video(rotation)
    rgb = read_frame(path, 1)
    assert rgb.shape == upright.shape
    assert np.abs(rgb.astype(int) - upright).mean() < 6
    with pytest.raises(IndexError):
        read_frame(path, 7)


def test_read_frame_of_an_image_applies_exif(tmp_path, astronaut):
    from PIL import Image

    img = Image.fromarray(astronaut[:, :400])
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: shown turned 90° clockwise
    img.save(tmp_path / "p.jpg", exif=exif, quality=95)
    assert read_frame(tmp_path / "p.jpg").shape == (400, 512, 3)
    assert read_frame(tmp_path / "p.jpg", 5).shape == (400, 512, 3)  # an image is its own frame, any index
