"""Fixtures of the scanner tests: a tiny (untrained, seeded) detector and small media files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_scorer():
    """``lisiam_tiny`` at 64 px, seeded: scores mean nothing, but every code path (maps included) runs."""
    from dflab.models.base import build_detector
    from dflab.scan.pipeline import scorer_from_model

    torch.manual_seed(0)
    return scorer_from_model(build_detector("lisiam_tiny"), name="lisiam_tiny")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory, astronaut) -> Path:
    """astronaut.png, a 12-frame H.264 clip of it drifting, and the broken-media corpus."""
    from dflab.scan.corpus import write_corpus

    out = tmp_path_factory.mktemp("media")
    write_corpus(out, astronaut)
    return out


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
