"""The analyst's view of a scan: verdicts in words, per-track verdicts, key frames, pictures, and the HTML report."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dflab.scan import views
from dflab.scan.pipeline import ScanOptions, scan_file
from dflab.scan.report import render_html


def _record(**kw) -> dict:
    """Two tracks over 8 sampled frames at 10 fps: track 0 (8 faces, decisive), track 1 (1 face, too short)."""
    frames = []
    for i in range(8):
        faces = [{"track_id": 0, "score": 0.6 + 0.01 * i, "box": [10, 10, 50, 50], "det_score": 1.0}]
        if i == 3:
            faces.append({"track_id": 1, "score": 0.95, "box": [60, 10, 90, 40], "det_score": 0.3})
        frames.append({"frame_index": 2 * i, "time_s": 0.2 * i, "faces": faces})
    rec = {
        "path": "x.mp4",
        "kind": "video",
        "status": "ok",
        "fps": 10.0,
        "threshold": 0.5,
        "margin": 0.05,
        "verdict": "fake",
        "score": 0.635,
        "ci": [0.61, 0.66],
        "decisive_track": 0,
        "n_faces": 9,
        "n_sampled": 8,
        "detectors": ["d"],
        "tracks": [
            {"track_id": 0, "n_faces": 8, "score": 0.635, "ci": [0.61, 0.66], "first_frame": 0, "last_frame": 14},
            {"track_id": 1, "n_faces": 1, "score": 0.95, "ci": [0.95, 0.95], "first_frame": 6, "last_frame": 6},
        ],
        "frames": frames,
    }
    rec.update(kw)
    return rec


def test_key_frames_are_the_decisive_tracks_most_suspicious_in_time_order():
    rec = _record()
    assert views.key_frames(rec) == [10, 12, 14]  # scores rise over time; the short track's 0.95 does not count
    assert views.key_frames(rec, k=1) == [14]
    assert views.key_frames({**rec, "decisive_track": None}) == []


def test_summarize_gives_each_track_its_own_verdict_and_says_why_a_short_track_does_not_count():
    v = views.summarize(_record())
    t0, t1 = v["tracks"]
    assert (t0["verdict"], t0["counts"], t0["decisive"], t0["reason"]) == ("fake", True, True, "")
    assert t1["verdict"] == "fake" and not t1["counts"] and "does not count" in t1["reason"]
    assert (t0["start_s"], t0["end_s"]) == (0.0, 1.4)
    assert [k["frame_index"] for k in v["key_frames"]] == [10, 12, 14]
    assert v["key_frames"][-1]["score"] == pytest.approx(0.67)
    assert "above the threshold 0.50" in v["reason"]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"verdict": "uncertain", "score": 0.52, "ci": [0.51, 0.53]}, "within ±0.05 of the threshold"),
        ({"verdict": "uncertain", "score": 0.56, "ci": [0.45, 0.6]}, "straddles the threshold"),
        ({"status": "no_face", "verdict": "no_face", "score": None, "ci": None, "tracks": [], "frames": []}, "no face"),
        (
            {"status": "error", "verdict": "error", "error": {"cause": "truncated", "detail": "moov atom not found"}},
            "truncated: moov atom not found",
        ),
        ({"verdict": "uncertain", "reason": "face too small (31 px)"}, "face too small (31 px)"),
        ({"verdict": "uncertain", "reason": {"code": "out_of_scope", "text": "unlike the training data"}}, "unlike"),
    ],
)
def test_file_reason_uses_the_scans_reason_or_says_it_in_words(kw, expected):
    assert expected in views.file_reason(_record(**kw))


def test_a_tracks_own_reason_and_verdict_win():
    rec = _record()
    rec["tracks"][1].update(reason="face too small", verdict="uncertain")
    t1 = views.summarize(rec)["tracks"][1]
    assert (t1["reason"], t1["verdict"]) == ("face too small", "uncertain")


def test_card_summary_reads_has_seen_and_has_not_seen():
    card = {"name": "m", "has_seen": ["swaps"], "has_not_seen": ["diffusion"], "calibration": {"method": "Platt"}}
    assert views.card_summary(card) == {
        "name": "m",
        "summary": "",
        "has_seen": ["swaps"],
        "has_not_seen": ["diffusion"],
        "calibration": "Platt",
    }
    assert views.card_summary(None)["has_not_seen"] == []


def _decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def test_render_views_of_a_real_video_scan(media_dir, tiny_scorer):
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, ScanOptions(max_frames=6, overlays=2))
    rec = res.record
    assert rec["status"] == "ok"
    out = views.render_views(rec, media_dir / "clip.mp4", tiny_scorer, res.overlays)
    keys = views.key_frames(rec)
    assert keys and {"timeline", "track0", *(f"key{i:06d}" for i in keys), *(f"heat{i:06d}" for i in keys)} <= set(out)
    assert sum(n.startswith("frame") for n in out) == 2  # the scan's own overlays are kept
    key, heat = _decode(out[f"key{keys[0]:06d}"]), _decode(out[f"heat{keys[0]:06d}"])
    assert key.shape == (views.KEY_SIZE, views.KEY_SIZE, 3)
    assert heat.shape == (views.KEY_SIZE, views.KEY_SIZE, 4)  # a separate layer with transparency
    assert heat[:, :, 3].max() > 0 and heat[:, :, 3].min() == 0  # the map shows on the face, not everywhere
    assert _decode(out["track0"]).shape == (views.THUMB_SIZE, views.THUMB_SIZE, 3)


def test_render_views_without_the_media_keeps_what_it_has(media_dir, tiny_scorer, tmp_path):
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, ScanOptions(max_frames=4, overlays=1))
    out = views.render_views(res.record, tmp_path / "gone.mp4", tiny_scorer, res.overlays)
    assert set(out) == {"timeline", *(n for n, _ in res.overlays)}
    no_heat = views.render_views(res.record, media_dir / "clip.mp4", None, ())
    assert not any(n.startswith("heat") for n in no_heat) and any(n.startswith("key") for n in no_heat)


def test_html_report_shows_reason_tracks_key_frames_toggle_and_card(media_dir, tiny_scorer):
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, ScanOptions(max_frames=6, overlays=1))
    rec = {**res.record, "reason": "<script>alert(1)</script> out of scope"}
    pics = views.render_views(rec, media_dir / "clip.mp4", tiny_scorer, res.overlays)
    card = {"name": "m", "has_seen": ["face swaps"], "has_not_seen": ["diffusion faces"]}
    page = render_html([rec], [pics], {"detector": "m", "cards": [card]})
    assert "&lt;script&gt;alert(1)&lt;/script&gt; out of scope" in page and "<script>" not in page
    assert "Face tracks" in page and "face 0" in page
    assert "The frames that drove the verdict" in page and 'class="toggle"' in page and 'class="heat"' in page
    assert "diffusion faces" in page and "face swaps" in page
    # the older call with (name, array) overlays still renders
    assert "Sampled frames with heatmaps" in render_html([res.record], [res.overlays])


def test_render_views_uses_the_scans_held_frames_and_maps(media_dir, tiny_scorer, tmp_path, monkeypatch):
    """With the frames and maps the scan kept, the report decodes nothing and scores nothing again."""
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, ScanOptions(max_frames=6, overlays=6))
    keys = views.key_frames(res.record)
    assert keys and set(keys) <= set(res.frames), "the scored faces' frames are held"
    assert {(i, res.record["decisive_track"]) for i in keys} <= set(res.heats)
    monkeypatch.setattr(views, "_decode", lambda *a, **k: pytest.fail("decoded again"))
    out = views.render_views(res.record, tmp_path / "gone.mp4", None, res.overlays, frames=res.frames, heats=res.heats)
    assert {"track0", *(f"key{i:06d}" for i in keys), *(f"heat{i:06d}" for i in keys)} <= set(out)
    assert _decode(out[f"heat{keys[0]:06d}"])[:, :, 3].max() > 0


def test_png_bytes_round_trips_rgb_and_rgba_losslessly():
    """The report's pictures: RGB and RGBA (heatmap layers keep their transparency), channel order preserved."""
    import cv2
    import numpy as np

    from dflab.scan.report import png_bytes

    rng = np.random.default_rng(0)
    for channels, order in ((3, [2, 1, 0]), (4, [2, 1, 0, 3])):
        img = rng.integers(0, 256, (17, 23, channels), dtype=np.uint8)
        back = cv2.imdecode(np.frombuffer(png_bytes(img), np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.shape == img.shape and np.array_equal(back[:, :, order], img)


def test_overlays_are_jpeg_photographs_in_rgb_order_and_every_picture_says_its_type(astronaut):
    """Overlays (frames with the heatmap baked in) are JPEG: channel order kept, close to the original; the HTML and
    the web service label each picture by its content."""
    import cv2
    import numpy as np

    from dflab.scan.report import jpeg_bytes, picture_type, png_bytes

    img = np.ascontiguousarray(astronaut[:256, :256])
    data = jpeg_bytes(img)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 3
    assert np.abs(back.astype(int) - img[:, :, ::-1]).mean() > 10, "channels not swapped"
    assert picture_type(data) == "image/jpeg" and picture_type(png_bytes(img)) == "image/png"
    assert picture_type(b"GIF89a") == "application/octet-stream"
