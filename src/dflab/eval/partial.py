"""Partial-face test fakes (BiG-Arts §4.3, Fig. 8, Table 7) built at evaluation time from manifest rows.

Each test fake's region (``dflab.synthesis.partial``: eyes, nose, mouth, lower, upper, left, right) is pasted into
the crop of the same frame of its original video (``FaceRow.original_crop``, written by ``prepare`` with the same
box). Reals pass unchanged. A fake without an original crop cannot be made partial and is recorded as missing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dflab.data.manifest import FaceRow
from dflab.eval.predict import read_rgb


def partial_transform(region: str) -> Callable[[FaceRow, np.ndarray], np.ndarray]:
    """``transform(row, rgb)`` for :func:`dflab.eval.predict.predict`: fakes become partial fakes of ``region``."""
    import dflab.synthesis  # noqa: F401  (fills SYNTHESIZERS)
    from dflab.synthesis.base import SYNTHESIZERS, FaceSample
    from dflab.synthesis.partial import PartialParams

    synth = SYNTHESIZERS.get("partial")
    params = PartialParams(region=region)

    def fn(row: FaceRow, rgb: np.ndarray) -> np.ndarray:
        if row.label == 0:
            return rgb
        if not row.original_crop:
            raise ValueError(f"{row.video_id} frame {row.frame_index}: no original crop for a partial-face fake")
        original = read_rgb(row.original_crop)
        if original.shape != rgb.shape:
            raise ValueError(f"{row.video_id} frame {row.frame_index}: original crop {original.shape} != {rgb.shape}")
        face = FaceSample(image=rgb, landmarks=row.landmarks_array(), original=original, label=1)
        return synth.apply(face, params).image

    return fn
