"""Fixtures for eval tests (helpers in evalkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.eval.evalkit import STANDARD, BrightnessDetector, TinyConvDetector, make_manifest


@pytest.fixture
def synth_manifest(tmp_path: Path) -> Path:
    return make_manifest(tmp_path / "prep", STANDARD)


@pytest.fixture
def bright() -> BrightnessDetector:
    return BrightnessDetector()


@pytest.fixture
def tinyconv() -> TinyConvDetector:
    return TinyConvDetector()
