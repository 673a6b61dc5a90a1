"""Mixed batches (``data.mixes``): BiG-Arts §4.1 composes *every* batch of 50 % reals and the fakes a third each
dataset / (Real, Real) / (Fake, Real). Exact per-batch counts, label/kind composition, exact iterator resume and a
SIGKILL + resume through the CLI with the big_arts_tiny_all recipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dflab.errors import ConfigError
from dflab.train.config import DataConfig, StreamConfig
from dflab.train.data import concat_batches, mix_counts
from tests.train.test_dataset_fakes import build_pair_manifest

REPO = Path(__file__).resolve().parents[2]


def test_mix_counts_are_exact_and_sum_to_the_batch():
    assert mix_counts({"real": 3, "orig": 1, "rr": 1, "fr": 1}, 32) == {"real": 16, "orig": 6, "rr": 5, "fr": 5}
    assert mix_counts({"real": 3, "orig": 1, "rr": 1, "fr": 1}, 12) == {"real": 6, "orig": 2, "rr": 2, "fr": 2}
    assert mix_counts({"real": 0.5, "orig": 1 / 6, "rr": 1 / 6, "fr": 1 / 6}, 30) == {
        "real": 15, "orig": 5, "rr": 5, "fr": 5,
    }  # fmt: skip
    assert mix_counts({"real": 3, "orig": 1, "rr": 2, "fr": 0}, 32) == {"real": 16, "orig": 5, "rr": 11}
    for b in range(6, 40):
        assert sum(mix_counts({"a": 3, "b": 1, "c": 1, "d": 1}, b).values()) == b
    with pytest.raises(ConfigError, match="no item"):
        mix_counts({"real": 3, "orig": 1, "rr": 1, "fr": 1}, 4)


def test_data_config_validates_mixes():
    s = StreamConfig(mode="supervised")
    cfg = DataConfig(streams={"a": s, "b": s}, mixes={"default": {"a": 1, "b": 1}})
    assert "default" not in cfg.streams and cfg.mixes["default"] == {"a": 1, "b": 1}
    for bad in (
        {"streams": {"a": s}},  # no default anywhere
        {"streams": {"default": s, "a": s}, "mixes": {"default": {"a": 1}}},  # mix shadows a stream
        {"streams": {"a": s}, "mixes": {"default": {"a": 1, "zz": 1}}},  # unknown stream
        {"streams": {"a": s}, "mixes": {"default": {"a": 0}}},  # nothing drawn
    ):
        with pytest.raises(ValueError):
            DataConfig(**bad)


def test_concat_batches_joins_tensors_and_lists():
    a = {"image": torch.zeros(2, 3), "video_id": ["x", "y"]}
    b = {"image": torch.ones(1, 3), "video_id": ["z"]}
    out = concat_batches([a, b])
    assert out["image"].shape == (3, 3) and out["image"][2].sum() == 3 and out["video_id"] == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="different keys"):
        concat_batches([a, {"image": torch.ones(1, 3)}])


@pytest.fixture
def mix_trainer(tmp_path):
    from dflab.compat import ensure_torchvision
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    ensure_torchvision()
    manifest = build_pair_manifest(tmp_path / "pairs")
    over = [f"data.manifest={manifest}", "data.size=64", "data.batch_size=12", "train.progress=false",
            "data.unsplit_val_fraction=0.0"]  # fmt: skip
    tr = Trainer(load_recipe("big_arts_tiny_all", over), tmp_path / "run")
    yield tr
    tr.close()


def test_every_mixed_batch_has_the_exact_composition(mix_trainer):
    tr = mix_trainer
    assert {n: s.cfg.mode for n, s in tr.streams.items()} == {
        "real": "real_only", "orig": "fake_source", "rr": "real_only", "fr": "fake_source",
    }  # fmt: skip
    it = tr._iters["default"]
    expect = ["real"] * 6 + ["orig"] * 2 + ["rr"] * 2 + ["fr"] * 2  # 3:1:1:1 of 12 (§4.1)
    for _ in range(5):  # across the reals' epoch boundary (12 reals = 2 batches of 6)
        b = it.next()
        assert b["stream"] == expect and b["image"].shape[0] == 12 and len(b["video_id"]) == 12
        assert b["label"].tolist() == [0] * 6 + [1] * 6  # 50 % reals, every other item a fake
        vids = dict(zip(range(12), b["video_id"], strict=True))
        assert all(vids[i].startswith("r") for i in range(6))  # reals from real videos
        assert all(vids[i].startswith("f") for i in (6, 7, 10, 11))  # dataset fakes and (Fake, Real) sources
        assert all(vids[i].startswith("r") for i in (8, 9))  # (Real, Real) made from reals
        m_in = b["mask_in"].flatten(1).amax(1)
        m_ex = b["mask_ex"].flatten(1).amax(1)
        assert m_in[:6].max() == 0 and m_ex[:6].max() == 0  # reals: no artifact
        assert m_in[6:8].min() == 1 and m_ex[6:8].min() > 0  # dataset fakes: M_In from the original (§3.1)
        assert m_in[8:10].max() == 0 and m_ex[8:10].min() > 0  # (Real, Real): M_In = 0, M_Ex = boundary (§3.3)
        assert m_ex[10:].min() > 0


def test_mixed_iterator_state_resumes_exactly(mix_trainer):
    it = mix_trainer._iters["default"]
    it.next()
    state = {k: dict(v) for k, v in it.state().items()}
    assert set(state) == {"real", "orig", "rr", "fr"} and state["real"] == {"epoch": 0, "consumed": 1}
    ahead = [it.next() for _ in range(3)]
    it.load(state)
    for want in ahead:
        got = it.next()
        assert got["video_id"] == want["video_id"]
        for k in ("image", "label", "mask_in", "mask_ex"):
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dflab.cli", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_sigkill_and_resume_with_a_mix_gives_identical_weights(tmp_path):
    manifest = build_pair_manifest(tmp_path / "pairs")
    args = ["big_arts_tiny_all", f"--data.manifest={manifest}", "data.size=64", "data.batch_size=6",
            "data.unsplit_val_fraction=0.0", "train.progress=false", "train.max_val_items=6", "train.epochs=2",
            "train.steps_per_epoch=3", "train.ckpt_every_steps=2"]  # fmt: skip
    full = _cli(["train", *args, "--run-dir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _cli(["train", *args, "--run-dir", str(tmp_path / "cut")], env={"DFLAB_TEST_SIGKILL_AT_STEP": "5"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # last checkpoint: step 4, mid-epoch 2
    assert torch.load(tmp_path / "cut/last/state.pt", weights_only=True)["streams"]["default"]["real"]["consumed"]
    resumed = _cli(["train", *args, "--run-dir", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_file(tmp_path / "full/last/model.safetensors"), load_file(tmp_path / "cut/last/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
