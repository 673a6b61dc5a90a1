"""Platt scaling and split-conformal verdict bands on synthetic scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.eval.calibration import (
    conformal_band,
    file_calibrate,
    file_calibration_fit,
    platt_fit,
    sigmoid_calibrate,
    verdict_stats,
)


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


def test_file_calibration_recovers_the_likelihood_ratio_whatever_the_class_mix():
    """File scores crowded near 0.4 (as a video's mean face P(fake) was), four reals per fake: the evidence t is
    N(+1, 1) for fakes and N(-1, 1) for reals, so the likelihood ratio is exp(2t) and a file as likely fake as real
    beforehand has P(fake) = sigmoid(2t). The fit finds that map (the mix of the sample does not enter), and it
    spreads the crowded scores over the whole range."""
    rng = np.random.default_rng(3)
    t = np.concatenate([rng.normal(1, 1, 2000), rng.normal(-1, 1, 8000)])
    y = np.r_[np.ones(2000, int), np.zeros(8000, int)]
    s = 1 / (1 + np.exp(-(-0.4 + 0.1 * t)))  # logit(s) = -0.4 + 0.1 t
    assert np.quantile(s, 0.05) > 0.3 and np.quantile(s, 0.95) < 0.46
    a, b = file_calibration_fit(s, y)
    assert a == pytest.approx(20.0, rel=0.08) and b == pytest.approx(8.0, abs=0.6)
    p = file_calibrate(s, a, b)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-2 * t)), atol=0.05)
    assert file_calibrate(1 / (1 + np.exp(0.4)), a, b) == pytest.approx(0.5, abs=0.05)  # t = 0: no evidence
    lr = (lambda q: q / (1 - q))(file_calibrate(1 / (1 + np.exp(-(-0.4 + 0.1))), a, b))  # t = 1: LR e^2
    assert lr == pytest.approx(np.e**2, rel=0.2)
    order = np.argsort(s)
    assert (np.diff(p[order]) >= 0).all()  # monotone: a band on scores maps onto one on P(fake), file for file
    with pytest.raises(ValueError, match="both classes"):
        file_calibration_fit(s[:5], np.zeros(5))
