"""Pretrained initialisation (issue 13, item 2): paper recipes ask for the paper's ImageNet weights, tiny recipes say
``none`` explicitly, and a weights spec that cannot be had stops the run with a message naming the ways out."""

from __future__ import annotations

import json

import pytest
import torch

from dflab.errors import CheckpointError
from dflab.models.base import build_detector
from dflab.train.loop import Trainer
from dflab.train.recipes import RECIPE_DIR, load_recipe

#: paper recipe -> the ImageNet weights its paper initialises from (timm names; tv = torchvision's weights)
PAPER_WEIGHTS = {
    "lisiam": "timm:legacy_xception.tf_in1k",
    "mml": "timm:resnet34.tv_in1k",
    "mml_triplet": "timm:resnet34.tv_in1k",
    "dadd": "timm:legacy_xception.tf_in1k",
    "big_arts": "timm:resnet18.tv_in1k",
    "xception": "timm:legacy_xception.tf_in1k",
    "resnet18": "timm:resnet18.tv_in1k",
    "resnet34": "timm:resnet34.tv_in1k",
    "vgg16": "timm:vgg16.tv_in1k",
    "densenet121": "timm:densenet121.tv_in1k",
    "alexnet": "torchvision:alexnet.imagenet1k_v1",  # timm has no AlexNet
    "capsule": "timm:vgg19.tv_in1k",  # BiG-Arts' other baselines: Capsule-Forensics' VGG-19, GSRM's Xceptions
    "gsrm": "timm:legacy_xception.tf_in1k",  # its RGB stream; the SRM stream's spec is model.kwargs.hf_pretrained
}
TINY = ["data.size=32", "train.progress=false", "data.batch_size=4", "train.epochs=1", "train.steps_per_epoch=1"]


@pytest.mark.parametrize("name", sorted(PAPER_WEIGHTS))
def test_paper_recipes_ask_for_imagenet_weights(name):
    assert load_recipe(name).model.pretrained == PAPER_WEIGHTS[name]


def test_rfm_recipe_starts_from_random_weights_as_the_released_code():
    # BiG-Arts §4.2 retrains RFM "using their released codes"; crywang/RFM train.py builds xception(pretrained=False)
    assert load_recipe("rfm").model.pretrained == "none"


def test_lae_recipe_asks_for_an_imagenet_vgg16_comparator():
    kw = load_recipe("lae").model.kwargs
    assert kw["comparator_weights"] == "timm:vgg16.tv_in1k"
    model = build_detector("lae", **kw)
    assert model.pretrained_parts() == {"comparator.": ("comparator_weights", "timm:vgg16.tv_in1k")}
    assert not model.comparator.weights_loaded  # the constructor never fetches: a checkpoint rebuilds offline


@pytest.mark.parametrize("path", sorted(RECIPE_DIR.glob("*_tiny.yaml")), ids=lambda p: p.stem)
def test_tiny_recipes_run_offline_and_say_so(path):
    """Tiny recipes never need the hub: no pretrained weights (said ``none`` when their base asks for some) or the
    packaged EfficientNet-Lite0; LAE's comparator is an explicit random one."""
    m = load_recipe(path.stem).model
    assert m.pretrained in (None, "none", "efficientnet_lite0:imagenet")
    model = build_detector(m.name, **m.kwargs)
    assert all(spec == "none" for _, spec in model.pretrained_parts().values())


def test_unavailable_weights_stop_the_run_with_the_ways_out(supervised_manifest, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = load_recipe("resnet18_tiny", [f"data.manifest={supervised_manifest}", *TINY,
                                        "model.pretrained=timm:resnet18.tv_in1k"])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"model\.pretrained=none") as err:
        Trainer(cfg, tmp_path / "run")
    assert "model.pretrained=/path/to/weights.safetensors" in str(err.value)


def test_explicit_opt_out_is_recorded(supervised_manifest, tmp_path):
    cfg = load_recipe("resnet18_tiny", [f"data.manifest={supervised_manifest}", *TINY])
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["pretrained"] == {"backbone.": {"spec": "none", "loaded": 0}}


def test_local_file_loads_into_the_backbone(supervised_manifest, tmp_path):
    from safetensors.torch import save_file

    src = build_detector("resnet18_tiny").backbone
    torch.nn.init.constant_(src.conv1.weight, 0.25)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = load_recipe("resnet18_tiny", [f"data.manifest={supervised_manifest}", *TINY,
                                        f"model.pretrained={tmp_path / 'w.safetensors'}"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    assert torch.all(tr.model.backbone.conv1.weight == 0.25)
    assert tr.pretrained_report["backbone."]["loaded"] == len(src.state_dict())


LAE = ["data.size=64", "data.streams.default.datasets=null", "data.streams.default.split=train",
       "data.val.datasets=null", "train.progress=false", "data.batch_size=4", "train.epochs=1",
       "train.steps_per_epoch=1"]  # fmt: skip


def test_lae_comparator_without_weights_stops_the_run(supervised_manifest, tmp_path):
    """No silent random frozen comparator: unset weights are an error naming the kwarg, both ways and the opt-out."""
    unset = "model.kwargs.comparator_weights=null"
    cfg = load_recipe("lae_tiny", [f"data.manifest={supervised_manifest}", *LAE, unset])
    with pytest.raises(CheckpointError, match=r"model\.kwargs\.comparator_weights=none"):
        Trainer(cfg, tmp_path / "run")


def test_lae_comparator_loads_a_local_file_through_the_trainer(supervised_manifest, tmp_path):
    from safetensors.torch import save_file

    from dflab.models.detectors.lae import Comparator

    src = Comparator(width=0.125)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "vgg.safetensors"))
    cfg = load_recipe("lae_tiny", [f"data.manifest={supervised_manifest}", *LAE,
                                   f"model.kwargs.comparator_weights={tmp_path / 'vgg.safetensors'}"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    assert tr.model.comparator.weights_loaded
    assert torch.equal(tr.model.comparator.features[0].weight, src.features[0].weight)


def test_timm_weights_load_and_a_normalisation_mismatch_is_warned(supervised_manifest, tmp_path, monkeypatch):
    """``timm:`` weights go through timm (stubbed here: no network in tests); weights trained with another mean/std
    than the detector's input contract are loaded but flagged (Xception's tf_in1k weights expect mean = std = 0.5)."""
    import dflab.models.backbones as B

    src = build_detector("resnet18_tiny").backbone
    torch.nn.init.constant_(src.conv1.weight, 0.5)
    asked = []
    monkeypatch.setattr(B, "timm_pretrained_state", lambda arch: asked.append(arch) or dict(src.state_dict()))
    cfg = load_recipe("resnet18_tiny", [f"data.manifest={supervised_manifest}", *TINY,
                                        "model.pretrained=timm:legacy_xception.tf_in1k"])  # fmt: skip
    tr = Trainer(cfg, tmp_path / "run")
    tr.close()
    assert asked == ["legacy_xception.tf_in1k"] and torch.all(tr.model.backbone.conv1.weight == 0.5)
    assert "(0.5, 0.5, 0.5)" in tr.pretrained_report["backbone."]["warning"]
    assert B.timm_pretrained_norm("timm:resnet18.tv_in1k") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_cli_names_the_ways_out_without_a_traceback(supervised_manifest, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    args = ["train", "resnet18_tiny", f"--data.manifest={supervised_manifest}", "train.progress=false",
            "model.pretrained=timm:resnet18.tv_in1k", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "dflab.cli", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "dflab train: pretrained weights 'timm:resnet18.tv_in1k'" in proc.stderr
    assert "model.pretrained=none" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["alexnet", "densenet121"])
def test_table1_baselines_train_from_none_and_stop_offline_on_imagenet(name, supervised_manifest, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    """BiG-Arts Table 1's AlexNet / DenseNet-121: the tiny recipe trains a step at 64 px (AlexNet's smallest input
    is 63 px) from ``none``; the paper's ImageNet spec offline with empty caches stops with the ways out."""
    import huggingface_hub.constants as hf_constants

    steps = [f"data.manifest={supervised_manifest}", *TINY, "data.size=64"]
    tr = Trainer(load_recipe(f"{name}_tiny", steps), tmp_path / "run")
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 1 and tr.pretrained_report == {"backbone.": {"spec": "none", "loaded": 0}}

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = load_recipe(f"{name}_tiny", [*steps, f"model.pretrained={PAPER_WEIGHTS[name]}"])
    with pytest.raises(CheckpointError, match=r"model\.pretrained=none") as err:
        Trainer(cfg, tmp_path / "run2")
    assert "HF_HUB_OFFLINE" in str(err.value) and "model.pretrained=/path/to/weights.safetensors" in str(err.value)
