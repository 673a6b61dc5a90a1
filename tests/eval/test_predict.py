"""Prediction over manifest rows with a detector whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dflab.eval import metrics
from dflab.eval.predict import Degradation, load_rows, predict, subsample_per_track, to_tensor
from tests.eval.evalkit import BrightnessDetector


def test_load_rows_filters_and_resolves_paths(synth_manifest: Path) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    assert {r.video_id for r in rows} == {"r1", "r2", "f1", "f2"}
    assert len(rows) == 3 + 3 + 3 + 6  # f2 has two face tracks
    assert all(Path(r.crop_path).is_absolute() and Path(r.crop_path).exists() for r in rows)
    nt = load_rows([synth_manifest], {"split": "test", "method": ["real", "NeuralTextures"]})
    assert {r.video_id for r in nt} == {"r1", "r2", "f2"}


def test_predict_scores_and_video_aggregation(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    pred = predict(bright, rows, batch_size=4, embeddings=True)
    assert len(pred) == len(rows) and not pred.missing
    assert pred.embeddings is not None and pred.embeddings.shape == (len(rows), 4)
    # brighter crops are fakes here: perfect ranking, and the score follows the brightness order
    assert metrics.auc(pred.labels, pred.scores) == 1.0
    g = pred.videos()
    order = [k[1] for k in np.array(g.keys, dtype=object)[np.argsort(g.scores)]]
    assert order == ["r1", "r2", "f2", "f1"]
    assert dict(zip([k[1] for k in g.keys], g.sizes.tolist(), strict=True))["f2"] == 6


def test_missing_crop_is_recorded_not_replaced(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    Path(rows[0].crop_path).unlink()
    pred = predict(bright, rows)
    assert len(pred) == len(rows) - 1
    assert pred.missing and rows[0].crop_path in pred.missing[0]["path"]


def test_degradation_is_applied_per_crop_and_per_track(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    dark = predict(bright, rows, degradation=Degradation("black", lambda im: im * 0))
    assert np.allclose(dark.scores, dark.scores[0])  # every crop black: one score
    seen: list[int] = []

    def per_track(frames: list[np.ndarray]) -> list[np.ndarray]:
        seen.append(len(frames))
        return frames

    predict(bright, rows, degradation=Degradation("id", per_track, per_sequence=True))
    assert sorted(seen) == [3, 3, 3, 3, 3]  # five tracks of three frames


def test_subsample_per_track_and_to_tensor(synth_manifest: Path, bright: BrightnessDetector) -> None:
    rows = load_rows([synth_manifest], {"split": "test"})
    sub = subsample_per_track(rows, 2)
    assert len(sub) == 5 * 2
    assert {r.frame_index for r in sub if r.video_id == "r1"} == {0, 20}  # first and last, evenly spaced
    x = to_tensor([np.full((10, 12, 3), 255, np.uint8)], bright.input_spec)
    assert x.shape == (1, 3, 32, 32) and float(x.max()) == 1.0
