"""MesoNet specifics: Meso-4's layer layout and shapes as in the paper's §3.1, its parameter count (the paper's
27,977 plus one output unit for the 2-way head), and a few training steps that fit a separable batch.
(Forward/backward/save-load of both MesoNets: the contract test; the engine run:
tests/train/test_meso4_spsl_recipes.py.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dflab.models.base import build_detector
from dflab.models.detectors.meso import Meso4
from tests.models.detectors.separable import fit_steps, patch_batch


def test_meso4_layer_layout_follows_the_paper():
    model = build_detector("meso4")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 8, (3, 3), (1, 1)),
        (8, 8, (5, 5), (2, 2)),
        (8, 16, (5, 5), (2, 2)),
        (16, 16, (5, 5), (2, 2)),
    ]
    kinds = [type(m) for m in model.features]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d] * 4  # conv → ReLU → BN → pool, four times
    assert [m.kernel_size for m in model.features if isinstance(m, nn.MaxPool2d)] == [2, 2, 2, 4]
    head = list(model.head)
    assert [type(m) for m in head] == [nn.Flatten, nn.Dropout, nn.Linear, nn.LeakyReLU, nn.Dropout, nn.Linear]
    assert head[1].p == head[4].p == 0.5 and head[3].negative_slope == 0.1
    assert (head[2].in_features, head[2].out_features, head[5].out_features) == (16 * 8 * 8, 16, 2)
    # the paper's Meso-4 has 27,977 trainable parameters; the 2-way output adds one unit (16 weights + 1 bias)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 27_977 + 17


def test_meso4_shapes_at_256_px():
    model = build_detector("meso4").eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        fmap = model.features(x)
        out = model(x)
    assert fmap.shape == (2, 16, 8, 8)  # 256 / (2·2·2·4) = 8: the pool before the flatten is the identity
    assert torch.equal(model.pool(fmap), fmap)
    assert out["logits"].shape == (2, 2) and out["features"].shape == (2, 16 * 8 * 8)


def test_meso4_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="four conv blocks"):
        Meso4(widths=(8, 8, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_detector("meso4_tiny")(torch.rand(2, 1, 64, 64))


def test_meso4_training_steps_fit_a_separable_batch():
    torch.manual_seed(0)
    model = build_detector("meso4_tiny", dropout=0.0)
    losses = fit_steps(model, patch_batch(0.0, 0.3, 0.7), steps=15, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0], losses
