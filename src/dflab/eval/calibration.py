"""Calibration and verdict bands, fitted on held-out scores (pure functions of explicit arrays).

* :func:`platt_fit` — Platt scaling (Platt 1999): P(fake) = sigmoid(a · logit + b), a > 0 for a useful detector.
  A temperature alone (Guo et al. 2017) cannot move the decision point; the bias can.
* :func:`conformal_band` — the "uncertain" band of a verdict, as split-conformal thresholds (Vovk et al.; Angelopoulos
  & Bates 2021): ``fake_at`` is the finite-sample (1 − α) quantile of the real files' scores, so at most α of real
  files are called fake; ``real_below`` the α quantile of the fake files' scores, so at most α of fakes are called
  real. Between them the detector says "uncertain". When the classes are separated the band closes.
* :func:`verdict_stats` — the share of uncertain verdicts and the accuracy of the decisive ones under a band.
* :func:`file_calibration_fit` / :func:`file_calibrate` — a file's P(fake) from its score (the mean P(fake) of its
  faces), Platt scaling on the score's logit fitted on held-out *files* with both classes weighted equally. The mean
  of face probabilities is not itself a calibrated probability of the file: it averages away the frame-to-frame
  noise that the face-level fit had to allow for, so on videos it stayed within a few hundredths of 0.4 whatever
  the file. Weighting the classes equally states the prior: P(fake) is the probability for a file as likely to be
  fake as real before it was scanned, whatever mix of files the validation happened to hold; its odds are the
  likelihood ratio of the evidence.

The checkpoint card stores the results as ``calibration = {"method": "platt", "scale": a, "bias": b}`` and
``verdict = {"real_below": lo, "fake_at": hi}`` (read by :func:`dflab.scan.pipeline.scorer_from_model`).
"""

from __future__ import annotations

import numpy as np


def platt_fit(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit P(fake) = sigmoid(a · logit + b) by (almost unregularised) logistic regression.

    Shape:
        logits, labels: (N,); returns (a, b).
    """
    from sklearn.linear_model import LogisticRegression

    z = np.asarray(logits, np.float64).reshape(-1, 1)
    y = np.asarray(labels).astype(int)
    if not np.isfinite(z).all() or len(set(y.tolist())) < 2:
        raise ValueError("Platt scaling needs finite logits of both classes")
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def sigmoid_calibrate(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    """P(fake) = sigmoid(a · logit + b). Shape: any -> same."""
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits, np.float64) + b)))


def file_calibration_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit P(fake | file) = sigmoid(a · logit(score) + b) on held-out file ``scores`` (in (0, 1)), both classes
    weighted equally (a prior of 1/2, see the module doc).

    Shape:
        scores, labels: (N,); returns (a, b).
    """
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(int)
    if not np.isfinite(s).all() or len(set(y.tolist())) < 2:
        raise ValueError("a file calibration needs finite scores of both classes")
    z = logit(s).reshape(-1, 1)
    lr = LogisticRegression(C=1e4, max_iter=1000, class_weight="balanced").fit(z, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 − p)), with p clipped to [1e-6, 1 − 1e-6] so that 0 and 1 stay finite. Shape: any -> same."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def file_calibrate(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """A file's P(fake) from its score: sigmoid(a · logit(score) + b), monotone in the score when a > 0 (a verdict
    band on scores maps onto one on probabilities, file for file). Shape: any -> same."""
    return sigmoid_calibrate(logit(scores), a, b)


def conformal_band(scores: np.ndarray, labels: np.ndarray, alpha: float) -> tuple[float, float]:
    """Split-conformal thresholds ``(real_below, fake_at)`` at error rate ``alpha`` per class (see module doc).

    Shape:
        scores, labels: (N,) with both classes present; returns two floats, ``real_below <= fake_at``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(int)
    reals, fakes = np.sort(s[y == 0]), np.sort(s[y == 1])
    if not len(reals) or not len(fakes):
        raise ValueError("a verdict band needs real and fake scores")
    k_r = min(len(reals) - 1, int(np.ceil((len(reals) + 1) * (1 - alpha))) - 1)
    k_f = max(0, int(np.floor((len(fakes) + 1) * alpha)) - 1)
    fake_at, real_below = float(np.nextafter(reals[k_r], np.inf)), float(fakes[k_f])
    if real_below > fake_at:  # separated classes: no uncertain band, one threshold between them
        fake_at = real_below = (fake_at + real_below) / 2
    return real_below, fake_at


def verdict_stats(scores: np.ndarray, labels: np.ndarray, real_below: float, fake_at: float) -> dict[str, float]:
    """Share of ``uncertain`` verdicts and accuracy of the decisive ones (``fake`` at/above ``fake_at``, ``real``
    below ``real_below``).

    Shape:
        scores, labels: (N,).
    """
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(int)
    fake, real = s >= fake_at, s < real_below
    decisive = fake | real
    right = (fake & (y == 1)) | (real & (y == 0))
    return {
        "uncertain": float(1 - decisive.mean()) if len(s) else float("nan"),
        "decisive_accuracy": float(right.sum() / decisive.sum()) if decisive.any() else float("nan"),
        "fake_called_real": float((real & (y == 1)).sum() / max(1, (y == 1).sum())),
        "real_called_fake": float((fake & (y == 0)).sum() / max(1, (y == 0).sum())),
        "n": len(s),
    }
