"""Data streams: replayable plans, class balance, frames per video, sharding, targets, no swallowed errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dflab.data.manifest import Manifest
from dflab.errors import MediaError
from dflab.train.config import DataConfig, StreamConfig
from dflab.train.data import PlanSampler, build_stream, collate, effective_split


def _stream(manifest, targets=frozenset(), **cfg):
    data = DataConfig(size=32, streams={"default": StreamConfig(**cfg)})
    m = Manifest(manifest, readonly=True)
    return build_stream(m, data.streams["default"], data, targets=frozenset(targets), mean=(0.5,) * 3,
                        std=(0.5,) * 3, seed=3, name="default")  # fmt: skip


def test_supervised_plan_is_balanced_and_replayable(supervised_manifest):
    s = _stream(supervised_manifest, mode="supervised", split="train")
    p0, p0b, p1 = s.plan(0), s.plan(0), s.plan(1)
    assert p0 == p0b and p0 != p1
    labels = [s.rows[i].label for i, _, _ in p0]
    assert labels.count(1) == labels.count(0) == 16  # 12 fake rows oversampled to the 16 reals
    no_bal = _stream(supervised_manifest, mode="supervised", split="train", balance=False)
    assert len(no_bal.plan(0)) == 28


def test_frames_per_video(supervised_manifest):
    s = _stream(supervised_manifest, mode="supervised", split="val", frames_per_video=2, balance=False)
    plan = s.plan(0)
    per_video = {}
    for i, _, _ in plan:
        per_video.setdefault(s.rows[i].video_id, set()).add(s.rows[i].frame_index)
    assert all(len(v) == 2 for v in per_video.values()) and len(per_video) == 4
    assert {r for v in per_video.values() for r in v} != set()  # frames differ between epochs (a chance of equality)
    other = {(s.rows[i].video_id, s.rows[i].frame_index) for i, _, _ in s.plan(1)}
    assert len(other) == 8


def test_fixed_frames_are_the_same_every_epoch(supervised_manifest):
    """LiSiam §IV-A.3 trains on 30 frames per video, the same ones all along (``resample_frames=False``)."""

    def frames(stream, epoch: int) -> set[tuple[str, int]]:
        return {(stream.rows[i].video_id, stream.rows[i].frame_index) for i, _, _ in stream.plan(epoch)}

    fixed = _stream(supervised_manifest, mode="supervised", split="train", frames_per_video=1, balance=False,
                    resample_frames=False)  # fmt: skip
    assert frames(fixed, 0) == frames(fixed, 1) == frames(fixed, 7)
    assert fixed.plan(0) != fixed.plan(1)  # the order and item seeds still change per epoch
    moving = _stream(supervised_manifest, mode="supervised", split="train", frames_per_video=1, balance=False)
    assert len({frozenset(frames(moving, e)) for e in range(6)}) > 1


def test_real_only_makes_fakes_with_targets(supervised_manifest):
    s = _stream(
        supervised_manifest, targets={"mask", "boundary", "category"}, mode="real_only", split="train",
        synthesizers=["test_patch"], fake_ratio=0.5, donor_pool=False,
    )  # fmt: skip
    plan = s.plan(0)
    assert all(s.rows[i].label == 0 for i, _, _ in plan)
    assert sum(f for _, f, _ in plan) == len(plan) // 2
    batch = collate([s[it] for it in plan[:6]])
    assert batch["image"].shape == (6, 3, 32, 32) and batch["mask"].shape == (6, 1, 32, 32)
    assert set(batch) == {"image", "label", "video_id", "mask", "boundary", "category"}
    for k in range(6):
        fake = bool(plan[k][1])
        assert int(batch["label"][k]) == int(fake)
        assert (batch["mask"][k].sum() > 0) == fake
        assert int(batch["category"][k]) == (0 if fake else -1)
    again = collate([s[it] for it in plan[:6]])
    torch.testing.assert_close(again["image"], batch["image"], rtol=0, atol=0)


def test_only_declared_targets(supervised_manifest):
    s = _stream(supervised_manifest, mode="supervised", split="train")
    item = s[s.plan(0)[0]]
    assert set(item) == {"image", "label", "video_id"}


def test_augmentation_replays_from_item_seed(supervised_manifest):
    aug = {"ops": [{"name": "HorizontalFlip", "p": 0.5}]}
    s = _stream(supervised_manifest, mode="supervised", split="train", augment=aug)
    plain = _stream(supervised_manifest, mode="supervised", split="train")
    kinds = []
    for it in s.plan(0)[:16]:
        a = s[it]["image"]
        torch.testing.assert_close(s[it]["image"], a, rtol=0, atol=0)  # same item seed, same augmentation
        raw = plain[it]["image"]
        assert torch.equal(a, raw) or torch.equal(a, raw.flip(-1))
        kinds.append(torch.equal(a, raw))
    assert any(kinds) and not all(kinds)


def test_sampler_shards_and_resumes(supervised_manifest):
    s = _stream(supervised_manifest, mode="supervised", split="train")
    full = list(PlanSampler(s))
    r0, r1 = list(PlanSampler(s, rank=0, world=2)), list(PlanSampler(s, rank=1, world=2))
    assert sorted(r0 + r1) == sorted(full) and not set(r0) & set(r1)
    late = PlanSampler(s)
    late.set_start(10)
    assert list(late) == full[10:]
    late.set_epoch(1)
    assert list(late) != full[10:]


def test_missing_crop_raises(supervised_manifest, tmp_path):
    s = _stream(supervised_manifest, mode="supervised", split="train")
    item = s.plan(0)[0]
    (s.root / s.rows[item[0]].crop_path).unlink()
    with pytest.raises(MediaError, match="missing"):
        s[item]


def test_effective_split_hash():
    from dflab.data.manifest import FaceRow

    rows = [FaceRow("d", f"v{i}", 0, 0, 0, "real", "", "", "", [], [], []) for i in range(400)]
    val = [effective_split(r, 0.25) for r in rows].count("val")
    assert 60 < val < 140
    assert effective_split(rows[0], 0.0) == ""
    assert np.all([effective_split(r, 0.25) in ("val", "train") for r in rows])


def test_annotated_masks_mark_only_the_annotated_fakes(supervised_manifest, tmp_path):
    """LAE's stage 2 (Algorithm 1): a stream with ``annotations`` keeps every row, gives the annotated fakes their
    mask and ``mask_valid``; other fakes get an empty mask and ``mask_valid=False``."""
    import cv2

    from dflab.train.data import face_key

    s = _stream(supervised_manifest, targets={"mask"})
    fakes = [i for i, r in enumerate(s.rows) if r.label == 1]
    reals = [i for i, r in enumerate(s.rows) if r.label == 0]
    mask = np.zeros((48, 48), np.uint8)
    mask[:24] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    s.annotations = {face_key(s.rows[fakes[0]]): str(tmp_path / "m.png")}
    n_rows = len(s.rows)
    a, b, r = s[(fakes[0], 0, 1)], s[(fakes[1], 0, 1)], s[(reals[0], 0, 1)]
    assert bool(a["mask_valid"]) and not bool(b["mask_valid"]) and not bool(r["mask_valid"])
    assert a["mask"][0, :8].min() == 1.0 and a["mask"][0, -8:].max() == 0.0
    assert b["mask"].max() == 0.0 and len(s.rows) == n_rows
    assert "mask_valid" not in _stream(supervised_manifest, targets={"mask"})[(reals[0], 0, 1)]


def test_val_from_train_holds_out_a_datasets_train_videos():
    """BiG-Arts §4.1: Celeb-DF has no validation split; 20 % of its training videos become val (8:2)."""
    from dflab.data.manifest import FaceRow
    from dflab.train.recipes import load_recipe

    def rows(dataset: str, split: str) -> list[FaceRow]:
        return [FaceRow(dataset, f"v{i}", 0, 0, 0, "real", split, "", "", [], [], []) for i in range(500)]

    held = {"celebdf": 0.2}
    celeb = [effective_split(r, 0.0, held) for r in rows("celebdf", "train")]
    assert 70 < celeb.count("val") < 130 and set(celeb) == {"train", "val"}
    assert {effective_split(r, 0.0, held) for r in rows("celebdf", "test")} == {"test"}  # the test list stays
    assert {effective_split(r, 0.0, held) for r in rows("ffpp", "train")} == {"train"}  # FF++ has its own val
    assert effective_split(rows("celebdf", "train")[0], 0.0) == "train"  # off unless asked for
    assert load_recipe("big_arts").data.val_from_train == held
