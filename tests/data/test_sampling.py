"""A recipe's frame sampling (``data.sampling``, issue 13 item 7) checked against the manifest by train and eval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dflab.data.sampling import eval_sampling_warnings, frames_per_video, train_sampling_warnings
from dflab.train.recipes import load_recipe


@dataclass
class _Row:
    dataset: str
    video_id: str
    frame_index: int


def _rows(videos: int, frames: int) -> list[_Row]:
    return [_Row("d", f"v{v}", f) for v in range(videos) for f in range(frames)]


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("lae", {"train_frames": 200, "eval_frames": 10, "eval_stride": None}),  # LAE §3.1.1
        ("lisiam", {"train_frames": 30, "eval_frames": 100, "eval_stride": None}),  # LiSiam §IV-A.3
        ("big_arts", {"train_frames": None, "eval_frames": None, "eval_stride": 10}),  # BiG-Arts §4.1
        ("dadd", {"train_frames": 20, "eval_frames": 20, "eval_stride": None}),  # DADD §4.1
    ],
)
def test_paper_recipes_state_their_sampling(name, want):
    r = load_recipe(name)
    got = r.data.sampling.model_dump()
    assert {k: got[k] for k in want} == want
    if want["train_frames"]:  # and the training stream draws exactly that many per video
        assert r.data.streams["default"].frames_per_video == want["train_frames"]
    if want["eval_frames"]:
        assert r.data.val.frames_per_video == want["eval_frames"]


def test_frames_per_video_is_the_median_over_videos():
    assert frames_per_video([*_rows(3, 4), _Row("d", "short", 0)]) == 4.0
    assert frames_per_video([]) == 0.0


def test_train_warns_when_the_manifest_holds_fewer_frames_than_the_paper_trains_on():
    lae = {"train_frames": 200, "eval_frames": 10, "source": "LAE §3.1.1"}
    prepared = [{"count": 32, "stride": None}]
    w = train_sampling_warnings(lae, train_rows=_rows(2, 32), train_frames_per_video=200, val_rows=_rows(2, 32),
                                val_frames_per_video=10, settings=prepared)  # fmt: skip
    assert len(w) == 1 and "--frames 200" in w[0] and "LAE §3.1.1" in w[0] and "--frames 32" in w[0]
    ok = train_sampling_warnings(lae, train_rows=_rows(2, 200), train_frames_per_video=200, val_rows=_rows(2, 200),
                                 val_frames_per_video=10, settings=[{"count": 200, "stride": None}])  # fmt: skip
    assert ok == []
    assert train_sampling_warnings(None, train_rows=_rows(1, 1), train_frames_per_video=None) == []


def test_eval_warns_on_frames_per_track_and_stride():
    lae = {"eval_frames": 10, "source": "LAE"}
    w = eval_sampling_warnings(lae, rows=_rows(2, 32), frames_per_track=None, settings=[{"count": 32}])
    assert len(w) == 1 and "--frames-per-track 10" in w[0]
    assert eval_sampling_warnings(lae, rows=_rows(2, 32), frames_per_track=10, settings=[{"count": 32}]) == []
    few = eval_sampling_warnings(lae, rows=_rows(2, 4), frames_per_track=10, settings=[{"count": 4}])
    assert len(few) == 1 and "--frames 10" in few[0]
    big = {"eval_stride": 10, "source": "BiG-Arts §4.1"}
    w = eval_sampling_warnings(big, rows=_rows(2, 32), frames_per_track=None, settings=[{"count": 32, "stride": None}])
    assert len(w) == 1 and "--stride 10" in w[0]
    assert eval_sampling_warnings(big, rows=_rows(2, 30), frames_per_track=None, settings=[{"stride": 10}]) == []


def test_eval_warns_from_the_card(tmp_path: Path):
    from dflab.eval.evaluate import EvalConfig, evaluate
    from tests.eval.evalkit import STANDARD, BrightnessDetector, make_manifest

    manifest = make_manifest(tmp_path / "prep", STANDARD)
    cfg = EvalConfig(protocol="within", data=[str(manifest)], bootstrap=0, gallery=0, gradcam=False, tsne=False,
                     average=False)  # fmt: skip
    card = {"training": {"sampling": {"train_frames": None, "eval_frames": 100, "eval_stride": None, "source": "X"}}}
    logged: list[str] = []
    res = evaluate(BrightnessDetector(), cfg, card=card, log=logged.append)
    assert any("X tests on 100 frames per video" in w for w in res["warnings"])
    assert any(m.startswith("[eval] warning: X tests on 100") for m in logged)
    plain = evaluate(BrightnessDetector(), cfg, card={}, log=lambda m: None)
    assert not any("frames per video" in w for w in plain["warnings"])
