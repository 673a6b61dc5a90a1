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


def _toy(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A separable toy set: fakes carry a bright centre square on noise."""
    label = torch.arange(n) % 2
    x = torch.randn(n, 3, 32, 32, generator=gen) * 0.5
    x[label == 1, :, 8:24, 8:24] += 2.0
    return x, label


def test_triplet_only_scores_by_class_centres():
    """Table 3 row 1 (issue 13 item 3): a triplet-only model never trains its CE head, so it must score by the
    embedding (similarity to the class centres): high AUC on a separable toy set, and independent of the head."""
    from dflab.eval.metrics import auc

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    m = build_detector("mml_triplet", backbone="test_resnet", embed_dim=16, input_size=32).train()
    assert m.score_by == "centres"
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(15):
        x, label = _toy(16, gen)
        parts = m.compute_loss({"label": label}, m(x), stage="end")
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert m.classifier.weight.grad is None or m.classifier.weight.grad.abs().sum() == 0  # the head never trains
    m.eval()
    x, label = _toy(64, gen)
    with torch.no_grad():
        scores = m.score(m(x))
        torch.nn.init.normal_(m.classifier.weight)  # any head: the scores must not depend on it
        torch.nn.init.normal_(m.classifier.bias)
        again = m.score(m(x))
    assert auc(label.numpy(), scores.numpy()) > 0.95
    assert torch.equal(scores, again)
    assert ((scores > 0.5).long() == label).float().mean() > 0.9  # 0.5 = the nearer centre


def test_centre_scoring_is_only_the_default_without_ce():
    assert build_detector("mml_tiny").score_by == "head"
    assert build_detector("mml_tiny").fake_centre is None  # head-scored checkpoints keep their keys
    assert "fake_centre.center" in build_detector("mml_triplet", backbone="test_resnet", input_size=64).state_dict()
    with pytest.raises(ValueError, match="score_by"):
        build_detector("mml_tiny", score_by="knn")


def test_ahe_pulling_factor_gamma():
    """Eq. 6: η = exp(−γ/L_CE), γ the pulling factor (γ = 1 is the printed formula)."""
    from dflab.losses.metric import ahe_eta

    assert ahe_eta(0.5, gamma=2.0) == pytest.approx(math.exp(-4.0))
    torch.manual_seed(0)
    m = build_detector("mml_tiny", ahe_gamma=3.0).train()
    parts = m.compute_loss({"label": torch.tensor([0, 0, 1, 1])}, m(torch.randn(4, 3, 64, 64)), stage="end")
    assert parts["eta"].item() == pytest.approx(math.exp(-3.0 / parts["ce"].item()), rel=1e-5)
    assert load_recipe_kwargs("mml") == {"lam": 0.5, "ahe_gamma": 1.0}  # stated in the recipe, not hidden


def load_recipe_kwargs(name: str) -> dict:
    from dflab.train.recipes import load_recipe

    return dict(load_recipe(name).model.kwargs)


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
