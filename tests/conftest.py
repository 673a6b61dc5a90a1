"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

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
