"""The scanner on synthetic inputs and the astronaut photo, with a tiny untrained detector (fast tier)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dflab.scan import pipeline
from dflab.scan.corpus import EXPECTED, outcome
from dflab.scan.pipeline import (
    ScanOptions,
    aggregate_tracks,
    bootstrap_ci,
    decide,
    decisive_track,
    face_detector,
    find_scan_faces,
    reason_of,
    sample_frames,
    sample_plan,
    scan_file,
    score_crops,
    scorer_from_model,
    verdict_of,
)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_agreement(rng):
    noisy = rng.uniform(0, 1, 30)
    tight = 0.6 + rng.normal(0, 0.01, 30)
    lo, hi = bootstrap_ci(noisy, rng)
    assert lo < noisy.mean() < hi
    tlo, thi = bootstrap_ci(tight, rng)
    assert thi - tlo < (hi - lo) / 5
    assert bootstrap_ci(np.array([0.3]), rng) == [0.3, 0.3]


def test_verdict_rules():
    assert verdict_of(0.9, [0.8, 0.95], 0.5) == "fake"
    assert verdict_of(0.1, [0.05, 0.2], 0.5) == "real"
    assert verdict_of(0.55, [0.4, 0.7], 0.5) == "uncertain"
    assert verdict_of(0.5, [0.5, 0.5], 0.5) == "fake"
    # a calibrated score near the threshold is called uncertain, however narrow its interval
    assert verdict_of(0.52, [0.515, 0.525], 0.5, margin=0.05) == "uncertain"
    assert verdict_of(0.47, [0.465, 0.475], 0.5, margin=0.05) == "uncertain"
    assert verdict_of(0.56, [0.555, 0.565], 0.5, margin=0.05) == "fake"
    assert verdict_of(0.44, [0.435, 0.445], 0.5, margin=0.05) == "real"


def test_verdict_band_of_the_card_replaces_the_threshold_rule():
    band = (0.3, 0.7)
    assert verdict_of(0.71, [0.1, 0.9], 0.5, band=band) == "fake"  # the band already accounts for the spread
    assert verdict_of(0.7, [0.7, 0.7], 0.5, band=band) == "fake"
    assert verdict_of(0.29, [0.2, 0.4], 0.5, band=band) == "real"
    assert verdict_of(0.5, [0.49, 0.51], 0.5, band=band) == "uncertain"
    assert verdict_of(0.3, [0.3, 0.3], 0.5, band=band) == "uncertain"


def test_every_verdict_has_its_reason():
    top = {"score": 0.9, "ci": [0.85, 0.95]}
    v, why = decide(top, [top], 120.0, {"band": (0.3, 0.7), "threshold": 0.7})
    assert v == "fake" and "0.70" in why
    v, why = decide({"score": 0.5, "ci": [0.4, 0.6]}, [top, top], 120.0, {"band": (0.3, 0.7), "threshold": 0.7})
    assert v == "uncertain" and "overlap" in why and "2 faces" in why
    v, why = decide(top, [top], 25.0, {"band": (0.3, 0.7), "threshold": 0.7})
    assert v == "uncertain" and "too small" in why
    v, why = decide({"score": float("nan"), "ci": [0, 1]}, [top], 120.0, {"threshold": 0.5, "margin": 0.05})
    assert v == "uncertain" and "no usable score" in why
    v, why = decide({"score": 0.52, "ci": [0.5, 0.54]}, [top], 120.0, {"threshold": 0.5, "margin": 0.05})
    assert v == "uncertain" and "threshold 0.50" in why


def test_reason_prints_a_score_and_a_close_band_edge_as_different_numbers():
    """A score just under the band's edge reads "0.2904 is below 0.2905", never "0.29 is below 0.29"."""
    from dflab.scan.views import verdict_words

    top = {"score": 0.2904, "ci": [0.28, 0.30]}
    v, why = decide(top, [top], 120.0, {"band": (0.2905, 0.3343)})
    assert v == "real" and "0.2904 is below 0.2905" in why
    v, why = decide({"score": 0.9, "ci": [0.85, 0.95]}, [top], 120.0, {"band": (0.2905, 0.3343)})
    assert "0.90 is at or above 0.33" in why  # far apart: two decimals
    assert "0.2904 is below 0.2905" in verdict_words(0.2904, None, 0.5, 0.0, band=(0.2905, 0.3343))


def test_platt_calibration_and_band_come_from_the_card(tiny_scorer):
    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    card = {
        "calibration": {"method": "platt", "scale": 3.0, "bias": -0.5},
        "verdict": {"real_below": 0.2, "fake_at": 0.8},
    }
    sc = scorer_from_model(tiny_scorer.model, card)
    assert sc.band == (0.2, 0.8)
    x = sc.to_tensor(crops)
    with torch.inference_mode():
        logits = sc.model(x)["logits"].float()
    expect = torch.sigmoid(3.0 * (logits[:, 1] - logits[:, 0]) - 0.5).numpy()
    np.testing.assert_allclose(sc.score(crops)[0], expect, rtol=1e-5, atol=1e-6)


def test_a_file_is_calibrated_with_the_platt_fit_of_its_media_kind(tiny_scorer, media_dir):
    """Stills and videos each get their kind's Platt fit (here: opposite biases), from the face path, the early
    scoring of a video and a still's test-time views alike; a caller without a kind gets the overall fit."""
    from dflab.errors import CheckpointError
    from dflab.models.checkpoint import validate_card

    card = {
        "calibration": {
            "method": "platt",
            "scale": 1.0,
            "bias": 0.0,
            "by_kind": {"image": {"scale": 0.001, "bias": 6.0}, "video": {"scale": 0.001, "bias": -6.0}},
        }
    }
    sc = scorer_from_model(tiny_scorer.model, card)
    assert sc.platt("image") == (0.001, 6.0) and sc.platt("video") == (0.001, -6.0) and sc.platt(None) == (1.0, 0.0)
    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    assert (sc.score(crops, kind="image")[0] > 0.99).all() and (sc.score(crops, kind="video")[0] < 0.01).all()
    still = scan_file(media_dir / "astronaut.png", sc, ScanOptions()).record
    video = scan_file(media_dir / "clip.mp4", sc, ScanOptions(max_frames=6)).record
    assert still["score"] > 0.99 and video["score"] < 0.01
    base = {"format": "dflab-detector/1", "detector": "lisiam_tiny"}
    validate_card(base | card)
    with pytest.raises(CheckpointError, match=r"by_kind\.image\.scale: Input should be greater than 0"):
        validate_card(base | {"calibration": card["calibration"] | {"by_kind": {"image": {"scale": -1, "bias": 0}}}})
    with pytest.raises(CheckpointError, match="method must be 'platt'"):
        validate_card(base | {"calibration": {"temperature": 2.0, "by_kind": {"video": {"scale": 1, "bias": 0}}}})


def test_file_calibration_puts_every_score_of_a_scan_on_the_files_scale(tiny_scorer, media_dir):
    """With the card's file-level fit for videos, a video's file and track scores and their intervals are the fit's
    map of what they were without it, every scored face goes through the same map (a face drawn red and a file
    called fake mean one thing), and the record gives the likelihood ratio; a still, with no fit of its kind and an
    identity overall fit, keeps its score."""
    from dflab.eval.calibration import file_calibrate

    band = {"real_below": 0.45, "fake_at": 0.55}
    platt = {"method": "platt", "scale": 1.0, "bias": 0.0}
    fit = {"scale": 1.0, "bias": 0.0, "prior": 0.5, "by_kind": {"video": {"scale": 8.0, "bias": 1.5}}}
    plain = scorer_from_model(tiny_scorer.model, {"calibration": platt, "verdict": band})
    filed = scorer_from_model(tiny_scorer.model, {"calibration": platt | {"file": fit}, "verdict": band})
    assert filed.file_fit("video") == (8.0, 1.5) and filed.file_fit("image") == (1.0, 0.0)
    assert plain.file_fit("video") is None
    opts = ScanOptions(max_frames=6)
    before, after = (scan_file(media_dir / "clip.mp4", sc, opts).record for sc in (plain, filed))
    assert after["score"] == pytest.approx(float(file_calibrate(before["score"], 8.0, 1.5)), rel=1e-6)
    np.testing.assert_allclose(after["ci"], file_calibrate(np.array(before["ci"]), 8.0, 1.5), rtol=1e-6)
    assert abs(after["score"] - 0.5) > abs(before["score"] - 0.5)  # a steep map spreads the crowded means
    for fb, fa in zip(before["frames"], after["frames"], strict=True):
        for b, a in zip(fb["faces"], fa["faces"], strict=True):
            if b["score"] is not None:
                assert a["score"] == pytest.approx(float(file_calibrate(b["score"], 8.0, 1.5)), abs=1e-5)
    for t in after["tracks"]:
        assert t["verdict"] == verdict_of(t["score"], t["ci"], 0.55, band=(0.45, 0.55))
    assert after["likelihood_ratio"] == pytest.approx(after["score"] / (1 - after["score"]), rel=1e-6)
    assert before["likelihood_ratio"] is None
    still = [scan_file(media_dir / "astronaut.png", sc, ScanOptions()).record["score"] for sc in (plain, filed)]
    assert still[1] == pytest.approx(still[0], abs=1e-6)


def test_reasons_quote_the_cards_error_rates_and_what_compression_does():
    """A decisive verdict's reason gives the share of held-out files of the other class on its side of the band
    (the card's out-of-fold numbers for the file's kind), and a `real` one on a re-saved JPEG or an H.264 video
    adds the share of forgeries compressed alike that were called real."""
    from dflab.scan.pipeline import band_errors, compression_caution

    verdict = {
        "alpha": 0.05,
        "bands": {"0.05": {"in_sample": {"fake_called_real": 0.03, "real_called_fake": 0.04}}},
        "by_kind": {
            "video": {
                "alpha": 0.2,
                "bands": {"0.2": {"in_sample": {"fake_called_real": 0.2, "real_called_fake": 0.19}}},
            }
        },
        "min_jpeg_quality_evidence": {"whole_file_fakes_called_real": {"clean": 0.03, "90": 0.15, "80": 0.3}},
        "max_video_qp_evidence": {"fakes_called_real_by_qp": {"<24": 0.28, "24-27": 0.43, ">=27": 0.7}},
    }
    errs = band_errors(verdict, "video")
    assert errs == {"fake_called_real": 0.2, "real_called_fake": 0.19}
    assert band_errors(verdict, "image") == {"fake_called_real": 0.03, "real_called_fake": 0.04}  # overall band
    assert band_errors({"alpha": 0.1}, "video") is None
    # the numbers on sources the band was not chosen on win over those it was chosen on
    held = {"fake_called_real": 0.31, "real_called_fake": 0.27, "uncertain": 0.4}
    verdict["by_kind"]["video"]["bands"]["0.2"]["held_out_sources"] = held
    assert band_errors(verdict, "video") == {"fake_called_real": 0.31, "real_called_fake": 0.27}
    verdict["by_kind"]["video"]["bands"]["0.2"]["held_out_sources"] = {"uncertain": 0.4}  # older card: no errors
    assert band_errors(verdict, "video") == errs
    low, high = {"score": 0.1, "ci": [0.05, 0.15]}, {"score": 0.9, "ci": [0.85, 0.95]}
    v, why = decide(low, [low], 120.0, {"band": (0.3, 0.7), "errors": errs})
    assert v == "real" and "20% of held-out fake files" in why
    v, why = decide(high, [high], 120.0, {"band": (0.3, 0.7), "errors": errs})
    assert v == "fake" and "19% of held-out real files" in why
    assert "few held-out fake files" in decide(low, [low], 120.0, {"band": (0.3, 0.7)})[1]
    q85 = compression_caution(verdict, 85, None)
    assert "JPEG quality 80" in q85 and "30%" in q85 and "unsaved: 3%" in q85 and "quality 85" in q85
    assert "JPEG quality 90" in compression_caution(verdict, 92, None)
    assert compression_caution(verdict, 96, None) is None  # saved as the validation's fakes were
    assert compression_caution(verdict, 60, None) is None  # nothing measured at or below 60
    assert "24-27" in compression_caution(verdict, None, 25.3) and "43%" in compression_caution(verdict, None, 25.3)
    assert ">=27" in compression_caution(verdict, None, 45.0) and "<24" in compression_caution(verdict, None, 12.0)
    assert compression_caution({}, 80, 30.0) is None
    caution = compression_caution(verdict, 85, None)
    v, why = decide(low, [low], 120.0, {"band": (0.3, 0.7), "errors": errs, "caution": caution})
    assert v == "real" and why.endswith(caution) and "; but " in why
    assert caution not in decide(high, [high], 120.0, {"band": (0.3, 0.7), "caution": caution})[1]


def test_faces_are_cut_at_the_cards_crop_size_and_resized_as_in_training(tiny_scorer, media_dir):
    """A detector trained on 96 px prepared crops resized to its 64 px input: the scan cuts 96 px crops (maps in
    their pixels) and scores each one resized by area, as the training resized its crops."""
    import dataclasses

    import cv2

    spec = dataclasses.replace(tiny_scorer.spec, crop_size=96)
    sc = dataclasses.replace(tiny_scorer, spec=spec)
    assert spec.crop_px == 96 and tiny_scorer.spec.crop_px == tiny_scorer.spec.size == 64
    res = scan_file(media_dir / "clip.mp4", sc, ScanOptions(max_frames=4, overlays=1))
    assert res.record["status"] == "ok"
    assert {h.shape for h, _ in res.heats.values()} == {(96, 96)}
    _, faces = find_scan_faces(sample_frames(media_dir / "astronaut.png", ScanOptions()), spec, ScanOptions(), {0})
    crop = faces[0].face.crop.image
    assert crop.shape == (96, 96, 3)
    resized = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(sc.score([crop])[0], tiny_scorer.score([resized])[0], atol=1e-6)


def test_faces_under_the_cards_validated_size_get_no_verdict(tiny_scorer, media_dir):
    """A card that found its fake verdicts unreliable on faces under 500 px (``verdict.min_face_px``) makes the
    scanner say "uncertain, face too small" for the astronaut's ~200 px face, whatever its score; without it the
    default 40 px applies."""
    from dflab.scan.pipeline import MIN_FACE_PX, verdict_rule

    band = {"real_below": 0.0, "fake_at": 0.0}  # every score would be "fake"
    plain = scorer_from_model(tiny_scorer.model, {"verdict": band})
    strict = scorer_from_model(tiny_scorer.model, {"verdict": band | {"min_face_px": 500}})
    assert verdict_rule(plain, ScanOptions())["min_face_px"] == MIN_FACE_PX == 40
    assert verdict_rule(strict, ScanOptions(), "image")["min_face_px"] == 500
    assert scan_file(media_dir / "astronaut.png", plain, ScanOptions()).record["verdict"] == "fake"
    rec = scan_file(media_dir / "astronaut.png", strict, ScanOptions()).record
    assert rec["verdict"] == "uncertain" and "face too small" in rec["reason"] and "at least 500 px" in rec["reason"]


def test_the_band_of_the_media_kind_is_used(tiny_scorer):
    from dflab.scan.pipeline import verdict_rule

    card = {"verdict": {"real_below": 0.3, "fake_at": 0.6, "by_kind": {"image": {"real_below": 0.2, "fake_at": 0.25}}}}
    sc = scorer_from_model(tiny_scorer.model, card)
    assert verdict_rule(sc, ScanOptions(), "image")["band"] == (0.2, 0.25)
    assert verdict_rule(sc, ScanOptions(), "video")["band"] == (0.3, 0.6)  # no video band: the overall one
    explicit = verdict_rule(sc, ScanOptions(threshold=0.7), "image")
    assert "band" not in explicit and explicit["threshold"] == 0.7 and explicit["margin"] == 0.05


def test_sample_plan_every_and_spread():
    assert sample_plan(100, ScanOptions(every=10, max_frames=4)) == [0, 10, 20, 30]
    spread = sample_plan(300, ScanOptions(max_frames=5))
    assert spread[0] == 0 and spread[-1] == 299 and len(spread) == 5


def test_temperature_softens_probabilities(tiny_scorer):
    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    hot = scorer_from_model(tiny_scorer.model, {"calibration": {"temperature": 4.0}})
    p1, _ = tiny_scorer.score(crops)
    p4, _ = hot.score(crops)
    assert hot.temperature == 4.0
    assert np.all(np.abs(p4 - 0.5) <= np.abs(p1 - 0.5) + 1e-6)
    assert not np.allclose(p1, p4)


def test_scan_image_gives_scored_face_interval_and_overlay(tiny_scorer, media_dir):
    res = scan_file(media_dir / "astronaut.png", tiny_scorer, ScanOptions(overlays=1))
    rec = res.record
    assert rec["status"] == "ok", rec
    assert rec["kind"] == "image" and rec["n_faces"] >= 1
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (f["box"] for f in rec["frames"][0]["faces"])]
    assert any(150 < x < 260 and 50 < y < 170 for x, y in centres), centres  # the astronaut's face
    assert 0.0 <= rec["score"] <= 1.0
    lo, hi = rec["ci"]
    assert lo <= rec["score"] <= hi
    assert rec["verdict"] in ("fake", "real", "uncertain")
    assert len(res.overlays) == 1 and res.overlays[0][1].dtype == np.uint8


def test_scan_video_tracks_one_face_over_sampled_frames(tiny_scorer, media_dir):
    progress = []
    res = scan_file(
        media_dir / "clip.mp4",
        [tiny_scorer, tiny_scorer],  # the ensemble path
        ScanOptions(max_frames=6, overlays=2, overlay_video=True),
        progress=lambda f, m: progress.append(f),
    )
    rec = res.record
    assert rec["status"] == "ok", rec
    assert rec["n_sampled"] == 6 and rec["n_frames"] == 12
    # the astronaut is one track through all six frames (the detector may add a short spurious one)
    assert max(t["n_faces"] for t in rec["tracks"]) == 6
    assert len(rec["tracks"]) <= 2
    assert [f["frame_index"] for f in rec["frames"]] == sample_plan(12, ScanOptions(max_frames=6))
    assert len(res.overlays) == 2 and len(res.video_frames) == 6
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_past_deadline_gives_timeout_record(tiny_scorer, media_dir):
    rec = scan_file(media_dir / "clip.mp4", tiny_scorer, deadline=time.monotonic() - 1).record
    assert rec["status"] == "error" and rec["error"]["cause"] == "timeout"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_media_gives_a_clear_record(tiny_scorer, media_dir, name):
    rec = scan_file(media_dir / name, tiny_scorer, ScanOptions(max_frames=4)).record
    assert outcome(rec) in EXPECTED[name], rec
    if rec["status"] == "error":
        assert rec["verdict"] == "error" and rec["error"]["cause"]


def test_missing_file_is_a_record_not_an_exception(tiny_scorer, tmp_path):
    rec = scan_file(tmp_path / "nope.mp4", tiny_scorer).record
    assert outcome(rec) == "missing"


def test_maps_come_from_the_detector_or_gradcam(tiny_scorer):
    """LiSiam-tiny has its own predicted mask; MML-tiny has none, so Grad-CAM supplies the map."""
    from dflab.models.base import build_detector

    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    _, maps = tiny_scorer.score(crops, maps=True)
    assert len(maps) == 2 and maps[0].shape == (64, 64)
    torch.manual_seed(0)
    mml = scorer_from_model(build_detector("mml_tiny"))
    scores, cams = mml.score(crops, maps=True)
    assert cams[0].shape == (64, 64) and cams[0].min() >= 0.0 and cams[0].max() <= 1.0
    assert np.allclose(scores, mml.score(crops)[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# the stages, one at a time


def test_sample_frames_plans_and_decodes_lazily(media_dir):
    source = sample_frames(media_dir / "clip.mp4", ScanOptions(max_frames=4))
    assert source.kind == "video" and source.n_frames == 12 and source.planned == [0, 4, 7, 11]
    assert [i for i, _ in source] == source.planned and source.broken is None
    still = sample_frames(media_dir / "astronaut.png", ScanOptions())
    assert still.kind == "image" and [rgb.shape for _, rgb in still] == [(512, 512, 3)]


def test_video_broken_midstream_keeps_the_frames_before_the_break(tiny_scorer, media_dir):
    """Issue 14 item 13: a video that decodes for a while then fails was a bare error record; the frames decoded
    before the break must be scored, with status ``partial`` and the cause."""
    source = sample_frames(media_dir / "broken_midstream.mp4", ScanOptions(max_frames=12))
    got = [i for i, _ in source]
    assert 0 < len(got) < len(source.planned) and source.broken is not None
    rec = scan_file(media_dir / "broken_midstream.mp4", tiny_scorer, ScanOptions(max_frames=12)).record
    assert rec["status"] == "partial" and rec["verdict"] in ("fake", "real", "uncertain"), rec
    assert rec["error"]["cause"] and rec["error"]["frames_decoded"] == len(got) == rec["n_sampled"]
    assert rec["error"]["frames_planned"] == len(source.planned)
    assert rec["n_faces"] >= 1 and "decoding failure" in rec["reason"]


def test_scan_faces_are_the_prepare_path_faces(tiny_scorer, media_dir, monkeypatch):
    """Stage 2 is dflab.faces.find_faces: the same boxes, tracks and crops as ``extract_faces`` (prepare)."""
    from dflab.faces import Sampling, extract_faces

    spec = tiny_scorer.spec
    source = sample_frames(media_dir / "clip.mp4", ScanOptions(max_frames=4))
    found, faces = find_scan_faces(source, spec, ScanOptions(), keep={4})
    ref, _ = extract_faces(
        media_dir / "clip.mp4", Sampling(count=4), face_detector(), size=spec.size, margin=spec.margin
    )
    assert [(f.frame_index, f.track_id) for f in faces] == [(f.frame_index, f.track_id) for f in ref]
    assert all(np.array_equal(a.face.crop.image, b.crop.image) for a, b in zip(faces, ref, strict=True))
    assert found.frames == [0, 4, 7, 11]
    assert set(found.kept) == {0, 4, 7, 11}, "sampled frames that fit KEEP_FRAMES_BYTES are all held for the report"
    monkeypatch.setattr(pipeline, "KEEP_FRAMES_BYTES", 0)
    source = sample_frames(media_dir / "clip.mp4", ScanOptions(max_frames=4))
    found, _ = find_scan_faces(source, spec, ScanOptions(), keep={4})
    assert set(found.kept) == {4}, "beyond the budget only the frames asked for are held"


def test_score_crops_batches_every_face_and_maps_only_where_asked(tiny_scorer):
    calls = []
    real = tiny_scorer.score

    class Counting:
        spec, name = tiny_scorer.spec, "counting"

        def score(self, crops, maps=False, kind=None):
            calls.append((len(crops), maps))
            return real(crops, maps=maps, kind=kind)

    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(5)]
    scores, heats = score_crops(crops, [Counting()], batch_size=2, maps=[False, False, True, False, False])
    assert calls == [(2, False), (2, False), (1, False), (1, True)]  # Grad-CAM's backward for the one crop only
    assert [h is not None for h in heats] == [False, False, True, False, False]
    assert np.allclose(scores, real(crops)[0], atol=1e-5)


def test_aggregate_picks_the_most_suspicious_lasting_track(rng):
    from types import SimpleNamespace as Face

    faces = [Face(track_id=0, frame_index=i, score=0.2) for i in range(8)]
    faces += [Face(track_id=1, frame_index=i, score=0.9) for i in range(3)]  # lasts ≥ a quarter: eligible
    faces += [Face(track_id=2, frame_index=0, score=0.99)]  # a one-frame blip: ignored
    tracks = aggregate_tracks(faces, rng)
    assert [t["n_faces"] for t in tracks] == [8, 3, 1]
    assert decisive_track(tracks)["track_id"] == 1


def test_reason_is_given_in_words():
    assert reason_of({"status": "no_face", "verdict": "no_face", "n_sampled": 3}).startswith(
        "no face found in 3 sampled frame(s)"
    )
    # the verdict's own reason (decide) is kept, and facts of the file are added to it
    said = "P(fake) 0.50 lies between 0.20 and 0.30"
    assert reason_of({"status": "ok", "verdict": "uncertain", "reason": said}) == said
    crowd = reason_of({"status": "ok", "verdict": "fake", "reason": said, "max_faces_per_frame": 12})
    assert crowd.startswith(said) and "12 faces in one frame" in crowd
    assert reason_of({"status": "ok", "verdict": "fake"}) is None


def test_render_draws_only_the_chosen_frames(tiny_scorer, media_dir):
    opts = ScanOptions(max_frames=4, overlays=2)
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, opts)
    assert [n for n, _ in res.overlays] == ["frame000000", "frame000011"]
    assert res.overlays[0][1].shape == (256, 256, 3) and not res.video_frames


def _track_faces(lengths):
    from types import SimpleNamespace as Face

    return [Face(track_id=t, frame_index=10 * i) for t, n in enumerate(lengths) for i in range(n)]


def test_select_faces_spreads_the_budget_evenly_over_each_track():
    from dflab.scan.pipeline import select_faces

    faces = _track_faces([10, 3])
    picked = select_faces(faces, 4)
    assert [faces[i].frame_index for i in picked if faces[i].track_id == 0] == [0, 30, 60, 90]  # first to last
    assert [faces[i].frame_index for i in picked if faces[i].track_id == 1] == [0, 10, 20], "short tracks: all"
    assert select_faces(faces, None) == select_faces(faces, 0) == list(range(len(faces)))


def test_select_faces_scores_the_overlay_frames_faces_within_the_budget():
    from dflab.scan.pipeline import select_faces

    faces = _track_faces([10])
    picked = [faces[i].frame_index for i in select_faces(faces, 4, prefer={40, 50})]
    assert len(picked) == 4 and {40, 50} <= set(picked) and picked[0] == 0, picked
    assert picked == sorted(picked)


def test_the_scan_scores_at_most_faces_per_track_and_says_so(tiny_scorer, media_dir, tmp_path):
    from dflab.scan.cli import summary_line
    from dflab.scan.report import write_html

    opts = ScanOptions(max_frames=12, overlays=2, faces_per_track=3)
    res = scan_file(media_dir / "clip.mp4", tiny_scorer, opts)
    rec = res.record
    assert rec["status"] == "ok" and rec["faces_per_track"] == 3
    assert rec["n_faces"] > rec["n_scored"] == sum(t["n_scored"] for t in rec["tracks"])
    assert all(t["n_scored"] <= 3 and t["n_faces"] >= t["n_scored"] for t in rec["tracks"])
    faces = [f for fr in rec["frames"] for f in fr["faces"]]
    assert len(faces) == rec["n_faces"], "every face found is in the record, scored or not"
    scored = [f["score"] for f in faces if f["score"] is not None]
    assert len(scored) == rec["n_scored"]
    decisive = next(t for t in rec["tracks"] if t["track_id"] == rec["decisive_track"])
    assert rec["score"] == pytest.approx(decisive["score"])
    overlay_frames = {int(n[5:]) for n, _ in res.overlays}
    by_frame = {fr["frame_index"]: fr["faces"] for fr in rec["frames"]}
    assert all(f["score"] is not None for i in overlay_frames for f in by_frame[i]), "overlays show scored faces"
    assert f"({rec['n_scored']} scored)" in summary_line(rec)
    page = write_html([rec], [{}], tmp_path / "budget.html", {}).read_text()  # not in media_dir: tests list it
    assert f"{rec['n_faces']} face(s), {rec['n_scored']} scored (at most 3 per track, evenly spaced)" in page
    every = scan_file(media_dir / "clip.mp4", tiny_scorer, ScanOptions(max_frames=12, faces_per_track=0)).record
    assert every["n_scored"] == every["n_faces"] == rec["n_faces"]


def test_overlay_maps_come_from_the_scoring_pass_when_the_detector_makes_them(astronaut):
    """A detector whose maps come with its scores (CLIP probe: patch evidence) encodes each face once."""
    from dflab.models.base import build_detector

    torch.manual_seed(0)
    scorer = scorer_from_model(build_detector("clip_probe_tiny", hidden=0, tokens=["cls", "mean"]))
    assert scorer.maps_in_forward
    calls = []
    real = scorer.model.forward
    scorer.model.forward = lambda x: calls.append(len(x)) or real(x)  # type: ignore[method-assign]
    crops = [np.ascontiguousarray(astronaut[i : i + 64, i : i + 64]) for i in range(0, 200, 40)]
    _, heats = score_crops(crops, [scorer], batch_size=8, maps=[False, True, False, False, False])
    assert calls == [5], "one pass, no second pass for the map"
    assert heats[1] is not None and heats[1].shape == (64, 64)
    calls.clear()
    _, heats = score_crops(crops, [scorer], batch_size=2, maps=[False, True, False, False, False])
    assert calls == [2, 2, 1]
    assert all(h is not None and h.shape == (64, 64) for h in heats), "the report's key faces need no second pass"
    _, heats = score_crops(crops, [scorer], batch_size=2)
    assert heats == [None] * 5, "no maps asked, none made"


def test_the_reports_heat_layers_reuse_the_scans_maps(media_dir):
    """The key frames of the HTML report are chosen after scoring; with a detector whose maps come with its
    scores, their heatmap layers are drawn from the scan's maps, without scoring any face again."""
    from dflab.models.base import build_detector
    from dflab.scan.views import render_views

    path = media_dir / "clip.mp4"
    torch.manual_seed(0)
    scorer = scorer_from_model(build_detector("clip_probe_tiny", hidden=0, tokens=["cls", "mean"]))
    res = scan_file(path, scorer, ScanOptions(max_frames=12, overlays=1, faces_per_track=6, batch_size=2))
    assert res.record["n_scored"] == 6
    assert len(res.heats) == 6, "every scored face has its map"
    calls = []
    real = scorer.model.forward
    scorer.model.forward = lambda x: calls.append(len(x)) or real(x)  # type: ignore[method-assign]
    pics = render_views(res.record, path, scorer, frames=res.frames, heats=res.heats)
    assert [n for n in pics if n.startswith("heat")], "the key frames have heat layers"
    assert calls == [], "no face scored again"


def test_early_frames_are_the_picks_of_a_track_present_in_every_planned_frame():
    from dflab.scan.pipeline import early_frames, select_faces

    planned = list(range(0, 300, 10))
    faces = _track_faces([len(planned)])
    for prefer in (set(), {0, 100, 190, 290}, {150}):
        picked = {faces[i].frame_index for i in select_faces(faces, 8, prefer)}
        assert early_frames(planned, 8, prefer) == picked
    assert early_frames(planned, None, set()) == early_frames(planned, 0, set()) == set(planned)
    assert early_frames(planned[:5], 8, set()) == set(planned[:5])


def test_video_faces_scored_while_frames_are_searched_get_the_scores_of_scoring_after_tracking(
    tiny_scorer, media_dir, monkeypatch
):
    """Early scoring changes when a face is scored, never its score nor which faces are scored; every scored face
    is scored exactly once."""
    calls: list[tuple[str, int]] = []
    real = pipeline.score_crops

    def counting(crops, *args, **kwargs):
        import threading

        calls.append((threading.current_thread().name, len(crops)))
        return real(crops, *args, **kwargs)

    monkeypatch.setattr(pipeline, "score_crops", counting)
    opts = ScanOptions(max_frames=12, overlays=2, faces_per_track=4)
    early = scan_file(media_dir / "clip.mp4", tiny_scorer, opts).record
    assert early["status"] == "ok" and early["n_scored"] == 4
    background = sum(n for name, n in calls if name == "dflab-early-scoring")
    assert background == early["n_scored"], calls  # one track through every frame: all its picks scored early
    assert sum(n for _, n in calls) == early["n_scored"], "no face scored twice or in vain"

    calls.clear()
    monkeypatch.setattr(pipeline, "early_frames", lambda *a: set())  # everything scored after tracking
    late = scan_file(media_dir / "clip.mp4", tiny_scorer, opts).record
    assert all(name != "dflab-early-scoring" or n == 0 for name, n in calls)

    def scores(rec):
        return {(fr["frame_index"], f["track_id"]): f["score"] for fr in rec["frames"] for f in fr["faces"]}

    assert scores(early).keys() == scores(late).keys()
    for key, s in scores(late).items():
        assert (s is None) == (scores(early)[key] is None), key
        if s is not None:
            assert scores(early)[key] == pytest.approx(s, abs=1e-6), key
    assert early["score"] == pytest.approx(late["score"], abs=1e-6)


def test_early_scoring_hands_a_detector_error_to_the_scan_and_cancel_stops_it(tiny_scorer):
    from types import SimpleNamespace

    from dflab.scan.pipeline import EarlyScoring

    crop = SimpleNamespace(image=np.zeros((64, 64, 3), np.uint8))
    broken = SimpleNamespace(score=lambda crops, **kw: (_ for _ in ()).throw(RuntimeError("model broke")))
    early = EarlyScoring([broken], {0}, set(), 4)
    early.offer(0, SimpleNamespace(box=(0.0, 0.0, 10.0, 10.0)), crop)
    with pytest.raises(RuntimeError, match="model broke"):
        early.take()

    early = EarlyScoring([tiny_scorer], {0, 1}, {1}, 4)
    early.offer(5, SimpleNamespace(box=(0.0, 0.0, 10.0, 10.0)), crop)  # not an early frame: ignored
    early.offer(1, SimpleNamespace(box=(1.0, 2.0, 3.0, 4.0)), crop)
    done = early.take()
    assert list(done) == [(1, (1.0, 2.0, 3.0, 4.0))] and done[(1, (1.0, 2.0, 3.0, 4.0))][1] is not None  # a map
    early = EarlyScoring([tiny_scorer], {0}, set(), 4)
    early.cancel()
    assert not early._thread.is_alive()

    def late():  # the scan's deadline has passed: the queued faces are not scored, the scan gets the timeout
        raise pipeline.ScanTimeoutError("scan ran past its time limit")

    early = EarlyScoring([tiny_scorer], {0}, set(), 4, check=late)
    early.offer(0, SimpleNamespace(box=(0.0, 0.0, 10.0, 10.0)), crop)
    with pytest.raises(pipeline.ScanTimeoutError):
        early.take()


def test_heavily_compressed_stills_get_no_real_verdict(tiny_scorer, astronaut, tmp_path):
    """A card that states ``verdict.min_jpeg_quality`` (its `real` verdicts fail on stills compressed harder) turns
    a `real` verdict on a JPEG saved under that quality into `uncertain`, with the quality in the reason; a `fake`
    verdict stands (compression erases traces, it does not invent them), and a PNG or a lightly compressed JPEG
    keeps its verdict."""
    from PIL import Image

    from dflab.scan.pipeline import verdict_rule

    img = Image.fromarray(astronaut)
    for q in (30, 90):
        img.save(tmp_path / f"q{q}.jpg", quality=q)
    img.save(tmp_path / "a.png")
    says_real = {"real_below": 1.0, "fake_at": 1.0}  # every score is "real"
    says_fake = {"real_below": 0.0, "fake_at": 0.0}
    careful = scorer_from_model(tiny_scorer.model, {"verdict": says_real | {"min_jpeg_quality": 60}})
    rule = verdict_rule(careful, ScanOptions(), "image", 30)
    assert rule["jpeg_quality"] == 30 and rule["min_jpeg_quality"] == 60
    rec = scan_file(tmp_path / "q30.jpg", careful, ScanOptions()).record
    assert rec["jpeg_quality"] == 30
    assert (
        rec["verdict"] == "uncertain" and "JPEG quality 30" in rec["reason"] and "quality 60 or more" in rec["reason"]
    )
    assert all(t["verdict"] == "uncertain" for t in rec["tracks"])
    q90 = scan_file(tmp_path / "q90.jpg", careful, ScanOptions()).record
    assert q90["verdict"] == "real" and "re-saved" not in q90["reason"]
    evidence = {"min_jpeg_quality_evidence": {"whole_file_fakes_called_real": {"90": 0.15}}}
    told = scorer_from_model(tiny_scorer.model, {"verdict": says_real | {"min_jpeg_quality": 60} | evidence})
    q90 = scan_file(tmp_path / "q90.jpg", told, ScanOptions()).record
    assert q90["verdict"] == "real" and "re-saved whole at JPEG quality 90 was called real 15%" in q90["reason"]
    png = scan_file(tmp_path / "a.png", careful, ScanOptions()).record
    assert png["verdict"] == "real" and png["jpeg_quality"] is None
    # without the card's word, or for a fake verdict, the compression changes nothing
    plain = scorer_from_model(tiny_scorer.model, {"verdict": says_real})
    assert "jpeg_quality" not in verdict_rule(plain, ScanOptions(), "image", 30)
    assert scan_file(tmp_path / "q30.jpg", plain, ScanOptions()).record["verdict"] == "real"
    fake = scorer_from_model(tiny_scorer.model, {"verdict": says_fake | {"min_jpeg_quality": 60}})
    assert scan_file(tmp_path / "q30.jpg", fake, ScanOptions()).record["verdict"] == "fake"


def test_heavily_compressed_videos_get_no_real_verdict(tiny_scorer, astronaut, tmp_path):
    """A card that states ``verdict.max_video_qp`` turns a `real` verdict on an H.264 video quantised more coarsely
    into `uncertain`, with the quantiser in the reason and the record; a `fake` verdict stands, and a finely
    quantised video keeps its `real`."""
    import cv2

    from dflab.media import write_video

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(small, shift=2 * i, axis=1) for i in range(12)])
    for crf in (18, 45):
        write_video(tmp_path / f"crf{crf}.mp4", frames, fps=12, crf=crf)
    says_real = {"real_below": 1.0, "fake_at": 1.0}
    careful = scorer_from_model(tiny_scorer.model, {"verdict": says_real | {"max_video_qp": 36}})
    opts = ScanOptions(max_frames=4)
    rec = scan_file(tmp_path / "crf45.mp4", careful, opts).record
    assert rec["video_qp"] > 40 and rec["jpeg_quality"] is None
    assert rec["verdict"] == "uncertain" and "H.264 quantiser" in rec["reason"] and "of 36 or less" in rec["reason"]
    fine = scan_file(tmp_path / "crf18.mp4", careful, opts).record
    assert fine["video_qp"] < 30 and fine["verdict"] == "real"
    plain = scorer_from_model(tiny_scorer.model, {"verdict": says_real})
    assert scan_file(tmp_path / "crf45.mp4", plain, opts).record["verdict"] == "real"
    fake = scorer_from_model(tiny_scorer.model, {"verdict": {"real_below": 0.0, "fake_at": 0.0, "max_video_qp": 36}})
    assert scan_file(tmp_path / "crf45.mp4", fake, opts).record["verdict"] == "fake"
