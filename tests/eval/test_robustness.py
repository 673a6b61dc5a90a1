"""Robustness sweeps: levels, per-track H.264 re-encoding, and AUC that degrades when the cue is destroyed."""

from __future__ import annotations

from pathlib import Path

from dflab.eval.predict import load_rows
from dflab.eval.robustness import SWEEPS, auc_curve, run_sweeps
from tests.eval.evalkit import BrightnessDetector


def test_paper_levels() -> None:
    assert SWEEPS["jpeg"].levels[0] == 100 and min(SWEEPS["jpeg"].levels) == 60
    assert SWEEPS["blur"].levels == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert SWEEPS["rescale"].levels[0] == 1.0 and min(SWEEPS["rescale"].levels) == 0.1
    assert SWEEPS["h264"].levels == (5, 10, 15, 20, 25, 30) and SWEEPS["h264"].per_sequence


def test_sweeps_run_and_identity_levels_match_clean(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    res = run_sweeps(bright, rows, sweeps=["jpeg", "rescale", "h264"], levels={"h264": [5, 30]}, batch_size=8)
    assert [r["level"] for r in res["h264"]["levels"]] == [5.0, 30.0]
    for name in ("jpeg", "rescale"):
        first = res[name]["levels"][0]
        assert first["video"]["auc"] == 1.0 and first["n"] == len(rows)
    xs, ys = auc_curve(res["jpeg"])
    assert len(xs) == len(SWEEPS["jpeg"].levels) and (ys <= 1).all()
    # the brightness cue survives compression: these sweeps keep the ranking
    assert all(r["video"]["auc"] == 1.0 for r in res["h264"]["levels"])


def test_noise_sweep_is_reproducible(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    a = run_sweeps(bright, rows, sweeps=["noise"], levels={"noise": [0.5]}, seed=3)
    b = run_sweeps(bright, rows, sweeps=["noise"], levels={"noise": [0.5]}, seed=3)
    assert a == b
