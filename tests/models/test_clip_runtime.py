"""The CLIP probe's torch-free runtime computes what the torch detector computes (scores, calibration, maps)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from dflab.errors import CheckpointError
from dflab.models import clip, clip_runtime
from dflab.models.spec import InputSpec

needs_clip = pytest.mark.skipif(
    importlib.util.find_spec(clip.CLIP_PACKAGE) is None, reason=f"CLIP weights not installed ({clip.CLIP_INSTALL})"
)


def _card(**kwargs):
    return {"detector": "clip_probe", "kwargs": {"blocks": [11, 12], "tokens": ["cls", "mean"], **kwargs}}


def test_supports_only_what_it_reproduces():
    assert clip_runtime.supports(_card(hidden=0))
    assert clip_runtime.supports(_card(hidden=16, dropout=0.1, cache_size=0))
    assert not clip_runtime.supports(_card(encoder="tiny_vit")), "the tiny test encoder is torch only"
    assert not clip_runtime.supports(_card(size=64))
    assert not clip_runtime.supports(_card(tokens=["cls", "max"])), "a token kind added later falls back to torch"
    assert not clip_runtime.supports(_card(new_option=True)), "unknown kwargs fall back to torch"
    assert not clip_runtime.supports({"detector": "resnet18", "kwargs": {}})


def test_weights_are_checked():
    d = 2 * 2 * 4
    ok = {"norm.running_mean": np.zeros(d), "norm.running_var": np.ones(d), "head.weight": np.zeros((2, d)),
          "head.bias": np.zeros(2)}  # fmt: skip
    kwargs, spec = _card()["kwargs"], InputSpec(size=224)
    with pytest.raises(CheckpointError, match="missing"):
        clip_runtime.ClipProbeRuntime(kwargs, {k: v for k, v in ok.items() if k != "head.bias"}, spec)
    with pytest.raises(CheckpointError, match="NaN"):
        clip_runtime.ClipProbeRuntime(kwargs, {**ok, "head.weight": np.full((2, d), np.nan)}, spec)
    with pytest.raises(CheckpointError, match="unexpected"):
        clip_runtime.ClipProbeRuntime(kwargs, {**ok, "other": np.zeros(1)}, spec)


def _faces(astronaut):
    face = np.ascontiguousarray(astronaut[20:260, 140:380])
    import cv2

    crop = cv2.resize(face, (224, 224), interpolation=cv2.INTER_AREA)
    return [crop, np.ascontiguousarray(crop[:, ::-1]), np.ascontiguousarray(crop[::-1])]


def _both(path):
    from dflab.scan.pipeline import load_scorer

    fast, ref = load_scorer(path), load_scorer(path, runtime="torch")
    assert fast.array_io and not ref.array_io
    return fast, ref


@needs_clip
@pytest.mark.parametrize("hidden", [0, 8])
def test_runtime_matches_the_torch_detector(astronaut, tmp_path, hidden):
    """Same checkpoint, both paths: equal logits, calibrated probabilities and patch-evidence maps."""
    import torch

    from dflab.models.base import build_detector
    from dflab.models.checkpoint import save_detector

    torch.manual_seed(hidden)
    model = build_detector("clip_probe", blocks=[10, 12], hidden=hidden).eval()
    with torch.no_grad():
        model.norm.running_mean.normal_(0, 0.3)
        model.norm.running_var.uniform_(0.5, 2.0)
        for p in model.head.parameters():
            p.normal_(0, 0.05)
    card = {"calibration": {"method": "platt", "scale": 1.7, "bias": -0.2}}
    save_detector(model, tmp_path / "ckpt", card)
    fast, ref = _both(tmp_path / "ckpt")
    crops = _faces(astronaut)
    (p_fast, m_fast), (p_ref, m_ref) = fast.score(crops, maps=True), ref.score(crops, maps=True)
    np.testing.assert_allclose(p_fast, p_ref, rtol=1e-4, atol=1e-5)
    x = fast.to_array(crops)
    with torch.no_grad():
        logits_ref = ref.model(torch.from_numpy(x))["logits"].numpy()
    np.testing.assert_allclose(fast.model(x)["logits"], logits_ref, rtol=1e-4, atol=1e-4)
    if hidden:
        assert m_fast is None and m_ref is None, "an MLP head has no exact patch map"
    else:
        assert len(m_fast) == len(crops) and m_fast[0].shape == (224, 224)
        for a, b in zip(m_fast, m_ref, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)


@needs_clip
def test_shipped_default_gives_the_same_scan_both_ways(astronaut):
    from dflab.scan.pipeline import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no default weights shipped")
    fast, ref = _both(DEFAULT_WEIGHTS)
    crops = _faces(astronaut)
    (p_fast, m_fast), (p_ref, m_ref) = fast.score(crops, maps=True), ref.score(crops, maps=True)
    np.testing.assert_allclose(p_fast, p_ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(m_fast, m_ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@needs_clip
def test_scanning_with_the_default_detector_never_imports_torch(tmp_path, astronaut):
    """A whole ``dflab scan`` (report included) of a still with the shipped default runs without torch."""
    from PIL import Image

    from dflab.scan.pipeline import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no default weights shipped")
    img = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(img)
    code = (
        "import sys; from dflab.cli import main; "
        f"rc = main(['scan', {str(img)!r}, '--out', {str(tmp_path / 'out')!r}, '--no-progress']); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "NO-TORCH" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "out" / "report.html").is_file()


@needs_clip
def test_a_scan_that_never_scores_a_face_still_exits_cleanly(tmp_path):
    """The encoder is built in a background thread; a process that ends before using it (only broken files) must
    wait for that thread, not crash while ONNX Runtime is still in it (it exited with SIGSEGV)."""
    from dflab.scan.pipeline import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no default weights shipped")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cmd = [sys.executable, "-m", "dflab.cli", "scan", str(empty), "--out", str(tmp_path / "out"), "--no-progress"]
    for _ in range(4):  # the crash depended on timing (4 of 5 runs before the fix)
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 4, (out.returncode, out.stderr[-500:])  # 4: a file could not be scanned
