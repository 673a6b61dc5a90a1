"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DFLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test media beside the checkout (``../shared/data``); skips when absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set DFLAB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut():
    """scikit-image's astronaut photo (RGB uint8, 512×512, one real face) — always available."""
    from skimage import data

    return data.astronaut()


@pytest.fixture()
def deny_read(monkeypatch):
    """``deny_read(path)``: opening that file or listing that folder raises ``PermissionError``, as ``chmod 000``
    does for a user who is not root (tests also run as root, whom file modes do not stop)."""
    denied: set[str] = set()

    def refusing(real):
        def wrapper(path=".", *args, **kwargs):
            if isinstance(path, str | os.PathLike) and os.fspath(path) in denied:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)

        return wrapper

    # builtins.open: Python and Pillow open files; os.scandir: os.walk; os.listdir: Path.iterdir
    for owner, name in [(builtins, "open"), (os, "scandir"), (os, "listdir")]:
        monkeypatch.setattr(owner, name, refusing(getattr(owner, name)))
    return lambda p: denied.add(os.fspath(p))


@pytest.fixture()
def phone_video(tmp_path, astronaut):
    """Factory: ``(path, upright)`` of a 3-frame H.264 clip of the astronaut stored sideways with a display rotation
    (degrees), as a phone writes a portrait clip; ``upright`` is the 160 × 224 frame a player shows."""
    import av

    def make(rotation: int) -> tuple[Path, np.ndarray]:
        upright = np.ascontiguousarray(astronaut[:320:2, :448:2])  # not square, so a turn shows in the shape
        stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90))
        path = tmp_path / f"phone{rotation}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=10)
            stream.height, stream.width = stored.shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.set_display_rotation(rotation)
            for _ in range(3):
                for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return path, upright

    return make
