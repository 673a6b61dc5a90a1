"""The BiG-Arts Table 1 base networks at full size: the paper recipes' detectors build offline and train."""

from __future__ import annotations

import pytest
import torch

from dflab.models.base import build_detector
from dflab.train.recipes import load_recipe


@pytest.mark.parametrize("name", ["alexnet", "densenet121"])
def test_table1_full_size_forward_backward(name):
    """The paper recipe's detector (full width, random weights: nothing is fetched at construction) gives 2-way
    logits on 256 px ImageNet-normalised input, and one backward reaches the first conv."""
    m = load_recipe(name).model
    torch.manual_seed(0)
    model = build_detector(m.name, **m.kwargs)
    spec = model.input_spec
    assert (spec.size, spec.mean, spec.std) == (256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    out = model(torch.randn(2, 3, 64, 64))  # small input keeps the test to seconds; 256 px is the recipe's
    assert out["logits"].shape == (2, 2)
    model.compute_loss({"label": torch.tensor([0, 1])}, out)["loss"].backward()
    first = next(p for n, p in model.backbone.named_parameters() if n.endswith("weight"))
    assert first.grad is not None and first.grad.abs().sum() > 0
