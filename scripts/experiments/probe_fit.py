"""Experiment (issue 11): how the default's probe is fitted: PCA width and per-source weights.

The shipped probe standardises the concatenated block features, keeps :data:`train_default.PCA_DIMS` (384) principal
components and fits a class-balanced logistic regression (C = 0.01) in which every face weighs 1 (a labelled fake 8).
Three choices were never measured: C between the candidates' 0.01 / 0.1 / 1, the PCA width (fewer components
regularise harder, more keep finer directions),
and the weight of each *source*: a few sources hold most faces (DeepFaceLive's 45 composite halves, DreamTalk's 28
clips), so the fit learns them best, while what must generalise is the direction the sources share. Each variant is
scored under the default's protocol (LOSO folds, the scanner's aggregation and per-kind calibration, bands chosen
and judged on held-out halves)::

    DFLAB_DEFAULT_RUN=runs/clip_b3 python scripts/experiments/probe_fit.py    # ~12 min here

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tune_tail
from tune_tail import Shipped

td = tune_tail.td


def source_balanced(meta: list[dict], weight: np.ndarray, power: float) -> np.ndarray:
    """``weight`` with each (source, label) group's total scaled by its size to the power ``-power`` (1: every group
    weighs the same; 0.5: the square root of its size), then rescaled to the same total per label."""
    keys = np.array([f"{m['source']}|{m['label']}" for m in meta])
    y = np.array([m["label"] for m in meta])
    sizes = {k: (keys == k).sum() for k in set(keys)}
    w = weight * np.array([sizes[k] ** -power for k in keys])
    for label in (0, 1):
        w[y == label] *= weight[y == label].sum() / w[y == label].sum()
    return w


def main() -> None:
    run = Shipped.load()
    fit_probe = td.fit_probe
    try:
        for dims in (384, 128, 768):
            td.fit_probe = lambda x, y, cs, n_pca=dims, weight=None: fit_probe(x, y, cs, n_pca, weight)
            run.summary(f"PCA {dims}", *run.loso())
    finally:
        td.fit_probe = fit_probe
    for c in (0.003, 0.03):
        run.summary(f"C = {c}", *run.loso(c=c))
    for power in (0.5, 1.0):
        run.summary(f"sources balanced ^{power}", *run.loso(weight=source_balanced(run.meta, run.weight, power)))


if __name__ == "__main__":
    main()
