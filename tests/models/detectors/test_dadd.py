"""DADD specifics: sub-task / final losses, ℓ2,1 term, outputs, ablation variants, paper size."""

from __future__ import annotations

import pytest
import torch

from dflab.models.base import VARIANTS, build_detector


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector("dadd_tiny")


def test_outputs_and_row_norm_map(model):
    out = model(torch.randn(4, 3, 64, 64))
    assert out["logits"].shape == (4, 2)
    assert out["sub_logits"].shape == (4, 3, 2) and out["sub_probs"].shape == (4, 3)
    assert out["private"].shape == (4, 3, 16)
    rn = model.row_norm_map()
    assert rn.shape == (3, 16)
    gn = model.group_norms()
    assert gn.shape == (3,)
    assert gn.sum().item() == pytest.approx(model.l21().item(), rel=1e-5)
    assert torch.allclose(gn, rn.pow(2).sum(1).sqrt(), rtol=1e-5)  # a sub-task's block = its units' weights


def test_l21_rows_are_subtasks():
    """Eq. 3 with "each row's parameters ... the feature vectors extracted by each sub-task" (Sec. 3.3)."""
    m = build_detector("dadd_tiny")
    with torch.no_grad():
        m.final_head.weight.zero_()
        m.final_head.weight[:, :16] = 1.0  # sub-task 0's block: 2 x 16 ones -> Frobenius norm sqrt(32)
    assert m.l21().item() == pytest.approx(32**0.5, rel=1e-6)
    unit = build_detector("dadd_tiny", l21_groups="unit")
    unit.final_head.load_state_dict(m.final_head.state_dict())
    assert unit.l21().item() == pytest.approx(16 * 2**0.5, rel=1e-6)  # per-unit reading: 16 rows of norm sqrt(2)


def test_l21_does_not_dominate_the_loss_at_init():
    """Paper size (N = 9, F = 256): λ·ℓ2,1 < ln 2 at initialisation (the per-unit reading gives > 3)."""
    torch.manual_seed(0)
    m = build_detector("dadd_tiny", n_tasks=9, feat_dim=256)
    assert m.l21_lambda * m.l21().item() < 0.5
    unit = build_detector("dadd_tiny", n_tasks=9, feat_dim=256, l21_groups="unit")
    assert unit.l21_lambda * unit.l21().item() > 3.0


def test_subtask_loss_trains_only_its_own_head(model):
    model.zero_grad()
    out = model(torch.randn(4, 3, 64, 64))
    parts = model.compute_loss({"label": torch.tensor([0, 1, 0, 1])}, out, task="sub:1")
    parts["loss"].backward()
    assert parts["ce"].item() == pytest.approx(parts["loss"].item())  # no ℓ2,1 in a sub-task
    assert model.sub_heads[1].weight.grad.abs().sum() > 0
    assert model.private[1][0].weight.grad.abs().sum() > 0
    for other in (model.sub_heads[0].weight, model.final_head.weight, model.private[0][0].weight):
        assert other.grad is None or other.grad.abs().sum() == 0


def test_subtask_category_filter(model):
    out = model(torch.randn(4, 3, 64, 64))
    batch = {"label": torch.tensor([0, 1, 1, 1]), "category": torch.tensor([-1, 2, 0, 2])}
    full = model.compute_loss(batch, out, task="sub:2")["loss"]
    kept = model.compute_loss(batch, out, task="sub:2", category=2)["loss"]
    manual = torch.nn.functional.cross_entropy(out["sub_logits"][[0, 1, 3], 2], torch.tensor([0, 1, 1]))
    assert kept.item() == pytest.approx(manual.item(), rel=1e-5)
    assert full.item() != pytest.approx(kept.item())


def test_final_loss_is_ce_plus_lambda_l21(model):
    out = model(torch.randn(4, 3, 64, 64))
    label = torch.tensor([0, 1, 0, 1])
    parts = model.compute_loss({"label": label}, out, task="final")
    ce = torch.nn.functional.cross_entropy(out["logits"], label)
    assert parts["loss"].item() == pytest.approx(ce.item() + 0.1 * model.l21().item(), rel=1e-5)
    noreg = build_detector("dadd_no_l21_tiny")
    p2 = noreg.compute_loss({"label": label}, noreg(torch.randn(4, 3, 64, 64)))
    assert p2["loss"].item() == pytest.approx(p2["ce"].item()) and p2["l21"].item() > 0


def test_bad_task_names(model):
    out = model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="out of range"):
        model.compute_loss({"label": torch.tensor([0, 1])}, out, task="sub:7")
    with pytest.raises(ValueError, match="unknown DADD task"):
        model.compute_loss({"label": torch.tensor([0, 1])}, out, task="joint")


def test_xception_baseline_ignores_task():
    m = build_detector("dadd_xception_tiny")
    out = m(torch.randn(2, 3, 64, 64))
    assert "sub_logits" not in out
    assert m.compute_loss({"label": torch.tensor([0, 1])}, out, task="sub:0")["loss"].requires_grad


def test_xception_baseline_has_no_l21():
    """Table 2's "Xcep-ADDG" is a plain Xception: Eq. 4's ℓ2,1 acts on private features it does not have."""
    m = build_detector("dadd_xception_tiny")
    out = m(torch.randn(2, 3, 64, 64))
    label = torch.tensor([0, 1])
    parts = m.compute_loss({"label": label}, out)
    assert parts["loss"].item() == pytest.approx(torch.nn.functional.cross_entropy(out["logits"], label).item())
    assert VARIANTS.get("dadd_xception")[1]["l21_lambda"] == 0.0


def test_ablation_variants_registered():
    for name in ("dadd_xception", "dadd_no_l21", "dadd_l21_0p01", "dadd_l21_1"):
        assert VARIANTS.get(name)[0] == "dadd"


@pytest.mark.slow
def test_paper_recipe_builds_and_steps_at_paper_size():
    from dflab.train.recipes import load_recipe

    recipe = load_recipe("dadd")
    m = build_detector(recipe.model.name, **recipe.model.kwargs)
    assert m.backbone.num_features == 2048 and m.n_tasks == 9
    s = recipe.data.size
    out = m(torch.randn(2, 3, s, s))
    for task in ("sub:3", "final"):
        m.compute_loss({"label": torch.tensor([0, 1])}, out, task=task)["loss"].backward(retain_graph=True)
    assert m.final_head.weight.grad is not None


@pytest.mark.parametrize("recipe", ["dadd", "dadd_tiny"])
def test_subtask_n_trains_on_the_papers_category_n(recipe):
    """Sub-task n is fed ADDG category n in the paper's order (Sec. 4.5: ST_3 / ST_7 / ST_9 of Fig. 4 are
    Inner-Scaling, Rotation and Sim-Swap), so sub_probs[:, n] and group_norms()[n] read as the paper's ST_{n+1}."""
    from dflab.synthesis.addg import CATEGORIES
    from dflab.train.recipes import load_recipe

    r = load_recipe(recipe)
    subs = r.schedule.kwargs["sub_streams"]
    assert [r.data.streams[s].synth_kwargs["addg"]["category"] for s in subs] == list(CATEGORIES)
    assert (CATEGORIES[2], CATEGORIES[6], CATEGORIES[8]) == ("Inner-Scaling", "Rotation", "SB-Sim")
    assert build_detector(r.model.name, **r.model.kwargs, backbone="test_resnet").n_tasks == len(subs)
