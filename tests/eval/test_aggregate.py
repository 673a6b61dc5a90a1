"""Video and face-track aggregation against hand-computed cases (several faces per video included)."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.eval import aggregate, metrics


def test_video_mean_of_frames() -> None:
    vids = ["a", "a", "a", "b", "b"]
    s = np.array([0.2, 0.4, 0.9, 0.1, 0.3])
    y = np.array([1, 1, 1, 0, 0])
    g = aggregate.video_scores(vids, s, y)
    assert [k[1] for k in g.keys] == ["a", "b"]
    np.testing.assert_allclose(g.scores, [0.5, 0.2])
    np.testing.assert_array_equal(g.labels, [1, 0])
    np.testing.assert_array_equal(g.sizes, [3, 2])
    np.testing.assert_allclose(aggregate.video_scores(vids, s, y, how="median").scores, [0.4, 0.2])
    np.testing.assert_allclose(aggregate.video_scores(vids, s, y, how="max").scores, [0.9, 0.3])
    np.testing.assert_allclose(aggregate.video_scores(vids, s, y, how="vote").scores, [1 / 3, 0.0])


def test_several_faces_per_video() -> None:
    # video v: track 0 (real-looking) frames 0.1, 0.3 -> 0.2; track 1 (swapped) frames 0.8, 0.6 -> 0.7
    vids = ["v", "v", "v", "v", "w"]
    tracks = [0, 0, 1, 1, 0]
    s = np.array([0.1, 0.3, 0.8, 0.6, 0.4])
    y = np.array([1, 1, 1, 1, 0])
    t = aggregate.track_scores(vids, tracks, s, y)
    assert t.keys == [("", "v", 0), ("", "v", 1), ("", "w", 0)]
    np.testing.assert_allclose(t.scores, [0.2, 0.7, 0.4])
    v = aggregate.video_scores(vids, s, y, track_ids=tracks)  # default: max over tracks
    np.testing.assert_allclose(v.scores, [0.7, 0.4])
    np.testing.assert_array_equal(v.sizes, [4, 1])
    v_mean = aggregate.video_scores(vids, s, y, track_ids=tracks, track_how="mean")
    np.testing.assert_allclose(v_mean.scores, [0.45, 0.4])
    # with max over tracks the video is ranked above the real one; with the plain frame mean (0.45) too, but the
    # max keeps the swapped face's evidence
    assert metrics.auc(v.labels, v.scores) == 1.0


def test_same_video_id_in_two_datasets_stays_apart() -> None:
    g = aggregate.video_scores(["x", "x"], np.array([0.1, 0.9]), np.array([0, 1]), datasets=["ffpp", "dfdc"])
    assert g.keys == [("ffpp", "x"), ("dfdc", "x")]
    np.testing.assert_allclose(g.scores, [0.1, 0.9])


def test_frame_vs_video_auc_differ_as_hand_computed() -> None:
    # frames: fake video a {0.9, 0.1}, real video b {0.4, 0.5}: frame AUC = (1 + 1 + 0 + 0) / 4 = 0.5;
    # video means a 0.5 > b 0.45 -> video AUC 1
    vids = ["a", "a", "b", "b"]
    s = np.array([0.9, 0.1, 0.4, 0.5])
    y = np.array([1, 1, 0, 0])
    assert metrics.auc(y, s) == pytest.approx(0.5)
    g = aggregate.video_scores(vids, s, y)
    assert metrics.auc(g.labels, g.scores) == 1.0


def test_errors() -> None:
    with pytest.raises(KeyError, match="unknown aggregation"):
        aggregate.video_scores(["a"], np.array([0.1]), np.array([0]), how="mode")
    with pytest.raises(ValueError, match="differ in length"):
        aggregate.group_scores([("a",)], np.array([0.1, 0.2]), np.array([0, 1]))
