"""LAE active selection (Sec. 2.4): linear channel ranking, top-activating fakes, random baseline, oracles."""

from __future__ import annotations

import numpy as np
import pytest

from dflab.train.active import (
    CallbackMaskOracle,
    DictMaskOracle,
    choose,
    fit_channel_linear,
    select_active,
    select_random,
    top_channels,
)


def _activations(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, c = 200, 32
    labels = np.repeat([0, 1], n // 2)
    u = rng.random((n, c)).astype(np.float32)
    u[labels == 1, 5] += 2.0 + rng.random(n // 2)  # channel 5 fires on fakes
    u[labels == 1, 9] += 1.0
    return u, labels


def test_select_active_returns_top_activating_fakes():
    u = np.array([[9.0, 9.0], [1.0, 0.0], [3.0, 1.0], [0.0, 0.5], [2.0, 2.5]])
    labels = np.array([0, 1, 1, 1, 1])
    idx, score = select_active(u, labels, channels=[0, 1], n_active=2)
    assert idx.tolist() == [4, 2]  # sums 4.5, 4.0 — the real row 0 (18.0) is never chosen
    assert score.tolist() == [4.5, 4.0]


def test_linear_model_ranks_the_discriminative_channels_first():
    u, labels = _activations()
    w = fit_channel_linear(u, labels, epochs=5, lr=1e-3)
    top = top_channels(w, 2)
    assert set(top.tolist()) == {5, 9}


def test_choose_active_selects_fakes_with_highest_activation_on_top_channels():
    u, labels = _activations()
    keys = [f"k{i}" for i in range(len(u))]
    sel = choose(u, labels, keys, n_active=10, top_k=10)
    assert sel.method == "active" and len(sel.keys) == 10 and 5 in sel.channels
    fakes = np.flatnonzero(labels == 1)
    scores = u[fakes][:, sel.channels].sum(1)
    expected = fakes[np.argsort(-scores)[:10]]
    assert sel.indices == expected.tolist()
    assert all(labels[i] == 1 for i in sel.indices)


def test_random_selection_only_fakes_and_reproducible():
    _, labels = _activations()
    a = select_random(labels, 15, np.random.default_rng(3))
    b = select_random(labels, 15, np.random.default_rng(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 15
    assert (labels[a] == 1).all()
    sel = choose(np.zeros((len(labels), 4)), labels, [str(i) for i in range(len(labels))], 5, method="random")
    assert sel.channels == [] and len(sel.indices) == 5
    with pytest.raises(ValueError, match="unknown selection"):
        choose(np.zeros((2, 2)), np.array([0, 1]), ["a", "b"], 1, method="entropy")


def test_oracles():
    m = np.ones((4, 4), np.float32)
    assert list(DictMaskOracle({"a": m}).request(["a", "b"])) == ["a"]
    asked = []

    def human(key):
        asked.append(key)
        return m if key == "b" else None

    assert list(CallbackMaskOracle(human).request(["a", "b"])) == ["b"]
    assert asked == ["a", "b"]


def test_stream_oracle_answers_the_true_mask_whatever_the_streams_annotations(supervised_manifest, tmp_path):
    """The oracle labels a selected fake with its dataset mask, not with the (empty) annotation the stream gives it
    before the selection, and not with an augmented view of it."""
    import sqlite3

    import cv2

    from dflab.data.manifest import Manifest
    from dflab.train.active import StreamMaskOracle
    from dflab.train.config import DataConfig, StreamConfig
    from dflab.train.data import build_stream, face_key

    mask = np.zeros((48, 48), np.uint8)
    mask[:, :24] = 255  # left half: a horizontal flip would move it
    cv2.imwrite(str(supervised_manifest.parent / "half.png"), mask)
    with sqlite3.connect(supervised_manifest) as db:
        db.execute("UPDATE faces SET mask_crop='half.png' WHERE label=1")
    cfg = StreamConfig(mode="supervised", split="train", augment={"ops": [{"name": "HorizontalFlip", "p": 1.0}]})
    data = DataConfig(size=32, streams={"default": cfg})
    s = build_stream(Manifest(supervised_manifest, readonly=True), cfg, data, targets=frozenset({"mask"}),
                     mean=(0.5,) * 3, std=(0.5,) * 3, seed=0, name="d")  # fmt: skip
    s.annotations = {}  # stage 1: nothing annotated yet
    key = face_key(next(r for r in s.rows if r.label == 1))
    got = StreamMaskOracle(s).request([key])[key]
    assert got[:, : got.shape[1] // 2].min() == 1.0 and got[:, got.shape[1] // 2 :].max() == 0.0
