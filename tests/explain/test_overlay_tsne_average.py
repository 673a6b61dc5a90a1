"""Overlays mapped back to the frame, t-SNE, averaged faces."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.data.manifest import FaceRow
from dflab.explain.average import average_by_group, sample_per_video
from dflab.explain.overlay import box_matrix, heat_to_frame, overlay, overlay_on_frame
from dflab.explain.tsne import plot_tsne, tsne


def test_box_matrix_maps_box_corners_to_crop_corners() -> None:
    m = box_matrix((100, 50, 300, 250), 64)
    pts = np.array([[100, 50, 1], [300, 250, 1]], float)
    np.testing.assert_allclose(pts @ m.T, [[0, 0], [64, 64]])


def test_heat_lands_inside_the_box_on_the_frame() -> None:
    heat = np.zeros((64, 64), np.float32)
    heat[:32, :32] = 1.0  # top-left quarter of the crop
    warped, valid = heat_to_frame(heat, box_matrix((100, 50, 300, 250), 64), (400, 500))
    assert warped.shape == (400, 500)
    assert warped[60:140, 110:190].mean() > 0.95  # top-left quarter of the box in frame px
    assert warped[160:240, 210:290].max() == 0.0 and warped[:40].max() == 0.0
    assert valid[100, 200] == 1.0 and valid[10, 10] == 0.0


def test_overlay_tints_only_the_valid_region(astronaut) -> None:
    frame = astronaut
    heat = np.ones((32, 32), np.float32)
    out = overlay_on_frame(frame, heat, box_matrix((150, 50, 350, 250), 32))
    assert out.shape == frame.shape
    assert np.array_equal(out[400:, 400:], frame[400:, 400:])  # far from the box: untouched
    assert not np.array_equal(out[100:200, 200:300], frame[100:200, 200:300])
    assert overlay(frame[:64, :64], np.zeros((8, 8))).shape == (64, 64, 3)


def test_tsne_separates_two_clusters_and_plots() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 16)), rng.normal(8, 1, (30, 16))])
    pts = tsne(x, seed=0)
    assert pts.shape == (60, 2)
    a, b = pts[:30].mean(0), pts[30:].mean(0)
    spread = max(pts[:30].std(0).max(), pts[30:].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread
    fig = plot_tsne(pts, ["real"] * 30 + ["Deepfakes"] * 30)
    assert fig is not None
    with pytest.raises(ValueError, match="N>=4"):
        tsne(x[:3])


def _row(video: str, frame: int) -> FaceRow:
    return FaceRow("d", video, frame, 0, 0, "real", "test", "", "", [0, 0, 1, 1], [0, 0, 1, 1], [])


def test_sample_per_video_and_average() -> None:
    rows = [_row("a", i) for i in range(20)] + [_row("b", i) for i in range(3)]
    s = sample_per_video(rows, k=5)
    assert [r.frame_index for r in s if r.video_id == "a"] == [0, 5, 10, 14, 19]
    assert len([r for r in s if r.video_id == "b"]) == 3
    faces = [np.full((40, 40, 3), v, np.uint8) for v in (0, 100, 200)]
    maps = [np.full((8, 8), v, np.float32) for v in (0.0, 0.5, 1.0)]
    avg = average_by_group(faces, maps, ["fake", "fake", "real"], size=16)
    assert avg["fake"]["n"] == 2 and int(avg["fake"]["face"].mean()) == 50
    assert avg["fake"]["map"].shape == (16, 16) and np.isclose(avg["fake"]["map"].mean(), 0.25)
    assert int(avg["real"]["face"].mean()) == 200
