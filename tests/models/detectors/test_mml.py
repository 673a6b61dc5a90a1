"""MML specifics: stage switches, centre tracking, AHE term, ablations, paper size."""

from __future__ import annotations

import math

import pytest
import torch

from dflab.losses.metric import triplet_loss
from dflab.models.base import build_detector


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_detector("mml_tiny").train()


def test_embeddings_are_unit_norm(model):
    out = model(torch.randn(4, 3, 64, 64))
    assert out["embedding"].shape == (4, 16)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)


def test_stages_switch_terms(model):
    x, label = torch.randn(6, 3, 64, 64), torch.tensor([0, 0, 0, 1, 1, 1])
    out = model(x)
    early = model.compute_loss({"label": label}, out, stage="early")
    keys = ["loss", "ce", "triplet", "triplet_ahe", "eta", "weight_center"]
    assert list(early) == keys  # the same logged parts in every stage
    assert early["loss"].item() == pytest.approx(2 * early["triplet"].item() + early["ce"].item(), rel=1e-5)
    assert model.wc.initialised.item()  # the centre is tracked from the start
    middle = model.compute_loss({"label": label}, out, stage="middle")
    assert list(middle) == keys and middle["weight_center"].item() > 0
    expected = 2 * middle["triplet"] + middle["ce"] + middle["weight_center"]
    assert middle["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    end = model.compute_loss({"label": label}, out, stage="end")
    assert end["eta"].item() == pytest.approx(math.exp(-1 / end["ce"].item()), rel=1e-5)
    trip = 0.5 * (end["triplet"] + end["triplet_ahe"])
    expected = 2 * trip + end["ce"] + end["weight_center"]
    assert end["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    end["loss"].backward()
    assert model.embed.weight.grad.abs().sum() > 0


def test_center_not_updated_in_eval(model):
    model.eval()
    out = model(torch.randn(4, 3, 64, 64))
    model.compute_loss({"label": torch.tensor([0, 0, 1, 1])}, out, stage="middle")
    assert not model.wc.initialised.item()


def test_ablation_triplet_only():
    m = build_detector("mml_triplet", backbone="test_resnet", input_size=64)
    out = m(torch.randn(4, 3, 64, 64))
    label = torch.tensor([0, 0, 1, 1])
    parts = m.compute_loss({"label": label}, out, stage="end")
    assert parts["loss"].item() == pytest.approx(2 * triplet_loss(out["embedding"], label).item(), rel=1e-5)


def test_unknown_stage(model):
    with pytest.raises(ValueError, match="unknown MML stage"):
        model.compute_loss({"label": torch.tensor([0, 1])}, model(torch.randn(2, 3, 64, 64)), stage="late")


@pytest.mark.slow
def test_paper_recipe_builds_and_steps_at_paper_size():
    from dflab.train.recipes import load_recipe

    recipe = load_recipe("mml")
    m = build_detector(recipe.model.name, **recipe.model.kwargs)
    assert m.backbone.num_features == 512  # ResNet-34
    s = recipe.data.size
    assert s == 256
    out = m(torch.randn(2, 3, s, s))
    m.compute_loss({"label": torch.tensor([0, 1])}, out, stage="end")["loss"].backward()
    assert m.embed.weight.grad is not None
