"""Fixtures for the dataset and prepare tests: tiny real mp4 files in each dataset's documented layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.media import write_video


@pytest.fixture(scope="session")
def tiny_mp4(tmp_path_factory) -> Path:
    """A 4-frame 32×32 H.264 mp4 (content irrelevant: adapters only read layouts)."""
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)]
    return write_video(tmp_path_factory.mktemp("mp4") / "tiny.mp4", frames, fps=25)


@pytest.fixture(scope="session")
def face_frames(astronaut) -> list[np.ndarray]:
    """Six 192×192 frames of the astronaut's face drifting right (one face, ~75 px)."""
    face = cv2.resize(astronaut[:320, 60:380], (150, 150), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(6):
        canvas = np.full((192, 192, 3), 100, np.uint8)
        canvas[20:170, 10 + 3 * t : 160 + 3 * t] = face
        frames.append(canvas)
    return frames


def _place(src: Path, *dests: Path) -> None:
    for d in dests:
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, d)


@pytest.fixture(scope="session")
def place():
    """``place(src, *dests)`` copies a file to each destination, creating folders."""
    return _place
