"""Detection metrics as pure functions of explicit arrays (STYLE.md §9).

The papers report AUC (all five), accuracy, precision, recall, F1 and EER (BiG-Arts Table 2), frame- and
sequence-level AUC/EER (BiG-Arts Table 3, LiSiam Tables I–II) and AP. Every function takes ``labels`` (1 = fake)
and ``scores`` (P(fake)) as 1-D arrays; nothing here knows about videos (see :mod:`dflab.eval.aggregate`).

A threshold-free metric (AUC, AP, EER) is undefined when the labels hold only one class; it is returned as
``nan`` rather than a made-up number, and reports print it as "n/a".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

Metric = Callable[[np.ndarray, np.ndarray], float]


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must have the same length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _two_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; ``nan`` when only one class is present.

    Shape:
        labels (N,), scores (N,).
    """
    y, s = _check(labels, scores)
    return float(skm.roc_auc_score(y, s)) if _two_classes(y) else float("nan")


def ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision with fake as the positive class; ``nan`` when only one class is present."""
    y, s = _check(labels, scores)
    return float(skm.average_precision_score(y, s)) if _two_classes(y) else float("nan")


def roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``; empty arrays when only one class is present."""
    y, s = _check(labels, scores)
    if not _two_classes(y):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thr


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: the point of the ROC curve where FPR = FNR (BiG-Arts Table 2, 3).

    Computed on the exact ROC curve: between the two consecutive ROC points where ``fpr - fnr`` changes sign the
    curve is a straight segment, and the EER is where that segment crosses ``fpr = fnr`` (linear interpolation).
    ``nan`` when only one class is present.
    """
    fpr, tpr, _ = roc(labels, scores)
    if fpr.size == 0:
        return float("nan")
    fnr = 1.0 - tpr
    diff = fpr - fnr  # non-decreasing along the curve: -1 at the start, +1 at the end
    i = int(np.searchsorted(diff, 0.0, side="left"))
    if i < diff.size and diff[i] == 0.0:
        return float(fpr[i])
    if i == 0:
        return float(fpr[0])
    # segment (i-1, i): diff goes from < 0 to > 0
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """Counts of true/false positives/negatives with ``score >= threshold`` predicted fake."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def acc(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Accuracy at ``threshold`` (``score >= threshold`` is fake)."""
    c = confusion(labels, scores, threshold)
    return _ratio(c["tp"] + c["tn"], sum(c.values()))


def precision(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Precision of the fake class; ``nan`` when nothing is predicted fake."""
    c = confusion(labels, scores, threshold)
    return _ratio(c["tp"], c["tp"] + c["fp"])


def recall(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Recall (TPR) of the fake class; ``nan`` when there is no fake."""
    c = confusion(labels, scores, threshold)
    return _ratio(c["tp"], c["tp"] + c["fn"])


def f1(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the fake class (harmonic mean of precision and recall); ``nan`` when undefined."""
    c = confusion(labels, scores, threshold)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


def balanced_acc(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of the real-class and fake-class recalls (robust to the 1:4 real:fake ratio of FF++)."""
    c = confusion(labels, scores, threshold)
    return float(np.nanmean([_ratio(c["tp"], c["tp"] + c["fn"]), _ratio(c["tn"], c["tn"] + c["fp"])]))


#: threshold-free metrics (take labels, scores)
RANKING: dict[str, Metric] = {"auc": auc, "ap": ap, "eer": eer}
#: thresholded metrics (take labels, scores, threshold)
THRESHOLDED = {"acc": acc, "balanced_acc": balanced_acc, "precision": precision, "recall": recall, "f1": f1}


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """All metrics of BiG-Arts Table 2 (plus AP and balanced accuracy) and the class counts.

    Shape:
        labels (N,), scores (N,).
    """
    y, s = _check(labels, scores)
    out: dict[str, Any] = {name: fn(y, s) for name, fn in RANKING.items()}
    out.update({name: fn(y, s, threshold) for name, fn in THRESHOLDED.items()})
    out.update({"n": int(y.size), "n_fake": int(y.sum()), "n_real": int(y.size - y.sum()), "threshold": threshold})
    return out


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Metric = auc,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: np.ndarray | list | None = None,
) -> dict[str, float]:
    """Percentile bootstrap confidence interval of ``metric`` over resampled units.

    Resample the *units* that were scored: pass video-level arrays for a video-level CI, or frame-level arrays with
    ``groups`` (the video id of each frame) for a cluster bootstrap that resamples whole videos — frames of one
    video are not independent, and resampling them one by one would give a falsely narrow interval.
    Resamples holding a single class are skipped (``n_valid`` counts the others); with fewer than 2 valid resamples
    the interval is ``nan``.

    Shape:
        labels (N,), scores (N,), groups (N,) or None.

    Returns:
        ``{"value", "low", "high", "alpha", "n_boot", "n_valid"}``.
    """
    y, s = _check(labels, scores)
    value = metric(y, s)
    rng = np.random.default_rng(seed)
    vals = []
    if groups is None:
        members = [np.array([i]) for i in range(y.size)]
    else:
        g = np.asarray(groups)
        if g.shape[0] != y.size:
            raise ValueError(f"groups ({g.shape[0]}) and labels ({y.size}) differ in length")
        _, inv = np.unique(g, return_inverse=True)
        members = [np.flatnonzero(inv == k) for k in range(int(inv.max()) + 1)] if y.size else []
    if members:
        picks = rng.integers(0, len(members), size=(n_boot, len(members)))
        for row in picks:
            sel = np.concatenate([members[k] for k in row])
            yb = y[sel]
            if not _two_classes(yb):
                continue
            v = metric(yb, s[sel])
            if np.isfinite(v):
                vals.append(v)
    if len(vals) < 2:
        low = high = float("nan")
    else:
        low, high = (float(q) for q in np.quantile(vals, [alpha / 2, 1 - alpha / 2]))
    return {"value": value, "low": low, "high": high, "alpha": alpha, "n_boot": n_boot, "n_valid": len(vals)}
