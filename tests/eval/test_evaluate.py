"""A protocol run end to end on a synthetic manifest: numbers, seen/unseen, JSON and a self-contained HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dflab.eval.evaluate import EvalConfig, evaluate, training_facts
from tests.eval.evalkit import STANDARD, BrightnessDetector, make_manifest


def _ffpp(tmp_path: Path) -> Path:
    return make_manifest(tmp_path / "ffpp", [{**v, "dataset": "ffpp"} for v in STANDARD])


def test_within_end_to_end(tmp_path: Path, synth_manifest: Path, bright: BrightnessDetector) -> None:
    cfg = EvalConfig(protocol="within", data=[str(synth_manifest)], bootstrap=50, gallery=1)
    out = tmp_path / "run"
    res = evaluate(bright, cfg, out_dir=out, card={"detector": "brightness"}, log=lambda m: None)
    t = res["tests"]["test"]
    assert t["status"] == "ok"
    assert t["video"]["n"] == 4 and t["frame"]["n"] == 15
    assert t["video"]["auc"] == 1.0 and t["video"]["eer"] == 0.0
    assert set(t["per_method"]) == {"Deepfakes", "NeuralTextures"}
    assert t["video"]["auc_ci"]["n_valid"] > 0
    # files: strict JSON (NaN written as null), predictions CSV, HTML without any external resource
    data = json.loads((out / "results.json").read_text())
    assert data["tests"]["test"]["video"]["auc"] == 1.0
    assert data["config"]["protocol"] == "within" and data["checkpoint"]["card"]["detector"] == "brightness"
    assert len((out / "predictions.csv").read_text().splitlines()) == 1 + 15
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Grad-CAM" in html and "BiG-Arts Fig. 6" in html
    assert not re.search(r"(src|href)=['\"]?https?://", html)


def test_cross_manipulation_marks_seen_and_unseen(tmp_path: Path, bright: BrightnessDetector) -> None:
    m = _ffpp(tmp_path)
    card = {
        "training": {
            "data": {
                "streams": {"default": {"datasets": ["ffpp"], "methods": ["real", "Deepfakes"]}},
                "val": {"methods": ["NeuralTextures"]},
            }
        }
    }
    assert training_facts(card)["methods"] == {"real", "Deepfakes"}
    cfg = EvalConfig(
        protocol="cross_manipulation_ffpp", data=[str(m)], bootstrap=0, gallery=0, average=False, tsne=False
    )
    res = evaluate(bright, cfg, card=card, log=lambda m: None)
    tests = res["tests"]
    assert tests["Deepfakes"]["seen"] is True and tests["NeuralTextures"]["seen"] is False
    assert tests["Deepfakes"]["video"]["n"] == 3 and tests["NeuralTextures"]["video"]["n"] == 3
    assert tests["FaceSwap"]["status"] == "no data"
    assert any("FaceSwap" in w for w in res["warnings"])


def test_where_override_is_reported(tmp_path: Path, synth_manifest: Path, bright: BrightnessDetector) -> None:
    cfg = EvalConfig(
        protocol="within",
        data=[str(synth_manifest)],
        where={"split": "val"},
        bootstrap=0,
        gallery=0,
        average=False,
        tsne=False,
    )
    res = evaluate(bright, cfg, log=lambda m: None)
    assert res["tests"]["test"]["video"]["n"] == 2
    assert any("overridden" in w for w in res["warnings"])


def test_card_training_mismatch_is_warned(tmp_path: Path, bright: BrightnessDetector) -> None:
    m = _ffpp(tmp_path)
    cfg = EvalConfig(protocol="cross_dataset_ffpp", data=[str(m)], bootstrap=0, gallery=0, average=False, tsne=False)
    res = evaluate(bright, cfg, card={"data": {"datasets": ["celebdf"]}}, log=lambda m: None)
    assert any("expects training on dataset='ffpp'" in w for w in res["warnings"])
    assert res["tests"]["Celeb-DF"]["status"] == "no data"


def test_single_class_test_set_reports_undefined_auc(tmp_path: Path, bright: BrightnessDetector) -> None:
    m = make_manifest(tmp_path / "p", [v for v in STANDARD if v["label"] == 0 or v["split"] != "test"])
    res = evaluate(
        bright, EvalConfig(data=[str(m)], bootstrap=10, gallery=0, average=False, tsne=False), log=lambda m: None
    )
    assert res["tests"]["test"]["video"]["auc"] != res["tests"]["test"]["video"]["auc"]  # nan
    assert any("one class" in w for w in res["warnings"])


@pytest.mark.parametrize("region", ["mouth", "left"])
def test_partial_face_builds_fakes_from_original_crops(tmp_path: Path, bright: BrightnessDetector, region) -> None:
    import cv2
    import numpy as np

    from dflab.data.manifest import Manifest
    from dflab.eval.partial import partial_transform

    m = make_manifest(tmp_path / "p", STANDARD)
    with Manifest(m, readonly=True) as man:
        row = man.faces(video_id="f1")[0]
        orig = man.faces(video_id="r1")[0]
    lm = np.array([[8 + (i % 17), 8 + (i // 4)] for i in range(68)], np.float32)  # spread over the crop
    row.landmarks = lm.tolist()
    row.crop_path = str(tmp_path / "p" / row.crop_path)
    row.original_crop = str(tmp_path / "p" / orig.crop_path)
    fake = cv2.cvtColor(cv2.imread(row.crop_path), cv2.COLOR_BGR2RGB)
    out = partial_transform(region)(row, fake)
    original = cv2.cvtColor(cv2.imread(row.original_crop), cv2.COLOR_BGR2RGB)
    changed = (out != original).any(-1)
    assert 0 < changed.mean() < 1  # a region of the fake, the rest of the original
    row.original_crop = ""
    with pytest.raises(ValueError, match="no original crop"):
        partial_transform(region)(row, fake)


def test_training_facts_read_from_the_training_manifest(synth_manifest: Path) -> None:
    card = {"training": {"manifest": str(synth_manifest), "streams": {"default": {"split": "val", "methods": None}}}}
    facts = training_facts(card)
    assert facts == {"datasets": {"synth"}, "methods": {"real", "Deepfakes"}}
    assert training_facts({}) == {"datasets": None, "methods": None}


def test_media_without_faces_are_reported(tmp_path: Path, bright: BrightnessDetector) -> None:
    videos = [*STANDARD, {"id": "nf", "label": 1, "method": "Deepfakes", "split": "test", "brightness": 0, "frames": 0}]
    m = make_manifest(tmp_path / "p", videos)
    cfg = EvalConfig(data=[str(m)], bootstrap=0, gallery=0, average=False, tsne=False)
    res = evaluate(bright, cfg, log=lambda m: None)
    t = res["tests"]["test"]
    assert t["video"]["n"] == 4  # the faceless video is not scored ...
    assert [v["video_id"] for v in t["media_without_faces"]] == ["nf"]  # ... and is listed
    assert any("gave no face" in w for w in res["warnings"])
