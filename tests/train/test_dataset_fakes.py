"""Dataset fakes in the data layer: BiG-Arts ``mask_in``/``mask_ex`` from the original crop (§3.1), the ``fake_mask``
option (LiSiam SSIM §III-E vs DIFF Table VII), the ``fake_source`` stream feeding (Fake, Real) augmentations (§3.3),
and the big_arts_tiny_all recipe's stream mix (§4.1) through the real training loop."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dflab.data.manifest import FaceRow, Manifest, VideoRecord
from dflab.errors import ConfigError, MediaError
from dflab.train.config import DataConfig, StreamConfig
from dflab.train.data import build_stream, collate

SIZE = 64
SQ = (20, 44)  # the pasted square, rows/cols [20, 44)
NOISE = (8, 16)  # rows [8, 16) x cols [8, 56): low-amplitude noise, below DIFF's threshold, above SSIM's


def _landmarks(size: int) -> np.ndarray:
    """68 points on concentric ellipses around the crop centre (hull ≈ the central 80 %)."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    r = np.where(np.arange(68) < 34, 0.4, 0.25)
    return (np.stack([0.5 + r * np.cos(t), 0.5 + r * np.sin(t)], 1) * size).astype(np.float32)


def _smooth(rng: np.random.Generator) -> np.ndarray:
    return cv2.resize(rng.integers(70, 190, (4, 4, 3), dtype=np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _fake_of(rng: np.random.Generator, original: np.ndarray) -> np.ndarray:
    fake = original.copy()
    a, b = SQ
    fake[a:b, a:b] = rng.integers(0, 256, (b - a, b - a, 3), dtype=np.uint8)  # pasted square: strong difference
    n = rng.integers(-15, 16, (NOISE[1] - NOISE[0], SIZE - 16, 1))  # same on every channel: grey diff ≤ 15
    fake[NOISE[0] : NOISE[1], 8:56] = np.clip(fake[NOISE[0] : NOISE[1], 8:56].astype(np.int16) + n, 0, 255)
    return fake


def _write(root: Path, rel: str, img: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
    return rel


def build_pair_manifest(root: Path, *, frames: int = 3, seed: int = 0, mask_crop_video: str | None = None) -> Path:
    """Reals ``r0..r3`` (train) + ``rv0, rv1`` (val); fakes ``f0..f2`` (train) + ``fv0`` (val), each frame a real
    crop with a pasted square and a noise band, its ``original_crop`` the untouched crop. ``mask_crop_video`` gets
    an all-ones dataset mask (to tell the mask sources apart)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lm = _landmarks(SIZE).tolist()
    videos = {f"r{i}": (0, "train") for i in range(4)} | {"rv0": (0, "val"), "rv1": (0, "val")}
    videos |= {f"f{i}": (1, "train") for i in range(3)} | {"fv0": (1, "val")}
    with Manifest(root) as m:
        for vid, (label, split) in videos.items():
            rows = []
            for f in range(frames):
                original = _smooth(rng)
                extra: dict[str, str] = {}
                if label:
                    crop = _write(root, f"crops/{vid}/{f:04d}.png", _fake_of(rng, original))
                    extra["original_crop"] = _write(root, f"crops/{vid}_orig/{f:04d}.png", original)
                    if vid == mask_crop_video:
                        ones = np.full((SIZE, SIZE), 255, np.uint8)
                        extra["mask_crop"] = _write(root, f"masks/{vid}/{f:04d}.png", ones)
                else:
                    crop = _write(root, f"crops/{vid}/{f:04d}.png", original)
                rows.append(
                    FaceRow(
                        dataset="pairs", video_id=vid, frame_index=f, track_id=0, label=label,
                        method="paste" if label else "real", split=split, compression="", crop_path=crop,
                        box=[0, 0, SIZE, SIZE], det_box=[0, 0, SIZE, SIZE], landmarks=lm, identity=f"id_{vid}",
                        crop_size=SIZE, **extra,
                    )
                )  # fmt: skip
            rec = VideoRecord(dataset="pairs", video_id=vid, path=str(root / vid), label=label, split=split)
            m.commit_video(rec, rows, n_frames=frames)
    return root / "manifest.sqlite"


@pytest.fixture
def pair_manifest(tmp_path: Path) -> Path:
    return build_pair_manifest(tmp_path / "pairs")


def _stream(manifest: Path, targets, *, fake_mask: str = "dataset", **cfg):
    data = DataConfig(size=SIZE, streams={"default": StreamConfig(**cfg)}, fake_mask=fake_mask)
    return build_stream(Manifest(manifest, readonly=True), data.streams["default"], data, targets=frozenset(targets),
                        mean=(0.5,) * 3, std=(0.5,) * 3, seed=1, name="default")  # fmt: skip


def _items(stream, label: int, make_fake: int = 0):
    return [it for it in stream.plan(0) if stream.rows[it[0]].label == label and it[1] == make_fake]


def test_dataset_fake_gets_bigarts_masks_covering_the_square(pair_manifest):
    s = _stream(pair_manifest, {"mask_in", "mask_ex"}, mode="supervised", split="train")
    a, b = SQ
    for it in _items(s, 1)[:3]:
        out = s[it]
        m_in, m_ex = out["mask_in"][0].numpy(), out["mask_ex"][0].numpy()
        assert out["mask_in"].shape == (1, SIZE, SIZE) and int(out["label"]) == 1
        assert m_in[a:b, a:b].mean() > 0.97  # §3.1: Convex(|x' − x| > γ) is the pasted square
        outside = np.ones_like(m_in, bool)
        outside[a - 2 : b + 2, a - 2 : b + 2] = False
        assert m_in[outside].max() == 0.0  # the noise band (≤ 15 < γ = 20) stays out
        assert m_ex[a - 1 : a + 1, a + 1 : b - 1].mean() > 0.9  # M_ex = D(M_in) − E(M_in): the square's edge
        assert m_ex[a + 8 : b - 8, a + 8 : b - 8].max() == 0.0
    real = s[_items(s, 0)[0]]
    assert real["mask_in"].sum() == 0 and real["mask_ex"].sum() == 0


def test_dataset_fake_without_original_is_an_error(pair_manifest):
    s = _stream(pair_manifest, {"mask_in", "mask_ex"}, mode="supervised", split="train")
    it = _items(s, 1)[0]
    (s.root / s.rows[it[0]].original_crop).unlink()
    with pytest.raises(MediaError, match="missing"):
        s[it]


@pytest.mark.parametrize("kind", ["ssim", "diff"])
def test_fake_mask_option(tmp_path, kind):
    manifest = build_pair_manifest(tmp_path / "p", mask_crop_video="f0")
    s = _stream(manifest, {"mask"}, fake_mask=kind, mode="supervised", split="train")
    a, b = SQ
    for it in _items(s, 1):
        m = s[it]["mask"][0].numpy()
        assert m[a + 2 : b - 2, a + 2 : b - 2].mean() > 0.9  # both see the pasted square
        band = m[NOISE[0] + 3 : NOISE[1] - 3, 12:52].mean()  # the noise band, away from its edges
        # LiSiam §III-E: SSIM sees the structural change; DIFF (|Δ| / 255 > 0.1) misses a ≤ 15-level change
        assert band > 0.9 if kind == "ssim" else band == 0.0
        assert m[-6:, :].max() == 0.0  # untouched rows: no mask from either
    # a computed mask wins over the row's mask_crop (all ones) when the original exists
    f0 = next(it for it in _items(s, 1) if s.rows[it[0]].video_id == "f0")
    assert s[f0]["mask"].mean() < 0.5


def test_fake_mask_dataset_prefers_mask_crop(tmp_path):
    manifest = build_pair_manifest(tmp_path / "p", mask_crop_video="f0")
    s = _stream(manifest, {"mask"}, mode="supervised", split="train")  # default: dataset
    by_video = {s.rows[it[0]].video_id: s[it]["mask"] for it in _items(s, 1)}
    assert by_video["f0"].min() == 1.0  # the dataset (oracle) mask
    a, b = SQ
    assert by_video["f1"][0, a:b, a:b].mean() > 0.9 and by_video["f1"][0, -6:].max() == 0.0  # DIFF fallback
    with pytest.raises(ValidationError, match="fake_mask"):
        DataConfig(streams={"default": StreamConfig()}, fake_mask="xor")


def test_fake_source_stream_yields_fake_real_samples(pair_manifest):
    s = _stream(pair_manifest, {"mask_in", "mask_ex"}, mode="fake_source", split="train", synthesizers=["bigarts_fr"],
                fake_ratio=0.5)  # fmt: skip
    assert {r.label for r in s.rows} == {1} and all(r.original_crop for r in s.rows)
    assert len(s.rows) == 9  # f0..f2 x 3 frames, no val fake
    assert set(s.pool.identities) == {f"id_r{i}" for i in range(4)}  # donors: the train reals
    plan = s.plan(0)
    assert sum(f for _, f, _ in plan) == len(plan) // 2 == 9
    synth = [it for it in plan if it[1]]
    reals = [
        cv2.cvtColor(cv2.imread(str(s.root / f"crops/r{i}/{f:04d}.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
        for i in range(4)
        for f in range(3)
    ]
    a, b = SQ
    for it in synth[:4]:
        out = s[it]
        m_in = out["mask_in"][0].numpy()
        assert int(out["label"]) == 1
        # (F,R) §3.3: M_In = M' ⊙ T(M''), M' the expanded difference region of the source fake
        assert m_in[a + 4 : b - 4, a + 4 : b - 4].mean() > 0.9 and m_in[:4].max() == 0.0 and m_in[:, -4:].max() == 0
        img = (out["image"].numpy().transpose(1, 2, 0) * 0.5 + 0.5) * 255.0
        outside = np.zeros((SIZE, SIZE), bool)
        outside[:, -6:] = True  # far from the square: pure target B = a real face of another identity
        assert min(np.abs(img[outside] - r[outside]).max() for r in reals) < 3.0
        src = cv2.cvtColor(cv2.imread(str(s.root / s.rows[it[0]].crop_path)), cv2.COLOR_BGR2RGB).astype(np.float32)
        assert np.abs(img[a + 4 : b - 4, a + 4 : b - 4] - src[a + 4 : b - 4, a + 4 : b - 4]).max() < 3.0  # A inside
        torch.testing.assert_close(s[it]["image"], out["image"], rtol=0, atol=0)  # replayable
    plain = collate([s[it] for it in plan if not it[1]][:3])
    assert plain["label"].tolist() == [1, 1, 1] and plain["mask_in"].flatten(1).amax(1).min() == 1.0


def test_fake_source_needs_fakes_with_originals(tmp_path):
    manifest = build_pair_manifest(tmp_path / "p")
    with Manifest(manifest) as m:
        m.db.execute("UPDATE faces SET original_crop = '' WHERE label = 1")
        m.db.commit()
    with pytest.raises(ConfigError, match="original_crop"):
        _stream(manifest, {"mask_in"}, mode="fake_source", split="train", synthesizers=["bigarts_fr"], fake_ratio=1.0)


def test_big_arts_tiny_all_mixes_the_three_fake_sources(pair_manifest, tmp_path):
    from dflab.compat import ensure_torchvision
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    ensure_torchvision()
    over = [f"data.manifest={pair_manifest}", "data.size=64", "data.batch_size=6", "train.epochs=1",
            "train.steps_per_epoch=4", "train.log_every=1", "train.progress=false", "train.max_val_items=8",
            "data.unsplit_val_fraction=0.0"]  # fmt: skip
    tr = Trainer(load_recipe("big_arts_tiny_all", over), tmp_path / "run")
    assert {n: s.cfg.mode for n, s in tr.streams.items()} == {
        "real": "real_only",
        "orig": "fake_source",
        "rr": "real_only",
        "fr": "fake_source",
    }
    summary = tr.fit()
    tr.close()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert summary["steps"] == 4
    assert [r["stream"] for r in rows] == ["default"] * 4  # §4.1: every batch is the 3:1:1:1 mix (3 + 1 + 1 + 1)
    assert all(float(r["loss"]) > 0 and np.isfinite(float(r["in"])) for r in rows)


def test_big_arts_tiny_supervises_a_non_zero_m_in(pair_manifest, tmp_path):
    """Issue 13: big_arts_tiny used to see (Real, Real) fakes only, whose M_In is zero by definition (§3.3). Its
    mix now holds dataset fakes and (Fake, Real) augmentations: their M_In is the hull of |x' − x| > γ (§3.1)."""
    from dflab.compat import ensure_torchvision
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    ensure_torchvision()
    over = [f"data.manifest={pair_manifest}", "data.size=64", "data.batch_size=6", "train.progress=false"]
    tr = Trainer(load_recipe("big_arts_tiny", over), tmp_path / "run")
    m_in = {}
    for name in ("orig", "fr", "rr"):
        stream = tr.streams[name]
        m_in[name] = [float(stream[it]["mask_in"].sum()) for it in stream.plan(0)[:4]]
    tr.close()
    assert min(m_in["orig"]) > 0 and min(m_in["fr"]) > 0
    assert max(m_in["rr"]) == 0  # (R, R): no intrinsic artifacts


def test_degrade_augmentation_applies_a_degrader_per_item_seed(pair_manifest):
    """LiSiam Table V's "Xception + IQD": the ``Degrade`` op runs a DEGRADERS entry on the training image itself."""
    from dflab.train.recipes import load_recipe

    plain = _stream(pair_manifest, set(), mode="supervised", split="train")
    iqd = _stream(
        pair_manifest, set(), mode="supervised", split="train",
        augment={"ops": [{"name": "Degrade", "degrader": "iqd", "p": 1.0}]},
    )  # fmt: skip
    items = plain.plan(0)[:8]
    changed = [not torch.equal(plain[it]["image"], iqd[it]["image"]) for it in items]
    assert sum(changed) >= 4  # IQD leaves an image untouched only when none of its three ops fires (1/8)
    for it in items[:3]:
        torch.testing.assert_close(iqd[it]["image"], iqd[it]["image"], rtol=0, atol=0)  # replayable from the seed
    ops = load_recipe("xception_iqd").data.streams["default"].augment.ops
    assert {"name": "Degrade", "degrader": "iqd", "p": 1.0} in ops
