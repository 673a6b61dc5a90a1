"""Checked ``argparse`` types for numeric options, so that a bad value is refused when the command starts (exit 2,
one line naming the option) instead of surfacing per file as a media error, or as a silent verdict: ``--threshold
nan`` made every file "real", ``--max-frames 0`` or ``dflab prepare --size 0`` recorded every file as a
``decode_error``, ``--stride 0`` crashed with a traceback.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, low: float, *, above: bool = False, high: float | None = None) -> Callable[[str], float]:
    """A parser of ``kind`` values ``>= low`` (``> low`` with ``above``) and ``<= high``, finite."""
    bounds = (f"> {low:g}" if above else f">= {low:g}") + (f" and <= {high:g}" if high is not None else "")
    name = "an integer" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {name} {bounds}")
        return value

    return parse


#: an integer >= 1 (frame counts, strides, jobs, workers)
positive_int = _number(int, 1)
#: an integer >= 0 (0 meaning "none" or "every")
non_negative_int = _number(int, 0)
#: a finite number > 0 (seconds, megabytes, margins)
positive_float = _number(float, 0, above=True)
#: a finite number >= 0
non_negative_float = _number(float, 0)
#: a probability in [0, 1] (thresholds)
probability = _number(float, 0, high=1)
#: a face-crop side in pixels (the range a checkpoint card accepts)
crop_side = _number(int, 16, high=2048)
