"""GenD specifics (the shared contract test covers forward/loss/score/save-load): which parameters train under each
``tune`` mode, that an optimiser step moves exactly those, and that ``encode`` is timm's own class-token path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dflab.models.base import build_detector
from dflab.models.clip import CLIP_MEAN, CLIP_STD
from dflab.models.detectors.gend import parse_tune

SIZE = 64


def _batch(b: int = 6) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(b, 3, SIZE, SIZE, generator=g), "label": torch.tensor([0, 1] * (b // 2))}


def _ln_names(model) -> set[str]:
    return {
        f"{mname}.{pname}"
        for mname, m in model.named_modules()
        if isinstance(m, nn.LayerNorm)
        for pname, _ in m.named_parameters(recurse=False)
    }


def test_input_contract_is_clip():
    spec = build_detector("gend_tiny").input_spec
    assert spec.mean == CLIP_MEAN and spec.std == CLIP_STD and spec.size == SIZE
    full = build_detector("gend", backbone_kwargs={"depth": 1})  # full width, one block: cheap to build
    assert full.input_spec.size == 224 and full.backbone.num_features == 768


def test_ln_only_trains_layernorms_and_head_and_nothing_else():
    torch.manual_seed(0)
    model = build_detector("gend_tiny", tune="ln")
    trainable = set(model.trainable_parameter_names())
    ln = _ln_names(model)
    # pre-LN, norm1/norm2 of both blocks, post-LN: 6 LayerNorms x (weight, bias)
    assert len(ln) == 12 and all(n.startswith("backbone.") for n in ln)
    assert trainable == ln | {"head.weight", "head.bias"}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = _batch()
    model.train()
    model.compute_loss(batch, model(batch["image"]))["loss"].backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable  # every LayerNorm and the head moved; attention, MLP, embeddings did not


def test_none_is_a_linear_probe_and_last_blocks_opens_the_top():
    probe = build_detector("gend_tiny", tune="none")
    assert set(probe.trainable_parameter_names()) == {"head.weight", "head.bias"}
    top = build_detector("gend_tiny", tune="last_blocks:1")
    names = set(top.trainable_parameter_names())
    assert any(n.startswith("backbone.blocks.1.attn.") for n in names)
    assert not any(n.startswith("backbone.blocks.0.") for n in names)
    assert {"backbone.norm.weight", "head.weight"} <= names and "backbone.norm_pre.weight" not in names
    batch = _batch()
    top.compute_loss(batch, top(batch["image"]))["loss"].backward()
    assert top.backbone.blocks[1].mlp.fc1.weight.grad is not None
    assert top.backbone.blocks[0].mlp.fc1.weight.grad is None


@pytest.mark.parametrize("tune", ["ln", "none", "last_blocks:1", "last_blocks:2"])
def test_encode_equals_timm_class_token(tune):
    torch.manual_seed(0)
    model = build_detector("gend_tiny", tune=tune).eval()
    x = _batch()["image"]
    with torch.no_grad():
        ref = model.backbone(x)  # timm: forward_features -> token pooling (num_classes=0)
        out = model(x)
    torch.testing.assert_close(model.encode(x), ref)
    torch.testing.assert_close(out["features"], ref / ref.norm(dim=1, keepdim=True))
    torch.testing.assert_close(out["features"].norm(dim=1), torch.ones(len(x)))


def test_loss_parts_and_weights():
    model = build_detector("gend_tiny", w_unif=0.0, w_align=0.0)
    batch = _batch()
    out = model(batch["image"])
    parts = model.compute_loss(batch, out)
    assert set(parts) == {"loss", "ce", "uniformity", "alignment"}
    torch.testing.assert_close(parts["loss"].detach(), parts["ce"])  # weights 0: plain cross-entropy
    weighted = build_detector("gend_tiny")
    weighted.load_state_dict(model.state_dict())
    p2 = weighted.compute_loss(batch, weighted(batch["image"]))
    torch.testing.assert_close(p2["loss"].detach(), p2["ce"] + 0.5 * p2["uniformity"] + 0.1 * p2["alignment"])


def test_bad_tune_and_bad_size_are_clear_errors():
    with pytest.raises(ValueError, match="K must be"):
        parse_tune("last_blocks:13", 12)
    with pytest.raises(ValueError, match="expected one of"):
        build_detector("gend_tiny", tune="bias")
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        build_detector("gend_tiny")(torch.zeros(1, 3, 96, 96))
