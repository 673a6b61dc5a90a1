"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dflab.eval import metrics


def test_auc_hand_computed() -> None:
    # pairs (fake, real) ranked correctly: fakes {0.8, 0.4}, reals {0.6, 0.1}: 3 of 4 pairs -> 0.75
    y = np.array([1, 1, 0, 0])
    s = np.array([0.8, 0.4, 0.6, 0.1])
    assert metrics.auc(y, s) == pytest.approx(0.75)
    # a tie counts one half: fake 0.5 vs real 0.5
    assert metrics.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_thresholded_metrics_hand_computed() -> None:
    y = np.array([1, 1, 1, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1])  # tp=2 fn=1 fp=1 tn=1
    assert metrics.confusion(y, s) == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert metrics.acc(y, s) == pytest.approx(3 / 5)
    assert metrics.precision(y, s) == pytest.approx(2 / 3)
    assert metrics.recall(y, s) == pytest.approx(2 / 3)
    assert metrics.f1(y, s) == pytest.approx(2 / 3)
    assert metrics.balanced_acc(y, s) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # the threshold is inclusive: score 0.6 at threshold 0.6 is fake
    assert metrics.confusion(y, s, threshold=0.6)["tp"] == 2
    assert metrics.acc(y, s, threshold=0.65) == pytest.approx(2 / 5)


def test_eer_hand_computed() -> None:
    # perfectly separated -> 0; perfectly inverted -> 1
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    assert metrics.eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    # reals 0.1 0.4 0.35 0.8 / fakes 0.7 0.6 0.3 0.9: thresholds where FPR = FNR: at t in (0.4, 0.6], FPR = 1/4
    # (0.8) and FNR = 1/4 (0.3): the crossing is exact
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.7, 0.6, 0.3, 0.9]
    assert metrics.eer(y, s) == pytest.approx(0.25)


def test_eer_interpolates_between_roc_points() -> None:
    # 1 real, 2 fakes. ROC points (fpr, tpr): (0,0) (0,.5)[s=.9] (1,.5)[s=.5] (1,1)[s=.2]
    # fnr: 1, .5, .5, 0 -> diff fpr-fnr: -1, -.5, .5, 1 -> crossing halfway between (0,.5) and (1,.5): fpr = 0.5
    assert metrics.eer([1, 0, 1], [0.9, 0.5, 0.2]) == pytest.approx(0.5)


def test_ap_hand_computed() -> None:
    # ranking fake, real, fake: precision at the fakes 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert metrics.ap([1, 0, 1], [0.9, 0.5, 0.2]) == pytest.approx((1 + 2 / 3) / 2)


def test_single_class_is_nan_not_a_number_made_up() -> None:
    for fn in (metrics.auc, metrics.ap, metrics.eer):
        assert math.isnan(fn([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(metrics.precision([0, 0], [0.1, 0.2]))  # nothing predicted fake
    m = metrics.binary_metrics([0, 0], [0.1, 0.2])
    assert m["acc"] == 1.0 and m["n_real"] == 2 and math.isnan(m["auc"])


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        metrics.auc([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        metrics.auc([0, 2], [0.5, 0.4])
    with pytest.raises(ValueError, match="finite"):
        metrics.auc([0, 1], [0.5, float("nan")])


def test_bootstrap_ci_contains_value_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        return y, y * 0.8 + rng.normal(0, 0.5, n)

    y, s = sample(40)
    small = metrics.bootstrap_ci(y, s, n_boot=200, seed=1)
    assert small["low"] <= small["value"] <= small["high"]
    assert small["n_valid"] == 200
    y, s = sample(1000)
    big = metrics.bootstrap_ci(y, s, n_boot=200, seed=1)
    assert (big["high"] - big["low"]) < (small["high"] - small["low"])
    # deterministic with a seed
    assert metrics.bootstrap_ci(y, s, n_boot=50, seed=3) == metrics.bootstrap_ci(y, s, n_boot=50, seed=3)


def test_bootstrap_single_class_gives_nan_interval() -> None:
    ci = metrics.bootstrap_ci([1, 1, 1], [0.1, 0.2, 0.3], n_boot=20)
    assert ci["n_valid"] == 0 and math.isnan(ci["low"])


def test_cluster_bootstrap_is_wider_than_frame_bootstrap_for_correlated_frames() -> None:
    # 10 videos x 30 identical-ish frames: the frames add no information, the cluster CI must say so
    rng = np.random.default_rng(0)
    vy = np.array([0, 1] * 5)
    vs = vy * 0.3 + rng.normal(0, 0.4, 10)
    y = np.repeat(vy, 30)
    s = np.repeat(vs, 30) + rng.normal(0, 0.01, 300)
    groups = np.repeat(np.arange(10), 30)
    naive = metrics.bootstrap_ci(y, s, n_boot=100, seed=0)
    cluster = metrics.bootstrap_ci(y, s, n_boot=100, seed=0, groups=groups)
    assert (cluster["high"] - cluster["low"]) > 2 * (naive["high"] - naive["low"])
