"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

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
