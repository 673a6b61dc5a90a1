"""Experiment (issue 11): the mean of the labelled candidates' probes instead of the one that won.

``train_default train`` picks one of 15 candidates on the same out-of-fold scores it reports, and the tenth run showed
how much that choice moves between runs (blocks 4–12 won the ninth, 6–12 the tenth). Each candidate is one linear
map of the standardised block features, and the standardisation of a feature is the same in every candidate, so the
mean of several probes' logits is itself one linear probe on the union of their blocks: an ensemble that costs the
scanner nothing. This measures it under the default's protocol (LOSO logits, the scanner's aggregation, per-kind
Platt and file-level calibration, bands judged on held-out halves)::

    python scripts/experiments/ensemble.py     # ~5 min here

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_default as td

SETS = ("b4-12_cls_mean", "b5-12_cls_mean", "b6-12_cls_mean")
C = 0.01
#: each kind's band at the error rate the tenth run chose for it
ALPHA = {"image": 0.1, "video": 0.2}


def summary(name: str, meta: list[dict], orig: np.ndarray, oof: np.ndarray, voof: dict) -> None:
    files = td.file_scores(meta, oof, orig, voof)
    names = sorted(files)
    platts = td.platt_by_kind(files, names)
    p = td.scanner_probs(files, names, platts, td.file_fits_by_kind(files, names, platts))
    y = np.array([files[n]["label"] for n in names])
    kinds = np.array([td.kind_of(n) for n in names])
    parts = [f"{name:28s} pooled {td.auc(y, p):.3f}"]
    for kind, alpha in ALPHA.items():
        sub = {n: files[n] for n in names if td.kind_of(n) == kind}
        held = td.band_check(sub, alpha)
        m = kinds == kind
        parts.append(f"{kind} {td.auc(y[m], p[m]):.3f} ({held['uncertain']:.0%} uncertain, "
                     f"{held['decisive_accuracy']:.0%} right)")  # fmt: skip
    print("; ".join(parts), flush=True)


def main() -> None:
    feats, meta = td.load_features()
    views = td.load_views()
    weight = td.face_weights(meta)
    orig = np.array([m["variant"] == "orig" for m in meta])
    oofs, voofs = {}, {}
    for fs in SETS:
        o, v = td.loso(feats, meta, *td.FEATURE_SETS[fs], (C,), True, views, weight=weight)
        oofs[fs], voofs[fs] = o[C], v[C]
        summary(f"{fs} C={C}", meta, orig, oofs[fs], voofs[fs])
    for group in (SETS, SETS[1:], (SETS[0], SETS[2])):
        oof = np.mean([oofs[fs] for fs in group], axis=0)
        voof = {i: np.mean([voofs[fs][i] for fs in group], axis=0) for i in voofs[group[0]]}
        summary("mean of " + " + ".join(fs.split("_")[0] for fs in group), meta, orig, oof, voof)


if __name__ == "__main__":
    main()
