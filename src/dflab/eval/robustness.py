"""Robustness sweeps (BiG-Arts §5, Fig. 9, Table 8): AUC against the level of one degradation at a time.

Degradations come from :mod:`dflab.synthesis.degrade` and are applied to the test face crops before the detector's
own preprocessing:

=========  ==================================  ==============================================================
sweep      levels (paper)                      note
=========  ==================================  ==============================================================
jpeg       quality 100, 90, 80, 70, 60         OpenCV encoder, as the paper; 100 = untouched
blur       σ 0, 0.1 … 0.5, 3×3 kernel          σ = 0 = untouched
rescale    factor 1, 0.8, 0.6, 0.4, 0.2, 0.1   down and back up; the detector then resizes to its input size
noise      σ 0, 0.1 … 0.5                      σ on the 0–255 scale (the paper does not give the scale)¹
h264       CRF 5, 10, 15, 20, 25, 30           libx264 re-encode of each face track's crops in frame order
=========  ==================================  ==============================================================

¹ On [0, 1] pixels σ = 0.5 would bury the face in noise, at odds with the flat curve of the paper's Fig. 9(d).

Deviation: BiG-Arts re-encodes the whole test *video* and crops afterwards; we re-encode the sequence of face crops
of each track (same codec and CRF, smaller frame), which avoids re-running face detection per level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dflab.data.manifest import FaceRow
from dflab.eval import metrics
from dflab.eval.predict import Degradation, predict
from dflab.models.base import Detector, InputSpec


@dataclass(frozen=True)
class Sweep:
    """One degradation swept over levels.

    Attributes:
        name: CLI name.
        label: axis label.
        levels: levels in the paper's order (untouched first).
        per_sequence: the degradation needs whole face tracks (video re-encoding).
    """

    name: str
    label: str
    levels: tuple[float, ...]
    per_sequence: bool = False

    def degradation(self, level: float, seed: int = 0) -> Degradation:
        from dflab.synthesis import degrade as dg

        if self.name == "h264":
            return Degradation(f"h264@{level:g}", lambda frames: dg.h264(frames, crf=round(level)), per_sequence=True)
        fn = dg.DEGRADATIONS[self.name]
        return Degradation(f"{self.name}@{level:g}", lambda im: fn(im, level, seed=seed))


SWEEPS: dict[str, Sweep] = {
    "jpeg": Sweep("jpeg", "JPEG quality", (100, 90, 80, 70, 60)),
    "blur": Sweep("blur", "Gaussian blur σ (3×3)", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    "rescale": Sweep("rescale", "rescale factor", (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)),
    "noise": Sweep("noise", "Gaussian noise σ (0–255 scale)", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    "h264": Sweep("h264", "H.264 CRF", (5, 10, 15, 20, 25, 30), per_sequence=True),
}


def run_sweeps(
    model: Detector,
    rows: Sequence[FaceRow],
    *,
    sweeps: Sequence[str] = tuple(SWEEPS),
    levels: dict[str, Sequence[float]] | None = None,
    spec: InputSpec | None = None,
    batch_size: int = 32,
    how: str = "mean",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """AUC (frame and video level), EER and accuracy of ``model`` on ``rows`` at every level of every sweep.

    Returns:
        ``{sweep: {"label", "levels": [{"level", "frame": {...}, "video": {...}, "n", "n_missing"}], ...}}``.
    """
    out: dict[str, Any] = {}
    for name in sweeps:
        if name not in SWEEPS:
            raise KeyError(f"unknown sweep {name!r}; known: {', '.join(SWEEPS)}")
        sw = SWEEPS[name]
        lv = tuple(levels[name]) if levels and name in levels else sw.levels
        res = []
        for level in lv:
            pred = predict(model, rows, spec=spec, batch_size=batch_size, degradation=sw.degradation(level, seed))
            g = pred.videos(how=how)
            res.append(
                {
                    "level": float(level),
                    "frame": _short(metrics.binary_metrics(pred.labels, pred.scores)),
                    "video": _short(metrics.binary_metrics(g.labels, g.scores)),
                    "n": len(pred),
                    "n_missing": len(pred.missing),
                }
            )
            if progress is not None:
                fa, va = res[-1]["frame"]["auc"], res[-1]["video"]["auc"]
                progress(f"{name}@{level:g}: frame AUC {fa:.4f} video AUC {va:.4f}")
        out[name] = {"label": sw.label, "per_sequence": sw.per_sequence, "levels": res}
    return out


def _short(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("auc", "eer", "acc", "ap", "n")}


def auc_curve(result: dict[str, Any], level: str = "video") -> tuple[np.ndarray, np.ndarray]:
    """(levels, AUC) arrays of one sweep's result, for plotting."""
    xs = np.array([r["level"] for r in result["levels"]], dtype=np.float64)
    ys = np.array([r[level]["auc"] for r in result["levels"]], dtype=np.float64)
    return xs, ys
