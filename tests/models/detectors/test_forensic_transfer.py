"""ForensicTransfer specifics: the activation loss against a hand computation, the decision by the more active half,
the selection block, the decoder's upsampling layout, learning on a separable batch, and the tiny recipe through
the engine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dflab.models.base import build_detector
from dflab.models.detectors.forensic_transfer import ForensicTransfer, FTDecoder, select_half
from tests.models.detectors.conftest import fit_and_read_metrics, fit_batch, tiny_recipe_trainer

SIZE = 64


def _tiny(**kw) -> ForensicTransfer:
    torch.manual_seed(0)
    return build_detector("forensic_transfer_tiny", **kw)


def _latent(real: float, fake: float, b: int = 1, half: int = 8, side: int = 4) -> torch.Tensor:
    """A latent whose real half is constant ``real`` and fake half constant ``fake``."""
    return torch.cat([torch.full((b, half, side, side), real), torch.full((b, half, side, side), fake)], dim=1)


# ------------------------------------------------------------------------------------------------- the loss
def test_activation_loss_matches_a_hand_computation() -> None:
    model = _tiny(gamma=2.0).train()
    # sample 0 real: a_0 = 0.75 (half of its entries 1.5, half 0), a_1 = 0.25; sample 1 fake: a_0 = 0.5, a_1 = 2
    h = torch.zeros(2, 4, 2, 2)
    h[0, :2, 0] = 1.5
    h[0, 2:] = 0.25
    h[1, :2] = 0.5
    h[1, 2:] = 2.0
    rec = torch.zeros(2, 3, 8, 8)
    image = torch.full((2, 3, 8, 8), 0.5)
    outputs = {"latent": h, "activations": model.activations(h), "reconstruction": rec}
    torch.testing.assert_close(outputs["activations"], torch.tensor([[0.75, 0.25], [0.5, 2.0]]))
    model.eval()  # no re-decoding in eval: the given reconstruction is scored
    parts = model.compute_loss({"image": image, "label": torch.tensor([0, 1])}, outputs)
    # real: |a_1 − 0| + |a_0 − 1| = 0.25 + 0.25; fake: |a_1 − 1| + |a_0 − 0| = 1 + 0.5; mean over the batch
    act = ((0.25 + 0.25) + (1.0 + 0.5)) / 2
    assert float(parts["act"]) == pytest.approx(act)
    assert float(parts["rec"]) == pytest.approx(0.5)  # L1 between 0.5 and 0
    assert float(parts["loss"]) == pytest.approx(2.0 * act + 0.5)
    assert not parts["act"].requires_grad and not parts["rec"].requires_grad


def test_class_decision_follows_the_more_active_half() -> None:
    model = _tiny().eval()
    h = torch.cat([_latent(0.9, 0.1), _latent(0.2, 0.7), _latent(0.0, 0.05)])
    act = model.activations(h)
    model.encoder.forward = lambda x: h  # type: ignore[method-assign]
    with torch.no_grad():
        out = model(torch.zeros(3, 3, SIZE, SIZE))
    torch.testing.assert_close(out["activations"], act)
    assert out["logits"].argmax(1).tolist() == [0, 1, 1]
    score = model.score(out)
    assert score[0] < 0.5 < score[2] < score[1]  # P(fake) = sigmoid(a_1 − a_0): monotone in the margin
    torch.testing.assert_close(score, torch.sigmoid(act[:, 1] - act[:, 0]))


def test_selection_block_keeps_only_the_selected_half() -> None:
    h = torch.cat([_latent(1.0, 2.0), _latent(3.0, 4.0)])
    out = select_half(h, torch.tensor([False, True]))
    assert torch.all(out[0, :8] == 1.0) and torch.all(out[0, 8:] == 0)
    assert torch.all(out[1, :8] == 0) and torch.all(out[1, 8:] == 4.0)


def test_decoder_reads_only_the_half_of_the_label_in_training() -> None:
    """A change of the inactive half (by the label) never reaches the training reconstruction."""
    model = _tiny().train()
    seen: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().clone()))
    x = torch.randn(4, 3, SIZE, SIZE)
    label = torch.tensor([0, 1, 0, 1])
    out = model(x, labels=label)
    half = out["latent"].shape[1] // 2
    assert torch.all(seen[0][label == 0, half:] == 0) and torch.all(seen[0][label == 1, :half] == 0)
    torch.testing.assert_close(seen[0][label == 0, :half], out["latent"][label == 0, :half])


def test_compute_loss_decodes_the_labels_half_when_the_prediction_differs() -> None:
    """The engine's forward has no labels: ``compute_loss`` re-decodes with the label's half when a prediction is
    wrong, and reuses the forward's reconstruction when all are right."""
    model = _tiny().train()
    x = torch.randn(4, 3, SIZE, SIZE)
    label = torch.tensor([0, 1, 0, 1])
    out = model(x)
    seen: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().clone()))
    half = out["latent"].shape[1] // 2
    right = torch.nn.functional.one_hot(label, 2).float()
    model.compute_loss({"image": x, "label": label}, {**out, "activations": right})
    assert not seen
    model.compute_loss({"image": x, "label": label}, {**out, "activations": right.flip(1)})
    assert len(seen) == 1
    assert torch.all(seen[0][label == 0, half:] == 0) and torch.all(seen[0][label == 1, :half] == 0)
    torch.testing.assert_close(seen[0][label == 1, half:], out["latent"][label == 1, half:].detach())


# ------------------------------------------------------------------------------------------- architecture
def test_decoder_upsamples_before_each_conv_but_the_last() -> None:
    dec = FTDecoder(16, (8, 8, 4, 4))
    kinds = [type(m) for m in dec.net if isinstance(m, nn.Upsample | nn.Conv2d)]
    assert kinds == [nn.Upsample, nn.Conv2d] * 4 + [nn.Conv2d]
    ups = [m for m in dec.net if isinstance(m, nn.Upsample)]
    assert all(m.scale_factor == 2 and m.mode == "nearest" for m in ups)
    out = dec(torch.randn(2, 16, 4, 4))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1.0


def test_full_model_shapes_and_five_convs_per_side() -> None:
    model = build_detector("forensic_transfer")
    assert sum(isinstance(m, nn.Conv2d) for m in model.encoder.modules()) == 5
    assert sum(isinstance(m, nn.Conv2d) for m in model.decoder.modules()) == 5
    assert model.input_spec.size == 256 and model.input_spec.mean == (0.5, 0.5, 0.5)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out["latent"].shape == (1, 128, 16, 16)  # 64 real + 64 fake feature maps
    assert out["reconstruction"].shape == (1, 3, 256, 256)
    assert out["logits"].shape == (1, 2) and bool((out["latent"] >= 0).all())


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        ForensicTransfer(enc_widths=(4, 4, 4, 4, 5))
    with pytest.raises(ValueError, match="multiple of 16"):
        ForensicTransfer(size=72)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        _tiny()(torch.randn(2, 1, SIZE, SIZE))


# ---------------------------------------------------------------------------------------------------- training
def test_loss_decreases_and_separates_on_a_separable_batch() -> None:
    model = _tiny().train()
    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, 1] * 4)
    img = torch.rand(8, 3, 32, 32, generator=g) * 0.4 - 0.2
    img[label == 1, :, 8:24, 8:24] = 0.9  # fakes carry a bright patch
    losses = fit_batch(model, {"image": img, "label": label}, steps=30, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model(img)["logits"].argmax(1).tolist() == label.tolist()


def test_tiny_recipe_trains_through_the_engine(tiny_manifest, tmp_path) -> None:
    tr = tiny_recipe_trainer("forensic_transfer_tiny", tiny_manifest, tmp_path / "run")
    before = tr.model.encoder.net[0].weight.detach().clone()
    summary, rows = fit_and_read_metrics(tr)
    assert summary["steps"] == 2
    assert not torch.equal(before, tr.model.encoder.net[0].weight)
    assert rows and {"act", "rec"} <= set(rows[0])


def test_paper_recipe_values() -> None:
    from dflab.train.recipes import load_recipe

    cfg = load_recipe("forensic_transfer")
    assert (cfg.data.size, cfg.data.batch_size, cfg.optim.name, cfg.optim.lr) == (256, 64, "adam", 1e-3)
    assert cfg.model.pretrained == "none" and cfg.data.streams["default"].methods == ["real", "Face2Face"]
