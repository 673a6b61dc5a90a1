"""Platt scaling and split-conformal verdict bands on synthetic scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.eval.calibration import conformal_band, platt_fit, sigmoid_calibrate, verdict_stats


def test_platt_recovers_a_known_logistic_model():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(1.7 * z - 0.8)))).astype(int)
    a, b = platt_fit(z, y)
    assert a == pytest.approx(1.7, abs=0.08) and b == pytest.approx(-0.8, abs=0.08)
    p = sigmoid_calibrate(z, a, b)
    assert abs(p.mean() - y.mean()) < 0.01  # calibrated in the large


def test_platt_refuses_one_class():
    with pytest.raises(ValueError, match="both classes"):
        platt_fit(np.zeros(5), np.zeros(5))


def test_conformal_band_bounds_both_errors_on_fresh_scores():
    """Chosen on one sample, the band keeps each class's error near alpha on a fresh sample of the same law."""
    rng = np.random.default_rng(1)

    def sample(n):
        y = np.r_[np.zeros(n), np.ones(n)].astype(int)
        return np.r_[rng.beta(2, 3, n), rng.beta(3, 2, n)], y

    s, y = sample(400)
    lo, hi = conformal_band(s, y, alpha=0.1)
    assert 0 < lo < hi < 1
    fresh, fy = sample(20000)
    st = verdict_stats(fresh, fy, lo, hi)
    assert st["real_called_fake"] < 0.17 and st["fake_called_real"] < 0.17
    assert 0.2 < st["uncertain"] < 0.9 and st["decisive_accuracy"] > 0.7
    # a smaller alpha widens the band: fewer errors, more uncertain
    lo2, hi2 = conformal_band(s, y, alpha=0.02)
    assert lo2 <= lo and hi2 >= hi


def test_separated_classes_close_the_band():
    s = np.r_[np.linspace(0.0, 0.3, 50), np.linspace(0.7, 1.0, 50)]
    y = np.r_[np.zeros(50), np.ones(50)]
    lo, hi = conformal_band(s, y, alpha=0.05)
    assert lo == hi and 0.3 < hi < 0.7
    st = verdict_stats(s, y, lo, hi)
    assert st["uncertain"] == 0 and st["decisive_accuracy"] == 1.0
